"""The micro-batcher's bounded queue: at most ``max_pending`` queries wait, the rest are refused
with a retry hint (no FastAPI needed; the HTTP side is in test_server_overload.py).

The worker is held at a gate (the pipeline stand-in waits on an event), so the
queue fills deterministically: nothing leaves it until the test opens the gate.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from cherche_faiss.exceptions import CherFaissError, InvalidInputError, ServerOverloadedError
from cherche_faiss.server.batching import MicroBatcher
from cherche_faiss.server.counters import BatchCounters, retry_after_seconds

from .test_server_batching import FakePipeline, expected, run


async def _held(batcher, pipeline, q="running"):
    """Submit ``q`` and wait until the worker holds it at the pipeline's gate: the queue is then empty."""
    future = batcher.submit(q, 1)
    while (q, 1) not in pipeline.calls:
        await asyncio.sleep(0.005)
    return future


def test_the_queue_takes_exactly_max_pending_queries_then_refuses_until_it_drains():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)

    async def main():
        batcher = MicroBatcher(pipeline, max_batch_size=2, max_pending=4, max_wait_ms=0)
        await batcher.start()
        running = await _held(batcher, pipeline)  # the batch running is not counted
        queued = [batcher.submit(f"q{i}", 1) for i in range(4)]
        with pytest.raises(ServerOverloadedError) as refused:
            batcher.submit("one too many", 1)
        full = batcher.stats()
        gate.set()
        answers = await asyncio.gather(running, *queued)
        again = await batcher.search("after the drain", k=1)
        stats = batcher.stats()
        await batcher.close()
        return refused.value, full, answers, again, stats

    refused, full, answers, again, stats = run(main())
    assert isinstance(refused, CherFaissError) and isinstance(refused, RuntimeError)
    assert refused.retry_after >= 1 and isinstance(refused.retry_after, int)
    assert (refused.pending, refused.max_pending) == (4, 4)
    assert "overloaded" in str(refused) and "max_pending" in str(refused) and "Retry in" in str(refused)
    assert full["pending_queries"] == 4 and full["rejected_overloaded"] == 1 and full["requests"] == 5
    assert answers == [expected("running", 1)] + [expected(f"q{i}", 1) for i in range(4)]
    assert again == expected("after the drain", 1)
    assert "one too many" not in [q for q, _ in pipeline.calls]  # refused means never searched
    assert stats["pending_queries"] == 0 and stats["rejected_overloaded_queries"] == 1


def test_a_list_request_counts_its_queries_against_the_bound():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)

    async def main():
        batcher = MicroBatcher(pipeline, max_batch_size=2, max_pending=4, max_wait_ms=0)
        await batcher.start()
        running = await _held(batcher, pipeline)
        three = batcher.submit(["a", "b", "c"], 1)
        refusals = []
        for q in (["d", "e"], ["d", "e", "f", "g"]):  # 3 + 2 and 3 + 4 exceed 4
            with pytest.raises(ServerOverloadedError) as refused:
                batcher.submit(q, 1)
            refusals.append(refused.value)
        one = batcher.submit(["d"], 1)  # 3 + 1 fits
        with pytest.raises(ServerOverloadedError):
            batcher.submit("e", 1)
        gate.set()
        answers = await asyncio.gather(running, three, one)
        await batcher.close()
        return refusals, answers

    refusals, answers = run(main())
    assert [error.pending for error in refusals] == [3, 3]
    assert answers[1] == expected(["a", "b", "c"], 1) and answers[2] == expected(["d"], 1)


def test_a_request_larger_than_the_bound_is_accepted_only_by_an_empty_queue():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)

    async def main():
        batcher = MicroBatcher(pipeline, max_batch_size=2, max_pending=2, max_wait_ms=0)
        await batcher.start()
        running = await _held(batcher, pipeline)
        big = batcher.submit(["a", "b", "c"], 1)  # 3 > 2, but it could never fit otherwise
        with pytest.raises(ServerOverloadedError):
            batcher.submit("x", 1)
        gate.set()
        answers = await asyncio.gather(running, big)
        gate.clear()
        running = await _held(batcher, pipeline, "running again")
        small = batcher.submit("y", 1)
        with pytest.raises(ServerOverloadedError):  # not alone any more: refused like any other
            batcher.submit(["a", "b", "c"], 1)
        gate.set()
        await asyncio.gather(running, small)
        await batcher.close()
        return answers

    assert run(main())[1] == expected(["a", "b", "c"], 1)


