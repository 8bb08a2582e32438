"""Union (``|``), Intersection (``&``) and Vote (``*``) of retrievers, rankers and pipelines."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from .._core.candidates import Candidates, KeyList, answers_candidates
from .._core.component import Component
from .._core.keywords import call_keywords, check_keywords, keywords_for
from .._core.tags import RANKER, RETRIEVER, Tags
from .._core.validation import check_k, check_positive_int
from ..exceptions import InvalidInputError
from .fusion import FUSIONS, Fused, as_hits, fuse_reciprocal_ranks, fuse_votes, fuse_weighted_scores
from .keys import give_key, shared_key
from .operators import ComposeMixin, add_once, needs_documents, register

__all__ = ["Union", "Intersection", "Vote"]


class _Fusion(ComposeMixin, Component):
    """Run every model on the same queries and fuse their hits.

    Parameters
    ----------
    models
        Retrievers, rankers or pipelines sharing the same key field.
    fusion
        ``"rrf"`` (reciprocal rank fusion, the default: only ranks count, so
        BM25 scores and cosine similarities mix without tuning) or
        ``"weighted"`` (weighted sum of normalised similarities).
    c
        The constant of reciprocal rank fusion, ``score = sum w / (c + rank)``.
    weights
        One weight per model (default 1 each).
    normalization
        For ``fusion="weighted"``: ``"minmax"``, ``"zscore"`` or None.
    k
        Number of fused hits kept (None: all).
    """

    _require_all = False

    def __init__(
        self,
        models: list[Any],
        fusion: str = "rrf",
        c: float = 60.0,
        weights: list[float] | None = None,
        normalization: str | None = "minmax",
        k: int | None = None,
    ) -> None:
        if not isinstance(models, (list, tuple)) or len(models) < 2:
            raise InvalidInputError(f"{type(self).__name__} needs a list of at least two models, got {models!r}.")
        shared_key(models, type(self).__name__)  # a cross-encoder without key takes the others'
        if fusion not in FUSIONS:
            raise InvalidInputError(f"fusion must be one of {FUSIONS}, got {fusion!r}.")
        if weights is not None and len(weights) != len(models):
            raise InvalidInputError(f"got {len(weights)} weights for {len(models)} models; pass one per model.")
        self.models = list(models)
        self.fusion = fusion
        self.c = float(c)
        self.weights = list(weights) if weights is not None else None
        self.normalization = normalization
        self.k = check_k(k)

    @classmethod
    def _join(cls, left: Any, right: Any) -> _Fusion:
        """``left op right``, flattening operands that are already default fusions of this kind."""
        if not isinstance(right, ComposeMixin):
            return NotImplemented
        models: list[Any] = []
        for side in (left, right):
            models.extend(side.models if type(side) is cls and side._default() else [side])
        return cls(models)

    @property
    def key(self) -> str:
        return self.models[0].key

    def _adopt_key(self, key: str) -> None:
        """Take the key of the pipeline this fusion joins (its members had none: cross-encoders)."""
        give_key(self.models, key)

    def __cherche_tags__(self) -> Tags:
        # A fusion of retrievers finds candidates like a retriever; with one ranker in it, it needs them.
        ranks = any(needs_documents(model) for model in self.models)
        return Tags(role=RANKER if ranks else RETRIEVER, needs_candidates=ranks)

    def _default(self) -> bool:
        return self.fusion == "rrf" and self.weights is None and self.k is None and self.c == 60.0

    def add(self, documents: list[Mapping], **kwargs: Any) -> _Fusion:
        """Add ``documents`` to every model that indexes documents, each once."""
        add_once(self.models, documents, **kwargs)
        return self

    def _fuse(self, keys: list[list[Hashable]], similarities: list[list[float]]) -> Fused:
        """One query's fused ranking, from each model's keys and similarities, best first."""
        if self.fusion == "weighted":
            return fuse_weighted_scores(keys, similarities, self.weights, self.normalization, self._require_all)
        return fuse_reciprocal_ranks(keys, self.c, self.weights, self._require_all)

    def __call__(
        self, q: Any, k: int | None = None, batch_size: int | None = None, documents: Any = None, **kwargs: Any
    ) -> list:
        if kwargs:
            check_keywords(self, kwargs, ("q", "k", "batch_size", "documents"))
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size")
        single = isinstance(q, str)
        per_model = []
        for model in self.models:
            if needs_documents(model):
                if documents is None:
                    raise InvalidInputError(
                        f"{type(model).__name__} in this {type(self).__name__} ranks candidates: pass documents=[...]."
                    )
                hits = model(q, documents=documents, batch_size=batch_size, **keywords_for(model, kwargs))
            else:
                hits = model(q, batch_size=batch_size, **keywords_for(model, kwargs))
            per_model.append([hits] if single else hits)
        key, fused = self.key, []
        for rankings in zip(*per_model):
            keys = [[hit[key] for hit in hits] for hits in rankings]
            similarities = [[hit["similarity"] for hit in hits] for hits in rankings]
            fused.append(as_hits(key, rankings, self._fuse(keys, similarities))[:k])
        return fused[0] if single else fused

    def _call_candidates(
        self, q: Any, k: int | None, batch_size: int | None, candidates: Candidates | None, **kwargs: Any
    ) -> tuple[Candidates, bool]:
        """:meth:`__call__` on :class:`Candidates`: each model answers candidates, then each query's are
        fused by key (a key space of the call's own: the keys each query's fusion found)."""
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size")
        per_model, single = [], True
        for model in self.models:
            if needs_documents(model) and candidates is None:
                raise InvalidInputError(
                    f"{type(model).__name__} in this {type(self).__name__} ranks candidates: pass documents=[...]."
                )
            found, single = model._call_candidates(
                q, None, batch_size, candidates if needs_documents(model) else None, **keywords_for(model, kwargs)
            )
            per_model.append(found)
        documents: list[Hashable] = []
        rows, scores = [], []
        for number in range(len(per_model[0])):
            keys = [found.space.keys_at(found.rows[number]) for found in per_model]
            similarities = [found.scores[number].tolist() for found in per_model]
            fused = self._fuse(keys, similarities)
            found_documents = fused.documents[:k]
            rows.append(np.arange(len(documents), len(documents) + len(found_documents), dtype=np.int64))
            scores.append(np.asarray(fused.scores[:k], dtype=np.float64))
            documents.extend(found_documents)
        return Candidates(KeyList(documents), rows, scores), single

    def _answers_candidates(self) -> bool:
        return all(answers_candidates(model) for model in self.models)

    def _accepted_keywords(self) -> frozenset[str] | None:
        """The keyword arguments some model takes; ``filter`` only when every model takes it (each model
        selects candidates: one that cannot filter would let excluded documents through)."""
        accepted: set[str] = set()
        filters = True
        for model in self.models:
            keywords = call_keywords(model)
            if keywords is None:
                return None
            accepted |= keywords
            filters = filters and "filter" in keywords
        return frozenset(accepted if filters else accepted - {"filter"})

    def __repr__(self) -> str:
        options = f"fusion={self.fusion!r}, c={self.c}, weights={self.weights}, k={self.k}"
        return f"{type(self).__name__}(\n" + "".join(f"  {model!r},\n" for model in self.models) + f"  {options},\n)"


class Union(_Fusion):
    """Every document any model finds, ranked by fused score (``a | b``).

    Examples
    --------
    >>> from cherche_faiss import retrieve
    >>> from cherche_faiss.encoders import HashingEncoder
    >>> documents = [{"id": 0, "title": "Paris"}, {"id": 1, "title": "Lyon"}, {"id": 2, "title": "Pau"}]
    >>> tfidf = retrieve.TfIdf(key="id", on="title", documents=documents)
    >>> dense = retrieve.Encoder(key="id", on="title", encoder=HashingEncoder(), k=2)
    >>> dense = dense.add(documents, show_progress=False)
    >>> (tfidf | dense)("Lyon Pau Paris")
    [{'id': 0, 'similarity': 0.0327...}, {'id': 1, 'similarity': 0.0322...}, {'id': 2, 'similarity': 0.0158...}]
    >>> (dense | tfidf)("Lyon Pau Paris") == (tfidf | dense)("Lyon Pau Paris")
    True
    >>> [hit["id"] for hit in (tfidf & dense)("Lyon Pau Paris")]
    [0, 1]
    """


class Intersection(_Fusion):
    """Only documents every model finds, ranked by fused score (``a & b``)."""

    _require_all = True


class Vote(_Fusion):
    """Documents ranked by how many models return them (``a * b``); the
    similarity is the (weighted) number of votes, ties broken by reciprocal rank fusion."""

    def _fuse(self, keys: list[list[Hashable]], similarities: list[list[float]]) -> Fused:
        return fuse_votes(keys, self.c, self.weights)


register("|", Union._join)
register("&", Intersection._join)
register("*", Vote._join)
