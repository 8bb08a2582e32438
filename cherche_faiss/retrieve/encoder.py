"""Dense retrievers whose documents and queries are encoded by models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._core.candidates import Candidates
from ..encoders.factories import as_encoder
from ..exceptions import IncompatibleStateError
from ._dense import DenseRetriever

__all__ = ["Encoder", "DPR"]


# Parallel on purpose to rank.DPR and rank.Encoder: Cherche has a retriever and a ranker of each name, with
# the same parameters; what they share (the index, streamed adds, query vectors) lives in index.dense.DenseVectors.
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
        Where the vectors live: ``None`` (exact search), ``"auto"`` (chosen from
        the corpus size, see :func:`cherche_faiss.index.auto.choose_index`), a
        FAISS factory string (``"HNSW32"``, ``"IVF4096,Flat"`` ...), a
        ``faiss.Index`` or a :class:`~cherche_faiss.index.FaissIndex`.
    device
        Device of the FAISS index (``"cpu"``, ``"cuda"``, ``"auto"`` ...).
    search_params
        Default ``{"nprobe": n}`` (IVF) or ``{"efSearch": n}`` (HNSW); a call
        takes them too: ``retriever(q, nprobe=128)``.
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
        search_params: dict | None = None,
        filter_fields: Any = None,
    ) -> None:
        super().__init__(
            key=key,
            on=on,
            normalize=normalize,
            k=k,
            batch_size=batch_size,
            index=index,
            device=device,
            search_params=search_params,
            filter_fields=filter_fields,
        )
        self.encoder = as_encoder(encoder, "encoder")
        self.query_encoder = as_encoder(query_encoder, "query_encoder")

    def _check_loaded(self) -> None:
        super()._check_loaded()
        for name in ("encoder", "query_encoder"):  # a damaged pickle may have renamed or replaced them
            if not callable(getattr(getattr(self, name, None), "encode", None)):
                raise IncompatibleStateError(f"the saved {name} of this {type(self).__name__} is missing or damaged.")

    def add(
        self, documents: Iterable[Mapping], batch_size: int | None = None, show_progress: bool = True, **kwargs: Any
    ) -> DPR:
        """Encode ``documents`` and add them (a key added again is replaced).

        Documents may come from any iterable, a generator included: they are
        encoded and added ``batch_size`` at a time, so memory holds the index
        and one batch, never every embedding at once. A list is validated
        whole first (a bad document then changes nothing); a generator batch
        by batch.

        Parameters
        ----------
        documents
            Dicts with the ``key`` field and the ``on`` fields.
        batch_size
            Documents encoded per batch (default: the retriever's).
        show_progress
            Progress bar with rate and ETA (tqdm).

        Returns
        -------
        DPR
            ``self``.
        """
        self._add_encoded(self.encoder, documents, batch_size, show_progress, "retriever")
        return self

    def _search_arrays(
        self, queries: list[str], k: int | None, mask: np.ndarray | None = None, **search_params: Any
    ) -> Candidates:
        return self._candidates_for(
            self.query_encoder.encode(queries, batch_size=self.batch_size), k, False, mask, **search_params
        )


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
        search_params: dict | None = None,
        filter_fields: Any = None,
    ) -> None:
        encoder = as_encoder(encoder, "encoder")
        super().__init__(
            key=key,
            on=on,
            encoder=encoder,
            query_encoder=encoder,
            normalize=normalize,
            k=k,
            batch_size=batch_size,
            index=index,
            device=device,
            search_params=search_params,
            filter_fields=filter_fields,
        )
