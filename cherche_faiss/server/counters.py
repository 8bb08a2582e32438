"""The micro-batcher's counters and its estimate of how soon a full queue drains.

Kept apart from :mod:`.batching` so that the batcher's module holds the
queue and its consumer only. Everything here is updated and read on the event
loop (never from the worker thread), so it needs no lock.
"""

from __future__ import annotations

import collections
import math
from typing import Any

__all__ = ["BatchCounters", "retry_after_seconds", "RECENT_BATCHES", "MIN_RETRY_AFTER_S", "MAX_RETRY_AFTER_S"]

#: How many of the latest batches the throughput estimate looks at: enough to
#: smooth one slow batch out, few enough to follow a change of load or model.
RECENT_BATCHES = 32
#: Bounds of the ``Retry-After`` hint, in seconds. HTTP counts it in whole
#: seconds, so 1 is the least; past a minute the estimate means little (the
#: load will have changed) and clients would wait for nothing.
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 60


def retry_after_seconds(pending_queries: int, queries_per_s: float | None) -> int:
    """How long a refused client should wait: the time the worker needs to search what is queued.

    ``ceil(pending_queries / queries_per_s)``, clamped to
    [:data:`MIN_RETRY_AFTER_S`, :data:`MAX_RETRY_AFTER_S`]. Without a measured
    throughput yet (no batch has finished), the least wait.

    Examples
    --------
    >>> retry_after_seconds(300, 100.0), retry_after_seconds(10, 100.0), retry_after_seconds(10, None)
    (3, 1, 1)
    >>> retry_after_seconds(10_000, 1.0)
    60
    """
    if not queries_per_s or queries_per_s <= 0 or not math.isfinite(queries_per_s):
        return MIN_RETRY_AFTER_S
    return int(min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, math.ceil(pending_queries / queries_per_s))))


class BatchCounters:
    """What the batcher has done since it was created, and its recent throughput."""

    def __init__(self) -> None:
        self.requests = 0
        self.queries = 0
        self.batches = 0
        self.pipeline_calls = 0
        self.batched_queries = 0
        self.batched_requests = 0
        self.largest_batch = 0
        self.withdrawn = 0
        self.discarded = 0
        self.rejected_overloaded = 0
        self.rejected_queries = 0
        self.busy_s = 0.0
        # (queries, seconds) of the latest batches: the throughput the retry hint divides by.
        self._recent: collections.deque[tuple[int, float]] = collections.deque(maxlen=RECENT_BATCHES)

    def record(self, queries: int, requests: int, calls: int, seconds: float) -> None:
        """Count one batch of ``requests`` holding ``queries`` queries, searched in ``calls`` calls."""
        self.batches += 1
        self.pipeline_calls += calls
        self.batched_queries += queries
        self.batched_requests += requests
        self.largest_batch = max(self.largest_batch, queries)
        self.busy_s += seconds
        self._recent.append((queries, seconds))

    def reject(self, queries: int) -> None:
        """Count a request refused because the queue was full."""
        self.rejected_overloaded += 1
        self.rejected_queries += queries

    def queries_per_s(self) -> float | None:
        """Queries searched per second of worker time over the latest batches; None before any."""
        queries = sum(size for size, _ in self._recent)
        seconds = sum(spent for _, spent in self._recent)
        if not queries or seconds <= 0:
            return None
        return queries / seconds

    def as_dict(self, pending: int, pending_queries: int) -> dict[str, Any]:
        """The counters as ``MicroBatcher.stats()`` and ``/info`` show them, with the queue's current length.

        ``requests`` and ``queries`` submitted; ``batches`` run and the
        ``pipeline_calls`` they made (one per ``k`` in a batch, more when a
        failed batch is retried request by request); ``mean_batch_queries``,
        ``mean_batch_requests`` and ``largest_batch_queries``; ``withdrawn``:
        requests cancelled before their batch (never searched); ``discarded``:
        answers nobody waited for any more; ``rejected_overloaded`` (and
        ``rejected_overloaded_queries``): requests refused because the queue was
        full (not counted in ``requests``); ``pending`` requests (withdrawn ones
        included until the consumer drops them) and ``pending_queries`` (what
        ``max_pending`` bounds) now; ``recent_queries_per_s``: the throughput
        the retry hint uses; ``worker_busy_s``.
        """
        rate = self.queries_per_s()
        return {
            "requests": self.requests,
            "queries": self.queries,
            "batches": self.batches,
            "pipeline_calls": self.pipeline_calls,
            "mean_batch_queries": self.batched_queries / self.batches if self.batches else None,
            "mean_batch_requests": self.batched_requests / self.batches if self.batches else None,
            "largest_batch_queries": self.largest_batch,
            "withdrawn": self.withdrawn,
            "discarded": self.discarded,
            "rejected_overloaded": self.rejected_overloaded,
            "rejected_overloaded_queries": self.rejected_queries,
            "pending": pending,
            "pending_queries": pending_queries,
            "recent_queries_per_s": None if rate is None else round(rate, 3),
            "worker_busy_s": round(self.busy_s, 6),
        }
