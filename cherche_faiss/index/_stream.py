"""Streaming ``(vectors, keys)`` batches into a :class:`~cherche_faiss.index.FaissIndex`.

Batches go into the index as they arrive, so memory holds the index and one
batch, except at the start: vectors are held back (in a :class:`Pending`
buffer) while the index cannot take them yet, that is

* before it is built, when ``factory="auto"`` must first learn how many
  vectors there are (the stream's length is unknown), and
* before it is trained, until the training sample has arrived.

The buffer is then emptied into the index, the training sample first, and
later batches go straight in.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from ._keys import check_keys
from ._memory import RELEASE_EVERY

__all__ = ["Pending", "StreamTarget", "add_stream", "drain"]


def drain(pending: list[np.ndarray], rows: int | None = None) -> np.ndarray:
    """The first ``rows`` rows (all when None) of the arrays in ``pending``, as one array.

    Arrays are copied into the result one by one and dropped from ``pending``
    as soon as they are copied (the rows beyond ``rows`` stay there), so that
    the buffered vectors exist twice only one batch at a time, never whole.

    >>> parts = [np.zeros((2, 3)), np.ones((3, 3))]
    >>> drain(parts, 4).shape, [len(part) for part in parts]
    ((4, 3), [1])
    """
    total = sum(len(part) for part in pending)
    rows = total if rows is None else min(rows, total)
    out = np.empty((rows, pending[0].shape[1]), dtype=np.float32)
    filled = 0
    while filled < rows:
        part = pending.pop(0)
        taken = min(len(part), rows - filled)
        out[filled : filled + taken] = part[:taken]
        filled += taken
        if taken < len(part):
            pending.insert(0, part[taken:])
        del part
    return out


class Pending:
    """Vectors and their keys held back until the index can take them."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._keys: list[Hashable] = []

    def __len__(self) -> int:
        """Number of vectors held."""
        return len(self._keys)

    def __bool__(self) -> bool:
        """Whether any batch is held (an empty batch counts: it waits with the others)."""
        return bool(self._parts)

    def append(self, matrix: np.ndarray, keys: list[Hashable]) -> None:
        self._parts.append(matrix)
        self._keys.extend(keys)

    def take(self, rows: int) -> tuple[np.ndarray, list[Hashable]]:
        """The first ``rows`` vectors held and their keys, removed from the buffer."""
        keys, self._keys = self._keys[:rows], self._keys[rows:]
        return drain(self._parts, rows), keys

    def take_all(self) -> tuple[np.ndarray, list[Hashable]] | None:
        """Every vector held and their keys (None when no vector is), leaving the buffer empty."""
        taken = (drain(self._parts), self._keys) if self._keys else None
        self._parts, self._keys = [], []
        return taken


class StreamTarget(Protocol):
    """What :func:`add_stream` needs of the index it fills (FaissIndex provides it)."""

    def prepare(self, vectors: Any, name: str = ...) -> np.ndarray: ...

    def _takes_vectors(self) -> bool: ...

    def _build_for_stream(self, dimension: int, buffered: int, total: int | None) -> bool: ...

    def _needs_training(self) -> bool: ...

    def _training_size(self) -> int: ...

    def _add_prepared(self, matrix: np.ndarray, keys: list[Hashable], show_progress: bool = ...) -> Any: ...

    def _release_freed_heap(self) -> bool: ...


def add_stream(
    index: StreamTarget,
    batches: Iterable[tuple[Any, Sequence[Hashable]]],
    total: int | None,
    show_progress: bool,
    bar: Any,
) -> None:
    """Add every batch of ``batches`` to ``index``, updating the progress ``bar`` as vectors go in.

    A batch is validated when it arrives; an invalid one raises and leaves the
    batches before it added (a stream is not atomic).
    """
    pending = Pending()
    since_release = 0

    def add(taken: tuple[np.ndarray, list[Hashable]] | None) -> None:
        if taken is not None:
            index._add_prepared(taken[0], taken[1], show_progress)
            bar.update(len(taken[1]))

    for number, (vectors, keys) in enumerate(batches):
        matrix = index.prepare(vectors, f"vectors of batch {number}")
        keys = check_keys(keys, len(matrix))
        if index._takes_vectors() and not pending:
            index._add_prepared(matrix, keys, show_progress)
            bar.update(len(keys))
            since_release += len(keys)
            if since_release >= RELEASE_EVERY and index._release_freed_heap():
                since_release = 0
            continue
        pending.append(matrix, keys)
        if not index._build_for_stream(matrix.shape[1], len(pending), total):
            continue  # "auto" chooses once the stream ends or is known to be large
        if index._needs_training():
            size = index._training_size()
            if len(pending) < size:
                continue
            # Exactly the training sample first: FAISS trains on it as it is (no sampled copy).
            add(pending.take(size))
        add(pending.take_all())
    add(pending.take_all())
