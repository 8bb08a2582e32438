"""Filters over HTTP and on the command line: ``POST /search`` with ``"filter"``, ``cherche-faiss search --filter``.

A malformed filter is a 422 naming its offending part and never reaches the
pipeline; a filter the pipeline refuses when called (a field its documents
lack, a comparison of incompatible types) is a 422 too, never a 500; requests
with different filters never share a pipeline call. The pipeline is the towns
example with the hashing encoder, as in ``test_server.py``.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import subprocess
import sys
import threading

import pytest

from cherche_faiss import data, rank, retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.server.batching import MicroBatcher
from cherche_faiss.server.worker import filter_key

KEY = "id"
ON = ["title", "article"]


def build(documents):
    # The title is searched and filtered on: declared, since searched text fields are not discovered as metadata.
    retriever = retrieve.TfIdf(key=KEY, on=ON, documents=documents, k=30, filter_fields=["title", "url"])
    ranker = rank.Encoder(key=KEY, on=ON, encoder=HashingEncoder(), k=10)
    return (retriever + ranker + documents).add(documents, show_progress=False)


@pytest.fixture(scope="module")
def towns():
    return data.load_towns()


@pytest.fixture(scope="module")
def pipeline(towns):
    return build(towns)


def copy_of(pipeline):
    return pickle.loads(pickle.dumps(pipeline))


class FilterRecorder:
    """A pipeline stand-in that records ``(q, k, filter)`` and answers the allowed keys (a list filter)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[object, int, object]] = []
        self.gate = gate

    def __call__(self, q, k=None, filter=None):  # noqa: A002 - the pipelines' keyword
        self.calls.append((q, k, filter))
        if self.gate is not None:
            self.gate.wait(timeout=10)
        texts = [q] if isinstance(q, str) else q
        allowed = filter if isinstance(filter, list) else ["any"]
        hits = [[{"id": f"{key}", "query": text, "similarity": 1.0} for key in allowed][:k] for text in texts]
        return hits[0] if isinstance(q, str) else hits


# -- the batcher ------------------------------------------------------------------------------------------
def test_requests_with_different_filters_never_share_a_call():
    pipeline = FilterRecorder()
    requests = [("a", ["x"]), ("b", ["y", "z"]), (["c", "d"], ["x"]), ("e", None), ("f", ["y", "z"])]

    async def main():
        batcher = MicroBatcher(pipeline, max_wait_ms=200)
        await batcher.start()
        answers = await asyncio.gather(*(batcher.search(q, 3, filter) for q, filter in requests))
        await batcher.close()
        return answers

    answers = asyncio.run(asyncio.wait_for(main(), timeout=30))
    calls = {filter_key(filter): (q, k) for q, k, filter in pipeline.calls}
    assert len(pipeline.calls) == 3  # one call per distinct filter, not one per request, not one for all
    assert calls[filter_key(["x"])] == (["a", "c", "d"], 3)
    assert calls[filter_key(["y", "z"])] == (["b", "f"], 3)
    assert calls[None] == ("e", 3)
    assert [hit["id"] for hit in answers[1]] == ["y", "z"] and answers[1][0]["query"] == "b"
    assert [[hit["id"] for hit in hits] for hits in answers[2]] == [["x"], ["x"]]
    assert [hit["query"] for hit in answers[4]] == ["f", "f"]
    assert [hit["id"] for hit in answers[3]] == ["any"]


def test_filters_equal_in_python_but_not_in_json_are_kept_apart():
    # 1 == 1.0 == True in Python; a typed column tells them apart, so must the batcher.
    assert len({filter_key({"n": 1}), filter_key({"n": 1.0}), filter_key({"n": True})}) == 3
    assert filter_key({"a": 1, "b": [2, 3]}) == filter_key({"b": [2, 3], "a": 1})
    assert filter_key(object()) != filter_key(object())  # not JSON: grouped only with itself


