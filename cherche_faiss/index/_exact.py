"""Exact inner-product top-k with BLAS, for flat indexes held on the CPU.

FAISS answers batches of queries on a flat index by computing blocks of scores
with BLAS and pushing every score through a per-query heap; on a few cores the
heap dominates and a batch of queries runs slower than one matrix product
followed by ``argpartition`` (the benchmark results give the figures). This
module does the latter, in chunks of database rows so that the score matrix
stays small.
"""

from __future__ import annotations

from typing import cast

import numpy as np

__all__ = ["inner_product_top_k"]

# Cells of the (queries x database chunk) score matrix computed at once: 16 Mi floats = 64 MiB.
_CHUNK_CELLS = 1 << 24


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Unsorted top-k columns of each row, and their values."""
    if k >= scores.shape[1]:
        columns = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        return scores, np.array(columns)
    columns = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]
    return np.take_along_axis(scores, columns, axis=1), columns


def _single_query_top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One query: a matrix-vector product and 1-D selection (no per-row index arrays)."""
    scores = vectors @ query
    rows = np.argpartition(scores, len(scores) - k)[len(scores) - k :] if k < len(scores) else np.arange(len(scores))
    values = scores[rows]
    order = np.lexsort((rows, -values))
    return values[order][None, :], rows[order][None, :]


def inner_product_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``vectors`` with the largest inner product with each query.

    Parameters
    ----------
    vectors
        Database, float32 ``(n, d)``.
    queries
        Float32 ``(nq, d)``.
    k
        Number of results, ``1 <= k``; clamped to ``n``.

    Returns
    -------
    scores, rows
        ``(nq, min(k, n))`` arrays, best first, equal scores ordered by row
        number. Which of several rows tied at the k-th place is kept is
        deterministic but unspecified.
    """
    n = len(vectors)
    k = min(k, n)
    if len(queries) == 1 and n <= _CHUNK_CELLS:
        return _single_query_top_k(vectors, queries[0], k)
    chunk = max(1024, _CHUNK_CELLS // max(len(queries), 1))
    if len(queries) == 1:
        best_scores = best_rows = None
        for start in range(0, n, chunk):
            # One query is a matrix-vector product (memory-bound, every core streams the database).
            values, rows = _top_k_rows((vectors[start : start + chunk] @ queries[0])[None, :], k)
            best_scores, best_rows = _merge(best_scores, best_rows, values, rows + start, k)
        # n > _CHUNK_CELLS here (smaller databases returned above), so the loop ran and set both arrays.
        best_scores, best_rows = cast(np.ndarray, best_scores), cast(np.ndarray, best_rows)
    else:
        best_scores, best_rows = _batch_top_k(vectors, queries, k, chunk)
    order = np.lexsort((best_rows, -best_scores), axis=1) if best_rows.size else best_rows
    return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(best_rows, order, axis=1)


def _merge(
    scores: np.ndarray | None, rows: np.ndarray | None, new_scores: np.ndarray, new_rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    if scores is None:
        return new_scores, new_rows
    merged_scores = np.concatenate([scores, new_scores], axis=1)
    merged_rows = np.concatenate([rows, new_rows], axis=1)
    scores, columns = _top_k_rows(merged_scores, k)
    return scores, np.take_along_axis(merged_rows, columns, axis=1)


def _batch_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of several queries, chunk by chunk of the database.

    Selecting in every chunk (``argpartition`` over queries x chunk scores) costs
    more than the matrix product once a few chunks are in: after them, only
    scores above a query's current k-th best can enter its top k (about
    ``k / chunks seen`` per query and chunk), so those few are found with one
    comparison and merged alone, which makes selection cheaper than the matrix
    products on large databases.
    """
    nq = len(queries)
    best_scores = np.full((nq, k), -np.inf, dtype=np.float32)
    best_rows = np.full((nq, k), -1, dtype=np.int64)
    threshold = np.full(nq, -np.inf, dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        scores = queries @ vectors[start : start + chunk].T
        if start == 0:
            values, rows = _top_k_rows(scores, min(k, scores.shape[1]))
            best_scores[:, : values.shape[1]] = values
            best_rows[:, : rows.shape[1]] = rows
            threshold = best_scores.min(axis=1)
            continue
        query_of, column = np.nonzero(scores > threshold[:, None])  # row-major: grouped by query
        if not len(query_of):
            continue
        counts = np.bincount(query_of, minlength=nq)
        touched = np.flatnonzero(counts)
        width = k + int(counts.max())
        # Each touched query's k best so far, then its candidates, padded with -inf.
        pad_scores = np.full((len(touched), width), -np.inf, dtype=np.float32)
        pad_rows = np.full((len(touched), width), -1, dtype=np.int64)
        pad_scores[:, :k] = best_scores[touched]
        pad_rows[:, :k] = best_rows[touched]
        slot = np.searchsorted(touched, query_of)
        first = np.repeat(np.cumsum(counts[touched]) - counts[touched], counts[touched])
        position = k + np.arange(len(query_of)) - first
        pad_scores[slot, position] = scores[query_of, column]
        pad_rows[slot, position] = column + start
        values, columns = _top_k_rows(pad_scores, k)
        best_scores[touched] = values
        best_rows[touched] = np.take_along_axis(pad_rows, columns, axis=1)
        threshold[touched] = values.min(axis=1)
    return best_scores, best_rows
