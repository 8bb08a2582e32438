"""What retrievers and rankers that keep their vectors in a :class:`FaissIndex` share.

:class:`DenseVectors` is the mixin of :class:`~cherche_faiss.retrieve.DenseRetriever`
(and its ``Encoder``, ``DPR``, ``Embedding``) and of every
:class:`~cherche_faiss.rank.base.Ranker`: ``len``, the check of a loaded state,
documents encoded and streamed into the index batch by batch, and query
vectors validated once for a whole call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .._core.documents import encoded_batches, length_of
from ..exceptions import IncompatibleStateError
from .faiss import FaissIndex

__all__ = ["DenseVectors", "check_loaded_vectors", "chunks"]


def check_loaded_vectors(component: Any) -> None:
    """After a load: ``component.index`` is a FaissIndex and its encoders can encode."""
    name = type(component).__name__
    if not isinstance(getattr(component, "index", None), FaissIndex):
        raise IncompatibleStateError(f"the saved index of this {name} is not a FaissIndex.")
    for attribute in ("encoder", "query_encoder"):
        if attribute not in vars(component):
            continue
        encoder = vars(component)[attribute]
        if isinstance(encoder, (str, bytes)) or not callable(getattr(encoder, "encode", None)):  # str.encode is not one
            raise IncompatibleStateError(f"the saved {attribute} of this {name} cannot encode texts.")


class DenseVectors:
    """Mixin of components whose document vectors live in ``self.index`` (a :class:`FaissIndex`).

    The class using it sets ``self.index``, ``self.key``, ``self.on`` and
    ``self.batch_size``.
    """

    index: FaissIndex
    key: str
    on: list[str] | None  # None for the Embedding components, which never encode documents
    batch_size: int

    def __len__(self) -> int:
        return len(self.index)

    def _check_loaded(self) -> None:
        check_loaded_vectors(self)

    def _add_encoded(
        self, encoder: Any, documents: Iterable[Mapping], batch_size: int | None, show_progress: bool, what: str
    ) -> None:
        """Encode ``documents`` batch by batch and stream them into the index.

        Memory holds the index and one batch of vectors, never every embedding
        at once (see :meth:`FaissIndex.add_batches`).
        """
        size = batch_size or self.batch_size
        self.index.add_batches(
            # on=None passes check_component and then fails here (TypeError); rejecting it earlier changes behaviour.
            encoded_batches(encoder, documents, self.key, self.on, size),  # type: ignore[arg-type]
            total=length_of(documents) or None,
            show_progress=show_progress,
            description=f"{type(self).__name__} {what}",
        )

    def _query_vectors(self, q: Any) -> tuple[np.ndarray, bool]:
        """``q`` (one vector, or one row per query) validated and normalised once for every chunk,
        and whether it is one query (a vector, or a matrix of one row, as in Cherche)."""
        vectors = self.index.prepare(q, "q")
        return vectors, len(vectors) == 1


def chunks(vectors: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, vectors[start:start + size])`` over the rows of ``vectors``."""
    for start in range(0, len(vectors), size):
        yield start, vectors[start : start + size]
