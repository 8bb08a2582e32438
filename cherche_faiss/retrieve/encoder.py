"""Dense retrievers whose documents and queries are encoded by models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..encoders.base import as_encoder
from ._dense import DenseRetriever

__all__ = ["Encoder", "DPR"]


class DPR(DenseRetriever):
    """Dense retriever with one encoder for documents and another for queries.

    Parameters
    ----------
    key
        Field holding each document's unique id.
    on
        Field(s) encoded for each document, joined by spaces.
    encoder
        Document encoder: a callable ``texts -> array`` (e.g.
        ``SentenceTransformer(path).encode``) or an encoder object.
    query_encoder
        Query encoder, same forms.
    normalize
        Cosine similarity when True, inner product when False.
    k
        Default number of hits (``None``: every document).
    batch_size
        Texts encoded per batch.
    index
        Where the vectors live: ``None`` (exact search), a FAISS factory string
        (``"HNSW32"``, ``"IVF256,Flat"`` ...), a ``faiss.Index`` or a FaissIndex.
    device
        Device of the FAISS index (``"cpu"``, ``"cuda"``, ``"auto"`` ...).
    """

    def __init__(
        self,
        key: str,
        on: Any,
        encoder: Any,
        query_encoder: Any,
        normalize: bool = True,
        k: int | None = None,
        batch_size: int = 64,
        index: Any = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(key=key, on=on, normalize=normalize, k=k, batch_size=batch_size, index=index, device=device)
        self.encoder = as_encoder(encoder, "encoder")
        self.query_encoder = as_encoder(query_encoder, "query_encoder")

    def add(
        self, documents: list[Mapping], batch_size: int | None = None, show_progress: bool = True, **kwargs: Any
    ) -> "DPR":
        """Encode ``documents`` and add them (a key added again is replaced).

        Returns
        -------
        DPR
            ``self``.
        """
        keys, vectors = self._encode_documents(self.encoder, documents, batch_size, show_progress)
        if keys:
            self.index.add(vectors, keys)
        return self

    def _search(self, queries: list[str], k: int | None) -> list[list[dict]]:
        return self._hits_for(self.query_encoder.encode(queries, batch_size=self.batch_size), k)


class Encoder(DPR):
    """Dense retriever with one encoder for documents and queries.

    Examples
    --------
    >>> from cherche_faiss import retrieve
    >>> from cherche_faiss.encoders import HashingEncoder
    >>> documents = [
    ...     {"id": 0, "title": "Paris", "article": "Eiffel tower"},
    ...     {"id": 1, "title": "Montreal", "article": "Montreal is in Canada."},
    ... ]
    >>> retriever = retrieve.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(), k=1)
    >>> retriever = retriever.add(documents, show_progress=False)
    >>> retriever("montreal canada")
    [{'id': 1, 'similarity': 0.7...}]
    """

    def __init__(
        self,
        encoder: Any,
        key: str,
        on: Any,
        normalize: bool = True,
        k: int | None = None,
        batch_size: int = 64,
        index: Any = None,
        device: str = "cpu",
    ) -> None:
        encoder = as_encoder(encoder, "encoder")
        super().__init__(
            key=key, on=on, encoder=encoder, query_encoder=encoder, normalize=normalize,
            k=k, batch_size=batch_size, index=index, device=device,
        )
