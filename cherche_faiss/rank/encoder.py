"""Rankers whose documents and queries are encoded by models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._core.validation import has_text
from ..encoders.factories import as_encoder
from ..exceptions import IncompatibleStateError, UnknownKeyError
from .base import Ranker

__all__ = ["Encoder", "DPR"]


# Parallel on purpose to retrieve.DPR and retrieve.Encoder (see there); what they share is in DenseVectors.
class DPR(Ranker):
    """Rank candidates with one encoder for documents and another for queries.

    Parameters
    ----------
    on
        Field(s) encoded for each document, joined by spaces.
    key
        Field holding each document's unique id.
    encoder
        Document encoder: a callable ``texts -> array`` (e.g.
        ``SentenceTransformer(path).encode``) or an encoder object.
    query_encoder
        Query encoder, same forms.
    normalize
        Cosine similarity when True, inner product when False.
    k
        Default number of hits kept (``None``: every candidate).
    batch_size
        Texts encoded, and queries scored, per batch.
    device
        Device of the FaissIndex holding the document embeddings.
    """

    def __init__(
        self,
        on: Any,
        key: str,
        encoder: Any,
        query_encoder: Any,
        normalize: bool = True,
        k: int | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        filter_fields: Any = None,
    ) -> None:
        super().__init__(
            key=key,
            on=on,
            normalize=normalize,
            k=k,
            batch_size=batch_size,
            device=device,
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
        """Encode ``documents`` and keep their embeddings (a key added again is re-encoded).

        Any iterable works, a generator included: documents are encoded and
        stored a batch at a time.

        Returns
        -------
        DPR
            ``self``.
        """
        self._add_encoded(self.encoder, documents, batch_size, show_progress, "ranker")
        return self

    def _learn(self, unknown: list[Mapping], batch_size: int) -> None:
        for document in unknown:
            # on=None passes check_component and then fails here (TypeError); rejecting it earlier changes behaviour.
            if not has_text(document, self.key, self.on):  # type: ignore[arg-type]
                missing = [field for field in self.on if field not in document]  # type: ignore[union-attr]
                raise UnknownKeyError(
                    f"candidate {self.key}={document[self.key]!r} is unknown to this "
                    f"{type(self).__name__} ranker and has no field(s) {missing} to encode it from. "
                    "Call ranker.add(documents) (or pipeline.add(documents)) first, or pass whole "
                    "documents as candidates (retriever + documents + ranker)."
                )
        self._add_encoded(self.encoder, unknown, batch_size, False, "ranker")

    def _encode_queries(self, queries: list[str], batch_size: int) -> np.ndarray:
        return self.query_encoder.encode(queries, batch_size=batch_size)


class Encoder(DPR):
    """Rank candidates by the similarity of their embeddings to the query's.

    Examples
    --------
    >>> from cherche_faiss import rank
    >>> from cherche_faiss.encoders import HashingEncoder
    >>> documents = [
    ...     {"id": 0, "title": "Paris France"},
    ...     {"id": 1, "title": "Madrid Spain"},
    ...     {"id": 2, "title": "Montreal Canada"},
    ... ]
    >>> ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder())
    >>> ranker = ranker.add(documents, show_progress=False)
    >>> ranker("Madrid", documents=documents, k=1)
    [{'id': 1, 'title': 'Madrid Spain', 'similarity': 0.61...}]
    """

    def __init__(
        self,
        on: Any,
        key: str,
        encoder: Any,
        normalize: bool = True,
        k: int | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        filter_fields: Any = None,
    ) -> None:
        encoder = as_encoder(encoder, "encoder")
        super().__init__(
            on=on,
            key=key,
            encoder=encoder,
            query_encoder=encoder,
            normalize=normalize,
            k=k,
            batch_size=batch_size,
            device=device,
            filter_fields=filter_fields,
        )
