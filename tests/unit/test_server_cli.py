"""``cherche-faiss serve`` for real (a subprocess on 127.0.0.1), what it loads, and a bounded load test."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason='the server tests need pip install "cherche-faiss[server]"')
httpx = pytest.importorskip("httpx")

from cherche_faiss import __version__, data, persist, rank, retrieve  # noqa: E402
from cherche_faiss.cli import main  # noqa: E402
from cherche_faiss.encoders import HashingEncoder  # noqa: E402
from cherche_faiss.exceptions import InvalidInputError, MissingFileError  # noqa: E402
from cherche_faiss.server import create_app, load_served, saved_version  # noqa: E402

from ..helpers import assert_same_hits  # noqa: E402
from ..serving import REPO, ServeProcess, port_is_closed, served  # noqa: E402

KEY = "id"
ON = ["title", "article"]
LOAD_REQUESTS = 2_000
LOAD_CLIENTS = 16


@pytest.fixture(scope="module")
def towns():
    return data.load_towns()


@pytest.fixture(scope="module")
def pipeline(towns):
    retriever = retrieve.TfIdf(key=KEY, on=ON, documents=towns, k=30)
    ranker = rank.Encoder(key=KEY, on=ON, encoder=HashingEncoder(), k=10)
    return (retriever + ranker + towns).add(towns, show_progress=False)


@pytest.fixture(scope="module")
def pickle_path(pipeline, tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / "search.pkl"
    persist.dump_pickle(pipeline, path)
    return path


@pytest.fixture(scope="module")
def queries(towns):
    found = (" ".join(document["article"].split()[:5]) for document in towns)
    return list(dict.fromkeys(found))


@pytest.fixture(scope="module")
def cli_server(pickle_path):
    """``cherche-faiss serve search.pkl --allow-pickle`` with an API key from the environment."""
    process = ServeProcess(
        str(pickle_path),
        "--allow-pickle",
        "--api-key-env",
        "TEST_SERVE_KEY",
        env={"TEST_SERVE_KEY": "key-from-the-environment"},
    )
    try:
        url = process.wait_ready()
        yield process, url, {"X-API-Key": "key-from-the-environment"}
    finally:
        code = process.stop(signal.SIGINT)
        assert code == 0, process.output
        assert port_is_closed(url)


# -- what serve loads -------------------------------------------------------------------------------
def test_serve_refuses_a_pickle_without_allow_pickle(pickle_path):
    result = subprocess.run(
        [sys.executable, "-m", "cherche_faiss.cli", "serve", str(pickle_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
    )
    assert result.returncode == 1
    assert "is a pickle file, and unpickling runs whatever code its author put in it" in result.stderr
    assert "Pass --allow-pickle" in result.stderr
    assert "Traceback" not in result.stderr and "serving on" not in result.stderr


def test_serve_reports_a_missing_path(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_serve_needs_the_named_api_key_variable(pickle_path, capsys, monkeypatch):
    monkeypatch.delenv("UNSET_KEY_VARIABLE", raising=False)
    assert main(["serve", str(pickle_path), "--allow-pickle", "--api-key-env", "UNSET_KEY_VARIABLE"]) == 1
    assert "UNSET_KEY_VARIABLE: that environment variable is not set" in capsys.readouterr().err


def test_serve_passes_max_pending_to_the_app(pickle_path, capsys, monkeypatch):
    import cherche_faiss.server as server

    apps = []

    def serve(app, **options):  # stands in for uvicorn: the app is built, never started
        apps.append(app)
        return True

    monkeypatch.setattr(server, "serve", serve)
    path = str(pickle_path)
    assert main(["serve", path, "--allow-pickle", "--max-pending", "7"]) == 0
    assert main(["serve", path, "--allow-pickle", "--max-batch-size", "8"]) == 0
    assert [app.state.server.batcher.max_pending for app in apps] == [7, 16 * 8]
    assert main(["serve", path, "--allow-pickle", "--max-pending", "0"]) == 1
    assert "max_pending must be a positive number of queries, got 0" in capsys.readouterr().err


def test_load_served(pickle_path, pipeline, tmp_path):
    with pytest.raises(InvalidInputError, match="Pass --allow-pickle"):
        load_served(pickle_path)
    with pytest.raises(InvalidInputError, match="mmap applies to the saved folder format"):
        load_served(pickle_path, allow_pickle=True, mmap=True)
    with pytest.raises(InvalidInputError, match="set CHERCHE_FAISS_DEVICE=cpu"):
        load_served(pickle_path, allow_pickle=True, device="cpu")
    with pytest.raises(MissingFileError, match="does not exist"):
        load_served(tmp_path / "missing.pkl")
    loaded = load_served(pickle_path, allow_pickle=True)
    assert_same_hits(loaded("bordeaux", k=5), pipeline("bordeaux", k=5))
    assert saved_version(pickle_path) == __version__


@pytest.mark.parametrize("mmap", [False, True])
def test_serve_a_saved_folder(pipeline, tmp_path, mmap):
    folder = tmp_path / "search"
    persist.save(pipeline, folder)
    loaded = load_served(folder, mmap=mmap)
    with served(create_app(loaded, source=folder)) as url:
        response = httpx.post(f"{url}/search", json={"q": "bordeaux wine", "k": 5})
        info = httpx.get(f"{url}/info").json()
    assert response.status_code == 200
    assert_same_hits(response.json()["hits"], pipeline("bordeaux wine", k=5))
    assert info["source"]["format"] == "folder"


# -- the command, over HTTP ---------------------------------------------------------------------------
def test_the_serve_command_serves_the_pickle(cli_server, pipeline, queries):
    process, url, headers = cli_server
    assert httpx.post(f"{url}/search", json={"q": "wine"}).status_code == 401
    single = httpx.post(f"{url}/search", json={"q": "bordeaux wine", "k": 3}, headers=headers)
    several = httpx.post(f"{url}/search", json={"q": queries[:5], "k": 7}, headers=headers)
    assert single.status_code == several.status_code == 200
    assert_same_hits(single.json()["hits"], pipeline("bordeaux wine", k=3))
    assert_same_hits(several.json()["hits"], pipeline(queries[:5], k=7))
    info = httpx.get(f"{url}/info", headers=headers).json()
    assert info["source"] == {"name": "search.pkl", "format": "pickle", "saved_version": __version__}
    assert info["versions"]["saved"] == __version__
    assert "serving on http://127.0.0.1:" in process.output
    assert "an API key is required" in process.output
    assert "key-from-the-environment" not in process.output  # never logged


def test_load(cli_server, pipeline, queries, capsys, record_property):
    """2,000 requests from 16 concurrent clients against the real command: zero errors, every answer right."""
    _, url, headers = cli_server
    bodies = [{"q": queries[i % len(queries)], "k": (5, 10)[i % 2]} for i in range(LOAD_REQUESTS)]
    expected = {(body["q"], body["k"]): pipeline(body["q"], k=body["k"]) for body in bodies}
    before = httpx.get(f"{url}/info", headers=headers).json()["stats"]

    async def load():
        latencies, failures = [], []
        positions = iter(range(len(bodies)))

        async def client_loop():
            # One client, one connection: a shared pool would serialise the clients on its lock.
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
                for position in positions:
                    body = bodies[position]
                    started = time.perf_counter()
                    response = await client.post("/search", json=body)
                    latencies.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                        continue
                    try:
                        assert_same_hits(response.json()["hits"], expected[(body["q"], body["k"])])
                    except AssertionError as error:
                        failures.append(f"wrong answer for {body}: {error}")

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client_loop() for _ in range(LOAD_CLIENTS))), timeout=300)
        return latencies, failures, time.perf_counter() - started

    latencies, failures, seconds = asyncio.run(load())
    after = httpx.get(f"{url}/info", headers=headers).json()["stats"]
    calls = after["pipeline_calls"] - before["pipeline_calls"]
    requests = after["requests"] - before["requests"]
    figures = {
        "requests": len(latencies),
        "clients": LOAD_CLIENTS,
        "errors": len(failures),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1e3, 2),
        "pipeline_calls": calls,
        "mean_batch_requests": round(requests / calls, 2) if calls else None,
    }
    for name, value in figures.items():
        record_property(name, value)  # in the JUnit XML report
    with capsys.disabled():  # shown in every run, not only with -s
        print(f"\nload test (hashing pipeline, cherche-faiss serve in a subprocess): {json.dumps(figures)}")
    assert failures == [], failures[:5]
    assert len(latencies) == LOAD_REQUESTS and requests == LOAD_REQUESTS
    assert calls < LOAD_REQUESTS  # 16 clients at once: requests were batched