# -- over HTTP ----------------------------------------------------------------------------------------------
fastapi = pytest.importorskip("fastapi", reason='the server tests need pip install "cherche-faiss[server]"')
httpx = pytest.importorskip("httpx")

from cherche_faiss.server import create_app  # noqa: E402

from ..serving import post_all, served  # noqa: E402


@pytest.fixture(scope="module")
def base_url(pipeline):
    with served(create_app(copy_of(pipeline))) as url:
        yield url


@pytest.fixture
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def test_a_filter_excludes_documents_from_the_hits(client, pipeline):
    query, condition = "bordeaux wine", {"title": {"$ne": "Bordeaux"}}
    unfiltered = client.post("/search", json={"q": query, "k": 10}).json()["hits"]
    assert any(hit["title"] == "Bordeaux" for hit in unfiltered)  # the filter has something to remove
    response = client.post("/search", json={"q": query, "k": 10, "filter": condition})
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert hits and all(hit["title"] != "Bordeaux" for hit in hits)
    assert [hit[KEY] for hit in hits] == [hit[KEY] for hit in pipeline(query, k=10, filter=condition)]


def test_a_list_of_keys_allows_those_documents_only(client, towns):
    allowed = [document[KEY] for document in towns if document["title"] in ("Toulouse", "Lyon")]
    response = client.post("/search", json={"q": ["bordeaux wine", "airbus"], "k": 10, "filter": allowed})
    assert response.status_code == 200, response.text
    for hits in response.json()["hits"]:
        assert hits and {hit[KEY] for hit in hits} <= set(allowed)


@pytest.mark.parametrize(
    "condition, part, message",
    [
        ({"title": {"$near": "Bordeaux"}}, 'filter["title"]["$near"]', "unknown operator '$near'"),
        ({"$xor": [{"title": "Lyon"}]}, 'filter["$xor"]', "unknown operator '$xor'"),
        ({"title": {"$gt": [1, 2]}}, 'filter["title"]["$gt"]', "must be a number or a string"),
        ({"title": {"$in": []}}, 'filter["title"]["$in"]', "is empty"),
        ({"title": {"$exists": "yes"}}, 'filter["title"]["$exists"]', "must be True or False"),
        ({"$and": [{"title": "Lyon"}] * 1100}, 'filter["$and"][1024]["title"]', "more than 1024 field conditions"),
        ("title = Lyon", "filter", "filter must be a JSON object of conditions"),
        (3, "filter", "got the number 3"),
        ([{"id": 1}], "filter[0]", "must be a document key"),
    ],
)
def test_a_malformed_filter_is_a_422_naming_its_part_and_never_reaches_the_pipeline(condition, part, message):
    probe = FilterRecorder()
    with served(create_app(probe, warmup=False)) as url:
        response = httpx.post(f"{url}/search", json={"q": "wine", "filter": condition})
    assert response.status_code == 422, response.text
    answer = response.json()
    assert message in answer["detail"]
    assert part in [error["field"] for error in answer["errors"]]
    assert "pydantic" not in response.text
    assert probe.calls == []


