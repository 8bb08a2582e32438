"""The HTTP server under overload, for real (uvicorn on 127.0.0.1, httpx): a full queue answers 503 with
``Retry-After`` at once, nothing else fails or hangs, ``/health`` keeps answering, and the server recovers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("fastapi", reason='the server tests need pip install "cherche-faiss[server]"')
httpx = pytest.importorskip("httpx")

from cherche_faiss.exceptions import InvalidInputError  # noqa: E402
from cherche_faiss.server import create_app  # noqa: E402

from ..recording import CallRecorder  # noqa: E402
from ..serving import post_all, served  # noqa: E402

BURST = 40


class SlowPipeline(CallRecorder):
    """Answers ``query#rank`` hits after ``delay`` seconds per call (a model slower than the clients)."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        super().__init__(gate=gate)
        self.delay = delay

    def record(self):
        time.sleep(self.delay)

    def answer(self, q, k, texts):
        hits = [[{"id": f"{query}#{rank}", "similarity": 1.0 / (rank + 1)} for rank in range(k)] for query in texts]
        return hits[0] if isinstance(q, str) else hits


def expected(q, k):
    return SlowPipeline()(q, k)


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


def test_a_full_queue_answers_503_with_retry_after_while_health_answers_at_once():
    gate = threading.Event()
    pipeline = SlowPipeline(gate=gate)
    app = create_app(pipeline, max_pending=4, max_batch_size=2, max_wait_ms=0, warmup=False)
    batcher = app.state.server.batcher  # read directly: /info waits for the worker, held at the gate
    answers = {}

    def post(q):
        answers[q] = httpx.post(f"{url}/search", json={"q": q, "k": 1}, timeout=30)

    with served(app) as url:
        clients = [threading.Thread(target=post, args=("held",))]
        clients[0].start()
        _wait_for(lambda: pipeline.calls)  # the worker holds "held": the queue is empty
        for position in range(4):
            clients.append(threading.Thread(target=post, args=(f"queued {position}",)))
            clients[-1].start()
        _wait_for(lambda: batcher.stats()["pending_queries"] == 4)  # full
        started = time.perf_counter()
        refused = httpx.post(f"{url}/search", json={"q": "one too many"}, timeout=5)
        refused_s = time.perf_counter() - started
        started = time.perf_counter()
        health = httpx.get(f"{url}/health", timeout=5)
        health_s = time.perf_counter() - started
        gate.set()
        for client in clients:
            client.join(timeout=30)
        after = httpx.post(f"{url}/search", json={"q": "after", "k": 2}, timeout=30)
        info = httpx.get(f"{url}/info", timeout=30).json()
    assert refused.status_code == 503 and refused_s < 2  # at once, not after the queue
    assert refused.headers["content-type"] == "application/json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    detail = refused.json()["detail"]
    assert "overloaded" in detail and f"Retry in {refused.headers['retry-after']} s" in detail
    assert health.status_code == 200 and health.json()["status"] == "ok" and health_s < 2
    assert {q: response.status_code for q, response in answers.items()} == {
        "held": 200,
        **{f"queued {position}": 200 for position in range(4)},
    }
    assert after.status_code == 200 and after.json()["hits"] == expected("after", 2)
    assert "one too many" not in [q for q, _ in pipeline.calls]
    assert info["batching"]["max_pending"] == 4
    stats = info["stats"]
    assert stats["rejected_overloaded"] == 1 and stats["rejected_overloaded_queries"] == 1
    assert stats["search_responses"] == {"200": 6, "503": 1}
    assert stats["requests"] == 6 and stats["pending_queries"] == 0


def test_a_burst_gets_200s_and_503s_with_retry_after_only_and_the_server_recovers():
    """40 clients at once against a queue of 4 queries and a pipeline that takes 0.2 s a call."""
    pipeline = SlowPipeline(delay=0.2)
    bodies = [{"q": f"query {position}", "k": 2} for position in range(BURST)]
    app = create_app(pipeline, max_pending=4, max_batch_size=2, warmup=False)

    async def burst_and_health(url):
        done = asyncio.Event()
        health = []  # (status, seconds, whether the burst was still running when it answered)

        async def poll_health():
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                while not done.is_set():
                    started = time.perf_counter()
                    response = await client.get("/health")
                    health.append((response.status_code, time.perf_counter() - started, not done.is_set()))
                    await asyncio.sleep(0.02)

        async def burst():
            try:
                return await post_all(url, bodies, concurrency=BURST)
            finally:
                done.set()

        responses, _ = await asyncio.gather(burst(), poll_health())
        return responses, health

    with served(app) as url:
        responses, health = asyncio.run(asyncio.wait_for(burst_and_health(url), timeout=60))  # never a hang
        after = httpx.post(f"{url}/search", json={"q": "after the burst", "k": 2}, timeout=30)
        info = httpx.get(f"{url}/info", timeout=30).json()
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 503}, statuses  # no other 5xx, no 4xx
    ok, refused = statuses.count(200), statuses.count(503)
    assert ok >= 1 and refused >= 1 and ok + refused == BURST
    for body, response in zip(bodies, responses):
        if response.status_code == 200:
            assert response.json()["hits"] == expected(body["q"], 2)
        else:
            assert 1 <= int(response.headers["retry-after"]) <= 60
            assert "overloaded" in response.json()["detail"]
    assert after.status_code == 200 and after.json()["hits"] == expected("after the burst", 2)
    assert health and all(status == 200 and seconds < 2 for status, seconds, _ in health)
    assert any(during for _, _, during in health)  # answered while the burst was running
    searched = [text for q, _ in pipeline.calls for text in ([q] if isinstance(q, str) else q)]
    assert len(searched) == ok + 1  # refused requests were never searched
    stats = info["stats"]
    assert stats["rejected_overloaded"] == refused and stats["search_responses"] == {"200": ok + 1, "503": refused}


def test_the_openapi_schema_describes_503_for_shutdown_and_overload():
    schema = create_app(SlowPipeline(), warmup=False).openapi()
    search = schema["paths"]["/search"]["post"]["responses"]["503"]
    assert "shutting down" in search["description"] and "overloaded" in search["description"]
    assert "Retry-After" in search["headers"]
    health = schema["paths"]["/health"]["get"]["responses"]["503"]
    assert "shutting down" in health["description"] and "overloaded" not in health["description"]


def test_create_app_passes_max_pending_on_and_validates_it():
    assert create_app(SlowPipeline(), warmup=False).state.server.batcher.max_pending == 16 * 64
    assert create_app(SlowPipeline(), max_pending=7, warmup=False).state.server.batcher.max_pending == 7
    with pytest.raises(InvalidInputError, match="max_pending must be a positive number of queries"):
        create_app(SlowPipeline(), max_pending=0)
