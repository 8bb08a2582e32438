"""The slim install: a fresh virtual environment without torch, transformers or sentence-transformers,
with cherche-faiss[onnx,server] installed from this checkout, serves a save built here, over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest

import cherche_faiss
from cherche_faiss import data, rank, retrieve

from ..helpers import REPO
from ..serving import ServeProcess

pytestmark = pytest.mark.integration

QUERIES = ["bordeaux", "aerospace industry", "football club", "metro", "wine of the garonne"]
HEAVY = ("torch", "transformers", "sentence_transformers")
# What a checkout holds besides the package source: never copied into the build.
_NOT_SOURCE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "build",
    "dist",
    "*.egg-info",
    ".gpu",
    ".whl",
    "results",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".cache",
)


@pytest.fixture(scope="module")
def slim_python(tmp_path_factory):
    """The interpreter of a new virtual environment holding cherche-faiss[onnx,server] and what it needs."""
    root = tmp_path_factory.mktemp("slim")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)  # builds in a copy: the checkout's egg-info is untouched
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{source}[onnx,server]"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return str(python)


def test_the_slim_environment_has_no_torch(slim_python):
    found = subprocess.run(
        [
            slim_python,
            "-c",
            "import importlib.util, json; "
            f"print(json.dumps([m for m in {list(HEAVY)!r} if importlib.util.find_spec(m)]))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(found.stdout) == []


def test_a_save_built_here_is_served_there(slim_python, minilm, tmp_path):
    documents = data.load_towns()
    search = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=30) + rank.Encoder(
        key="id", on=["title", "article"], encoder=minilm.encode, k=10
    )
    search = search.add(documents=documents) + documents
    expected = search(QUERIES)
    path = cherche_faiss.save(search, tmp_path / "search", onnx=True)

    # The command line of the slim environment, without a server: the same hits.
    answered = subprocess.run(
        [str(slim_python), "-m", "cherche_faiss.cli", "search", str(path), *QUERIES, "--backend", "onnx"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert answered.returncode == 0, answered.stderr[-3000:]
    _assert_same(json.loads(answered.stdout), expected)

    with ServeProcess(str(path), "--backend", "onnx", python=slim_python) as server:
        url = server.wait_ready()
        response = httpx.post(f"{url}/search", json={"q": QUERIES, "k": 10}, timeout=60)
        assert response.status_code == 200, response.text
        _assert_same(response.json()["hits"], expected)
        single = httpx.post(f"{url}/search", json={"q": QUERIES[0], "k": 3}, timeout=60).json()["hits"]
        assert [hit["id"] for hit in single] == [hit["id"] for hit in expected[0][:3]]
        info = httpx.get(f"{url}/info", timeout=60).json()
        assert not any(name in info["versions"] for name in HEAVY)  # the server never loaded them
        assert info["threads"]["onnx"] == info["threads"]["threads"]


def _assert_same(got, expected):
    assert [[hit["id"] for hit in hits] for hits in got] == [[hit["id"] for hit in hits] for hits in expected]
    for got_hits, expected_hits in zip(got, expected):
        assert {k: v for k, v in got_hits[0].items() if k != "similarity"} == {
            k: v for k, v in expected_hits[0].items() if k != "similarity"
        }
        assert [hit["similarity"] for hit in got_hits] == pytest.approx(
            [hit["similarity"] for hit in expected_hits], abs=1e-5
        )
