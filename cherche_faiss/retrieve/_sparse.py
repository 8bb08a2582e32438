"""Sparse retrieval as a batch: every query of a call scored against posting lists, then its top k.

TfIdf and BM25 reduce a query to weighted terms; a document's score is the sum, over the query's
terms, of the term's weight times the document's value in that term's posting list. This module
computes those sums for a batch of queries and selects each query's best documents. A query scores
the same, bit for bit, alone or in any batch: its sums are accumulated over its own terms, in the
order given, in one of two arithmetics fixed per query (:class:`Queries`):

* wide: float64 products and sums, rounded to float32 at the end (TfIdf's short queries);
* narrow: float32 weight times float32 value, summed in float32, then a per-query float32 offset
  added (TfIdf's long queries; BM25, whose offset is bm25s's non-occurrence score).

Two implementations give the same bits:

* numpy and scipy, always there: one ``bincount`` per group of wide queries and one ``np.add.at``
  or scipy sparse product per group of narrow ones (each adds a query's terms in the order given),
  then the top k of the (queries x documents) block; one core (all three hold the GIL);
* numba, optional (``pip install "cherche-faiss[fast]"``, :mod:`._sparse_numba`): one compiled
  pass per query, the queries spread over the cores, selecting the top k without the block. It is
  loaded once the process has spent in the numpy path about as long as loading it takes
  (:data:`_ACCELERATE_SECONDS`), so a cold start answering a few queries never imports it.
  ``CHERCHE_FAISS_SPARSE=numpy`` (or ``numba``) in the environment fixes the choice.

The top k of a query are its k largest positive scores, ties broken by document order (lower
first), best first; each score is compared as the float32 the hit reports.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Postings", "Queries", "accelerated", "concatenate", "query_work", "search", "top_k_dense"]

# Cells of the (queries x documents) score block filled at once by the numpy path: 16 Mi floats = 64 MiB.
_DENSE_CELLS = 1 << 24
# Posting entries gathered at once for one bincount of wide queries (bounds its index arrays).
_BINCOUNT_BATCH = 1 << 22
# Seconds this process spends in the numpy path before it loads numba: as long as loading the
# kernels from numba's on-disk cache takes, so that loading them never costs more than the work
# done without them (compiling them, the first time numba meets them, takes a few seconds more).
_ACCELERATE_SECONDS = 0.5
# About what the numpy path spends per posting entry, to foresee a large call.
_SECONDS_PER_POSTING = 3e-9
# Narrow queries of a chunk reading up to this many posting entries are added with np.add.at
# (less overhead than building scipy matrices); beyond, scipy's product is faster.
_ADD_AT_POSTINGS = 1 << 16
# Posting entries below which the numba path stays on the calling thread.
_THREAD_POSTINGS = 1 << 18
_ENVIRONMENT = "CHERCHE_FAISS_SPARSE"


@dataclass
class Queries:
    """A batch of queries as weighted terms: query ``i`` is ``terms[ptr[i]:ptr[i + 1]]``.

    Attributes
    ----------
    ptr
        int64, ``len(queries) + 1`` offsets into ``terms`` and ``weights``.
    terms
        int64 term numbers (rows of the posting lists), in each query's accumulation order.
    weights
        float64 weights; a narrow query's are rounded to float32 before use.
    wide
        bool per query: float64 accumulation (True) or float32 (False).
    offsets
        float32 per query added to a narrow query's sums, or None for none.
    """

    ptr: np.ndarray
    terms: np.ndarray
    weights: np.ndarray
    wide: np.ndarray
    offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ptr) - 1


class Postings:
    """Posting lists: term ``t`` holds documents ``indices[indptr[t]:indptr[t + 1]]`` (ascending),
    with values ``data[...]`` (float32): a CSR (terms x documents) matrix's arrays.

    Parameters
    ----------
    indptr, indices, data
        The matrix's arrays (not copied).
    n_documents
        Its number of columns.
    matrix
        The same arrays as a scipy CSR matrix, when the caller has one (built on demand otherwise).
    """

    def __init__(
        self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_documents: int, matrix: Any = None
    ) -> None:
        self.indptr, self.indices, self.data = np.asarray(indptr), np.asarray(indices), np.asarray(data)
        self.n_documents = int(n_documents)
        self._matrix = matrix
        self._compiled: tuple | None = None  # arrays of the numba path, see _sparse_numba.prepare

    @property
    def n_terms(self) -> int:
        return len(self.indptr) - 1

    def lengths(self, terms: np.ndarray) -> np.ndarray:
        """Posting-list length of each term (int64)."""
        return (self.indptr[terms + 1] - self.indptr[terms]).astype(np.int64)

    def matrix(self) -> Any:
        """The scipy CSR matrix of these arrays (sharing them)."""
        if self._matrix is None:
            import scipy.sparse as sp

            self._matrix = sp.csr_matrix(
                (self.data, self.indices, self.indptr), shape=(self.n_terms, self.n_documents), copy=False
            )
        return self._matrix

    def compiled(self, kernels: Any) -> tuple:
        """The arrays the numba kernels read, made once (see :func:`._sparse_numba.prepare`)."""
        if self._compiled is None:
            self._compiled = kernels.prepare(self.indptr, self.indices, self.data, self.n_documents)
        return self._compiled


# -- choosing the implementation -----------------------------------------------------------------
_lock = threading.Lock()
_state: dict[str, Any] = {"kernels": None, "failed": False, "spent": 0.0, "pool": None}


def _mode() -> str:
    value = os.environ.get(_ENVIRONMENT, "auto").strip().lower()
    return value if value in ("numpy", "numba") else "auto"


def _kernels(work: int) -> Any:
    """The numba kernels when this call should use them, else None (numpy and scipy).

    In the default mode, once the numpy path has taken (or this call would take) as long as
    loading numba: renting until the price of buying is spent.
    """
    mode = _mode()
    if mode == "numpy" or _state["failed"]:
        return None
    if _state["kernels"] is not None:
        return _state["kernels"]
    if mode == "auto" and _state["spent"] + work * _SECONDS_PER_POSTING < _ACCELERATE_SECONDS:
        return None
    with _lock:
        try:
            from . import _sparse_numba
        except ImportError:  # numba is optional
            _state["failed"] = True
            return None
        _state["kernels"] = _sparse_numba
    return _sparse_numba


def accelerated() -> bool:
    """Whether this process uses the compiled (numba) path now: loaded, or asked for with
    ``CHERCHE_FAISS_SPARSE=numba`` (the other compiled parts, TfIdf's query analysis, follow it)."""
    return _kernels(0) is not None


def _pool() -> Any:
    if _state["pool"] is None:
        from concurrent.futures import ThreadPoolExecutor

        with _lock:
            if _state["pool"] is None:
                _state["pool"] = ThreadPoolExecutor(max_workers=_cores(), thread_name_prefix="cherche-faiss-sparse")
    return _state["pool"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


# -- searching ----------------------------------------------------------------------------------
def search(
    postings: Postings, queries: Queries, k: int | None, work: np.ndarray | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Documents (int64 column numbers) and float32 scores of each query's top ``k`` (None: every
    positive score), best first, ties broken by document order: one array of each per query.

    Parameters
    ----------
    postings
        The posting lists.
    queries
        The batch.
    k
        Hits per query, or None.
    work
        Posting entries each query reads (computed when not given).
    """
    if work is None:
        work = query_work(postings, queries)
    n = postings.n_documents
    kernels = _kernels(int(work.sum())) if postings.data.dtype == np.float32 else None
    started = time.perf_counter()
    columns: list[np.ndarray] = []
    values: list[np.ndarray] = []
    chunk = max(1, _DENSE_CELLS // n)
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        if kernels is not None:
            found = _search_compiled(kernels, postings, queries, start, stop, k, work)
        else:
            found = top_k_dense(_score_block(postings, queries, start, stop, work), k)
        columns.extend(found[0])
        values.extend(found[1])
    if kernels is None:
        _state["spent"] += time.perf_counter() - started
    return columns, values


def _search_compiled(
    kernels: Any, postings: Postings, queries: Queries, start: int, stop: int, k: int | None, work: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    n = postings.n_documents
    width = n if k is None else min(k, n)
    rows = stop - start
    found_columns = np.empty((rows, width), dtype=np.int64)
    found_values = np.empty((rows, width), dtype=np.float32)
    counts = np.zeros(rows, dtype=np.int64)
    arrays = postings.compiled(kernels)
    offsets = queries.offsets if queries.offsets is not None else np.zeros(len(queries), dtype=np.float32)

    def run(lo: int, hi: int) -> None:
        kernels.search_rows(
            *arrays, queries.ptr, queries.terms, queries.weights, queries.wide, offsets,
            lo, hi, start, width, found_columns, found_values, counts,
        )  # fmt: skip

    total = int(work[start:stop].sum())
    threads = min(_cores(), rows, max(1, total // _THREAD_POSTINGS))
    if threads <= 1:
        run(start, stop)
    else:  # contiguous ranges of about equal work; each query is scored by one thread
        bounds = np.searchsorted(np.cumsum(work[start:stop]), np.arange(1, threads) * (total / threads))
        edges = [start, *(start + int(b) for b in bounds), stop]
        futures = [_pool().submit(run, lo, hi) for lo, hi in zip(edges, edges[1:]) if hi > lo]
        for future in futures:
            future.result()
    counts_list = counts.tolist()
    return (
        [found_columns[row, :count] for row, count in enumerate(counts_list)],
        [found_values[row, :count] for row, count in enumerate(counts_list)],
    )


def query_work(postings: Postings, queries: Queries) -> np.ndarray:
    """Posting entries each query reads (int64)."""
    cumulative = np.zeros(len(queries.terms) + 1, dtype=np.int64)
    np.cumsum(postings.lengths(queries.terms), out=cumulative[1:])
    return cumulative[queries.ptr[1:]] - cumulative[queries.ptr[:-1]]


def _gather_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``range(start, end)`` for each pair, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return offsets + np.arange(total)


def _score_block(postings: Postings, queries: Queries, start: int, stop: int, work: np.ndarray) -> np.ndarray:
    """float32 scores of queries ``start:stop`` with every document, with numpy and scipy."""
    block = np.zeros((stop - start, postings.n_documents), dtype=np.float32)
    rows = np.arange(start, stop)
    wide = queries.wide[start:stop]
    if wide.any():
        # bincount adds its weights in input order: each cell gets its query's terms in the order given.
        group: list[int] = []
        budget = 0
        for row in rows[wide].tolist():
            if group and budget + int(work[row]) > _BINCOUNT_BATCH:
                _bincount_group(postings, queries, group, block, start)
                group, budget = [], 0
            group.append(row)
            budget += int(work[row])
        _bincount_group(postings, queries, group, block, start)
    if not wide.all():
        _score_narrow(postings, queries, rows[~wide], block, start)
    return block


def _bincount_group(postings: Postings, queries: Queries, group: list[int], block: np.ndarray, start: int) -> None:
    n, ptr = postings.n_documents, queries.ptr
    rows = np.asarray(group, dtype=np.int64)
    picks = _gather_ranges(ptr[rows], ptr[rows + 1])
    terms = queries.terms[picks]
    starts, ends = postings.indptr[terms], postings.indptr[terms + 1]
    positions = _gather_ranges(starts, ends)
    # The group's slot of each posting entry: its query's row of the sums.
    slots = np.repeat(np.repeat(np.arange(len(rows)), ptr[rows + 1] - ptr[rows]), ends - starts)
    targets = postings.indices[positions].astype(np.int64) + slots * n
    contributions = postings.data[positions] * np.repeat(queries.weights[picks], ends - starts)
    sums = np.bincount(targets, weights=contributions, minlength=len(rows) * n)
    block[rows - start] = sums.reshape(len(rows), n)


def _score_narrow(postings: Postings, queries: Queries, rows: np.ndarray, block: np.ndarray, start: int) -> None:
    # Both ways add, for each query, its terms in the order given, each entry ``float32(weight) * value``
    # in float32 (as bm25s and the earlier TfIdf did): np.add.at adds in the order of its indices,
    # scipy's sparse product the entries of each row of the left matrix in stored order.
    ptr = queries.ptr
    picks = _gather_ranges(ptr[rows], ptr[rows + 1])
    terms, weights = queries.terms[picks], queries.weights[picks].astype(np.float32)
    starts, ends = postings.indptr[terms], postings.indptr[terms + 1]
    if int((ends - starts).sum()) <= _ADD_AT_POSTINGS:
        n = postings.n_documents
        positions = _gather_ranges(starts, ends)
        slots = np.repeat(np.repeat(rows - start, ptr[rows + 1] - ptr[rows]), ends - starts)
        contributions = np.repeat(weights, ends - starts) * postings.data[positions]
        np.add.at(block.reshape(-1), postings.indices[positions] + slots * n, contributions)
        scores = block[rows - start]
    else:
        import scipy.sparse as sp

        matrix = postings.matrix()
        index_dtype = matrix.indices.dtype  # matching dtypes: scipy would copy the matrix otherwise
        counts = ptr[rows + 1] - ptr[rows]
        left = sp.csr_matrix(
            (weights, terms.astype(index_dtype), np.concatenate(([0], np.cumsum(counts))).astype(index_dtype)),
            shape=(len(rows), postings.n_terms),
        )
        scores = (left @ matrix).toarray()
    if queries.offsets is not None:
        scores += queries.offsets[rows][:, None]
    block[rows - start] = scores


def top_k_dense(scores: np.ndarray, k: int | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Columns (int64) and values of the ``k`` largest positive entries of each row of a float32
    block, best first, ties broken by column number (also at the k-th place): an array of each per row.

    Row by row, on each row's positive entries only: a partition of those values gives the k-th
    largest, then only the entries at or above it are sorted. (A partition of the whole block at
    once is slower, all the more as equal values, zeros above all, abound.)
    """
    columns: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for row in scores:
        found = np.flatnonzero(row > 0)
        found_values = row[found]
        if k is not None and k < len(found_values):
            threshold = np.partition(found_values, len(found_values) - k)[len(found_values) - k]
            above = found_values > threshold
            ties = found_values == threshold
            keep = above | (ties & (np.cumsum(ties) <= k - int(above.sum())))  # tied entries in column order
            found, found_values = found[keep], found_values[keep]
        order = np.argsort(-found_values, kind="stable")
        columns.append(found[order])
        values.append(found_values[order])
    return columns, values


def concatenate(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ptr``, terms and weights of queries given as ``(terms, weights)`` pairs."""
    sizes = [len(terms) for terms, _ in parts]
    ptr = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(sizes, out=ptr[1:])
    if not parts or not ptr[-1]:
        return ptr, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    terms = np.concatenate([terms for terms, _ in parts]).astype(np.int64, copy=False)
    weights = np.concatenate([weights for _, weights in parts]).astype(np.float64, copy=False)
    return ptr, terms, weights
