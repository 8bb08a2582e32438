"""What the application's endpoints share: the pipeline, its batcher, settings and counters.

Kept apart from :mod:`.app` (the routes) so that neither module grows past
what one reads at once; it imports nothing from FastAPI.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections import Counter
from typing import Any

from ..exceptions import CherFaissError, InvalidInputError
from .batching import MicroBatcher
from .describe import describe, versions
from .guard import API_KEY_HEADER, OPEN_PATHS
from .schemas import Limits
from .threads import ThreadPolicy

__all__ = ["SearchService", "WARM_UP_QUERY", "takes_filter"]

logger = logging.getLogger("cherche_faiss.server")

WARM_UP_QUERY = "warm-up"


def takes_filter(pipeline: Any) -> bool:
    """Whether ``pipeline(q, k=k, filter=...)`` can be called: a ``filter`` parameter or ``**kwargs``.

    Every component of cherche_faiss takes one; a plain function may not, and
    a request with a filter then gets a 422 rather than a server error.
    """
    try:
        parameters = inspect.signature(pipeline).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): the call will tell
        return True
    return any(
        parameter.kind is inspect.Parameter.VAR_KEYWORD
        or (parameter.name == "filter" and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for parameter in parameters
    )


class SearchService:
    """What the application's endpoints share: the pipeline, its batcher, settings and counters.

    Its counters change on the event loop only; the pipeline is only touched
    in the batcher's worker thread.
    """

    def __init__(
        self,
        pipeline: Any,
        batcher: MicroBatcher,
        policy: ThreadPolicy,
        limits: Limits,
        warmup: bool,
        freeze_gc: bool,
        source: dict[str, Any] | None,
        api_key_set: bool,
        max_body_bytes: int,
    ) -> None:
        self.pipeline = pipeline
        self.freeze_gc = freeze_gc
        self.frozen = 0  # objects this server moved to the collector's permanent generation
        self.batcher = batcher
        self.policy = policy
        self.limits = limits
        self.warmup = warmup
        self.source = source
        self.api_key_set = api_key_set
        self.max_body_bytes = max_body_bytes
        self.takes_filter = takes_filter(pipeline)
        self.started_at = time.monotonic()
        self.responses: Counter[int] = Counter()  # /search answers by status
        self.disconnected = 0
        # "idle" until started (by the lifespan, or by the first search when the app is mounted
        # without one), "serving", then "stopped".
        self.state = "idle"
        self._starting: asyncio.Lock | None = None

    def search(self, q: Any, k: int, filter: Any = None) -> Any:  # noqa: A002 - the pipelines' keyword
        """One pipeline call (``filter=`` only when there is a filter); runs in the worker thread."""
        self.policy.apply()  # no-op once done; catches torch imported by a lazily loaded model
        if filter is None:
            return self.pipeline(q, k=k)
        return self.pipeline(q, k=k, filter=filter)

    async def start(self) -> None:
        """Start the worker, apply the thread policy there, answer the warm-up query."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.state == "serving":
                return
            try:
                await self.batcher.start()
                await self.batcher.call_in_worker(self.policy.apply)
                if self.warmup:
                    await self._warm_up()
            except BaseException:
                await self.batcher.close()  # no worker thread left behind by a failed start
                raise
            if self.freeze_gc:
                self._freeze()
            self.state = "serving"

    def _freeze(self) -> None:
        """Keep the loaded pipeline out of the garbage collector's full collections.

        A full collection walks every tracked object: with a TF-IDF vocabulary,
        FastAPI and torch loaded, that stalls the process for tens of
        milliseconds, and a batch in flight with it (the p99 of a busy server).
        What is loaded now lives as long as the server, so it is frozen once.
        """
        gc.collect()
        before = gc.get_freeze_count()
        gc.freeze()
        self.frozen = gc.get_freeze_count() - before
        logger.info("froze %d objects out of the garbage collector's reach", self.frozen)

    async def _warm_up(self) -> None:
        started = time.perf_counter()
        try:
            await self.batcher.call_in_worker(self.search, WARM_UP_QUERY, 1)
        except CherFaissError as error:
            raise InvalidInputError(
                f"the pipeline cannot answer a warm-up query ({type(error).__name__}: {error}). "
                "Fix the pipeline (e.g. add its documents) before serving it."
            ) from error
        logger.info("warm-up query answered in %.2f s", time.perf_counter() - started)

    async def stop(self) -> None:
        """Stop the worker (the batch running finishes; pending requests get 503) and give torch its threads back."""
        self.state = "stopped"
        self._starting = None  # a lock belongs to one event loop; a restart may run in another
        if self.frozen:
            gc.unfreeze()  # an embedded server gives the process back as it found it
            self.frozen = 0
        if self.batcher.running:
            try:
                await self.batcher.call_in_worker(self.policy.restore)
            except Exception:
                logger.exception("could not give torch back its thread count")
        await self.batcher.close()

    async def info(self) -> dict[str, Any]:
        """``GET /info``. The pipeline is described in the worker thread, never mid-search."""
        found = await self.batcher.call_in_worker(describe, self.pipeline)
        found["versions"] = versions()
        found["versions"]["saved"] = (self.source or {}).get("saved_version")
        found["source"] = self.source
        found["batching"] = {
            "enabled": self.batcher.batching,
            "max_batch_size": self.batcher.max_batch_size,
            "max_wait_ms": self.batcher.max_wait_ms,
            "max_pending": self.batcher.max_pending,
        }
        found["threads"] = self.policy.report()
        found["gc"] = {"freeze": self.freeze_gc, "frozen_objects": self.frozen}
        found["limits"] = {
            "max_k": self.limits.max_k,
            "default_k": self.limits.default_k,
            "max_queries": self.limits.max_queries,
            "max_query_length": self.limits.max_query_length,
            "max_body_bytes": self.max_body_bytes,
        }
        found["auth"] = {
            "api_key_required": self.api_key_set,
            "header": API_KEY_HEADER,
            "open_paths": sorted(OPEN_PATHS),
        }
        found["stats"] = {
            **self.batcher.stats(),
            "disconnected": self.disconnected,
            "search_responses": {str(status): count for status, count in sorted(self.responses.items())},
            "uptime_s": round(time.monotonic() - self.started_at, 3),
        }
        return found
