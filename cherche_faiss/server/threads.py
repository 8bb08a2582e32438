"""The server's thread policy: how many threads FAISS and torch use for a search.

One worker thread runs every search (see :mod:`.batching`); inside it FAISS
(OpenMP) and torch (intra-op) may use several cores for one batch. The event
loop, which parses HTTP and JSON, needs a core of its own, so by default the
search gets ``max(1, cores - 1)`` threads, ``cores`` being the CPUs this process
may run on (its affinity mask, not the machine's count).

OpenMP thread counts are per calling thread, so the settings are applied *in*
the worker thread (``faiss.omp_set_num_threads`` called from the event loop
would not reach it). torch is set only once it is imported (a pipeline of
sentence-transformers models imports it on its first query), never imported
for that purpose. ONNX encoders of the pipeline (onnxruntime sessions, whose
thread pools are fixed when a session starts) get the same count before the
first search. numpy's BLAS keeps its own setting (``OPENBLAS_NUM_THREADS``):
the products a ranker makes are small enough that BLAS runs them on one
thread anyway.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .._core.validation import check_positive_int

__all__ = ["available_cores", "ThreadPolicy"]


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask when the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


class ThreadPolicy:
    """Thread counts for the search worker, applied from inside it.

    Parameters
    ----------
    threads
        Threads for FAISS, torch and onnxruntime; None: ``max(1, available_cores() - 1)``.
    pipeline
        The served pipeline, whose ONNX encoders are given ``threads`` too.

    Examples
    --------
    >>> policy = ThreadPolicy(threads=2)
    >>> policy.threads
    2
    >>> ThreadPolicy().threads == max(1, available_cores() - 1)
    True
    """

    def __init__(self, threads: int | None = None, pipeline: Any = None) -> None:
        self.requested = check_positive_int(threads, "threads")
        self.threads = self.requested or max(1, available_cores() - 1)
        self._applied: dict[str, Any] = {}
        self._previous_torch: int | None = None
        self._onnx = list(_onnx_encoders(pipeline))
        self._previous_onnx: list[int | None] = []

    def apply(self) -> dict[str, Any]:
        """Set FAISS' OpenMP threads, and torch's when torch is imported; call it in the worker thread.

        Cheap when nothing changed, so it runs before every batch: torch is
        configured as soon as a lazily loaded model has imported it.
        """
        if "faiss" not in self._applied:
            import faiss

            faiss.omp_set_num_threads(self.threads)
            self._applied["faiss"] = int(faiss.omp_get_max_threads())
        torch = sys.modules.get("torch")
        if torch is not None and "torch" not in self._applied:
            self._previous_torch = int(torch.get_num_threads())
            torch.set_num_threads(self.threads)
            self._applied["torch"] = int(torch.get_num_threads())
        if self._onnx and "onnx" not in self._applied:
            self._previous_onnx = [encoder.threads for encoder in self._onnx]
            for encoder in self._onnx:
                encoder.set_threads(self.threads)
            self._applied["onnx"] = self.threads
        return self.report()

    def restore(self) -> None:
        """Give torch back the thread count it had (FAISS' setting dies with the worker thread)."""
        torch = sys.modules.get("torch")
        if torch is not None and self._previous_torch is not None:
            torch.set_num_threads(self._previous_torch)
        self._previous_torch = None
        for encoder, threads in zip(self._onnx, self._previous_onnx):
            encoder.set_threads(threads)
        self._previous_onnx = []
        self._applied = {}

    def report(self) -> dict[str, Any]:
        """What ``/info`` shows: the policy and the counts read back in the worker thread."""
        return {
            "threads": self.threads,
            "requested": self.requested,
            "available_cores": available_cores(),
            "faiss_omp": self._applied.get("faiss"),
            "torch": self._applied.get("torch"),
            "onnx": self._applied.get("onnx"),
            "blas": "unchanged (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS)",
        }

    def __repr__(self) -> str:
        return f"ThreadPolicy(threads={self.threads})"


def _onnx_encoders(model: Any, seen: set[int] | None = None) -> Any:
    """Every ONNX encoder in ``model`` (its stages, encoders, query encoders), each once."""
    seen = set() if seen is None else seen
    if model is None or id(model) in seen:
        return
    seen.add(id(model))
    if type(model).__name__ == "OnnxEncoder" and hasattr(model, "set_threads"):
        yield model
        return
    for name in ("encoder", "query_encoder"):
        yield from _onnx_encoders(getattr(model, name, None), seen)
    for child in getattr(model, "models", None) or []:
        yield from _onnx_encoders(child, seen)
