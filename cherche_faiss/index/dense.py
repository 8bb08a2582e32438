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
from ..filters._host import Filterable
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


class DenseVectors(Filterable):
    """Mixin of components whose document vectors live in ``self.index`` (a :class:`FaissIndex`).

    The class using it sets ``self.index``, ``self.key``, ``self.on`` and
    ``self.batch_size``. The filterable fields of the documents added are kept
    as columns over the index's FAISS ids (see :mod:`cherche_faiss.filters`).
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
        fields: list[Mapping] = []  # each document's filterable fields, written once the index gave ids
        self.index.add_batches(
            # on=None passes check_component and then fails here (TypeError); rejecting it earlier changes behaviour.
            encoded_batches(encoder, self._tapped(documents, fields), self.key, self.on, size),  # type: ignore[arg-type]
            total=length_of(documents) or None,
            show_progress=show_progress,
            description=f"{type(self).__name__} {what}",
        )
        self._write_fields(fields)

    def _add_fields(self, documents: Iterable[Mapping]) -> None:
        """Write the filterable fields of ``documents`` whose vectors were just added (Embedding components)."""
        fields: list[Mapping] = []
        for _ in self._tapped(documents, fields):
            pass
        self._write_fields(fields)

    def _tapped(self, documents: Any, fields: list[Mapping]) -> Any:
        """:meth:`_tap_fields` of ``documents``, or ``documents`` as they are when they are not an iterable
        of documents (the validation that follows then raises its usual error)."""
        if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
            return documents
        return self._tap_fields(documents, fields)

    def _tap_fields(self, documents: Iterable[Mapping], fields: list[Mapping]) -> Iterator[Mapping]:
        """``documents`` as they are, keeping in ``fields`` what the filter columns need of each
        (the key and the candidate fields: never a whole document, whose text may be long)."""
        excluded = self._filter_excluded() - {self.key}
        declared = getattr(self, "filter_fields", None)
        key = self.key
        for document in documents:
            if isinstance(document, Mapping) and key in document:
                if declared is not None:
                    fields.append({key: document[key], **{name: document.get(name) for name in declared}})
                else:
                    fields.append({name: value for name, value in document.items() if name not in excluded})
            yield document

    def _write_fields(self, documents: list[Mapping]) -> None:
        """Write the filterable fields of ``documents`` (just added) at their FAISS ids."""
        columns = self._id_columns()
        self._sync_ids()
        if documents:
            columns.write(self.index.ids_of([document[self.key] for document in documents]), documents)

    def _sync_ids(self) -> None:
        """Drop the rows of FAISS ids the index no longer holds (replaced or removed keys)."""
        columns = self._filter_columns()
        table = self.index.key_space
        if columns is not None and columns.synced != (id(table), table.version):
            columns.drop(table.removed_ids())
            columns.synced = (id(table), table.version)

    def _filter_mask(self, filter: Any) -> np.ndarray:  # noqa: A002
        """The mask over the index's FAISS ids that ``filter`` allows."""
        from ..filters._compile import compile_mask

        self._sync_ids()
        table = self.index.key_space
        return compile_mask(filter, self._filter_columns(), self.index.ids_of, table.next_id)

    def _query_vectors(self, q: Any) -> tuple[np.ndarray, bool]:
        """``q`` (one vector, or one row per query) validated and normalised once for every chunk,
        and whether it is one query (a vector, or a matrix of one row, as in Cherche)."""
        vectors = self.index.prepare(q, "q")
        return vectors, len(vectors) == 1


def chunks(vectors: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, vectors[start:start + size])`` over the rows of ``vectors``."""
    for start in range(0, len(vectors), size):
        yield start, vectors[start : start + size]
