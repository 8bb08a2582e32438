"""A load racing saves of the same path returns the old or the new pipeline, never an error.

Two writer processes save, over and over, two different pipelines (a TF-IDF one
and a BM25 one, each with a FAISS ranker and a document map) to one path while
two reader processes load that path (one with ``mmap=True``) and query what they
loaded: every load must answer exactly as one of the two pipelines does. Both
ways a save replaces a folder are raced: the atomic exchange (``renameat2``) and
the fallback that renames the previous save aside first. Processes, not threads:
that is how a server and a job that re-saves its index meet, and each process
has its own id for the leftovers' owners (``_atomic._owner_alive``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cherche_faiss
from cherche_faiss import data, rank, retrieve
from cherche_faiss.encoders import HashingEncoder

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="folders in use cannot be renamed on Windows")

REPO = Path(__file__).resolve().parents[2]
QUERIES = ["bordeaux wine", "airbus aircraft in toulouse", "capital of brittany"]
SECONDS = 5.0  # of racing, per way of replacing a folder: a hundred saves and loads or more

# argv: role ("write" or "read"), the raced path, the folder of the two reference saves, seconds,
# "exchange" or "aside", and the writer's first pipeline or the reader's mmap ("0" / "1").
# Prints one JSON line: how many saves or loads, and every failure.
_WORKER = textwrap.dedent(
    """
    import json, sys, time
    import cherche_faiss
    from cherche_faiss.persist import _atomic

    role, path, references, seconds, how, option = sys.argv[1:7]
    if how == "aside":
        _atomic._exchange = lambda first, second: False  # systems without renameat2
    queries = json.loads(sys.argv[7])
    pipelines = [cherche_faiss.load(f"{references}/{which}") for which in ("old", "new")]
    answers = [pipeline(queries) for pipeline in pipelines]
    done, failures = 0, []
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            if role == "write":
                cherche_faiss.save(pipelines[(int(option) + done) % 2], path)
            elif cherche_faiss.load(path, mmap=option == "1")(queries) not in answers:
                failures.append("a load answered as neither pipeline")
        except Exception as error:
            failures.append(f"{role}: {type(error).__name__}: {error}")
        done += 1
    print(json.dumps({"done": done, "failures": failures[:5], "failed": len(failures)}))
    """
)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Saves of both pipelines, and the answers of each (the same with and without mmap)."""
    towns = data.load_towns()
    folder = tmp_path_factory.mktemp("references")
    answers = []
    for which, kind, documents in (("old", retrieve.TfIdf, towns[:100]), ("new", retrieve.BM25, towns[60:])):
        retriever = kind(key="id", on=["title", "article"], documents=documents, k=20)
        ranker = rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32), k=5)
        cherche_faiss.save((retriever + ranker + documents).add(documents, show_progress=False), folder / which)
        expected = cherche_faiss.load(folder / which)(QUERIES)
        assert cherche_faiss.load(folder / which, mmap=True)(QUERIES) == expected
        answers.append(expected)
    assert answers[0] != answers[1]
    return folder, answers


@pytest.mark.parametrize("how", ["exchange", "aside"], ids=["renameat2", "rename-aside"])
def test_loads_racing_saves_return_the_old_or_the_new_pipeline(references, tmp_path, how):
    folder, answers = references
    path = tmp_path / "search"
    cherche_faiss.save(cherche_faiss.load(folder / "old"), path)
    roles = [("write", "0"), ("write", "1"), ("read", "0"), ("read", "1")]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                role,
                str(path),
                str(folder),
                str(SECONDS),
                how,
                option,
                json.dumps(QUERIES),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for role, option in roles
    ]
    reports = []
    for (role, _), worker in zip(roles, workers, strict=True):
        out, err = worker.communicate(timeout=SECONDS + 120)
        assert worker.returncode == 0, err[-2000:]
        reports.append((role, json.loads(out.strip().splitlines()[-1])))
    failures = [failure for _, report in reports for failure in report["failures"]]
    assert not failures, f"{sum(report['failed'] for _, report in reports)} failures: {reports}"
    saves = sum(report["done"] for role, report in reports if role == "write")
    loads = sum(report["done"] for role, report in reports if role == "read")
    assert saves >= 10 and loads >= 10, reports  # the race did happen
    assert cherche_faiss.load(path)(QUERIES) in answers
    assert sorted(item.name for item in tmp_path.iterdir()) == ["search"]  # nothing left beside the save


