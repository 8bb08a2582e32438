"""The demo: Cherche's Save & Load example on the towns corpus, pickled, saved in
the safe folder format, and saved with its encoder exported to ONNX, each
reloaded in a fresh CPU-only process (the ONNX one without torch)
(``cherche-faiss demo`` / ``make demo``)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["run_demo", "build_search"]

DEFAULT_QUERIES = ["bordeaux", "wine", "aerospace industry", "football club", "metro"]

# Runs in the child process: load the pickle or the saved folder, time it, answer, print JSON.
_CHILD = """
import json, pickle, sys, time
started = time.perf_counter()
if sys.argv[3] in ("folder", "onnx"):
    import cherche_faiss
    search = cherche_faiss.load(sys.argv[1], backend="onnx" if sys.argv[3] == "onnx" else "auto")
else:
    with open(sys.argv[1], "rb") as handle:
        search = pickle.load(handle)
loaded = time.perf_counter()
queries = json.loads(sys.argv[2])
first = search(queries[0])
answered = time.perf_counter()
answers = [first] + [search(query) for query in queries[1:]]
print(json.dumps({"load_s": loaded - started, "first_query_s": answered - loaded, "answers": answers,
                  "torch": "torch" in sys.modules}))
"""


def build_search(documents: list[dict], model_path: str):
    """Cherche's Save & Load example, with only the import and the model path changed."""
    from sentence_transformers import SentenceTransformer

    from cherche_faiss import rank, retrieve

    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=30)
    ranker = rank.Encoder(
        key="id",
        on=["title", "article"],
        encoder=SentenceTransformer(model_path, device="cpu").encode,
        k=10,
    )
    search = retriever + ranker
    search.add(documents=documents)
    return search


def run_demo(queries: list[str] | None = None, keep: str | None = None, out: TextIO = sys.stdout) -> int:
    """Build, save three ways, reload each in a fresh CPU-only process, answer, and report.

    Returns 0 when every reloaded pipeline answers as the original (the ONNX one
    to float32 rounding, without importing torch), 1 otherwise.
    """
    from cherche_faiss import data

    queries = queries or DEFAULT_QUERIES
    documents = data.load_towns()
    model_path = data.minilm_path()

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    say(f"cherche_faiss demo: {len(documents)} town passages, all-MiniLM-L6-v2 from {model_path} (offline)")
    started = time.perf_counter()
    search = build_search(documents, model_path)
    say(f"built TfIdf(k=30) + rank.Encoder(k=10) and indexed the corpus in {time.perf_counter() - started:.2f} s")
    before = [search(query) for query in queries]

    folder = Path(keep).parent if keep else Path(tempfile.mkdtemp(prefix="cherche_faiss_demo_"))
    saves = _save_three_ways(search, folder, Path(keep) if keep else folder / "search.pkl")
    reports = {}
    for kind, saved in saves.items():
        started = time.perf_counter()
        finished = _load_in_a_fresh_process(saved["path"], kind, queries)
        if finished.returncode != 0:
            say(f"the fresh process could not load the {kind} save:")
            say(finished.stderr.strip())
            return 1
        reports[kind] = {
            **json.loads(finished.stdout.strip().splitlines()[-1]),
            "wall_s": time.perf_counter() - started,
        }

    _show_answers(say, queries, reports["pickle"]["answers"], {document["id"]: document for document in documents})
    verdicts = _report(say, saves, reports, before, len(queries))
    shutil.rmtree(saves["folder"]["path"])
    shutil.rmtree(saves["onnx"]["path"])
    if not keep:
        saves["pickle"]["path"].unlink()
        folder.rmdir()
    return 0 if all(verdicts) else 1


def _save_three_ways(search: Any, folder: Path, pickle_path: Path) -> dict[str, dict[str, Any]]:
    """A pickle, the safe folder format, and the safe format with MiniLM exported to ONNX; with their times."""
    import cherche_faiss

    saves: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with open(pickle_path, "wb") as handle:
        pickle.dump(search, handle)
    saves["pickle"] = {"path": pickle_path, "seconds": time.perf_counter() - started}
    for kind, onnx in (("folder", False), ("onnx", True)):
        started = time.perf_counter()
        path = cherche_faiss.save(search, folder / f"search-{kind}", onnx=onnx)
        saves[kind] = {"path": path, "seconds": time.perf_counter() - started}
    for saved in saves.values():
        path = saved["path"]
        saved["bytes"] = (
            path.stat().st_size
            if path.is_file()
            else sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
        )
    return saves


def _show_answers(say: Any, queries: list[str], answers: list, documents: dict) -> None:
    for query, hits in zip(queries, answers):
        say(f"\nq={query!r}")
        for hit in hits[:3]:
            article = documents[hit["id"]]["article"]
            say(f"  {hit['similarity']:.3f}  [{documents[hit['id']]['title']}] {article[:80]}...")


def _report(say: Any, saves: dict, reports: dict, before: list, n_queries: int) -> list[bool]:
    """Print sizes, times and whether each reload answers as the original; returns those verdicts."""
    pickled, folder, onnx = reports["pickle"], reports["folder"], reports["onnx"]
    identical = pickled["answers"] == before
    say("")
    say(f"pickle size             {saves['pickle']['bytes'] / 1024:.1f} KiB ({saves['pickle']['path']})")
    say(f"pickle dump time        {saves['pickle']['seconds'] * 1000:.1f} ms")
    say(f"load in fresh process   {pickled['load_s'] * 1000:.0f} ms (pickle.load, CUDA_VISIBLE_DEVICES='')")
    say(f"first query after load  {pickled['first_query_s'] * 1000:.0f} ms (loads the model lazily)")
    say(f"whole child process     {pickled['wall_s']:.2f} s (interpreter start, imports, load, {n_queries} queries)")
    say(f"answers identical to the original pipeline: {identical}")
    identical_saved = folder["answers"] == before
    say(
        f"safe format (cherche_faiss.save, no pickle): {saves['folder']['bytes'] / 1024:.1f} KiB in "
        f"{saves['folder']['path']}, saved in {saves['folder']['seconds'] * 1000:.1f} ms, loaded in a fresh process "
        f"in {folder['load_s'] * 1000:.0f} ms; answers identical: {identical_saved}"
    )
    same_onnx = _same_ranking(onnx["answers"], before)
    say(
        f"without torch (cherche_faiss.save(..., onnx=True), loaded with backend='onnx'): saved in "
        f"{saves['onnx']['seconds']:.1f} s (exports MiniLM), whole child process {onnx['wall_s']:.2f} s against "
        f"{pickled['wall_s']:.2f} s for the pickle, torch imported: {onnx['torch']}; same hits (similarities "
        f"within 1e-5): {same_onnx}"
    )
    return [identical, identical_saved, same_onnx, not onnx["torch"]]


def _same_ranking(answers: list, expected: list) -> bool:
    """Same documents in the same order, similarities equal to float32 rounding (ONNX vs torch)."""
    return all(
        [hit["id"] for hit in got] == [hit["id"] for hit in wanted]
        and all(abs(a["similarity"] - b["similarity"]) <= 1e-5 for a, b in zip(got, wanted))
        for got, wanted in zip(answers, expected)
    ) and len(answers) == len(expected)


def _load_in_a_fresh_process(path: Path, kind: str, queries: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), json.dumps(queries), kind],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
