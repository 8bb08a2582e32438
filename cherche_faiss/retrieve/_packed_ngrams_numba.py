"""The compiled query analysis of :class:`~cherche_faiss.retrieve.NgramVectorizer` (numba, optional:
the ``fast`` extra), used once the sparse scoring is compiled (:func:`._sparse.accelerated`).

numpy analyses a batch of queries in a few dozen array operations (:func:`._packed_ngrams.count_by_text`):
cheap for a large batch, but most of the time of a single short query. This kernel does the same work
in one call: each query's n-grams packed as :mod:`._packed_ngrams` packs them, looked up in an
open-addressing table of the vocabulary (:func:`._ngrams_numba.build_table`: one or two probes, where a
binary search in a large sorted vocabulary misses the cache a dozen times), then sorted and counted. It
gives the same ``(column, count)`` pairs, columns ascending, so the weights (computed by numpy from them
either way) are the same bits.
"""

from __future__ import annotations

import numba
import numpy as np

from ._ngrams_numba import _column_of, build_table

__all__ = ["lookup_table", "text_columns"]


def lookup_table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(slots' keys, slots' columns, log2 of the slots)`` of the sorted vocabulary ``keys``."""
    log_size = max(4, (2 * len(keys) - 1).bit_length())  # at most half the slots used
    slots, columns = build_table(keys, np.arange(len(keys), dtype=np.int64), log_size)
    return slots, columns, log_size


@numba.njit(nogil=True, cache=True)
def text_columns(codes, text_ptr, slots, slot_columns, log_size, bits, min_n, max_n):  # pragma: no cover - compiled
    """Each text's distinct n-grams of the vocabulary (its :func:`lookup_table`): ``(columns, counts, ptr)``,
    text ``t``'s being
    ``columns[ptr[t]:ptr[t + 1]]`` (ascending) with their counts.

    Text ``t`` is ``codes[text_ptr[t]:text_ptr[t + 1]]`` (each character's code in the vocabulary's
    alphabet, 0 outside it); its n-grams are, for ``n`` from ``min_n`` to ``max_n``, every window of
    ``n`` codes inside the text, none holding a 0.
    """
    n_texts = text_ptr.shape[0] - 1
    total = 0
    longest = 0
    for t in range(n_texts):
        length = text_ptr[t + 1] - text_ptr[t]
        size = 0
        for n in range(min_n, max_n + 1):
            if length >= n:
                size += length - n + 1
        total += size
        longest = max(longest, size)
    found = np.empty(longest, dtype=np.int64)
    columns = np.empty(total, dtype=np.int64)
    counts = np.empty(total, dtype=np.int64)
    ptr = np.zeros(n_texts + 1, dtype=np.int64)
    width = np.uint64(bits)
    mask = np.uint64((1 << log_size) - 1)
    shift = np.uint64(64 - log_size)
    out = 0
    for t in range(n_texts):
        start, stop = text_ptr[t], text_ptr[t + 1]
        m = 0
        for n in range(min_n, max_n + 1):
            for first in range(start, stop - n + 1):
                column = _column_of(codes, first, n, width, slots, slot_columns, shift, mask)
                if column >= 0:
                    found[m] = column
                    m += 1
        if m:
            ordered = np.sort(found[:m])
            columns[out] = ordered[0]
            counts[out] = 1
            out += 1
            for i in range(1, m):
                if ordered[i] == columns[out - 1]:
                    counts[out - 1] += 1
                else:
                    columns[out] = ordered[i]
                    counts[out] = 1
                    out += 1
        ptr[t + 1] = out
    return columns[:out], counts[:out], ptr
