"""Re-rank candidates with a cross-encoder that reads (query, document) pairs."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from .._core.component import Component
from .._core.keywords import check_keywords
from .._core.tags import RANKER, Tags
from .._core.validation import (
    as_documents,
    as_queries,
    check_k,
    check_on,
    check_positive_int,
    document_texts,
    has_text,
    per_query_lists,
)
from ..compose.operators import ComposeMixin
from ..encoders.factories import as_scorer
from ..exceptions import (
    IncompatibleStateError,
    InvalidFilterError,
    InvalidInputError,
    InvalidTypeError,
    UnknownKeyError,
)
from ..filters._host import Filterable, check_filter_fields

__all__ = ["CrossEncoder"]


class CrossEncoder(Filterable, ComposeMixin, Component):
    """Rank candidates by a cross-encoder's score of each (query, document text) pair.

    The text of a candidate is its ``on`` fields joined by spaces; candidates
    that carry only their key (a retriever's hits) are looked up among the
    documents given to :meth:`add` (which needs ``key``), or put
    ``+ documents`` before the cross-encoder in the pipeline, as in Cherche.
    Every pair of a batch of queries is scored in batches of ``batch_size``.

    Parameters
    ----------
    on
        Field(s) of the documents read by the cross-encoder.
    encoder
        A sentence-transformers ``CrossEncoder`` or its ``predict`` method
        (pickled by reference), or any callable ``[(query, text), ...] -> scores``.
    k
        Default number of hits kept (``None``: every candidate).
    batch_size
        Pairs scored per call of the model.
    key
        Field holding each document's id (needed by :meth:`add`). Cherche's
        cross-encoder has none: left out, it is taken from the pipeline or
        fusion the cross-encoder joins (``retriever + documents + cross_encoder``,
        ``ranker | cross_encoder``).

    Examples
    --------
    >>> from cherche_faiss import rank
    >>> def overlap(pairs):  # a deterministic stand-in for a cross-encoder
    ...     return [len(set(q.lower().split()) & set(d.lower().split())) for q, d in pairs]
    >>> ranker = rank.CrossEncoder(on="title", encoder=overlap, k=1)
    >>> ranker("wine of Bordeaux", documents=[{"id": 0, "title": "Paris"}, {"id": 1, "title": "Bordeaux wine"}])
    [{'id': 1, 'title': 'Bordeaux wine', 'similarity': 2.0}]
    """

    def __cherche_tags__(self) -> Tags:
        return Tags(role=RANKER, needs_candidates=True)

    #: Keyword arguments a call takes besides its named parameters (see ``_core.keywords``).
    _call_keywords: frozenset[str] = frozenset({"filter"})

    def __init__(
        self,
        on: Any,
        encoder: Any,
        k: int | None = None,
        batch_size: int = 64,
        key: str | None = None,
        filter_fields: Any = None,
    ) -> None:
        self.filter_fields = check_filter_fields(filter_fields)
        self.on = check_on(on)
        self.encoder = as_scorer(encoder)
        self.k = check_k(k)
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=False)
        self.key = key
        self._texts: dict[Hashable, str] = {}

    def __len__(self) -> int:
        return len(self._texts)

    def _adopt_key(self, key: str) -> None:
        """Take the key field of the pipeline or fusion this cross-encoder joins (see compose.keys)."""
        self.key = key

    def _repr_extra(self) -> dict[str, Any]:
        return {"documents": len(self)}

    def _check_loaded(self) -> None:
        if not isinstance(self._texts, dict) or not all(isinstance(text, str) for text in self._texts.values()):
            raise IncompatibleStateError("the saved texts of this CrossEncoder are not a dict of keys to strings.")

    def add(self, documents: list[Mapping], **kwargs: Any) -> CrossEncoder:
        """Remember the text of ``documents`` so that hits holding only a key can be scored."""
        if self.key is None:
            raise InvalidInputError(
                "CrossEncoder.add needs the documents' key field: build it with key='id' (or map hits to "
                "documents with `pipeline + documents` before the cross-encoder)."
            )
        documents = as_documents(documents, self.key, self.on)
        self._texts.update(zip((document[self.key] for document in documents), document_texts(documents, self.on)))
        self._keyed_columns().upsert(documents, self.key)
        return self

    def _allowed_candidates(self, candidates: list[list[Any]], filter: Any) -> list[list[Any]]:  # noqa: A002
        """The candidates ``filter`` allows, by the fields of the documents added, or, for a candidate
        not added, by its own fields (a whole document handed over by ``pipeline + documents``)."""
        if self.key is None:
            raise InvalidFilterError(
                "this CrossEncoder has no key field to filter its candidates by: build it with key='id' (or "
                "put it in a pipeline whose stages have one).",
                "filter",
            )
        key, columns = self.key, self._keyed_columns()
        held = columns.row_of
        unknown = [hit for hits in candidates for hit in hits if isinstance(hit, Mapping) and hit.get(key) not in held]
        if unknown:
            columns.upsert(as_documents(unknown, key), key)
        allowed = columns.allows(filter)
        kept = []
        for hits in candidates:
            keep = allowed([hit[key] for hit in hits]).tolist() if hits else []
            kept.append([hit for hit, allow in zip(hits, keep) if allow])
        return kept

    def _text(self, hit: Any, query_number: int) -> str:
        if not isinstance(hit, Mapping):
            raise InvalidTypeError(f"candidate {hit!r} of query {query_number} is not a dict.")
        if all(field in hit for field in self.on):
            return document_texts([hit], self.on)[0]
        if self.key is not None and hit.get(self.key) in self._texts:
            return self._texts[hit[self.key]]
        if has_text(hit, self.key, self.on):  # a whole document missing some fields: they read as empty
            return document_texts([hit], self.on)[0]
        raise UnknownKeyError(
            f"candidate {hit!r} of query {query_number} has none of the fields {self.on} and is not among "
            "the documents added to this cross-encoder. Pass whole documents (retriever + documents + "
            "cross_encoder) or call cross_encoder.add(documents) with key= set."
        )

    def __call__(
        self, q: Any, documents: Any, k: int | None = None, batch_size: int | None = None, **kwargs: Any
    ) -> list:
        if kwargs:
            check_keywords(self, kwargs, ("q", "documents", "k", "batch_size"))
        queries, single = as_queries(q)
        candidates = per_query_lists(documents, len(queries), single, "query", "queries", "candidate dicts")
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size") or self.batch_size
        if kwargs.get("filter") is not None:
            candidates = self._allowed_candidates(candidates, kwargs["filter"])
        pairs = [
            (query, self._text(hit, number))
            for number, (query, hits) in enumerate(zip(queries, candidates))
            for hit in hits
        ]
        scores = np.concatenate(
            [
                self.encoder.score(pairs[start : start + batch_size], batch_size=batch_size)
                for start in range(0, len(pairs), batch_size)
            ]
            or [np.empty(0, dtype=np.float32)]
        )
        ranked, start = [], 0
        for hits in candidates:
            query_scores = scores[start : start + len(hits)]
            start += len(hits)
            order = np.argsort(-query_scores, kind="stable")[:k]
            ranked.append([{**hits[i], "similarity": s} for i, s in zip(order.tolist(), query_scores[order].tolist())])
        return ranked[0] if single else ranked
