"""Tune ``nprobe`` / ``efSearch`` to a target recall on the corpus's own vectors.

A sample of the vectors held is searched twice: exhaustively (every IVF list,
or the exact scan of an HNSW graph's stored vectors) for the ground truth, and
with increasing parameter values until recall@k reaches the target. The
sampled vector itself is its own nearest neighbour, so it is dropped from both
lists before comparing (otherwise every query would score a free hit).

Recall is measured against exhaustive search *over the index's own codes*: for
raw vectors (``IVF...,Flat``, HNSW) that is exact search; for compressed ones
(``SQ8``, ``PQ``) it isolates what ``nprobe`` loses from what compression
loses, which no search parameter can win back.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.progress import progress
from .._core.validation import check_positive_int
from ..exceptions import InvalidInputError, RecallNotReachedWarning
from ._search_params import index_kind, ivf_lists

if TYPE_CHECKING:  # pragma: no cover
    from .faiss import FaissIndex

__all__ = ["TuningResult", "tune_search_params"]

_EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048)


@dataclass
class TuningResult:
    """The outcome of :func:`tune_search_params`.

    Attributes
    ----------
    params
        The chosen parameters (``{}`` for an exhaustive index).
    recall
        recall@k measured with them.
    target_recall, k, sample_size
        What was asked and on how many sampled vectors.
    reached
        Whether ``recall >= target_recall``.
    trials
        Every value tried: ``{"params", "recall", "ms_per_query"}`` (batched search).
    """

    params: dict
    recall: float
    target_recall: float
    k: int
    sample_size: int
    reached: bool
    trials: list = field(default_factory=list)


def _recall(found: np.ndarray, truth: np.ndarray, own: np.ndarray, k: int) -> float:
    hits = total = 0
    for found_row, truth_row, own_id in zip(found.tolist(), truth.tolist(), own.tolist()):
        truth_set = [i for i in truth_row if i >= 0 and i != own_id][:k]
        found_set = {i for i in found_row if i >= 0 and i != own_id}
        hits += len(found_set.intersection(truth_set))
        total += len(truth_set)
    return hits / total if total else 1.0


def tune_search_params(
    index: FaissIndex,
    target_recall: float = 0.95,
    k: int = 10,
    sample_size: int = 256,
    seed: int = 0,
    apply: bool = True,
    show_progress: bool = True,
    queries: Any = None,
) -> TuningResult:
    """Find the cheapest ``nprobe`` (IVF) or ``efSearch`` (HNSW) reaching ``target_recall``.

    Parameters
    ----------
    index
        A FaissIndex holding vectors.
    target_recall
        recall@k to reach, in (0, 1].
    k
        Number of neighbours the recall is measured on.
    sample_size
        Vectors of the index used as queries (sampled without replacement).
    seed
        Seed of the sample.
    apply
        Make the chosen parameters the index's defaults (``index.search_params``).
    show_progress
        Show a progress bar over the values tried.
    queries
        Query vectors to tune on instead of the index's own vectors, e.g. a
        validation sample of real queries (better when queries differ from
        documents, as questions differ from passages); at most
        ``sample_size`` of them are used.

    Returns
    -------
    TuningResult
        When no value reaches the target (HNSW with a very high target), the
        largest is chosen and a :class:`~cherche_faiss.exceptions.RecallNotReachedWarning` says so.

    Examples
    --------
    >>> import numpy as np
    >>> from cherche_faiss.index import FaissIndex
    >>> vectors = np.random.default_rng(0).standard_normal((2000, 16))
    >>> index = FaissIndex(factory="IVF16,Flat").add(vectors, list(range(2000)))
    >>> result = index.tune(target_recall=0.9, show_progress=False)
    >>> result.reached, result.recall >= 0.9, index.search_params == result.params
    (True, True, True)
    """
    k, sample_size = _check_arguments(target_recall, k, sample_size)
    index.check_indexed()
    kind = index_kind(index.faiss_index)
    if kind == "other":  # exhaustive: nothing to tune
        if apply:
            index.search_params = {}
        return TuningResult({}, 1.0, float(target_recall), k, 0, True)
    queries, own = _sample_queries(index, queries, sample_size, seed)
    depth = min(k + 1, len(index))
    truth = index.exhaustive_ids(queries, depth)
    name, values = _candidate_values(index, kind)
    trials, reached = _try_values(index, queries, own, truth, depth, k, name, values, target_recall, show_progress)
    chosen = trials[-1]  # the first to reach the target, else the largest value
    if not reached:
        _warn_not_reached(name, values[-1], k, target_recall, chosen["recall"])
    if apply:
        index.search_params = dict(chosen["params"])
    return TuningResult(dict(chosen["params"]), chosen["recall"], float(target_recall), k, len(own), reached, trials)


def _check_arguments(target_recall: float, k: int, sample_size: int) -> tuple[int, int]:
    """``k`` and ``sample_size`` checked, after ``target_recall``."""
    if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) or not 0 < target_recall <= 1:
        raise InvalidInputError(f"target_recall must be a number in (0, 1], got {target_recall!r}.")
    return (
        check_positive_int(k, "k", allow_none=False),
        check_positive_int(sample_size, "sample_size", allow_none=False),
    )


def _sample_queries(index: FaissIndex, queries: Any, sample_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The queries to tune on and the id each one is in the index (-2 for outside queries).

    Without ``queries``, ``sample_size`` of the index's own vectors; else at
    most ``sample_size`` of the queries given, prepared as the index does.
    """
    rng = np.random.default_rng(seed)
    if queries is None:
        ids = index.held_ids()
        own = np.sort(rng.choice(ids, size=min(sample_size, len(ids)), replace=False))
        return index.reconstruct_ids(own), own
    queries = index.prepare(queries, "queries")
    if len(queries) > sample_size:
        queries = queries[np.sort(rng.choice(len(queries), size=sample_size, replace=False))]
    return queries, np.full(len(queries), -2, dtype=np.int64)  # no query is one of the index's vectors


