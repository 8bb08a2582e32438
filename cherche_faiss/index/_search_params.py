"""Search-time parameters of approximate indexes (``nprobe``, ``efSearch``).

They are passed to FAISS per call as ``faiss.SearchParametersIVF`` /
``faiss.SearchParametersHNSW`` objects rather than set on the index, so a
search never changes the index: concurrent searches with different
parameters (two retrievers sharing an index, a server answering several
clients) cannot race, and nothing needs rebuilding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import InvalidInputError, InvalidTypeError

__all__ = ["SEARCH_PARAMETERS", "check_search_params", "faiss_search_parameters", "index_kind", "ivf_lists"]

SEARCH_PARAMETERS = {
    "nprobe": "IVF: inverted lists scanned per query (more: higher recall, slower)",
    "efSearch": "HNSW: candidate list length during the graph walk (more: higher recall, slower)",
}


def _faiss() -> Any:
    import faiss

    return faiss


def check_search_params(params: Mapping[str, Any] | None, name: str = "search_params") -> dict[str, int]:
    """Validate search parameters: known names, positive ints.

    >>> check_search_params({"nprobe": 16})
    {'nprobe': 16}
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidTypeError(f"{name} must be a dict such as {{'nprobe': 32}}, got {type(params).__name__}.")
    checked = {}
    for key, value in params.items():
        if key not in SEARCH_PARAMETERS:
            known = "; ".join(f"{known}: {meaning}" for known, meaning in SEARCH_PARAMETERS.items())
            raise InvalidInputError(f"unknown search parameter {key!r}. Known parameters are {known}.")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"search parameter {key} must be a positive int, got {value!r}.")
        checked[key] = int(value)
    return checked


def ivf_lists(index: Any) -> int:
    """Number of inverted lists of an IVF index, on the CPU or a GPU (0 when not IVF)."""
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return int(ivf.nlist)
    # GPU IVF indexes are not faiss.IndexIVF subclasses; faiss-gpu builds define GpuIndexIVF.
    gpu_ivf = getattr(faiss, "GpuIndexIVF", None)
    core = faiss.downcast_index(index)
    if gpu_ivf is not None and isinstance(core, gpu_ivf):
        return int(core.nlist)
    return 0


def index_kind(index: Any) -> str:
    """``"ivf"``, ``"hnsw"`` or ``"other"`` (flat, PQ, SQ ...): which parameters apply."""
    faiss = _faiss()
    if ivf_lists(index):
        return "ivf"
    core = faiss.downcast_index(index)
    if isinstance(core, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        core = faiss.downcast_index(core.index)
    if isinstance(core, faiss.IndexHNSW):
        return "hnsw"
    return "other"


def faiss_search_parameters(index: Any, params: Mapping[str, int], description: str) -> Any:
    """The ``faiss.SearchParameters`` object for ``params`` on ``index`` (None when empty).

    Exhaustive indexes (flat, PQ and SQ without lists) have nothing to tune
    and take any of them, so that one ``nprobe=`` can be passed to a whole
    pipeline; a parameter of the other approximate family (``nprobe`` on an
    HNSW index, say) is an error rather than silently ignored.
    """
    if not params:
        return None
    faiss = _faiss()
    kind = index_kind(index)
    if kind == "other":
        return None
    applies = {"ivf": {"nprobe"}, "hnsw": {"efSearch"}}[kind]
    wrong = sorted(set(params) - applies)
    if wrong:
        raise InvalidInputError(
            f"search parameter(s) {wrong} do not apply to index {description!r}; it takes only {sorted(applies)}. "
            "nprobe is for IVF indexes, efSearch for HNSW indexes."
        )
    if kind == "ivf":
        return faiss.SearchParametersIVF(nprobe=params["nprobe"])
    return faiss.SearchParametersHNSW(efSearch=params["efSearch"])
