"""Reading the stored vectors of a :class:`~cherche_faiss.index.FaissIndex` back.

A flat inner-product index on the CPU is read in place, through a zero-copy
NumPy view of FAISS' storage (exact searches then run as BLAS matrix products,
rankers read a few rows at a time); other indexes reconstruct the vectors.
The view lives only as long as FAISS leaves that storage where it is: see
:meth:`StoredVectorsMixin._forget_views`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import UnknownKeyError
from ._keys import KeyTable
from ._raw import flat_storage_view, reconstruct_batch

__all__ = ["StoredVectorsMixin"]


class StoredVectorsMixin:
    """``reconstruct``, ``vector_rows`` and the flat-storage view of a FaissIndex.

    Mixed into :class:`~cherche_faiss.index.FaissIndex`, whose attributes and
    ``d``, ``ids_of`` and ``check_indexed`` it uses.
    """

    _index: Any
    _device: str
    _table: KeyTable
    metric: str
    # None: not looked at since the last change; (): not a flat index; else (vectors, ids).
    _flat: tuple | None
    _rows_by_id: np.ndarray | None  # see _row_of_id

    if TYPE_CHECKING:  # provided by FaissIndex

        @property
        def d(self) -> int | None: ...
        def ids_of(self, keys: Iterable[Hashable]) -> np.ndarray: ...
        def check_indexed(self) -> None: ...

    def reconstruct(self, keys: Sequence[Hashable]) -> np.ndarray:
        """The stored (normalised) vectors of ``keys``, as a ``(n, d)`` float32 array."""
        self.check_indexed()
        ids = self.ids_of(keys)
        if (ids < 0).any():
            missing = [key for key, id_ in zip(keys, ids.tolist()) if id_ < 0][:5]
            raise UnknownKeyError(f"keys {missing} are not in the index; add their vectors first.")
        return self.reconstruct_ids(ids)

    def reconstruct_ids(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of FAISS ids (from :meth:`ids_of`; all must be present)."""
        source, rows = self.vector_rows(ids)
        return source[rows]

    def vector_rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(source, rows)`` with ``source[rows]`` the vectors of ``ids``.

        For a flat index on the CPU ``source`` is a zero-copy view of FAISS'
        storage, so callers can read a few rows at a time instead of copying
        all of them; otherwise the vectors are reconstructed.
        """
        if len(ids) == 0:
            return np.empty((0, self.d or 0), dtype=np.float32), np.empty(0, dtype=np.int64)
        flat = self._flat_storage()
        if flat is not None:
            vectors, id_map = flat
            return vectors, self._row_of_id(id_map)[ids]
        return reconstruct_batch(self._index, ids), np.arange(len(ids))

    def _row_of_id(self, id_map: np.ndarray) -> np.ndarray:
        """Row of each FAISS id in flat storage (-1 for removed ids), cached with the view."""
        if self._rows_by_id is None:
            rows = np.full(self._table.next_id, -1, dtype=np.int64)
            rows[id_map] = np.arange(len(id_map))
            self._rows_by_id = rows
        return self._rows_by_id

    def _flat_storage(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(vectors, ids)`` of a flat inner-product index on the CPU, else None.

        ``vectors`` is a zero-copy view of FAISS' storage, so exact searches run as
        BLAS matrix products (see ``_exact``). The view is dropped on every change
        of the index, before FAISS may reallocate that storage (see :meth:`_forget_views`).
        """
        if self._flat is not None:
            return self._flat or None  # () once the index was found not to be flat
        if self._device != "cpu" or self.metric != "ip" or self._index is None:
            return None
        view = flat_storage_view(self._index)  # SWIG calls: worth not repeating per query
        if view is None:
            self._flat = ()
            return None
        if not len(view[0]):
            return None  # nothing to view yet
        self._flat = view
        return view

    def _forget_views(self) -> None:
        """Drop the zero-copy view of FAISS' flat storage and the row table built from its id map.

        FAISS keeps the vectors in a ``std::vector`` that it may reallocate
        (or free) on every add, removal, reservation, or when the index object
        is replaced; a NumPy view taken before would then point at memory FAISS
        no longer owns, and reading it gives garbage or crashes. So every such
        change calls this first, and :meth:`_flat_storage` takes a fresh view
        on the next read.
        """
        self._flat = None
        self._rows_by_id = None
