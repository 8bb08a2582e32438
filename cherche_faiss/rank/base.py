"""The ranker base class: document embeddings in a FaissIndex, candidates of a
whole batch of queries gathered and scored with one matrix product."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from .._state import Component
from .._validation import as_queries, check_k, check_on, check_positive_int
from ..compose.pipeline import ComposeMixin
from ..exceptions import InvalidInputError, InvalidTypeError, UnknownKeyError
from ..index.faiss import FaissIndex

__all__ = ["Ranker", "rank_candidates"]


def rank_candidates(
    key: str,
    query_vectors: np.ndarray,
    candidates: list[list[Mapping]],
    index: FaissIndex,
    k: int | None,
) -> list[list[dict]]:
    """Score every candidate of every query and keep the ``k`` best of each.

    Candidates' vectors are gathered once per distinct key, then every
    (query, candidate) pair is scored in one vectorised pass.
    """
    sizes = [len(hits) for hits in candidates]
    if sum(sizes) == 0:
        return [[] for _ in candidates]
    flat_keys = [hit[key] for hits in candidates for hit in hits]
    position: dict[Hashable, int] = {}
    for candidate_key in flat_keys:
        position.setdefault(candidate_key, len(position))
    vectors = index.reconstruct(list(position))
    rows = np.fromiter((position[candidate_key] for candidate_key in flat_keys), dtype=np.int64, count=len(flat_keys))
    columns = np.repeat(np.arange(len(candidates)), sizes)
    # One dot product per (query, candidate) pair, each summed in the same order whatever the
    # batch: a query scores exactly the same alone or in a batch (a matrix product would not).
    scores = np.einsum("ij,ij->i", vectors[rows], query_vectors[columns])
    ranked = []
    start = 0
    for hits, size in zip(candidates, sizes):
        query_scores = scores[start : start + size]
        start += size
        order = np.argsort(-query_scores, kind="stable")[:k]
        ranked.append(
            [{**hits[i], "similarity": similarity} for i, similarity in zip(order.tolist(), query_scores[order].tolist())]
        )
    return ranked


class Ranker(ComposeMixin, Component):
    """Base of rankers: ``ranker(q, documents, k=None, batch_size=None)``.

    ``documents`` are the candidates: a list of dicts holding the key field
    for one query, or one such list per query. Each hit comes back as a new
    dict, ``{**candidate, "similarity": float}``, best first.

    Document embeddings live in ``self.index`` (a FaissIndex). A candidate the
    ranker does not know is encoded from its ``on`` fields and kept, so it is
    never encoded twice.
    """

    _role = "ranker"

    def __init__(self, key: str, on: Any, normalize: bool, k: int | None, batch_size: int, device: str = "cpu") -> None:
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"key must be the name of the documents' id field, got {key!r}.")
        self.key = key
        self.on = check_on(on) if on is not None else None
        self.normalize = bool(normalize)
        self.k = check_k(k)
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=False)
        self.device = device
        self.index = FaissIndex(metric="ip", normalize=self.normalize, device=device)

    def __len__(self) -> int:
        return len(self.index)

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
            for hit in hits:
                if not isinstance(hit, Mapping) or self.key not in hit:
                    raise InvalidInputError(
                        f"candidate {hit!r} of query {query_number} is not a dict with the key field "
                        f"{self.key!r}. Pass the hits of a retriever or whole documents."
                    )
        return documents

    def _unknown(self, candidates: list[list[Mapping]]) -> list[Mapping]:
        unknown: dict[Hashable, Mapping] = {}
        for hits in candidates:
            for hit in hits:
                if hit[self.key] not in self.index and hit[self.key] not in unknown:
                    unknown[hit[self.key]] = hit
        return list(unknown.values())

    def _learn(self, unknown: list[Mapping], batch_size: int) -> None:
        """Make unknown candidates known (encode them); rankers without encoder refuse."""
        raise UnknownKeyError(
            f"{len(unknown)} candidate(s) are unknown to this {type(self).__name__} ranker, e.g. "
            f"{self.key}={unknown[0][self.key]!r}. Add their embeddings first with ranker.add(...)."
        )

    def _rank_batch(self, query_vectors: np.ndarray, candidates: list[list[Mapping]], k: int | None, batch_size: int) -> list[list[dict]]:
        unknown = self._unknown(candidates)
        if unknown:
            self._learn(unknown, batch_size)
        if not any(candidates):
            return [[] for _ in candidates]
        query_vectors = self.index.prepare(query_vectors, "query embeddings")
        return rank_candidates(self.key, query_vectors, candidates, self.index, k)

    def _encode_queries(self, queries: list[str], batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def __call__(
        self, q: Any, documents: Any, k: int | None = None, batch_size: int | None = None, **kwargs: Any
    ) -> list:
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
            query_vectors = self._encode_queries(queries[start : start + batch_size], batch_size)
            ranked.extend(self._rank_batch(query_vectors, batch_candidates, k, batch_size))
        return ranked[0] if single else ranked
