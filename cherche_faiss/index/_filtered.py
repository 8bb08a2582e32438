"""Filtered search in a :class:`~cherche_faiss.index.FaissIndex`: the planner.

A filter arrives as a boolean mask over FAISS ids (see
:mod:`cherche_faiss.filters`). The planner picks how to search by the
fraction ``s`` of the held vectors the mask allows:

* **exact over the allowed vectors** when few are allowed (at most
  :data:`EXACT_MIN` vectors, or ``s <= EXACT_FRACTION``), for flat indexes
  at every selectivity (exact anyway), and on a GPU (faiss-gpu does not
  support selectors): the allowed vectors are read from the flat storage
  (or reconstructed), a block at a time, and scored with one matrix product
  per block. Its cost follows the number of vectors allowed.
* **the ANN index with a FAISS selector** otherwise (``IDSelectorRange``,
  ``IDSelectorBatch`` or ``IDSelectorBitmap``, see ``_selectors``), with
  the search parameters raised as selectivity falls so that recall stays at
  the index's unfiltered level: ``efSearch / s`` (HNSW) and ``nprobe / s``
  (IVF), capped (see :func:`raised_params`). A query that gets fewer than
  ``k`` hits is searched again with parameters :data:`WIDEN_FACTOR` times
  larger, :data:`WIDEN_TRIES` times, then exactly.

Every hit is checked against the mask before it is returned (an excluded id
is dropped, and the query widened as if it had been missing), so no
excluded key comes back whatever FAISS does (``bounded_queue=False``, which
makes HNSW ignore selectors, is never set).

The thresholds were measured on this project's development machine (2 shared
cores, one FAISS and one BLAS thread, faiss-cpu 1.15.1, k=10, single queries;
the tables are in ``docs/filtering.md``): at 1M x 384 (IVF4096,Flat), whose
vectors the exact path reconstructs (about 1.5 us a vector), the selector
(about 1.2-1.6 ms) wins above about a thousand allowed vectors, hence
:data:`EXACT_MIN` and :data:`EXACT_FRACTION`; for HNSW32 (efSearch 64,
raised, 200k x 64), whose vectors are read in place, exact search costs
1.6 ms at 5% against the selector's 2.3 ms, and 5.2 ms at 10% against 1.4 ms,
hence :data:`EXACT_FRACTION_IN_PLACE`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ._raw import raw_storage_view
from ._search_params import index_kind, ivf_lists
from ._selectors import make_selector, selector_parameters

if TYPE_CHECKING:  # pragma: no cover
    from .faiss import FaissIndex

__all__ = [
    "EXACT_FRACTION",
    "EXACT_FRACTION_IN_PLACE",
    "EXACT_MIN",
    "EXACT_MIN_IN_PLACE",
    "IVF_RAISE_EXPONENT",
    "WIDEN_FACTOR",
    "WIDEN_TRIES",
    "exact_search",
    "filtered_search",
    "plan",
    "raised_params",
    "selectors_supported",
]

#: At or below this fraction of the vectors allowed, the allowed vectors are searched exactly (indexes whose
#: vectors are reconstructed: IVF, PQ, SQ).
EXACT_FRACTION = 0.001
#: At or below this many vectors allowed, they are searched exactly whatever the fraction (the same indexes).
EXACT_MIN = 1024
#: The same two for indexes whose raw vectors are read in place (HNSW over flat storage): no reconstruction.
EXACT_FRACTION_IN_PLACE = 0.05
EXACT_MIN_IN_PLACE = 4096
#: nprobe of a filtered IVF search: the unfiltered one times ``fraction ** -IVF_RAISE_EXPONENT`` (see raised_params).
IVF_RAISE_EXPONENT = 0.35
#: How much a widening multiplies ``nprobe`` / ``efSearch`` by.
WIDEN_FACTOR = 4
#: Widenings before the queries still short of ``k`` hits are searched exactly.
WIDEN_TRIES = 2
#: Largest ``efSearch`` the planner asks for (beyond it, exact search over the allowed vectors is cheaper).
MAX_EF_SEARCH = 16384
# Allowed vectors scored per block by the exact path (bounds the memory of a block's copy and scores).
_BLOCK_ROWS = 65536


def plan(index: FaissIndex, allowed: int) -> str:
    """``"exact"`` or ``"selector"``: how ``index`` is searched with ``allowed`` vectors allowed."""
    if not selectors_supported(index) or index._flat_storage() is not None:
        return "exact"
    fraction = allowed / max(len(index), 1)
    if _raw_storage(index) is not None:  # read in place: the exact path costs a gather, no reconstruction
        return "exact" if allowed <= EXACT_MIN_IN_PLACE or fraction <= EXACT_FRACTION_IN_PLACE else "selector"
    return "exact" if allowed <= EXACT_MIN or fraction <= EXACT_FRACTION else "selector"


def selectors_supported(index: FaissIndex) -> bool:
    """Whether FAISS can search ``index`` with a selector: not on a GPU (faiss-gpu does not support
    ``IDSelector`` in its search parameters), where filtered searches are exact over the allowed vectors."""
    return index._device == "cpu"


def raised_params(kind: str, params: dict[str, int], fraction: float, faiss_index: Any, held: int) -> dict[str, int]:
    """``nprobe`` / ``efSearch`` for a search where ``fraction`` of the vectors are allowed.

    An IVF search with a selector scans ``nprobe`` lists but keeps only the
    allowed vectors in them. Scanning ``nprobe / fraction`` lists would keep
    as many candidates as an unfiltered search, but recall needs far fewer:
    the true neighbours sit in the nearest lists whatever the filter. At 1M x
    384 (IVF4096, unfiltered nprobe 64, uniform filters; ``filter_threshold``
    benchmark, 2026-12-07) recall@10 0.95 took nprobe 64 at 20-50% allowed,
    128 at 2-10%, 256 at 1% and 512 at 0.2-0.5%: about
    ``nprobe * fraction ** -0.35`` (:data:`IVF_RAISE_EXPONENT`), and widening
    covers a query left short of ``k`` hits. HNSW's walk keeps ``efSearch``
    allowed results while it visits every node, so ``efSearch / fraction``
    keeps its result list as well filled.
    """
    fraction = min(max(fraction, 1e-9), 1.0)
    if kind == "ivf":
        nlist = ivf_lists(faiss_index)
        nprobe = params.get("nprobe", 1)
        raised = nprobe * fraction**-IVF_RAISE_EXPONENT
        return {**params, "nprobe": max(1, min(nlist, math.ceil(raised)))}
    if kind == "hnsw":
        ef = params.get("efSearch", 16)
        return {**params, "efSearch": max(ef, min(MAX_EF_SEARCH, held, math.ceil(ef / fraction)))}
    return dict(params)


def _widened(kind: str, params: dict[str, int], faiss_index: Any, held: int) -> dict[str, int]:
    if kind == "ivf":
        return {**params, "nprobe": min(ivf_lists(faiss_index), params.get("nprobe", 1) * WIDEN_FACTOR)}
    if kind == "hnsw":
        return {**params, "efSearch": min(max(held, 1), params.get("efSearch", 16) * WIDEN_FACTOR)}
    return params


def filtered_search(
    index: FaissIndex, matrix: np.ndarray, k: int, mask: np.ndarray, params: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Similarities and FAISS ids ``(nq, k)`` of each query's ``k`` best allowed vectors (-1 padded).

    ``matrix`` is prepared (validated, normalised), ``k`` at least 1, ``mask``
    one bool per FAISS id (``index.key_space.next_id`` of them; removed ids
    False), ``params`` the search parameters of the call.
    """
    nq = len(matrix)
    count = int(np.count_nonzero(mask))  # the ids themselves are listed only where a path needs them
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    ids = np.full((nq, k), -1, dtype=np.int64)
    if not count or not nq:
        return scores, ids
    if plan(index, count) == "exact":
        found_scores, found_ids = exact_search(index, matrix, k, np.flatnonzero(mask))
        scores[:, : found_ids.shape[1]], ids[:, : found_ids.shape[1]] = found_scores, found_ids
        return scores, ids
    faiss_index = index._index
    kind = index_kind(faiss_index)
    held = len(index)
    wanted = min(k, count)
    selector = make_selector(mask, count)
    current = raised_params(kind, params, count / max(held, 1), faiss_index, held)
    pending = np.arange(nq)
    for attempt in range(WIDEN_TRIES + 1):
        parameters = selector_parameters(kind, selector, current)
        found_scores, found_ids = index._search_with(np.ascontiguousarray(matrix[pending]), k, parameters)
        found_scores, found_ids = _checked(found_scores, found_ids, mask)
        complete = (found_ids[:, wanted - 1] >= 0) if wanted else np.ones(len(pending), dtype=bool)
        scores[pending[complete]], ids[pending[complete]] = found_scores[complete], found_ids[complete]
        pending = pending[~complete]
        if not len(pending):
            return scores, ids
        if attempt < WIDEN_TRIES:
            widened = _widened(kind, current, faiss_index, held)
            if widened == current:
                break
            current = widened
    found_scores, found_ids = exact_search(index, matrix[pending], k, np.flatnonzero(mask))
    scores[pending, : found_ids.shape[1]], ids[pending, : found_ids.shape[1]] = found_scores, found_ids
    return scores, ids


