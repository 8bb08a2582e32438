"""The micro-batcher and the thread policy, without HTTP (no FastAPI needed)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cherche_faiss.exceptions import InvalidInputError, InvalidTypeError
from cherche_faiss.server.batching import MicroBatcher, ServerClosedError
from cherche_faiss.server.threads import ThreadPolicy, available_cores

from ..recording import CallRecorder


class FakePipeline(CallRecorder):
    """Answers like a Cherche pipeline: hit ids are ``query#rank``; records every call and its thread."""

    def __init__(self, fail_on: str | None = None, gate: threading.Event | None = None) -> None:
        super().__init__(fail_on=fail_on, gate=gate, gate_timeout=10)

    def answer(self, q, k, texts):
        hits = [[{"id": f"{query}#{rank}", "similarity": 1.0 / (rank + 1)} for rank in range(k)] for query in texts]
        return hits[0] if isinstance(q, str) else hits


def expected(q, k):
    return FakePipeline()(q, k)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


def test_requests_arriving_together_are_searched_in_one_call_and_split_back():
    pipeline = FakePipeline()

    async def main():
        batcher = MicroBatcher(pipeline, max_wait_ms=100)
        await batcher.start()
        requests = ["paris", ["lyon", "nantes"], "lille", ["metz"]]
        answers = await asyncio.gather(*(batcher.search(q, k=2) for q in requests))
        stats = batcher.stats()
        await batcher.close()
        return requests, answers, stats

    requests, answers, stats = run(main())
    assert pipeline.calls == [(["paris", "lyon", "nantes", "lille", "metz"], 2)]
    for q, answer in zip(requests, answers):
        assert answer == expected(q, 2)  # a string gets a list of hits, a list a list of lists
    assert stats["requests"] == 4 and stats["queries"] == 5
    assert stats["pipeline_calls"] == 1 and stats["batches"] == 1 and stats["largest_batch_queries"] == 5


def test_each_k_gets_its_own_call():
    pipeline = FakePipeline()

    async def main():
        batcher = MicroBatcher(pipeline, max_wait_ms=100)
        await batcher.start()
        answers = await asyncio.gather(
            batcher.search("a", k=1),
            batcher.search("b", k=3),
            batcher.search(["c", "d"], k=1),
            batcher.search("e", k=3),
        )
        await batcher.close()
        return answers

    answers = run(main())
    assert sorted(pipeline.calls, key=lambda call: call[1]) == [(["a", "c", "d"], 1), (["b", "e"], 3)]
    assert answers == [expected("a", 1), expected("b", 3), expected(["c", "d"], 1), expected("e", 3)]


def test_a_lone_request_is_searched_exactly_as_sent():
    pipeline = FakePipeline()

    async def main():
        batcher = MicroBatcher(pipeline, max_wait_ms=0)
        await batcher.start()
        answer = await batcher.search("alone", k=2)
        await batcher.close()
        return answer

    assert run(main()) == expected("alone", 2)
    assert pipeline.calls == [("alone", 2)]  # the string itself, not a list of one


def test_batches_never_exceed_max_batch_size():
    pipeline = FakePipeline()

    async def main():
        batcher = MicroBatcher(pipeline, max_batch_size=4, max_wait_ms=100)
        await batcher.start()
        requests = [f"q{i}" for i in range(10)] + [["big1", "big2", "big3", "big4", "big5", "big6"]]
        answers = await asyncio.gather(*(batcher.search(q, k=1) for q in requests))
        await batcher.close()
        return requests, answers

    requests, answers = run(main())
    sizes = [1 if isinstance(q, str) else len(q) for q, _ in pipeline.calls]
    # Ten one-query requests in batches of at most 4; the six-query request alone, in one call.
    assert sorted(sizes) == [2, 4, 4, 6]
    assert sum(sizes) == 16
    assert answers == [expected(q, 1) for q in requests]


def test_without_batching_every_request_is_searched_alone():
    pipeline = FakePipeline()

    async def main():
        batcher = MicroBatcher(pipeline, batching=False, max_wait_ms=100)
        await batcher.start()
        answers = await asyncio.gather(*(batcher.search(q, k=1) for q in ["a", ["b", "c"], "d"]))
        stats = batcher.stats()
        await batcher.close()
        return answers, stats

    answers, stats = run(main())
    assert pipeline.calls == [("a", 1), (["b", "c"], 1), ("d", 1)]
    assert answers == [expected("a", 1), expected(["b", "c"], 1), expected("d", 1)]
    assert stats["pipeline_calls"] == 3 and stats["largest_batch_queries"] == 2


