"""Micro-batching: concurrent requests answered by one pipeline call.

Encoding 64 queries in one call costs far less than 64 calls of one query
(one forward pass instead of 64, one matrix product instead of 64 vector
products), so requests that arrive together are searched together:

* each request's queries are queued with its ``k`` and its filter (if any);
* one consumer takes the oldest request, then collects more for at most
  ``max_wait_ms`` (or until ``max_batch_size`` queries are pending);
* the collected requests are grouped by ``k`` and filter (a filter applies to
  every query of a call), each group searched with one call ``search(queries,
  k)`` or ``search(queries, k, filter=...)``; the hits are split back to each request
  (a request for one query string gets a list of hits, a request for a list of
  queries a list of lists).

Every call runs in one dedicated worker thread, so the pipeline (whose
components cache things lazily) is never called concurrently and the event
loop never waits on search work; under load, batches fill without waiting.
A request cancelled (its client gone) before its batch starts is dropped; if
a batched call fails, each of its requests is run alone, so that one bad
request cannot fail the others.

The queue is bounded (``max_pending`` queries): a request that would overflow
it is refused at once with
:class:`~cherche_faiss.exceptions.ServerOverloadedError`, which carries a
retry hint, rather than left to wait behind an ever longer queue.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._core.validation import check_positive_int
from ..exceptions import InvalidInputError, InvalidTypeError, ServerClosedError, ServerOverloadedError
from .counters import BatchCounters, retry_after_seconds
from .worker import SearchFunction, filter_key, run_batch

# The errors live in cherche_faiss.exceptions; they are re-exported here, where they were first defined.
__all__ = ["MicroBatcher", "ServerClosedError", "ServerOverloadedError", "PENDING_PER_BATCH"]

logger = logging.getLogger(__name__)

#: Default bound of the queue, in batches: ``max_pending = PENDING_PER_BATCH *
#: max_batch_size`` queries. Deep enough to absorb a burst, shallow enough that
#: a request at the back waits behind 16 batches at most, not seconds on end.
PENDING_PER_BATCH = 16


@dataclass(eq=False)
class _Request:
    q: Any  # as the client sent it: a string or a list of strings
    queries: list[str]
    k: int
    future: asyncio.Future
    enqueued: float  # event-loop time
    queued: bool = True  # its queries count against max_pending
    filter: Any = None  # given to the pipeline as filter= (None: no filter)
    filter_key: str | None = None  # requests with equal keys have equal filters (see filter_key)

    @property
    def single(self) -> bool:
        return isinstance(self.q, str)


class MicroBatcher:
    """Run ``search`` for concurrent requests in batches, in one worker thread.

    Parameters
    ----------
    search
        ``search(q, k)``: a pipeline's call (``lambda q, k: pipeline(q, k=k)``);
        a request with a filter is searched with ``search(q, k, filter=...)``.
    max_batch_size
        Most queries searched by one call (a request with more queries than
        this runs alone, in one call).
    max_wait_ms
        How long the oldest pending request waits for others to join its batch.
        ``0`` batches only what arrived while the worker was busy.
    batching
        When False, each request is searched alone (still in the worker thread).
    max_pending
        Most queries waiting in the queue (the batch being searched is not
        counted; a request of a list counts its length). :meth:`submit` refuses a
        request that would exceed it with :class:`ServerOverloadedError`. A
        request larger than the bound on its own is accepted when the queue is
        empty, so that it can run at all (it may wait for that under steady
        load: keep the bound above the largest request, ``max_queries`` for the
        server). None: ``PENDING_PER_BATCH * max_batch_size`` (1024 by default).
        There is no unbounded queue.

    Examples
    --------
    >>> import asyncio
    >>> calls = []
    >>> def search(q, k):
    ...     calls.append(q)
    ...     queries = [q] if isinstance(q, str) else q
    ...     hits = [[{"id": text, "similarity": 1.0}][:k] for text in queries]
    ...     return hits[0] if isinstance(q, str) else hits
    >>> async def main():
    ...     batcher = MicroBatcher(search, max_wait_ms=50)
    ...     await batcher.start()
    ...     answers = await asyncio.gather(batcher.search("a", k=1), batcher.search(["b", "c"], k=1))
    ...     await batcher.close()
    ...     return answers
    >>> asyncio.run(main())
    [[{'id': 'a', 'similarity': 1.0}], [[{'id': 'b', 'similarity': 1.0}], [{'id': 'c', 'similarity': 1.0}]]]
    >>> calls  # one call for both requests
    [['a', 'b', 'c']]
    """

    def __init__(
        self,
        search: SearchFunction,
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 2.0,
        batching: bool = True,
        max_pending: int | None = None,
    ) -> None:
        if not callable(search):
            raise InvalidTypeError(
                f"search must be callable as search(q, k), got {type(search).__name__}. Pass e.g. "
                "lambda q, k: pipeline(q, k=k)."
            )
        if (
            isinstance(max_wait_ms, bool)
            or not isinstance(max_wait_ms, (int, float))
            or not math.isfinite(max_wait_ms)
            or max_wait_ms < 0
        ):
            raise InvalidInputError(
                f"max_wait_ms must be a finite number of milliseconds >= 0, got {max_wait_ms!r}. "
                "Pass e.g. max_wait_ms=2 (0 batches only requests that arrive while a search runs)."
            )
        if not isinstance(batching, bool):
            raise InvalidTypeError(f"batching must be True or False, got {batching!r}.")
        self.search_function = search
        self.max_batch_size = check_positive_int(max_batch_size, "max_batch_size", allow_none=False)
        self.max_wait_ms = float(max_wait_ms)
        self.batching = batching
        if max_pending is None:
            max_pending = PENDING_PER_BATCH * self.max_batch_size
        elif isinstance(max_pending, bool) or not isinstance(max_pending, numbers.Integral) or max_pending <= 0:
            raise InvalidInputError(
                f"max_pending must be a positive number of queries, got {max_pending!r}. Pass e.g. "
                f"max_pending={PENDING_PER_BATCH * self.max_batch_size} ({PENDING_PER_BATCH} batches of "
                f"max_batch_size), or None for that default; the queue is never unbounded."
            )
        self.max_pending = int(max_pending)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._consumer: asyncio.Task | None = None
        self._pending: collections.deque[_Request] = collections.deque()
        self._pending_queries = 0  # queries of the requests in _pending not withdrawn: what max_pending bounds
        self._arrived: asyncio.Event | None = None
        self._starting: asyncio.Lock | None = None
        self._closed = False
        self._stats = BatchCounters()

    # -- life cycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the consumer and its worker thread are running."""
        return self._consumer is not None and not self._consumer.done()

    async def start(self) -> None:
        """Start the worker thread and the consumer on the running event loop.

        Called by the server at startup; :meth:`search` calls it too, so a
        batcher used without a startup hook starts on its first request.
        """
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.running:
                return
            self._closed = False
            self._pending = collections.deque()
            self._pending_queries = 0
            self._arrived = arrived = asyncio.Event()
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="cherche-faiss-search"
            )
            self._consumer = asyncio.get_running_loop().create_task(
                self._consume(arrived), name="cherche-faiss-batcher"
            )

    async def close(self, timeout: float = 30.0) -> None:
        """Stop: the batch running finishes, pending requests fail with :class:`ServerClosedError`.

        Waits at most ``timeout`` seconds for the running batch, then abandons it
        (its requests fail too) and shuts the worker thread down.
        """
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            if self._arrived is not None:
                self._arrived.set()  # wake the consumer so that it sees _closed
            finished, _ = await asyncio.wait({consumer}, timeout=timeout)
            if not finished:
                logger.error("a search was still running %.0f s after shutdown began; abandoning it", timeout)
                consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)  # its failure, if any, was logged
        self._fail_pending()
        self._starting = None  # a lock belongs to one event loop; a restart may run in another
        executor, self._executor = self._executor, None
        if executor is not None:
            # Joining the worker thread blocks: do it off the event loop.
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: executor.shutdown(wait=True, cancel_futures=True)
            )

    def _fail_pending(self) -> None:
        while self._pending:
            request = self._take()
            if not request.future.done():
                request.future.set_exception(ServerClosedError("the server is shutting down; retry on another one"))

    async def call_in_worker(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` in the search worker thread (between batches) and return its result.

        For work that must happen in the thread that runs the pipeline: thread
        settings (OpenMP's are per thread), a warm-up query.
        """
        if not self.running:
            await self.start()
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # -- requests -----------------------------------------------------------------------------
    def submit(self, q: Any, k: int, filter: Any = None) -> asyncio.Future:  # noqa: A002 - the pipelines' keyword
        """Queue a search and return the future of its hits (the batcher must be running).

        ``q`` is one query string or a list of them, already validated;
        ``filter`` (None: none) is handed to the pipeline as ``filter=``, and
        only requests with equal filters (see :func:`filter_key`) share a call.
        Cancelling the future withdraws the request if its batch has not started
        (and frees its place in the queue at once).

        Raises
        ------
        ServerClosedError
            The batcher is closed or not started.
        ServerOverloadedError
            Its queries would take the queue past ``max_pending``; nothing was
            queued. Its ``retry_after`` says how many seconds to wait.
        """
        if self._closed:
            raise ServerClosedError("the server is shutting down; retry on another one")
        if not self.running or self._arrived is None:
            raise ServerClosedError("the batcher is not running: await batcher.start() first")
        queries = [q] if isinstance(q, str) else list(q)
        # An empty queue takes any request: one larger than the bound could never run otherwise.
        if self._pending_queries and self._pending_queries + len(queries) > self.max_pending:
            self._stats.reject(len(queries))
            raise self._overloaded(len(queries))
        loop = asyncio.get_running_loop()
        request = _Request(
            q=q,
            queries=queries,
            k=k,
            future=loop.create_future(),
            enqueued=loop.time(),
            filter=filter,
            filter_key=filter_key(filter),
        )
        self._pending.append(request)
        self._pending_queries += len(queries)
        # A withdrawn request stays in the deque until the consumer reaches it; its place is freed now.
        request.future.add_done_callback(lambda _: self._release(request))
        self._stats.requests += 1
        self._stats.queries += len(queries)
        self._arrived.set()
        return request.future

    def retry_after(self) -> int:
        """Seconds a refused client should wait: ``ceil(pending queries / queries per second)`` over the
        latest batches' worker time (see :mod:`.counters`), clamped to [1, 60]; 1 before any batch has finished."""
        return retry_after_seconds(self._pending_queries, self._stats.queries_per_s())

    def _overloaded(self, size: int) -> ServerOverloadedError:
        seconds = self.retry_after()
        return ServerOverloadedError(
            f"the server is overloaded: {self._pending_queries} queries are waiting and this request's {size} "
            f"would take the queue past its bound of {self.max_pending} (max_pending). Retry in {seconds} s "
            "(the Retry-After header), or send fewer queries at once.",
            retry_after=seconds,
            pending=self._pending_queries,
            max_pending=self.max_pending,
        )

    def _take(self) -> _Request:
        """The oldest pending request, out of the queue and of its count."""
        request = self._pending.popleft()
        self._release(request)
        return request

    def _release(self, request: _Request) -> None:
        if request.queued:  # once only: it may be withdrawn, then taken
            request.queued = False
            self._pending_queries -= len(request.queries)

    async def search(self, q: Any, k: int, filter: Any = None) -> Any:  # noqa: A002 - the pipelines' keyword
        """Search ``q`` with ``k`` (and ``filter``, if not None) in the next batch and return its hits."""
        if not self.running and not self._closed:
            await self.start()
        return await self.submit(q, k, filter)

    # -- the consumer ---------------------------------------------------------------------------
    async def _consume(self, arrived: asyncio.Event) -> None:
        """Runs batches until closed; ``arrived`` is the event :meth:`start` made with it (``self._arrived``)."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._pending:
                arrived.clear()
                await arrived.wait()
                continue
            batch = await self._collect(arrived)
            batch = [request for request in batch if not self._withdrawn(request)]
            if not batch:
                continue
            started = time.perf_counter()
            try:
                outcomes, calls = await loop.run_in_executor(self._executor, run_batch, self.search_function, batch)
            except BaseException as error:  # the consumer was cancelled, or the worker is gone
                if not isinstance(error, asyncio.CancelledError):
                    logger.exception("the search worker failed; the batcher stops")
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(
                            error if isinstance(error, Exception) else ServerClosedError("the search was abandoned")
                        )
                raise
            self._stats.record(
                sum(len(request.queries) for request in batch), len(batch), calls, time.perf_counter() - started
            )
            for request, outcome in zip(batch, outcomes):
                if request.future.done():  # cancelled while its batch ran: nobody waits for it
                    self._stats.discarded += 1
                    continue
                if outcome.error is not None:
                    request.future.set_exception(outcome.error)
                else:
                    request.future.set_result(outcome.hits)
        self._fail_pending()

    def _withdrawn(self, request: _Request) -> bool:
        if request.future.done():
            self._stats.withdrawn += 1
            return True
        return False

    async def _collect(self, arrived: asyncio.Event) -> list[_Request]:
        """The oldest pending request and those that join it within ``max_wait_ms`` of its arrival.

        A request that already waited that long while the worker was busy
        leaves at once, with whatever is pending.
        """
        batch = [self._take()]
        if not self.batching:
            return batch
        size = len(batch[0].queries)
        loop = asyncio.get_running_loop()
        deadline = batch[0].enqueued + self.max_wait_ms / 1000
        while size < self.max_batch_size and not self._closed:
            if self._pending:
                following = self._pending[0]
                if size + len(following.queries) > self.max_batch_size:
                    break  # it starts the next batch
                batch.append(self._take())
                size += len(following.queries)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch

    # -- counters -------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters since this batcher was created (each is described in :meth:`.counters.BatchCounters.as_dict`)."""
        return self._stats.as_dict(pending=len(self._pending), pending_queries=self._pending_queries)

    def __repr__(self) -> str:
        return (
            f"MicroBatcher(batching={self.batching}, max_batch_size={self.max_batch_size}, "
            f"max_wait_ms={self.max_wait_ms}, max_pending={self.max_pending}, running={self.running})"
        )
