"""Planning, storage and training of a :class:`~cherche_faiss.index.FaissIndex` as vectors arrive.

A mixin of ``FaissIndex``: building the index for a stream whose length may
be unknown, reserving flat storage up front (so that growing never copies it),
training on a sample, and handing freed heap pages back. It reads the
attributes ``FaissIndex`` sets (``_index``, ``_device``, ``_table``, ``factory``,
``expected_size``, ``train_size``, ``_reserved_rows``) and calls its ``_build``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import InvalidInputError
from ._memory import release_free_heap
from ._raw import adds_row_by_row, reserve_flat_codes
from ._search_params import index_kind
from ._training import default_training_size, train_index, training_sample
from .auto import EXACT_LIMIT

__all__ = ["StorageMixin"]


class StorageMixin:
    """Storage and training jobs of ``FaissIndex`` (see the module docstring)."""

    _index: Any
    _device: str
    _table: Any
    _reserved_rows: int
    factory: Any
    expected_size: int | None
    train_size: int | None

    if TYPE_CHECKING:  # provided by FaissIndex and its other mixins

        @property
        def factory_used(self) -> str: ...
        def _build(self, dimension: int, size: int | None = None, size_known: bool = True) -> None: ...
        def _forget_views(self) -> None: ...

    # -- planning and training, as the first vectors arrive -----------------------------
    def _build_for_stream(self, dimension: int, buffered: int, total: int | None) -> bool:
        """Build the index for a stream of ``total`` vectors (None: unknown), ``buffered`` of them held.

        False while ``"auto"`` must wait: the stream's length is unknown and
        fewer than ``EXACT_LIMIT`` vectors have arrived, so exact search may
        still be the choice.
        """
        if self._index is not None:
            return True
        if self.factory == "auto" and self.expected_size is None and total is None:
            if buffered < EXACT_LIMIT:
                return False
            self._build(dimension, buffered, size_known=False)
        else:
            self._build(dimension, total)
        if total is not None:
            self._reserve(total)
        return True

    def _reserve(self, total: int) -> None:
        """Allocate flat storage for ``total`` vectors up front (flat and HNSW indexes on the CPU, empty).

        See :func:`~cherche_faiss.index._raw.reserve_flat_codes`: streaming
        would otherwise reallocate (copy) the whole storage as it grows.
        """
        if self._device != "cpu" or self._table.next_id:
            return
        self._forget_views()
        reserve_flat_codes(self._index, total)
        self._reserved_rows = total

    def _reserve_rows(self, n: int) -> None:
        """Before ``n`` vectors go into an empty flat index block by block: their storage at once.

        Added block by block, the storage would otherwise grow by reallocation
        (copying all it holds each time it doubles); one add into an empty index
        knows how much it needs. An index that holds vectors grows as FAISS
        grows it, as when they go in in one call.
        """
        if self._device == "cpu" and not self._index.ntotal and n > self._reserved_rows:
            self._forget_views()
            reserve_flat_codes(self._index, n)
            self._reserved_rows = n

    def _adds_in_blocks(self) -> bool:
        """Whether vectors may go in in several calls (the index then ends up the same): see ``_add_rows``."""
        return self._device == "cpu" and adds_row_by_row(self._index)

    def _training_size(self) -> int:
        """Vectors the index is trained on (``train_size``, else the documented default)."""
        return self.train_size or default_training_size(self._index)

    def _train_if_needed(self, matrix: np.ndarray, show_progress: bool = False) -> None:
        if self._index.is_trained:
            return
        sample = training_sample(self._index, matrix, self._training_size(), self.factory_used)
        try:
            train_index(self._index, sample, self.factory_used, show_progress)
        except RuntimeError as error:
            raise InvalidInputError(
                f"FAISS could not train index {self.factory_used!r} on {len(sample)} vectors: "
                f"{str(error).strip().splitlines()[-1]}. Add more vectors in the first call or "
                "choose a smaller index."
            ) from None

    def _release_freed_heap(self) -> bool:
        """Hand back the heap pages an index that grows by reallocation has freed; True when it does.

        Only an IVF index on the CPU grows so (thousands of inverted lists);
        see ``_memory``: their old blocks would otherwise stay resident.
        """
        if self._device != "cpu" or index_kind(self._index) != "ivf":
            return False
        release_free_heap()
        return True
