"""``index.Faiss``: Cherche's index class (documents and their embeddings in, hits out) on a FaissIndex."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._core.component import Component
from .._core.validation import as_documents, as_matrix, check_k
from ..exceptions import IncompatibleStateError, InvalidInputError
from ._raw import faiss_module
from .faiss import FaissIndex

__all__ = ["Faiss"]


class Faiss(Component):
    """Cherche's ``index.Faiss``: vectors addressed by their documents' keys, searched by vectors.

    By default the index is exact (flat) with the L2 distance, on normalised
    vectors, and a hit's similarity is ``1 / (1 + d)`` for the squared
    distance ``d``, as in Cherche (the order is the cosine similarity's). A
    ``faiss.Index`` given as ``index`` keeps its metric: with the inner
    product the similarity is the inner product itself (Cherche's
    ``1 / (1 + inner product)`` ranked the best match lowest).

    Underneath is a :class:`~cherche_faiss.index.FaissIndex` (``faiss_index``):
    adding a key again replaces its vector (Cherche kept both), and it saves
    and pickles as the library's other components do.

    Parameters
    ----------
    key
        Field holding each document's id.
    index
        An empty ``faiss.Index`` (e.g. ``faiss.IndexFlatIP(d)``,
        ``faiss.IndexHNSWFlat(d, 32)``), or a FAISS factory string
        (``"HNSW32"``); default: exact L2 search.
    normalize
        L2-normalise documents and queries.

    Examples
    --------
    >>> import numpy as np
    >>> from cherche_faiss import index
    >>> documents = [{"id": 0, "title": "Paris"}, {"id": 1, "title": "Madrid"}, {"id": 2, "title": "Montreal"}]
    >>> faiss_index = index.Faiss(key="id").add(documents=documents, embeddings=np.eye(3))
    >>> faiss_index(embeddings=np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 1.0]]), k=2)
    [[{'id': 0, 'similarity': 0.9...}, {'id': 1, 'similarity': 0.3...}],
     [{'id': 2, 'similarity': 1.0}, {'id': 0, 'similarity': 0.33...}]]
    """

    def __init__(self, key: str, index: Any = None, normalize: bool = True) -> None:
        self.key = key
        self.index = index
        self.normalize = bool(normalize)
        if index is None or isinstance(index, str):
            metric = "l2"
        else:
            metric = "ip" if index.metric_type == faiss_module().METRIC_INNER_PRODUCT else "l2"
        self.faiss_index = FaissIndex(metric=metric, factory="Flat" if index is None else index, normalize=normalize)

    def __len__(self) -> int:
        return len(self.faiss_index)

    def _repr_extra(self) -> dict[str, Any]:
        return {"documents": len(self)}

    def add(self, documents: Sequence[Mapping], embeddings: Any) -> Faiss:
        """Add one embedding per document (a key added again has its vector replaced).

        Returns
        -------
        Faiss
            ``self``.
        """
        documents = as_documents(documents, self.key)
        vectors = as_matrix(embeddings, "embeddings")
        if len(vectors) != len(documents):
            raise InvalidInputError(f"got {len(vectors)} embeddings for {len(documents)} documents; pass one each.")
        self.faiss_index.add(vectors, [document[self.key] for document in documents])
        return self

    def __call__(self, embeddings: Any, k: int | None = None) -> list[list[dict]]:
        """The ``k`` nearest documents of each query embedding (all of them by default): one list per row."""
        k = check_k(k) or len(self)
        self.faiss_index.check_indexed()
        similarities, keys = self.faiss_index.search(as_matrix(embeddings, "embeddings"), k)
        l2 = self.faiss_index.metric == "l2"  # the FaissIndex reports -d: Cherche's similarity is 1 / (1 + d)
        return [
            [{self.key: key, "similarity": 1.0 / (1.0 - score) if l2 else score} for key, score in zip(row, scores)]
            for row, scores in zip(keys, similarities)
        ]

    def _save_state(self) -> dict[str, Any]:
        # A faiss.Index given is inside the FaissIndex: saved there, not again as the parameter.
        return {**self.__dict__, "index": self.index if isinstance(self.index, str) else None}

    def _check_loaded(self) -> None:
        if not isinstance(self.faiss_index, FaissIndex):
            raise IncompatibleStateError("the saved index of this Faiss is not a FaissIndex.")
