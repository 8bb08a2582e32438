"""The HTTP server, for real: uvicorn on 127.0.0.1, called with httpx.

The pipeline is the towns example with the hashing encoder (TfIdf k=30 +
rank.Encoder k=10 + documents); the server serves a pickled copy of it, so
that its answers can be compared with the original's, called in this
process while the server's worker thread runs the copy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import socket
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi", reason='the server tests need pip install "cherche-faiss[server]"')
httpx = pytest.importorskip("httpx")

from cherche_faiss import data, rank, retrieve  # noqa: E402
from cherche_faiss.encoders import HashingEncoder  # noqa: E402
from cherche_faiss.exceptions import InvalidInputError, InvalidTypeError  # noqa: E402
from cherche_faiss.server import create_app  # noqa: E402

from ..helpers import assert_same_hits  # noqa: E402
from ..recording import CallRecorder  # noqa: E402
from ..serving import post_all, served  # noqa: E402

KEY = "id"
ON = ["title", "article"]


def build(documents):
    retriever = retrieve.TfIdf(key=KEY, on=ON, documents=documents, k=30)
    ranker = rank.Encoder(key=KEY, on=ON, encoder=HashingEncoder(), k=10)
    return (retriever + ranker + documents).add(documents, show_progress=False)


@pytest.fixture(scope="module")
def towns():
    return data.load_towns()


@pytest.fixture(scope="module")
def pipeline(towns):
    return build(towns)


@pytest.fixture(scope="module")
def queries(towns):
    """Distinct queries: the first words of each article."""
    found = (" ".join(document["article"].split()[:5]) for document in towns)
    return list(dict.fromkeys(found))


def copy_of(pipeline):
    return pickle.loads(pickle.dumps(pipeline))


@pytest.fixture(scope="module")
def base_url(pipeline):
    with served(create_app(copy_of(pipeline))) as url:
        yield url


@pytest.fixture
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


class Probe(CallRecorder):
    """Wraps a pipeline: counts calls, their sizes and threads (and FAISS' threads there), how many ran at once."""

    refusal = "the probe refuses"

    def __init__(self, pipeline, fail_on=None, crash_on=None, gate=None):
        super().__init__(fail_on=fail_on, gate=gate)
        self.pipeline = pipeline
        self.crash_on = crash_on
        self.faiss_threads = set()

    def record(self):
        import faiss

        self.faiss_threads.add(faiss.omp_get_max_threads())

    def answer(self, q, k, texts):
        if self.crash_on is not None and self.crash_on in texts:
            raise RuntimeError("a bug in the pipeline")
        return self.pipeline(q, k=k)


# -- answers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 10])
def test_a_query_string_gets_the_pipelines_hits(client, pipeline, k):
    response = client.post("/search", json={"q": "bordeaux wine", "k": k})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    hits = response.json()["hits"]
    assert_same_hits(hits, pipeline("bordeaux wine", k=k))
    assert len(hits) == k and hits[0]["title"] == "Bordeaux"  # documents mapped
    assert set(hits[0]) == {"id", "title", "url", "article", "similarity"}


def test_a_list_of_queries_gets_one_list_of_hits_per_query(client, pipeline, queries):
    batch = queries[:7]
    response = client.post("/search", json={"q": batch, "k": 4})
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert len(hits) == 7 and all(len(one) == 4 for one in hits)
    assert_same_hits(hits, pipeline(batch, k=4))


def test_k_defaults_to_10_and_only_limits_the_final_output(client, pipeline):
    default = client.post("/search", json={"q": "football club"}).json()["hits"]
    assert_same_hits(default, pipeline("football club", k=10))
    assert len(default) == 10
    # The ranker keeps 10: a larger k returns what the pipeline returns, no more.
    large = client.post("/search", json={"q": "football club", "k": 50}).json()["hits"]
    assert_same_hits(large, pipeline("football club", k=50))
    assert len(large) == 10


def test_a_single_retriever_can_be_served(towns):
    retriever = retrieve.TfIdf(key=KEY, on=ON, documents=towns, k=5)
    with served(create_app(copy_of(retriever))) as url:
        hits = httpx.post(f"{url}/search", json={"q": "aerospace industry", "k": 3}).json()["hits"]
    assert hits == retriever("aerospace industry", k=3)
    assert set(hits[0]) == {"id", "similarity"}  # no documents to map


# -- the other endpoints ------------------------------------------------------------------------
def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["version"] and body["uptime_s"] >= 0


def test_info_describes_the_pipeline_indexes_devices_versions_and_settings(client, towns):
    client.post("/search", json={"q": "metro"})
    info = client.get("/info").json()
    stages = info["components"]["models"]
    assert info["components"]["class"] == "Pipeline"
    assert [stage["class"] for stage in stages] == ["TfIdf", "Encoder", "DocumentMap"]
    assert [stage["documents"] for stage in stages] == [len(towns)] * 3
    assert stages[0]["params"]["k"] == 30 and stages[1]["params"]["k"] == 10
    assert stages[1]["encoder"] == {"class": "HashingEncoder", "dimension": 256}
    assert info["corpus_size"] == len(towns)
    assert info["indexes"] == [
        {
            "component": "pipeline.models[1].index",
            "factory": "Flat",
            "size": len(towns),
            "dimension": 256,
            "metric": "ip",
            "normalize": True,
            "device": "cpu",
            "search_params": {},
        }
    ]
    assert info["devices"] == ["cpu"]
    versions = info["versions"]
    assert versions["cherche_faiss"] and versions["faiss"] and versions["numpy"] and versions["python"]
    assert info["batching"] == {"enabled": True, "max_batch_size": 64, "max_wait_ms": 2.0, "max_pending": 1024}
    assert info["limits"]["max_k"] == 1000 and info["limits"]["max_queries"] == 64
    assert info["threads"]["faiss_omp"] == info["threads"]["threads"] >= 1
    assert info["stats"]["requests"] >= 1 and info["stats"]["pipeline_calls"] >= 1
    assert info["auth"]["api_key_required"] is False


def test_openapi_schema_and_docs(client):
    schema = client.get("/openapi.json").json()
    assert {"/search", "/health", "/info"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["SearchRequest"]
    assert request["required"] == ["q"] and request["additionalProperties"] is False
    string, array = request["properties"]["q"]["anyOf"]
    assert string["maxLength"] == 2048 and array["maxItems"] == 64
    assert request["properties"]["k"]["maximum"] == 1000
    assert "422" in schema["paths"]["/search"]["post"]["responses"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# -- bad requests -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"q": ""}, "q", "q is an empty string"),
        ({"q": "   "}, "q", "q is blank"),
        ({"q": []}, "q", "q is an empty list"),
        ({"q": ["bordeaux", ""]}, "q", "q[1] is an empty string"),
        ({"q": 42}, "q", "q must be a query string or a list of query strings, got the number 42"),
        ({"q": None}, "q", "got null"),
        ({"q": {"text": "x"}}, "q", "got an object"),
        ({"q": ["bordeaux", 3]}, "q", "q[1] must be a string, got the number 3"),
        ({"q": ["x"] * 65}, "q", "q holds 65 queries, more than the 64 one request may hold"),
        ({"q": "x" * 2049}, "q", "q is 2,049 characters long, more than the 2,048 allowed"),
        ({"q": ["ok", "x" * 3000]}, "q", "q[1] is 3,000 characters long"),
        ({"k": 3}, "q", "q is required"),
        ({"q": "wine", "k": 0}, "k", "k must be from 1 to 1000 (max_k), got 0"),
        ({"q": "wine", "k": -5}, "k", "got -5"),
        ({"q": "wine", "k": 1001}, "k", "k must be from 1 to 1000 (max_k), got 1001"),
        ({"q": "wine", "k": "10"}, "k", "k must be an integer from 1 to 1000, got a string"),
        ({"q": "wine", "k": 2.5}, "k", "got the number 2.5"),
        ({"q": "wine", "k": True}, "k", "got the boolean true"),
        ({"q": "wine", "k": None}, "k", "got null"),
        ({"q": "wine", "top_k": 3}, "top_k", "unknown field 'top_k': a search takes q, k and filter only"),
    ],
)
def test_bad_requests_get_a_422_naming_the_problem(client, body, field, message):
    response = client.post("/search", json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert message in answer["detail"]
    assert field in [error["field"] for error in answer["errors"]]
    assert "pydantic" not in response.text  # no links to pydantic's docs: the message says it all


@pytest.mark.parametrize(
    "content, headers, message",
    [
        (b'{"q": "wine",', {"content-type": "application/json"}, "the request body is not valid JSON"),
        (b'["wine"]', {"content-type": "application/json"}, "the request body must be a JSON object"),
        (b"", {"content-type": "application/json"}, "the request body is empty"),
        (b'{"q": "wine"}', {"content-type": "text/plain"}, "with the header content-type: application/json"),
    ],
)
def test_bodies_that_are_not_a_json_object_get_a_422_that_says_so(client, content, headers, message):
    response = client.post("/search", content=content, headers=headers)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_bad_requests_never_reach_the_pipeline(pipeline):
    probe = Probe(copy_of(pipeline))
    with served(create_app(probe, warmup=False)) as url:
        for body in ({"q": ""}, {"q": [1]}, {"q": "x", "k": 0}, {"q": "x" * 5000}):
            assert httpx.post(f"{url}/search", json=body).status_code == 422
    assert probe.calls == []


def test_a_library_error_is_a_400_with_its_message_and_fails_no_other_request(pipeline, queries):
    probe = Probe(copy_of(pipeline), fail_on="boom", crash_on="crash")
    bodies = [{"q": query, "k": 5} for query in queries[:20]]
    bodies[7] = {"q": "boom", "k": 5}
    bodies[13] = {"q": "crash", "k": 5}
    with served(create_app(probe, max_wait_ms=30, warmup=False)) as url:
        responses = asyncio.run(post_all(url, bodies, concurrency=20))
    assert responses[7].status_code == 400
    assert responses[7].json() == {"detail": "the probe refuses 'boom'"}
    assert responses[13].status_code == 500  # a bug, not bad input: logged, details kept off the wire
    assert responses[13].json() == {"detail": "the search failed on the server; its log says why."}
    for position, (body, response) in enumerate(zip(bodies, responses)):
        if position not in (7, 13):
            assert response.status_code == 200
            assert_same_hits(response.json()["hits"], pipeline(body["q"], k=5))
    assert any(isinstance(q, list) and "boom" in q for q, _ in probe.calls)  # they were batched together


def test_an_unfilled_pipeline_answers_400_not_500(towns):
    empty = retrieve.TfIdf(key=KEY, on=ON)
    with served(create_app(empty, warmup=False)) as url:
        response = httpx.post(f"{url}/search", json={"q": "wine"})
    assert response.status_code == 400
    assert "holds no document yet" in response.json()["detail"]


def test_warm_up_failure_stops_the_server_from_starting():
    with pytest.raises(RuntimeError, match="failed to start"):
        with served(create_app(retrieve.TfIdf(key=KEY, on=ON))):
            pass


# -- security ------------------------------------------------------------------------------------
def test_api_key(pipeline, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-key-for-tests"
    with served(create_app(copy_of(pipeline), api_key=secret)) as url:
        missing = httpx.post(f"{url}/search", json={"q": "wine"})
        wrong = httpx.post(f"{url}/search", json={"q": "wine"}, headers={"X-API-Key": "guess"})
        invalid_without_key = httpx.post(
            f"{url}/search", content=b"{not json", headers={"content-type": "application/json"}
        )
        info_without_key = httpx.get(f"{url}/info")
        health = httpx.get(f"{url}/health")
        good = httpx.post(f"{url}/search", json={"q": "wine", "k": 2}, headers={"X-API-Key": secret})
        info = httpx.get(f"{url}/info", headers={"x-api-key": secret})
        schema = httpx.get(f"{url}/openapi.json").json()
    for response in (missing, wrong, invalid_without_key, info_without_key):
        assert response.status_code == 401
        assert response.json()["detail"] == "missing or wrong API key: send the server's key in the X-API-Key header."
    assert health.status_code == 200  # open, for load balancers
    assert good.status_code == 200
    assert_same_hits(good.json()["hits"], pipeline("wine", k=2))
    assert info.status_code == 200 and info.json()["auth"]["api_key_required"] is True
    assert secret not in info.text and secret not in caplog.text
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]


def test_a_body_declared_too_large_is_refused_before_it_is_read(pipeline):
    with served(create_app(copy_of(pipeline), max_body_bytes=1024)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            # Announce 100 MB and send none of it: the answer must come anyway.
            sock.sendall(
                b"POST /search HTTP/1.1\r\nHost: test\r\ncontent-type: application/json\r\n"
                b"content-length: 100000000\r\n\r\n"
            )
            answer = _read_response(sock)
        small = httpx.post(f"{url}/search", json={"q": "wine"})
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"larger than the 1,024 bytes this server accepts" in answer
    assert small.status_code == 200


def test_a_streamed_body_too_large_is_refused(pipeline):
    def chunks():
        yield b'{"q": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}'

    with served(create_app(copy_of(pipeline), max_body_bytes=1024)) as url:
        response = httpx.post(f"{url}/search", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers  # chunked: only counting can catch it
    assert response.status_code == 413
    assert "more than 1,024 bytes" in response.json()["detail"]


def _read_response(sock):
    received = b""
    while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"api_key": ""}, InvalidInputError, "api_key is empty or blank"),
        ({"api_key": 123}, InvalidTypeError, "api_key must be a string"),
        ({"max_k": 0}, InvalidInputError, "max_k must be a positive integer"),
        ({"max_queries": 2.5}, InvalidInputError, "max_queries must be a positive integer"),
        ({"max_query_length": -1}, InvalidInputError, "max_query_length must be a positive integer"),
        ({"max_body_bytes": 0}, InvalidInputError, "max_body_bytes must be a positive integer"),
        ({"max_batch_size": 0}, InvalidInputError, "max_batch_size must be a positive integer"),
        ({"max_wait_ms": -2}, InvalidInputError, "max_wait_ms must be a finite number"),
        ({"threads": 0}, InvalidInputError, "threads must be a positive integer"),
        ({"warmup": "no"}, InvalidTypeError, "warmup must be True or False"),
        ({"freeze_gc": 1}, InvalidTypeError, "freeze_gc must be True or False"),
    ],
)
def test_create_app_validates_its_arguments(pipeline, options, error, message):
    with pytest.raises(error, match=message):
        create_app(pipeline, **options)