def test_one_failing_request_does_not_fail_the_others_of_its_batch():
    pipeline = FakePipeline(fail_on="boom")

    async def main():
        batcher = MicroBatcher(pipeline, max_wait_ms=100)
        await batcher.start()
        answers = await asyncio.gather(
            batcher.search("fine", k=1),
            batcher.search("boom", k=1),
            batcher.search(["also", "fine"], k=1),
            return_exceptions=True,
        )
        await batcher.close()
        return answers

    good, bad, good_list = run(main())
    assert good == expected("fine", 1) and good_list == expected(["also", "fine"], 1)
    assert isinstance(bad, InvalidInputError) and "cannot search 'boom'" in str(bad)
    # The batched call failed, then each request ran alone.
    assert pipeline.calls[0] == (["fine", "boom", "also", "fine"], 1)
    assert sorted(map(str, pipeline.calls[1:])) == sorted(map(str, [("fine", 1), ("boom", 1), (["also", "fine"], 1)]))


def test_every_call_runs_in_one_worker_thread_never_concurrently():
    pipeline = FakePipeline()

    async def main():
        batcher = MicroBatcher(pipeline, max_batch_size=3, max_wait_ms=1)
        await batcher.start()
        for _ in range(5):
            await asyncio.gather(*(batcher.search(f"q{i}", k=1) for i in range(20)))
        await batcher.close()

    run(main())
    assert len(pipeline.calls) > 1
    assert pipeline.most_active == 1
    assert len(pipeline.threads) == 1 and next(iter(pipeline.threads)).startswith("cherche-faiss-search")
    assert threading.current_thread().name not in pipeline.threads


def test_a_cancelled_request_is_never_searched():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)

    async def main():
        batcher = MicroBatcher(pipeline, max_wait_ms=0)
        await batcher.start()
        first = batcher.submit("first", 1)
        while not pipeline.calls:  # the worker holds "first" at the gate
            await asyncio.sleep(0.005)
        withdrawn = batcher.submit("gone", 1)
        withdrawn.cancel()  # what the app does when the client disconnects
        gate.set()
        await first
        last = await batcher.search("last", k=1)
        stats = batcher.stats()
        await batcher.close()
        return last, stats

    last, stats = run(main())
    assert last == expected("last", 1)
    assert [q for q, _ in pipeline.calls] == ["first", "last"]
    assert stats["withdrawn"] == 1


def test_close_fails_pending_requests_and_refuses_new_ones():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)

    async def main():
        batcher = MicroBatcher(pipeline, max_wait_ms=0)
        await batcher.start()
        running = batcher.submit("running", 1)
        while not pipeline.calls:
            await asyncio.sleep(0.005)
        pending = batcher.submit("pending", 1)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.05)
        gate.set()  # the running batch finishes; the pending request must fail
        await closing
        with pytest.raises(ServerClosedError):
            batcher.submit("late", 1)
        return await running, await asyncio.gather(pending, return_exceptions=True), batcher.running

    answered, (pending,), still_running = run(main())
    assert answered == expected("running", 1)
    assert isinstance(pending, ServerClosedError) and "shutting down" in str(pending)
    assert not still_running
    assert not any(thread.name.startswith("cherche-faiss-search") for thread in threading.enumerate())


def test_a_closed_batcher_can_start_again_in_another_event_loop():
    pipeline = FakePipeline()
    batcher = MicroBatcher(pipeline, max_wait_ms=0)

    async def once(query):
        await batcher.start()
        answer = await batcher.search(query, k=1)
        await batcher.close()
        return answer

    assert run(once("first")) == expected("first", 1)
    assert run(once("second")) == expected("second", 1)


def test_call_in_worker_runs_in_the_search_thread():
    pipeline = FakePipeline()

    async def main():
        batcher = MicroBatcher(pipeline)
        await batcher.start()
        await batcher.search("q", k=1)
        name = await batcher.call_in_worker(lambda: threading.current_thread().name)
        await batcher.close()
        return name

    assert {run(main())} == pipeline.threads


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"max_batch_size": 0}, InvalidInputError, "max_batch_size must be a positive integer"),
        ({"max_wait_ms": -1}, InvalidInputError, "max_wait_ms must be a finite number"),
        ({"max_wait_ms": float("nan")}, InvalidInputError, "max_wait_ms must be a finite number"),
        ({"batching": "yes"}, InvalidTypeError, "batching must be True or False"),
    ],
)
def test_batcher_options_are_validated(options, error, message):
    with pytest.raises(error, match=message):
        MicroBatcher(FakePipeline(), **options)


def test_batcher_needs_a_callable():
    with pytest.raises(InvalidTypeError, match="search must be callable"):
        MicroBatcher("not a function")


def test_thread_policy_leaves_a_core_for_the_event_loop_and_applies_in_the_calling_thread():
    import faiss

    assert ThreadPolicy().threads == max(1, available_cores() - 1)
    before = faiss.omp_get_max_threads()
    policy = ThreadPolicy(threads=1)
    seen = {}

    def worker():
        seen["report"] = policy.apply()
        seen["faiss"] = faiss.omp_get_max_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["faiss"] == 1 and seen["report"]["faiss_omp"] == 1 and seen["report"]["threads"] == 1
    assert faiss.omp_get_max_threads() == before  # OpenMP settings are per thread: this one is untouched
    with pytest.raises(InvalidInputError, match="threads must be a positive integer"):
        ThreadPolicy(threads=0)