def test_a_filter_nested_too_deep_is_a_422():
    probe = FilterRecorder()
    nested = {"title": "Lyon"}
    for _ in range(40):
        nested = {"$not": nested}
    deepest = '{"$not":' * 5000 + '{"title": "Lyon"}' + "}" * 5000  # past the JSON parser's recursion limit
    with served(create_app(probe, warmup=False)) as url:
        response = httpx.post(f"{url}/search", json={"q": "wine", "filter": nested})
        assert response.status_code == 422 and "nests deeper than 32 levels" in response.json()["detail"]
        content = ('{"q": "wine", "filter": ' + deepest + "}").encode()
        response = httpx.post(f"{url}/search", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422 and "deeper than this server reads" in response.json()["detail"]
    assert probe.calls == []


@pytest.mark.parametrize(
    "condition, message",
    [
        ({"population": {"$gt": 1000}}, "population"),  # a field the documents lack
        ({"title": {"$gt": 3}}, "title"),  # a string field compared with a number
    ],
)
def test_a_filter_the_pipeline_refuses_is_a_422_with_its_message_not_a_500(client, condition, message):
    response = client.post("/search", json={"q": "wine", "filter": condition})
    assert response.status_code == 422, response.text
    answer = response.json()
    assert message in answer["detail"] and answer["errors"][0]["type"] == "filter_invalid"
    assert answer["errors"][0]["field"].startswith("filter")


def test_concurrent_requests_with_different_filters_each_get_their_own(pipeline, towns):
    titles = sorted({document["title"] for document in towns})
    bodies = [{"q": "city history", "k": 5, "filter": {"title": titles[i % 4]}} for i in range(16)]
    with served(create_app(copy_of(pipeline), max_wait_ms=30)) as url:
        responses = asyncio.run(post_all(url, bodies, concurrency=16))
    for body, response in zip(bodies, responses):
        assert response.status_code == 200, response.text
        hits = response.json()["hits"]
        assert hits and all(hit["title"] == body["filter"]["title"] for hit in hits)


def test_a_pipeline_that_takes_no_filter_answers_422_to_a_filter():
    def plain(q, k=None):
        return [{"id": "a", "similarity": 1.0}]

    with served(create_app(plain, warmup=False)) as url:
        refused = httpx.post(f"{url}/search", json={"q": "wine", "filter": ["a"]})
        unfiltered = httpx.post(f"{url}/search", json={"q": "wine"})
    assert refused.status_code == 422 and "takes no filter" in refused.json()["detail"]
    assert unfiltered.status_code == 200


def test_the_openapi_schema_documents_the_filter(client):
    request = client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"]
    kinds = {option.get("type") for option in request["properties"]["filter"]["anyOf"]}
    assert kinds == {"object", "array", "null"} and "$gte" in request["properties"]["filter"]["description"]
    assert request["required"] == ["q"]  # the filter is optional


# -- the command line ------------------------------------------------------------------------------------
def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cherche_faiss.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory, towns):
    folder = tmp_path_factory.mktemp("filtered")
    corpus = folder / "towns.jsonl"
    corpus.write_text("".join(json.dumps(document) + "\n" for document in towns))
    # Only the article is searched: the title and the url are the documents' filterable metadata.
    out = str(folder / "search")
    built = _command("build", str(corpus), "--out", out, "--retriever", "bm25", "--on", "article", "-k", "10")
    assert built.returncode == 0, built.stderr
    return folder / "search"


def test_cli_search_applies_a_filter(saved):
    unfiltered = json.loads(_command("search", str(saved), "bordeaux wine").stdout)
    assert any(hit["title"] == "Bordeaux" for hit in unfiltered)
    searched = _command("search", str(saved), "bordeaux wine", "--filter", '{"title": {"$ne": "Bordeaux"}}')
    assert searched.returncode == 0, searched.stderr
    hits = json.loads(searched.stdout)
    assert hits and all(hit["title"] != "Bordeaux" for hit in hits)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{title: 'Lyon'}", "argument --filter: not valid JSON"),
        ('{"title": {"$near": "Lyon"}}', """filter["title"]["$near"]: unknown operator '$near'"""),
    ],
)
def test_cli_search_refuses_a_bad_filter_before_loading_anything(text, message, tmp_path):
    # The path does not exist: the filter is refused before the save is read.
    done = _command("search", str(tmp_path / "missing"), "wine", "--filter", text)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_cli_search_reports_a_filter_the_pipeline_refuses_in_one_line(saved):
    done = _command("search", str(saved), "wine", "--filter", '{"population": {"$gt": 3}}')
    assert done.returncode == 1 and "population" in done.stderr and "Traceback" not in done.stderr
