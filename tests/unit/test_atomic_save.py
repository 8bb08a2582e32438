"""Saves are atomic: a process killed (SIGKILL) at any point of a save leaves the previous
save in place, loadable and answering as before; the next save or load cleans up."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import cherche_faiss

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="SIGKILL")

REPO = Path(__file__).resolve().parents[2]
QUERIES = ["bordeaux wine", "airbus", "capital of brittany"]

# Builds pipeline "old", "new" or "big" (new, mapping 60,000 more documents than it searches,
# so that its save takes a second), then saves it to argv[2], dying at stage argv[3] if given.
_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from cherche_faiss import data, rank, retrieve, save
    from cherche_faiss.encoders import HashingEncoder
    from cherche_faiss.persist import _atomic

    def pipeline(which):
        towns = data.load_towns()
        searched = towns[:100] if which == "old" else towns[60:]  # "big" answers as "new" does
        mapped = searched
        if which == "big":  # more documents to map than to search: a save that takes a while
            mapped = searched + [{"id": f"extra-{i}", "title": "x" * 200} for i in range(EXTRA)]
        retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=searched, k=20)
        ranker = rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32), k=5)
        return (retriever + ranker + mapped).add(searched, show_progress=False)

    EXTRA = 60_000
    which, path = sys.argv[1], sys.argv[2]
    stage = sys.argv[3] if len(sys.argv) > 3 else None
    if len(sys.argv) > 4 and sys.argv[4] == "no-exchange":
        _atomic._exchange = lambda first, second: False  # systems without renameat2
    if stage:
        def reached(name):
            if name == stage:
                os.kill(os.getpid(), signal.SIGKILL)
        _atomic.reached = reached
    search = pipeline(which)
    print("ready", flush=True)
    save(search, path)
    """
)


def _answers(search):
    return search(QUERIES)


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )


@pytest.fixture(scope="module")
def saves(tmp_path_factory):
    """A save of the old pipeline to copy before each kill, and the answers of both pipelines."""
    folder = tmp_path_factory.mktemp("atomic")
    for which in ("old", "new"):
        done = _run(which, str(folder / which))
        assert done.returncode == 0, done.stderr[-2000:]
    return folder, _answers(cherche_faiss.load(folder / "old")), _answers(cherche_faiss.load(folder / "new"))


def _fresh_old_save(folder: Path, path: Path) -> None:
    import shutil

    shutil.copytree(folder / "old", path)


@pytest.mark.parametrize(
    "stage, exchange, outcome",
    [
        ("written", "exchange", "old"),  # every file written, the folder not flushed yet
        ("flushed", "exchange", "old"),  # complete beside the old one, not yet swapped
        ("exchanged", "exchange", "new"),  # swapped; the old one not deleted yet
        ("replaced", "exchange", "new"),
        ("flushed", "no-exchange", "old"),
        ("moved aside", "no-exchange", "old"),  # old renamed to a backup, new not yet in place
        ("replaced", "no-exchange", "new"),
    ],
)
def test_kill_at_each_stage_leaves_a_complete_save(saves, tmp_path, stage, exchange, outcome):
    folder, old, new = saves
    path = tmp_path / "search"
    _fresh_old_save(folder, path)
    done = _run("new", str(path), stage, exchange)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert _answers(cherche_faiss.load(path)) == (old if outcome == "old" else new)
    # The next save cleans the killed one's leftovers, then replaces the save.
    cherche_faiss.save(cherche_faiss.load(folder / "new"), path)
    assert _answers(cherche_faiss.load(path)) == new
    assert sorted(item.name for item in tmp_path.iterdir()) == ["search"]


def test_kill_at_random_moments(saves, tmp_path):
    folder, old, new = saves
    generator = random.Random(7)
    outcomes = []
    for attempt in range(6):  # the save itself takes about a second here
        path = tmp_path / f"search-{attempt}"
        _fresh_old_save(folder, path)
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, "big", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert process.stdout.readline().strip() == "ready"  # the pipeline is built; the save starts
        time.sleep(generator.uniform(0.0, 1.2))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        answers = _answers(cherche_faiss.load(path))
        assert answers in (old, new)
        outcomes.append("old" if answers == old else "new")
    assert "old" in outcomes  # at least one kill landed during the save itself


def test_a_backup_left_by_a_killed_save_is_put_back_on_load(saves, tmp_path):
    folder, old, _ = saves
    path = tmp_path / "search"
    _fresh_old_save(folder, path)
    done = _run("new", str(path), "moved aside", "no-exchange")
    assert done.returncode == -signal.SIGKILL
    assert not path.exists()  # the old save sits under a backup name ...
    assert _answers(cherche_faiss.load(path)) == old  # ... and load puts it back
    assert path.is_dir()
