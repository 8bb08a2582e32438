"""The safe folder format with the real offline MiniLM: a pipeline saved here loads and
answers identically in a fresh CPU-only process, by reference or with embedded weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import cherche_faiss
from cherche_faiss import data, rank, retrieve
from cherche_faiss.encoders import SentenceTransformerEncoder
from cherche_faiss.persist import safe

from ..helpers import run_in_a_fresh_cpu_only_process

pytestmark = pytest.mark.integration

QUERIES = ["bordeaux", "aerospace industry", "football club"]
LOAD_AND_ANSWER = """
import json, sys, warnings
warnings.simplefilter("error")  # a CPU save must load on a CPU machine without any warning
import cherche_faiss
search = cherche_faiss.load(sys.argv[1], mmap=sys.argv[3] == "mmap")
print(json.dumps([search(q) for q in json.loads(sys.argv[2])]))
"""


def _answers_in_a_fresh_cpu_only_process(path, mmap=False):
    return run_in_a_fresh_cpu_only_process(LOAD_AND_ANSWER, str(path), json.dumps(QUERIES), "mmap" if mmap else "read")


@pytest.fixture(scope="module")
def towns():
    return data.load_towns()


def test_cherche_example_saved_safely_answers_identically_elsewhere(minilm, towns, tmp_path):
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=towns, k=30)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=minilm.encode, k=10)
    search = (retriever + ranker + towns).add(towns)
    before = [search(q) for q in QUERIES]
    path = cherche_faiss.save(search, tmp_path / "search")
    manifest = json.loads((path / "manifest.json").read_text())
    encoder = next(node for node in manifest["components"] if node["class"].endswith("SentenceTransformerEncoder"))
    assert encoder["params"]["model_name_or_path"] == str(data.minilm_path())  # by reference
    # No weights inside (MiniLM's are 90 MB): TfIdf's n-grams and matrix take 2.2 MB.
    assert sum(entry["size"] for entry in manifest["files"].values()) < 5_000_000
    assert _answers_in_a_fresh_cpu_only_process(path) == before
    assert _answers_in_a_fresh_cpu_only_process(path, mmap=True) == before


def test_embedded_weights_load_where_the_model_is_not(minilm, towns, tmp_path):
    encoder = SentenceTransformerEncoder(data.minilm_path(), device="cpu", embed_weights=True)
    search = retrieve.Encoder(key="id", on=["title", "article"], encoder=encoder, k=5).add(towns[:40])
    before = [search(q) for q in QUERIES]
    path = cherche_faiss.save(search, tmp_path / "embedded")
    files = json.loads((path / "manifest.json").read_text())["files"]
    assert any(name.endswith("weights/model.safetensors") for name in files)
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    manifest = json.loads((path / "manifest.json").read_text())
    for node in manifest["components"]:
        if node["class"].endswith("SentenceTransformerEncoder"):
            node["params"]["model_name_or_path"] = "/nowhere/all-MiniLM-L6-v2"  # the model is not installed there
    manifest["manifest_sha256"] = safe._canonical_hash(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert _answers_in_a_fresh_cpu_only_process(path) == before


def test_build_command_with_the_default_model(towns, tmp_path):
    corpus = tmp_path / "towns.jsonl"
    corpus.write_text("".join(json.dumps(document) + "\n" for document in towns))
    out = tmp_path / "search"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "cherche_faiss.cli",
            "build",
            str(corpus),
            "--out",
            str(out),
            "--on",
            "title",
            "article",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    hits = json.loads(
        subprocess.run(
            [sys.executable, "-m", "cherche_faiss.cli", "search", str(out), "wine of bordeaux", "-k", "3"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
        ).stdout
    )
    assert [hit["title"] for hit in hits] == ["Bordeaux"] * 3
