"""The compiled part of :mod:`._compiled_analysis`: TfIdf's ``char_wb`` n-grams of words, looked up in
a packed vocabulary, and each query's terms counted (numba, optional: the ``fast`` extra).

An n-gram of at most ``max_n`` characters is one integer: each character's code in the vocabulary's
alphabet (1 to A) in ``bits`` bits, first character highest. With a leading code of at least 1, n-grams
of different lengths never share a value, so the packing is exact (injective), and the vocabulary is an
open-addressing hash table of those integers. A character outside the alphabet has code 0: an n-gram
holding one is in no document, hence in no vocabulary.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["build_table", "query_terms", "word_columns"]

# Fibonacci hashing: the top bits of key * 2^64 / golden ratio spread packed n-grams over the slots.
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(nogil=True, cache=True, inline="always")
def _slot(key, shift):  # pragma: no cover - compiled
    return (key * _MULTIPLIER) >> shift


@numba.njit(nogil=True, cache=True, inline="always")
def _column_of(codes, first, size, width, keys, values, shift, mask):  # pragma: no cover - compiled
    """The column of the n-gram ``codes[first:first + size]`` (its codes packed ``width`` bits each) in the
    table ``keys`` / ``values``; -1 when one of its codes is 0 (outside the alphabet) or it is not there."""
    key = np.uint64(0)
    for j in range(first, first + size):
        code = codes[j]
        if code == 0:
            return -1
        key = (key << width) | code
    one = np.uint64(1)
    slot = _slot(key, shift)
    while keys[slot] != 0:
        if keys[slot] == key:
            return values[slot]
        slot = (slot + one) & mask
    return -1


@numba.njit(nogil=True, cache=True)
def build_table(packed, columns, log_size):  # pragma: no cover - compiled
    """Hash table of ``2**log_size`` slots: ``keys`` (0: empty; no packed n-gram is 0) and ``values`` (columns)."""
    size = 1 << log_size
    mask = np.uint64(size - 1)
    shift = np.uint64(64 - log_size)
    one = np.uint64(1)
    keys = np.zeros(size, dtype=np.uint64)
    values = np.full(size, -1, dtype=np.int64)
    for i in range(packed.shape[0]):
        key = packed[i]
        slot = _slot(key, shift)
        while keys[slot] != 0:
            slot = (slot + one) & mask
        keys[slot] = key
        values[slot] = columns[i]
    return keys, values


@numba.njit(nogil=True, cache=True)
def word_columns(
    codepoints, word_ptr, code_of, bits, keys, values, log_size, min_n, max_n, space
):  # fmt: skip  # pragma: no cover - compiled
    """The columns of each word's n-grams found in the vocabulary, in scikit-learn's order.

    Word ``w`` is ``codepoints[word_ptr[w]:word_ptr[w + 1]]``; it is padded with a space on each side,
    then, for ``n`` from ``min_n`` to ``max_n``, its n-grams by position; a padded word no longer than
    ``n`` gives itself once, and no longer n-grams. Returns ``(columns, ptr)``: word ``w``'s columns
    are ``columns[ptr[w]:ptr[w + 1]]``.
    """
    n_words = word_ptr.shape[0] - 1
    mask = np.uint64((1 << log_size) - 1)
    shift = np.uint64(64 - log_size)
    width = np.uint64(bits)
    longest = 0
    total = 0
    for w in range(n_words):
        length = word_ptr[w + 1] - word_ptr[w] + 2
        longest = max(longest, length)
        for n in range(min_n, max_n + 1):
            if length <= n:
                total += 1
                break
            total += length - n + 1
    columns = np.empty(total, dtype=np.int64)
    ptr = np.zeros(n_words + 1, dtype=np.int64)
    padded = np.empty(longest, dtype=np.uint64)
    found = 0
    for w in range(n_words):
        start, stop = word_ptr[w], word_ptr[w + 1]
        length = stop - start + 2
        padded[0] = space
        for i in range(start, stop):
            codepoint = codepoints[i]
            padded[i - start + 1] = code_of[codepoint] if codepoint < code_of.shape[0] else 0
        padded[length - 1] = space
        for n in range(min_n, max_n + 1):
            size = length if length <= n else n
            for first in range(length - size + 1):
                column = _column_of(padded, first, size, width, keys, values, shift, mask)
                if column >= 0:
                    columns[found] = column
                    found += 1
            if length <= n:
                break
        ptr[w + 1] = found
    return columns[:found], ptr


@numba.njit(nogil=True, cache=True)
def query_terms(query_ptr, query_words, columns, column_ptr):  # pragma: no cover - compiled
    """Each query's distinct columns in order of first appearance, with their counts.

    Query ``q`` is the words ``query_words[query_ptr[q]:query_ptr[q + 1]]`` (indices into the words of
    :func:`word_columns`), its n-grams those words' columns one word after another. Returns
    ``(terms, counts, ptr)``: query ``q``'s are ``terms[ptr[q]:ptr[q + 1]]``.
    """
    n_queries = query_ptr.shape[0] - 1
    total = 0
    largest = 0
    for q in range(n_queries):
        size = 0
        for i in range(query_ptr[q], query_ptr[q + 1]):
            word = query_words[i]
            size += column_ptr[word + 1] - column_ptr[word]
        total += size
        largest = max(largest, size)
    log_size = 1
    while (1 << log_size) < 2 * largest:
        log_size += 1
    mask = (1 << log_size) - 1
    slots = np.full(1 << log_size, -1, dtype=np.int64)  # position of a column among the query's terms
    terms = np.empty(total, dtype=np.int64)
    counts = np.empty(total, dtype=np.int64)
    ptr = np.zeros(n_queries + 1, dtype=np.int64)
    found = 0
    for q in range(n_queries):
        first = found
        for i in range(query_ptr[q], query_ptr[q + 1]):
            word = query_words[i]
            for p in range(column_ptr[word], column_ptr[word + 1]):
                column = columns[p]
                slot = (column * 0x9E3779B1) & mask
                while True:
                    position = slots[slot]
                    if position < 0:
                        slots[slot] = found
                        terms[found] = column
                        counts[found] = 1
                        found += 1
                        break
                    if terms[position] == column:
                        counts[position] += 1
                        break
                    slot = (slot + 1) & mask
        for position in range(first, found):  # empty the slots this query filled
            slot = (terms[position] * 0x9E3779B1) & mask
            while slots[slot] >= 0:
                slots[slot] = -1
                slot = (slot + 1) & mask
        ptr[q + 1] = found
    return terms[:found], counts[:found], ptr