def _candidate_values(index: FaissIndex, kind: str) -> tuple[str, list[int]]:
    """The parameter to tune and its values, cheapest first: powers of two up to ``nlist``, or _EF_SEARCH."""
    if kind == "ivf":
        nlist = ivf_lists(index.faiss_index)
        return "nprobe", [2**i for i in range(nlist.bit_length()) if 2**i < nlist] + [nlist]
    return "efSearch", list(_EF_SEARCH)


def _try_values(
    index: FaissIndex,
    queries: np.ndarray,
    own: np.ndarray,
    truth: np.ndarray,
    depth: int,
    k: int,
    name: str,
    values: list[int],
    target_recall: float,
    show_progress: bool,
) -> tuple[list[dict], bool]:
    """Search with each value in turn until recall@k reaches the target.

    Returns the trials (``{"params", "recall", "ms_per_query"}``, the last one
    chosen) and whether the last one reached the target.
    """
    trials: list[dict] = []
    with progress(len(values), f"tuning {name} for recall@{k} >= {target_recall}", show_progress, unit="try") as bar:
        for value in values:
            params = {name: value}
            start = time.perf_counter()
            _, found = index.search_ids(queries, depth, params)
            elapsed = time.perf_counter() - start
            recall = _recall(found, truth, own, k)
            trials.append({"params": params, "recall": recall, "ms_per_query": 1000 * elapsed / len(own)})
            bar.update(1)
            if recall >= target_recall:
                return trials, True
    return trials, False


def _warn_not_reached(name: str, largest: int, k: int, target_recall: float, best: float) -> None:
    warnings.warn(
        f"no {name} up to {largest} reaches recall@{k} {target_recall} on this index "
        f"(best: {best:.3f}); using {name}={largest}. Build the index with more "
        "links (e.g. HNSW64) or use an IVF index.",
        RecallNotReachedWarning,
        stacklevel=3,  # the caller of tune_search_params (FaissIndex.tune when called through it)
    )
