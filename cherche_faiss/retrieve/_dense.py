"""What the dense retrievers share: a FaissIndex of document vectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._batching import encode_in_batches
from .._hits import make_hits
from .._validation import as_documents, document_texts
from ..index.faiss import FaissIndex
from .base import Retriever

__all__ = ["DenseRetriever", "make_index"]


def make_index(index: Any, normalize: bool, device: str) -> FaissIndex:
    """A FaissIndex from what users pass as ``index``: None, a factory string,
    a ``faiss.Index`` or a FaissIndex (used as it is)."""
    if isinstance(index, FaissIndex):
        return index
    return FaissIndex(factory="Flat" if index is None else index, normalize=normalize, device=device)


class DenseRetriever(Retriever):
    """A retriever whose document vectors live in ``self.index`` (a FaissIndex)."""

    def __init__(self, key: str, on: Any, normalize: bool, k: int | None, batch_size: int, index: Any, device: str) -> None:
        super().__init__(key=key, on=on, k=k, batch_size=batch_size)
        self.normalize = bool(normalize)
        self.device = device
        self.index = make_index(index, self.normalize, device)

    def __len__(self) -> int:
        return len(self.index)

    def _hits_for(self, vectors: np.ndarray, k: int | None, prepared: bool = False) -> list[list[dict]]:
        search = self.index.search_prepared if prepared else self.index.search
        similarities, keys = search(vectors, k or len(self.index))
        return [make_hits(self.key, row_keys, row_scores) for row_keys, row_scores in zip(keys, similarities)]

    def _encode_documents(
        self, encoder: Any, documents: list[Mapping], batch_size: int | None, show_progress: bool
    ) -> tuple[list, np.ndarray]:
        documents = as_documents(documents, self.key, self.on)
        last = {document[self.key]: document for document in documents}
        if not last:
            return [], np.empty((0, 0), dtype=np.float32)
        texts = document_texts(list(last.values()), self.on)
        vectors = encode_in_batches(
            encoder, texts, batch_size or self.batch_size, f"{type(self).__name__} retriever", show_progress
        )
        return list(last), vectors
