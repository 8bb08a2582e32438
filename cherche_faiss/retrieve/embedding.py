"""Dense retriever over vectors the caller computes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._core.candidates import Candidates
from .._core.validation import check_k, check_positive_int, documents_with_vectors
from ..index.dense import chunks
from ._dense import DenseRetriever

__all__ = ["Embedding"]


class Embedding(DenseRetriever):
    """Retrieve documents from query vectors; document vectors are given to :meth:`add`.

    A 1-D query vector (or a matrix with one row, as in Cherche) returns one
    list of hits; a matrix of several rows returns one list per row.

    Examples
    --------
    >>> import numpy as np
    >>> from cherche_faiss import retrieve
    >>> retriever = retrieve.Embedding(key="id", k=1)
    >>> retriever = retriever.add([{"id": "a"}, {"id": "b"}], embeddings_documents=np.eye(2))
    >>> retriever(np.array([0.1, 0.9]))
    [{'id': 'b', 'similarity': 0.99...}]
    """

    _reads_fields = False

    def __init__(
        self,
        key: str,
        index: Any = None,
        normalize: bool = True,
        k: int | None = None,
        batch_size: int = 1024,
        device: str = "cpu",
        search_params: dict | None = None,
        filter_fields: Any = None,
    ) -> None:
        super().__init__(
            key=key,
            on=None,
            normalize=normalize,
            k=k,
            batch_size=batch_size,
            index=index,
            device=device,
            search_params=search_params,
            filter_fields=filter_fields,
        )

    def add(
        self, documents: list[Mapping], embeddings_documents: Any = None, show_progress: bool = True, **kwargs: Any
    ) -> Embedding:
        """Add one vector per document (a key added again is replaced).

        An index that needs training (IVF, PQ) is trained on these vectors,
        with a progress bar unless ``show_progress=False``.

        Returns
        -------
        Embedding
            ``self``.
        """
        keys, vectors = documents_with_vectors(documents, embeddings_documents, self.key, "retriever")
        self.index.add(vectors, keys, show_progress=show_progress)
        self._add_fields(documents)
        return self

    def _call_candidates(
        self, q: Any, k: int | None, batch_size: int | None, candidates: Candidates | None, **kwargs: Any
    ) -> tuple[Candidates, bool]:
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size") or self.batch_size
        search_params = self._call_options(kwargs)
        self._check_indexed()
        vectors, single = self._query_vectors(q)
        filter = kwargs.get("filter")  # noqa: A001
        mask = None if filter is None else self._filter_mask(filter)
        parts = [
            self._candidates_for(chunk, k, True, mask, **search_params) for _, chunk in chunks(vectors, batch_size)
        ]
        return Candidates.concatenate(parts, parts[0].space), single
