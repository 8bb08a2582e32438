"""cherche-faiss build / search / info, run as commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import cherche_faiss
from cherche_faiss import data
from cherche_faiss.cli import main
from cherche_faiss.cli.build import build_pipeline, read_jsonl
from cherche_faiss.exceptions import CorruptFileError, InvalidInputError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "towns.jsonl"
    path.write_text("".join(json.dumps(document) + "\n" for document in data.load_towns()))
    return path


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cherche_faiss.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_build_search_info(corpus, tmp_path):
    out = tmp_path / "search"
    built = _command("build", str(corpus), "--out", str(out), "--retriever", "bm25", "-k", "3")
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["documents"] == 176
    searched = _command("search", str(out), "bordeaux wine")
    assert searched.returncode == 0, searched.stderr
    hits = json.loads(searched.stdout)
    expected = build_pipeline(read_jsonl(corpus), retriever="bm25", k=3)("bordeaux wine")
    assert hits == expected and hits[0]["title"] == "Bordeaux" and "article" in hits[0]
    several = json.loads(_command("search", str(out), "wine", "airbus", "-k", "2", "--mmap").stdout)
    assert [len(hits) for hits in several] == [2, 2]
    info = _command("info", str(out))
    assert info.returncode == 0
    assert "checksums verified" in info.stdout and "BM25(" in info.stdout and "176 documents" in info.stdout
    facts = json.loads(_command("info", str(out), "--json").stdout)
    assert facts["saved_by"] == cherche_faiss.__version__ and facts["components"]["class"] == "Pipeline"


def test_info_reports_damage_and_fails(corpus, tmp_path):
    out = tmp_path / "search"
    assert main(["build", str(corpus), "--out", str(out), "--retriever", "tfidf", "--no-progress"]) == 0
    name = next(n for n in json.loads((out / "manifest.json").read_text())["files"] if n.endswith(".npz"))
    raw = bytearray((out / name).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (out / name).write_bytes(bytes(raw))
    info = _command("info", str(out))
    assert info.returncode == 1 and "checksums FAILED" in info.stdout and name in info.stdout
    searched = _command("search", str(out), "wine")
    assert searched.returncode == 1
    assert searched.stderr.startswith("cherche-faiss search: error:") and "Traceback" not in searched.stderr


def test_build_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "title": "ok"}\nnot json\n')
    assert main(["build", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "bad.jsonl, line 2, is not valid JSON" in capsys.readouterr().err
    with pytest.raises(CorruptFileError, match="line 2"):
        read_jsonl(bad)
    keyless = tmp_path / "keyless.jsonl"
    keyless.write_text('{"name": "Paris"}\n')
    with pytest.raises(InvalidInputError, match="no 'id' or '_id' field"):
        build_pipeline(read_jsonl(keyless), retriever="bm25")
    assert not (tmp_path / "out").exists()


def test_beir_corpus_with_underscore_id(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        '{"_id": "a", "title": "Paris", "text": "Eiffel tower"}\n{"_id": "b", "title": "Lyon", "text": "silk"}\n'
    )
    search = build_pipeline(read_jsonl(path), retriever="tfidf", k=1)
    assert search("eiffel")[0]["_id"] == "a"
