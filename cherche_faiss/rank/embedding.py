"""Ranker over vectors the caller computes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._core.candidates import Candidates
from .._core.keywords import check_keywords
from .._core.validation import check_k, check_positive_int, documents_with_vectors
from ..index.dense import chunks
from .base import Ranker

__all__ = ["Embedding"]


class Embedding(Ranker):
    """Rank candidates by the similarity of their stored vectors to query vectors.

    ``q`` is a vector (one query) or a matrix (one row per query; a single row
    is one query, as in Cherche).

    Examples
    --------
    >>> import numpy as np
    >>> from cherche_faiss import rank
    >>> ranker = rank.Embedding(key="id")
    >>> ranker = ranker.add([{"id": "a"}, {"id": "b"}], embeddings_documents=np.eye(2))
    >>> [hit["id"] for hit in ranker(np.array([0.2, 0.8]), documents=[{"id": "a"}, {"id": "b"}])]
    ['b', 'a']
    """

    _reads_fields = False

    def __init__(
        self,
        key: str,
        normalize: bool = True,
        k: int | None = None,
        batch_size: int = 1024,
        device: str = "cpu",
        filter_fields: Any = None,
    ) -> None:
        super().__init__(
            key=key,
            on=None,
            normalize=normalize,
            k=k,
            batch_size=batch_size,
            device=device,
            filter_fields=filter_fields,
        )

    def add(self, documents: list[Mapping], embeddings_documents: Any = None, **kwargs: Any) -> Embedding:
        """Keep one vector per document (a key added again is replaced).

        Returns
        -------
        Embedding
            ``self``.
        """
        keys, vectors = documents_with_vectors(documents, embeddings_documents, self.key, "ranker")
        self.index.add(vectors, keys)
        self._add_fields(documents)
        return self

    def __call__(
        self, q: Any, documents: Any, k: int | None = None, batch_size: int | None = None, **kwargs: Any
    ) -> list:
        if kwargs:
            check_keywords(self, kwargs, ("q", "documents", "k", "batch_size"))
        vectors, single = self._query_vectors(q)
        candidates = self._candidates(documents, len(vectors), single)
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size") or self.batch_size
        ranked: list[list[dict]] = []
        for start, chunk in chunks(vectors, batch_size):
            batch = candidates[start : start + batch_size]
            ranked.extend(self._rank_batch(chunk, batch, k, batch_size, kwargs.get("filter")))
        return ranked[0] if single else ranked

    def _call_candidates(
        self, q: Any, k: int | None, batch_size: int | None, candidates: Candidates | None, **kwargs: Any
    ) -> tuple[Candidates, bool]:
        vectors, single = self._query_vectors(q)
        filter = kwargs.get("filter")  # noqa: A001
        return self._rank_in_batches(vectors, candidates, k, batch_size, _already_prepared, filter), single


def _already_prepared(vectors: np.ndarray, batch_size: int) -> np.ndarray:
    return vectors