def test_create_app_names_the_extra_when_fastapi_is_missing(pipeline, monkeypatch):
    from cherche_faiss.exceptions import MissingDependencyError

    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an uninstalled module looks like to import
    with pytest.raises(MissingDependencyError, match=r'needs fastapi.*pip install "cherche-faiss\[server\]"'):
        create_app(pipeline)


def test_create_app_refuses_what_cannot_be_served(towns):
    with pytest.raises(InvalidTypeError, match="pipeline must be a retriever, a pipeline or a callable"):
        create_app({"not": "a pipeline"})
    ranker = rank.Encoder(key=KEY, on=ON, encoder=HashingEncoder())
    with pytest.raises(InvalidInputError, match="ranks candidates given to it"):
        create_app(ranker)


# -- concurrency and batching --------------------------------------------------------------------
def test_concurrent_requests_each_get_their_own_answer_and_are_batched(pipeline, queries):
    """Different queries, list and string requests and four values of k, all at once:
    any mix-up between requests or between k groups gives someone a wrong answer."""
    ks = [1, 2, 5, 10]
    bodies = []
    for position in range(240):
        k = ks[position % len(ks)]
        if position % 5 == 0:
            bodies.append({"q": [queries[(position + step) % len(queries)] for step in range(3)], "k": k})
        else:
            bodies.append({"q": queries[position % len(queries)], "k": k})
    expected = [pipeline(body["q"], k=body["k"]) for body in bodies]
    probe = Probe(copy_of(pipeline))
    with served(create_app(probe, max_wait_ms=10, threads=1, warmup=False)) as url:
        responses = asyncio.run(post_all(url, bodies, concurrency=32))
        stats = httpx.get(f"{url}/info").json()["stats"]
    for response, answer in zip(responses, expected):
        assert response.status_code == 200, response.text
        assert_same_hits(response.json()["hits"], answer)
    assert stats["requests"] == len(bodies)
    assert stats["pipeline_calls"] == len(probe.calls) < len(bodies)  # batched
    assert stats["largest_batch_queries"] > 1 and stats["mean_batch_requests"] > 1
    assert any(isinstance(q, list) and len(q) > 3 for q, _ in probe.calls)
    # Never two calls at once, all in the one worker thread, with the thread policy applied there.
    assert probe.most_active == 1
    assert len(probe.threads) == 1 and next(iter(probe.threads)).startswith("cherche-faiss-search")
    assert probe.faiss_threads == {1}