# -- the same, one step at a time --------------------------------------------------------------------
@pytest.mark.parametrize("mmap", [False, True])
def test_a_save_that_lands_during_a_load_leaves_that_load_reading_the_previous_save(
    references, tmp_path, monkeypatch, mmap
):
    from cherche_faiss.persist import safe

    folder, (old, new) = references
    path = tmp_path / "search"
    cherche_faiss.save(cherche_faiss.load(folder / "old"), path)
    replacement = cherche_faiss.load(folder / "new")
    verified = []

    def verify_then_save(opened, files, contents=True):
        real_verify(opened, files, contents)
        verified.append(opened.target)
        cherche_faiss.save(replacement, path)  # swapped in and the previous folder deleted, mid-load

    real_verify = safe.verify_files
    monkeypatch.setattr(safe, "verify_files", verify_then_save)
    loaded = cherche_faiss.load(path, mmap=mmap)
    assert len(verified) == 1  # read once: the held files outlived the folder
    assert loaded(QUERIES) == old
    monkeypatch.undo()
    assert cherche_faiss.load(path)(QUERIES) == new


def test_a_save_that_lands_before_the_files_are_held_makes_the_load_read_the_new_one(references, tmp_path, monkeypatch):
    from cherche_faiss.persist import _opened

    folder, (old, new) = references
    path = tmp_path / "search"
    cherche_faiss.save(cherche_faiss.load(folder / "old"), path)
    replacement = cherche_faiss.load(folder / "new")
    attempts = []
    real_hold = _opened.OpenedSave.hold

    def save_then_hold(self, names):
        attempts.append(self.target)
        if len(attempts) == 1:
            cherche_faiss.save(replacement, path)  # the folder this load opened is emptied first
        real_hold(self, names)

    monkeypatch.setattr(_opened.OpenedSave, "hold", save_then_hold)
    assert cherche_faiss.load(path)(QUERIES) == new
    assert len(attempts) == 2


def test_a_damaged_save_that_nothing_replaces_still_raises_at_once(references, tmp_path, monkeypatch):
    from cherche_faiss.exceptions import CorruptFileError
    from cherche_faiss.persist import _opened

    folder, _ = references
    path = tmp_path / "search"
    cherche_faiss.save(cherche_faiss.load(folder / "old"), path)
    name = next(item for item in path.rglob("*.faiss"))
    name.write_bytes(name.read_bytes()[:-4])
    opened = []
    real_init = _opened.OpenedSave.__init__
    monkeypatch.setattr(
        _opened.OpenedSave, "__init__", lambda self, target: opened.append(target) or real_init(self, target)
    )
    with pytest.raises(CorruptFileError, match="bytes but"):
        cherche_faiss.load(path)
    assert len(opened) == 1


def test_a_load_waits_for_a_save_between_its_two_renames(references, tmp_path):
    import os
    import threading

    from cherche_faiss.exceptions import MissingFileError

    folder, (old, _) = references
    path = tmp_path / "search"
    cherche_faiss.save(cherche_faiss.load(folder / "old"), path)
    aside = tmp_path / f".search.previous-{os.getpid()}-test"  # as a running save without renameat2 leaves it
    os.rename(path, aside)
    threading.Timer(0.3, os.rename, (aside, path)).start()  # its new folder arrives a moment later
    assert cherche_faiss.load(path)(QUERIES) == old
    with pytest.raises(MissingFileError, match="nothing is there"):  # nothing on the way: said at once
        cherche_faiss.load(tmp_path / "elsewhere")