def test_a_withdrawn_request_frees_its_place_at_once():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)

    async def main():
        batcher = MicroBatcher(pipeline, max_batch_size=2, max_pending=2, max_wait_ms=0)
        await batcher.start()
        running = await _held(batcher, pipeline)
        kept = batcher.submit("kept", 1)
        gone = batcher.submit("gone", 1)
        gone.cancel()  # its client went away
        await asyncio.sleep(0)  # the future's callbacks run on the next loop iteration
        late = batcher.submit("late", 1)  # would be refused if "gone" still counted
        gate.set()
        answers = await asyncio.gather(running, kept, late)
        await batcher.close()
        return answers

    assert run(main())[2] == expected("late", 1)
    assert "gone" not in [q for q, _ in pipeline.calls]


def test_the_retry_hint_is_the_queue_over_the_measured_throughput():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)

    async def main():
        batcher = MicroBatcher(pipeline, max_batch_size=1, max_pending=8, max_wait_ms=0)
        await batcher.start()
        before = batcher.retry_after()  # nothing measured yet: the least wait
        slow = await _held(batcher, pipeline, "slow")
        await asyncio.sleep(0.3)  # one query in >= 0.3 s: at most 3.3 queries per second
        gate.set()
        await slow
        gate.clear()
        running = await _held(batcher, pipeline, "running")
        queued = [batcher.submit(f"q{i}", 1) for i in range(8)]
        with pytest.raises(ServerOverloadedError) as refused:
            batcher.submit("refused", 1)
        rate = batcher.stats()["recent_queries_per_s"]
        gate.set()
        await asyncio.gather(running, *queued)
        await batcher.close()
        return before, refused.value.retry_after, rate

    before, hint, rate = run(main())
    assert before == 1
    assert 0 < rate <= 1 / 0.3
    assert 3 <= hint <= 60 and hint == retry_after_seconds(8, rate)  # ceil(8 / 3.3) = 3 at the very least


def test_retry_after_seconds_is_clamped_to_1_to_60():
    assert retry_after_seconds(0, 50.0) == 1 and retry_after_seconds(10, None) == 1
    assert retry_after_seconds(250, 100.0) == 3
    assert retry_after_seconds(1_000_000, 0.5) == 60
    counters = BatchCounters()
    counters.record(queries=10, requests=4, calls=1, seconds=2.0)
    counters.record(queries=30, requests=4, calls=1, seconds=2.0)
    assert counters.queries_per_s() == 10.0  # over the recent batches' worker time, not per batch


def test_max_pending_defaults_to_16_batches_and_is_validated():
    assert MicroBatcher(FakePipeline()).max_pending == 16 * 64
    assert MicroBatcher(FakePipeline(), max_batch_size=8).max_pending == 128
    assert MicroBatcher(FakePipeline(), max_pending=3).max_pending == 3
    for bad in (0, -1, 2.5, True, "10", float("inf")):
        with pytest.raises(InvalidInputError, match="max_pending must be a positive number of queries"):
            MicroBatcher(FakePipeline(), max_pending=bad)


def test_the_server_errors_live_in_the_exceptions_module_and_stay_importable_from_the_server():
    import cherche_faiss.exceptions as exceptions
    import cherche_faiss.server as server
    import cherche_faiss.server.batching as batching

    assert server.ServerClosedError is batching.ServerClosedError is exceptions.ServerClosedError
    assert server.ServerOverloadedError is batching.ServerOverloadedError is exceptions.ServerOverloadedError
    for error in (exceptions.ServerClosedError, exceptions.ServerOverloadedError):
        assert issubclass(error, exceptions.CherFaissError) and issubclass(error, RuntimeError)
