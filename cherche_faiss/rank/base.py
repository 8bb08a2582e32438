"""The ranker base class: document embeddings in a FaissIndex; each query's
candidates read from FAISS' storage and scored with one matrix-vector product."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from .._core.candidates import Candidates, same_path, translate
from .._core.component import Component
from .._core.keywords import check_keywords
from .._core.tags import RANKER, Tags
from .._core.validation import as_queries, check_component, check_k, check_on, check_positive_int
from ..compose.operators import ComposeMixin
from ..exceptions import InvalidInputError, InvalidTypeError, UnknownKeyError
from ..filters._host import check_filter_fields
from ..index.dense import DenseVectors
from ..index.faiss import FaissIndex

__all__ = ["Ranker", "rank_candidates"]


def rank_candidates(
    query_vectors: np.ndarray,
    candidates: list[list[Mapping]],
    source: np.ndarray,
    rows: np.ndarray,
    k: int | None,
) -> list[list[dict]]:
    """Score every candidate of every query and keep the ``k`` best of each.

    ``source[rows]`` are the candidates' vectors, in the order of
    ``candidates`` flattened. Each query's candidates are read and scored with
    one matrix-vector product: a few rows at a time stay in cache (gathering
    all of them at once costs more than the arithmetic), and a query scores
    exactly the same alone or in a batch.
    """
    ranked: list[list[dict]] = []
    start = 0
    for query_vector, hits in zip(query_vectors, candidates):
        size = len(hits)
        if size == 0:
            ranked.append([])
            continue
        scores = source[rows[start : start + size]] @ query_vector
        start += size
        order = np.argsort(-scores, kind="stable")[:k]
        ranked.append([{**hits[i], "similarity": value} for i, value in zip(order.tolist(), scores[order].tolist())])
    return ranked


class Ranker(DenseVectors, ComposeMixin, Component):
    """Base of rankers: ``ranker(q, documents, k=None, batch_size=None)``.

    ``documents`` are the candidates: a list of dicts holding the key field
    for one query, or one such list per query. Each hit comes back as a new
    dict, ``{**candidate, "similarity": float}``, best first.

    Document embeddings live in ``self.index`` (a FaissIndex). A candidate the
    ranker does not know is encoded from its ``on`` fields and kept, so it is
    never encoded twice.
    """

    #: Whether documents are read from their ``on`` fields (False for ``Embedding``: vectors are given).
    _reads_fields = True
    #: Whether this ranker re-ranks :class:`Candidates` (:meth:`_call_candidates`) inside pipelines and fusions.
    _arrays = True
    #: Keyword arguments a call takes besides its named parameters (see ``_core.keywords``).
    _call_keywords: frozenset[str] = frozenset({"filter"})

    def __cherche_tags__(self) -> Tags:
        return Tags(role=RANKER, needs_candidates=True)

    def __init__(
        self,
        key: str,
        on: Any,
        normalize: bool,
        k: int | None,
        batch_size: int,
        device: str = "cpu",
        filter_fields: Any = None,
    ) -> None:
        if on is None and self._reads_fields:
            check_on(on)  # the message every component gives for a missing or malformed `on`
        self.key, self.on, self.k, self.batch_size = check_component(key, on, k, batch_size)
        self.filter_fields = check_filter_fields(filter_fields)
        self.normalize = bool(normalize)
        self.device = device
        self.index = FaissIndex(metric="ip", normalize=self.normalize, device=device)

    def _repr_extra(self) -> dict[str, Any]:
        return {"embeddings": len(self)}

    # -- candidates -----------------------------------------------------------------------
    def _candidates(self, documents: Any, n_queries: int, single: bool) -> list[list[Mapping]]:
        if single:
            documents = [documents]
        if not isinstance(documents, list) or len(documents) != n_queries:
            raise InvalidInputError(
                f"got {n_queries} queries but documents is "
                f"{'a list of ' + str(len(documents)) if isinstance(documents, list) else type(documents).__name__}. "
                "For a list of queries pass one list of candidate documents per query."
            )
        for query_number, hits in enumerate(documents):
            if not isinstance(hits, list):
                raise InvalidTypeError(
                    f"candidates of query {query_number} must be a list of dicts, got {type(hits).__name__}. "
                    "For one query pass a list of dicts; for several, a list of such lists."
                )
        return documents

    def _candidate_ids(self, candidates: list[list[Mapping]]) -> np.ndarray:
        """FAISS ids of every candidate, flattened (-1: unknown to the ranker)."""
        key, get = self.key, self.index.id_of
        try:
            return np.fromiter((get(hit[key], -1) for hits in candidates for hit in hits), dtype=np.int64)
        except (TypeError, KeyError, IndexError):
            pass  # find the culprit for a clear message
        for query_number, hits in enumerate(candidates):
            for hit in hits:
                if not isinstance(hit, Mapping) or key not in hit:
                    raise InvalidInputError(
                        f"candidate {hit!r} of query {query_number} is not a dict with the key field "
                        f"{key!r}. Pass the hits of a retriever or whole documents."
                    )
        raise InvalidTypeError(f"a candidate's {key!r} value is not hashable; keys must be int, str, tuple ...")

    def _unknown(self, candidates: list[list[Mapping]], ids: np.ndarray) -> list[Mapping]:
        flat = [hit for hits in candidates for hit in hits]
        unknown: dict[Hashable, Mapping] = {}
        for position in np.flatnonzero(ids < 0).tolist():
            unknown.setdefault(flat[position][self.key], flat[position])
        return list(unknown.values())

    def _learn(self, unknown: list[Mapping], batch_size: int) -> None:
        """Make unknown candidates known (encode them); rankers without encoder refuse."""
        raise UnknownKeyError(
            f"{len(unknown)} candidate(s) are unknown to this {type(self).__name__} ranker, e.g. "
            f"{self.key}={unknown[0][self.key]!r}. Add their embeddings first with ranker.add(...)."
        )

    def _rank_batch(
        self,
        query_vectors: np.ndarray,
        candidates: list[list[Mapping]],
        k: int | None,
        batch_size: int,
        filter: Any = None,  # noqa: A002
    ) -> list[list[dict]]:
        """Rank one batch; ``query_vectors`` have been through ``self.index.prepare``. Candidates
        ``filter`` excludes are dropped first."""
        ids = self._candidate_ids(candidates)
        if len(ids) == 0:
            return [[] for _ in candidates]
        if (ids < 0).any():
            self._learn(self._unknown(candidates, ids), batch_size)
            ids = self._candidate_ids(candidates)
        if filter is not None:  # after learning: the candidates just learnt have their fields written
            allowed = self._filter_mask(filter)[ids]
            kept, start = [], 0
            for hits in candidates:
                kept.append([hit for hit, keep in zip(hits, allowed[start : start + len(hits)].tolist()) if keep])
                start += len(hits)
            candidates, ids = kept, ids[allowed]
        source, rows = self.index.vector_rows(ids)
        return rank_candidates(query_vectors, candidates, source, rows, k)

    def _encode_queries(self, queries: list[str], batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def __call__(
        self, q: Any, documents: Any, k: int | None = None, batch_size: int | None = None, **kwargs: Any
    ) -> list:
        if kwargs:
            check_keywords(self, kwargs, ("q", "documents", "k", "batch_size"))
        queries, single = as_queries(q)
        candidates = self._candidates(documents, len(queries), single)
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size") or self.batch_size
        ranked: list[list[dict]] = []
        for start in range(0, len(queries), batch_size):
            batch_candidates = candidates[start : start + batch_size]
            if not any(batch_candidates):
                ranked.extend([] for _ in batch_candidates)
                continue
            query_vectors = self.index.prepare(
                self._encode_queries(queries[start : start + batch_size], batch_size), "query embeddings"
            )
            ranked.extend(self._rank_batch(query_vectors, batch_candidates, k, batch_size, kwargs.get("filter")))
        return ranked[0] if single else ranked

    # -- candidates as arrays (inside pipelines and fusions) --------------------------------
    def _answers_candidates(self) -> bool:
        return self._arrays and same_path(self, ("_rank_batch", "_candidate_ids"))

    def _call_candidates(
        self, q: Any, k: int | None, batch_size: int | None, candidates: Candidates | None, **kwargs: Any
    ) -> tuple[Candidates, bool]:
        """:meth:`__call__` on :class:`Candidates` (a retriever's, one list per query of ``q``): the same
        scores and order, the candidates' key space kept, no dict built."""
        queries, single = as_queries(q)
        filter = kwargs.get("filter")  # noqa: A001
        return self._rank_in_batches(queries, candidates, k, batch_size, self._prepared_queries, filter), single

    def _prepared_queries(self, queries: list[str], batch_size: int) -> np.ndarray:
        return self.index.prepare(self._encode_queries(queries, batch_size), "query embeddings")

    def _rank_in_batches(
        self,
        queries: Any,
        candidates: Any,
        k: int | None,
        batch_size: int | None,
        encode: Any,
        filter: Any = None,  # noqa: A002
    ) -> Candidates:
        """Each batch of queries turned into prepared vectors (``encode(queries, batch_size)``; skipped for a
        batch without candidates, as :meth:`__call__` does) and its candidates ranked."""
        if candidates is None:
            raise InvalidInputError(f"{type(self).__name__} ranks candidates: pass documents=[...].")
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size") or self.batch_size
        parts = []
        for start in range(0, len(queries), batch_size):
            batch = candidates.slice(start, start + batch_size)
            if not any(len(rows) for rows in batch.rows):
                parts.append(batch)
                continue
            query_vectors = encode(queries[start : start + batch_size], batch_size)
            parts.append(self._rank_candidates(query_vectors, batch, k, batch_size, filter))
        return Candidates.concatenate(parts, candidates.space)

    def _rank_candidates(
        self,
        query_vectors: np.ndarray,
        batch: Candidates,
        k: int | None,
        batch_size: int,
        filter: Any = None,  # noqa: A002
    ) -> Candidates:
        """:meth:`_rank_batch` on arrays: candidates unknown to this ranker are learnt (or refused) as
        there, from the hits the retriever would have handed over (``{key: ..., "similarity": ...}``)."""
        rows = np.concatenate(batch.rows)
        index = self.index
        ids = translate(batch.space, rows, index, index.key_space, index.ids_of)
        if (ids < 0).any():
            unknown_rows = rows[ids < 0]
            keys = batch.space.keys_at(unknown_rows)
            scores = np.concatenate(batch.scores)[ids < 0].tolist()
            unknown: dict[Hashable, Mapping] = {}
            for key, score in zip(keys, scores):
                unknown.setdefault(key, {self.key: key, "similarity": score})
            self._learn(list(unknown.values()), batch_size)
            ids = translate(batch.space, rows, index, index.key_space, index.ids_of)
        found_rows = batch.rows
        if filter is not None:  # excluded candidates dropped before scoring
            allowed = self._filter_mask(filter)[ids]
            found_rows, start = [], 0
            for found in batch.rows:
                found_rows.append(found[allowed[start : start + len(found)]])
                start += len(found)
            ids = ids[allowed]
        source, vector_rows = index.vector_rows(ids)
        ranked_rows, ranked_scores = [], []
        start = 0
        for query_vector, found in zip(query_vectors, found_rows):
            size = len(found)
            if size == 0:
                ranked_rows.append(found)
                ranked_scores.append(np.empty(0, dtype=np.float32))
                continue
            scores = source[vector_rows[start : start + size]] @ query_vector
            start += size
            order = np.argsort(-scores, kind="stable")[:k]
            ranked_rows.append(found[order])
            ranked_scores.append(scores[order])
        return Candidates(batch.space, ranked_rows, ranked_scores)