def _raw_storage(index: FaissIndex) -> tuple[np.ndarray, np.ndarray] | None:
    """``(vectors, row of each FAISS id)`` of an id-mapped index on the CPU that stores raw float32
    vectors (``IndexFlat`` of either metric, ``IndexHNSWFlat``), else None.

    ``vectors`` is a zero-copy view of FAISS' storage, remembered while the index object and its key
    table's version stay the same (every add and removal changes the version before the storage moves).
    """
    if index._device != "cpu" or index._index is None:
        return None
    table, faiss_index = index.key_space, index._index
    known = index.__dict__.get("_raw_storage")
    if known is not None and known[0] is faiss_index and known[1] == table.version and known[2] == table.next_id:
        return known[3]
    view = raw_storage_view(faiss_index)
    if view is not None:
        vectors, id_map = view
        rows = np.full(table.next_id, -1, dtype=np.int64)
        rows[id_map] = np.arange(len(id_map))
        view = (vectors, rows)
    index.__dict__["_raw_storage"] = (faiss_index, table.version, table.next_id, view)
    return view


def _checked(scores: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` with every id the mask excludes dropped, each row's hits kept first, in order."""
    inside = (ids >= 0) & (ids < len(mask))
    valid = inside & mask[np.where(inside, ids, 0)]
    if bool(valid[ids >= 0].all()):
        return scores, ids
    order = np.argsort(~valid, axis=1, kind="stable")
    scores = np.take_along_axis(np.where(valid, scores, -np.inf).astype(np.float32), order, axis=1)
    ids = np.take_along_axis(np.where(valid, ids, -1), order, axis=1)
    return scores, ids


def exact_search(index: FaissIndex, matrix: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``min(k, len(allowed))`` best of the ``allowed`` FAISS ids for each query, by exact scoring.

    The vectors are those the index stores (decoded: for PQ and SQ codes, the
    vectors the codes stand for), read a block at a time; ties are broken by
    FAISS id.
    """
    nq, k = len(matrix), min(k, len(allowed))
    best_scores = np.empty((nq, 0), dtype=np.float32)
    best_ids = np.empty((nq, 0), dtype=np.int64)
    square = (matrix.astype(np.float32) ** 2).sum(axis=1)[:, None] if index.metric == "l2" else None
    stored = _raw_storage(index)
    for start in range(0, len(allowed), _BLOCK_ROWS):
        block = allowed[start : start + _BLOCK_ROWS]
        if stored is not None:  # read in place: reconstructing costs about a microsecond per vector
            vectors = stored[0][stored[1][block]]
        else:
            source, rows = index.vector_rows(block)
            vectors = np.ascontiguousarray(source[rows], dtype=np.float32)
        block_scores = matrix @ vectors.T
        if square is not None:  # minus the squared distance, as FAISS reports L2 similarities here
            block_scores = 2 * block_scores - (vectors**2).sum(axis=1)[None, :] - square
        candidates = np.concatenate([best_scores, block_scores.astype(np.float32)], axis=1)
        candidate_ids = np.concatenate([best_ids, np.broadcast_to(block, block_scores.shape)], axis=1)
        if candidates.shape[1] > k:
            keep = np.argpartition(-candidates, k - 1, axis=1)[:, :k]
            candidates = np.take_along_axis(candidates, keep, axis=1)
            candidate_ids = np.take_along_axis(candidate_ids, keep, axis=1)
        best_scores, best_ids = candidates, candidate_ids
    order = np.lexsort((best_ids, -best_scores), axis=-1)
    return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(best_ids, order, axis=1)