def test_without_batching_each_request_is_one_call(pipeline, queries):
    bodies = [{"q": query, "k": 3} for query in queries[:40]]
    probe = Probe(copy_of(pipeline))
    with served(create_app(probe, batching=False, warmup=False)) as url:
        responses = asyncio.run(post_all(url, bodies, concurrency=16))
        info = httpx.get(f"{url}/info").json()
    assert [response.status_code for response in responses] == [200] * len(bodies)
    for body, response in zip(bodies, responses):
        assert_same_hits(response.json()["hits"], pipeline(body["q"], k=3))
    assert info["batching"]["enabled"] is False
    assert info["stats"]["pipeline_calls"] == len(bodies) == len(probe.calls)
    assert all(isinstance(q, str) for q, _ in probe.calls)
    assert probe.most_active == 1


def test_the_event_loop_answers_while_a_search_runs(pipeline):
    gate = threading.Event()
    probe = Probe(copy_of(pipeline), gate=gate)
    with served(create_app(probe, warmup=False)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            blocked = threading.Thread(target=client.post, args=("/search",), kwargs={"json": {"q": "wine"}})
            blocked.start()
            _wait_for(lambda: probe.calls)
            started = time.perf_counter()
            health = httpx.get(f"{url}/health", timeout=5)
            seconds = time.perf_counter() - started
            gate.set()
            blocked.join(timeout=30)
    assert health.status_code == 200
    assert seconds < 2  # not stuck behind the search held at the gate


def test_a_request_whose_client_disconnects_is_not_searched(pipeline):
    gate = threading.Event()
    probe = Probe(copy_of(pipeline), gate=gate)
    app = create_app(probe, warmup=False, max_wait_ms=0)
    server = app.state.server  # read directly: /info would wait for the worker, held at the gate
    with served(app) as url:
        port = int(url.rsplit(":", 1)[1])
        holder = threading.Thread(
            target=httpx.post, args=(f"{url}/search",), kwargs={"json": {"q": "held"}, "timeout": 30}
        )
        holder.start()
        _wait_for(lambda: probe.calls)  # the worker is busy with "held"
        body = json.dumps({"q": "abandoned"}).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"POST /search HTTP/1.1\r\nHost: test\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            _wait_for(lambda: server.batcher.stats()["pending"] == 1)
        _wait_for(lambda: server.disconnected == 1)  # the socket is closed: the request is withdrawn
        gate.set()
        holder.join(timeout=30)
        after = httpx.post(f"{url}/search", json={"q": "after"}).json()["hits"]
        stats = httpx.get(f"{url}/info").json()["stats"]
    assert [q for q, _ in probe.calls] == ["held", "after"]
    assert stats["withdrawn"] == 1 and stats["disconnected"] == 1
    assert_same_hits(after, pipeline("after", k=10))


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


def test_the_worker_thread_stops_with_the_server(pipeline):
    before = set(threading.enumerate())
    with served(create_app(copy_of(pipeline))) as url:
        assert httpx.post(f"{url}/search", json={"q": "wine"}).status_code == 200
        workers = [
            thread for thread in set(threading.enumerate()) - before if thread.name.startswith("cherche-faiss-search")
        ]
        assert len(workers) == 1
    assert not workers[0].is_alive()


def test_an_app_mounted_without_its_lifespan_starts_on_the_first_request(pipeline):
    """An application embedded where nothing runs its startup (here httpx's ASGI transport)."""
    app = create_app(copy_of(pipeline), threads=1)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://embedded") as client:
            health = await client.get("/health")
            found = await client.post("/search", json={"q": "bordeaux wine", "k": 3})
            info = (await client.get("/info")).json()
        await app.state.server.stop()
        return health, found, info

    health, found, info = asyncio.run(main())
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert found.status_code == 200
    assert_same_hits(found.json()["hits"], pipeline("bordeaux wine", k=3))
    assert info["threads"]["faiss_omp"] == 1 and info["stats"]["requests"] == 1
    assert app.state.server.state == "stopped" and not app.state.server.batcher.running


def test_freeze_gc_keeps_the_loaded_pipeline_out_of_full_collections_until_the_server_stops(pipeline):
    import gc

    assert gc.get_freeze_count() == 0
    with served(create_app(copy_of(pipeline), freeze_gc=True)) as url:
        frozen_while_serving = gc.get_freeze_count()
        info = httpx.get(f"{url}/info").json()
        assert httpx.post(f"{url}/search", json={"q": "wine"}).status_code == 200
    assert frozen_while_serving > 10_000  # the pipeline, FastAPI, this test session...
    assert info["gc"]["freeze"] is True and info["gc"]["frozen_objects"] >= frozen_while_serving  # some died since
    assert gc.get_freeze_count() == 0  # given back
