"""The compiled path of :mod:`._sparse`: numba kernels scoring queries and selecting their top k.

Imported only when numba is installed and :mod:`._sparse` decides the work repays it (importing
numba and loading the kernels from numba's on-disk cache takes a few tenths of a second; compiling
them the first time, a few seconds). Each kernel call scores a contiguous range of queries, one
after the other, on the calling thread with the GIL released, so :mod:`._sparse` runs ranges on
several threads at once.

The arithmetic is the one :mod:`._sparse` describes, operation for operation: for each term of a
query, in order, ``score += weight * value`` (float64 for wide queries, float32 for narrow ones; no
fused multiply-add, which numba emits only under ``fastmath``), so that the results equal the numpy
path's bit for bit. A term present in at least half of the documents is read from a dense row
(zeros included) instead of its posting list: adding ``weight * 0`` leaves a sum unchanged, and a
loop over a dense row runs several times faster than one over scattered positions. Such a row takes
no more memory than the posting list it stands for (4 bytes a document against 8 bytes an entry).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["prepare", "search_rows"]

# A term whose posting list holds at least this share of the documents is also kept as a dense row.
_DENSE_SHARE = 0.5


def prepare(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_documents: int) -> tuple:
    """The arrays :func:`search_rows` reads: posting lists (unsigned indices: numba then skips the
    check for negative indices) and the dense rows of the most frequent terms."""
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices)
    unsigned = indices.view(np.uint32) if indices.dtype.itemsize == 4 else indices.astype(np.uint64)
    data = np.ascontiguousarray(data, dtype=np.float32)
    lengths = np.diff(indptr)
    frequent = np.flatnonzero(lengths >= _DENSE_SHARE * n_documents) if n_documents else np.zeros(0, np.int64)
    dense_of = np.full(len(lengths), -1, dtype=np.int32)
    dense_of[frequent] = np.arange(len(frequent), dtype=np.int32)
    dense = np.zeros((len(frequent), n_documents), dtype=np.float32)
    if len(frequent):
        _fill_dense(indptr, unsigned, data, frequent.astype(np.int64), dense)
    return indptr, unsigned, data, dense_of, dense


@numba.njit(nogil=True, cache=True)
def _fill_dense(indptr, indices, data, frequent, dense):  # pragma: no cover - compiled
    for r in range(frequent.shape[0]):
        t = frequent[r]
        row = dense[r]
        for p in range(indptr[t], indptr[t + 1]):
            row[indices[p]] = data[p]


@numba.njit(nogil=True, cache=True)
def search_rows(
    indptr, indices, data, dense_of, dense, ptr, terms, weights, wide, offsets,
    lo, hi, base, width, out_columns, out_values, counts,
):  # fmt: skip  # pragma: no cover - compiled
    """Score queries ``lo:hi`` and write each one's top ``width`` into row ``q - base`` of the outputs."""
    n = dense.shape[1]
    wide_sums = np.zeros(n, dtype=np.float64)
    narrow_sums = np.zeros(n, dtype=np.float32)
    scores = np.empty(n, dtype=np.float32)
    heap_values = np.empty(width, dtype=np.float32)
    heap_columns = np.empty(width, dtype=np.int64)
    for q in range(lo, hi):
        if wide[q]:
            wide_sums[:] = 0.0
            for j in range(ptr[q], ptr[q + 1]):
                t = terms[j]
                w = weights[j]
                r = dense_of[t]
                if r >= 0:
                    row = dense[r]
                    for d in range(n):
                        wide_sums[d] += np.float64(row[d]) * w
                else:
                    for p in range(indptr[t], indptr[t + 1]):
                        wide_sums[indices[p]] += np.float64(data[p]) * w
            for d in range(n):
                scores[d] = np.float32(wide_sums[d])
        else:
            narrow_sums[:] = 0.0
            for j in range(ptr[q], ptr[q + 1]):
                t = terms[j]
                w32 = np.float32(weights[j])
                r = dense_of[t]
                if r >= 0:
                    row = dense[r]
                    for d in range(n):
                        narrow_sums[d] += w32 * row[d]
                else:
                    for p in range(indptr[t], indptr[t + 1]):
                        narrow_sums[indices[p]] += w32 * data[p]
            offset = offsets[q]
            for d in range(n):
                scores[d] = narrow_sums[d] + offset
        counts[q - base] = _select(
            scores, width, heap_values, heap_columns, out_columns[q - base], out_values[q - base]
        )


@numba.njit(nogil=True, cache=True, inline="always")
def _worse(value, column, other_value, other_column):  # pragma: no cover - compiled
    """Whether a hit ranks after another: a lower score, or the same score and a later document."""
    return value < other_value or (value == other_value and column > other_column)


@numba.njit(nogil=True, cache=True)
def _sift_down(heap_values, heap_columns, size, value, column):  # pragma: no cover - compiled
    """Put ``(value, column)`` at the root of the heap of ``size`` hits and move it down to its place."""
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _worse(
            heap_values[child + 1], heap_columns[child + 1], heap_values[child], heap_columns[child]
        ):
            child += 1
        if not _worse(heap_values[child], heap_columns[child], value, column):
            break
        heap_values[i] = heap_values[child]
        heap_columns[i] = heap_columns[child]
        i = child
    heap_values[i] = value
    heap_columns[i] = column


@numba.njit(nogil=True, cache=True)
def _select(scores, width, heap_values, heap_columns, out_columns, out_values):  # pragma: no cover - compiled
    """The ``width`` best positive scores (higher first, then earlier documents); returns how many.

    A heap holds the best hits so far with the one that ranks last at its root: most documents
    are turned away by one comparison with it. The ranking is a total order, so the result is the
    one any exact sort gives (numpy's, in :func:`._sparse.top_k_dense`).
    """
    size = 0
    for d in range(scores.shape[0]):
        value = scores[d]
        if not value > 0:
            continue
        if size < width:  # push: move up while it ranks after its parent
            i = size
            size += 1
            while i > 0:
                parent = (i - 1) >> 1
                if not _worse(value, d, heap_values[parent], heap_columns[parent]):
                    break
                heap_values[i] = heap_values[parent]
                heap_columns[i] = heap_columns[parent]
                i = parent
            heap_values[i] = value
            heap_columns[i] = d
        elif value > heap_values[0]:  # an equal score ranks after: its document comes later
            _sift_down(heap_values, heap_columns, size, value, d)
    found = size
    while size > 0:  # the root ranks last: fill the outputs from the end
        size -= 1
        out_values[size] = heap_values[0]
        out_columns[size] = heap_columns[0]
        if size:
            _sift_down(heap_values, heap_columns, size, heap_values[size], heap_columns[size])
    return found
