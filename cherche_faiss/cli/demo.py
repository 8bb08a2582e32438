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
from typing import TextIO

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
    """Build, pickle, reload in a fresh CPU-only process, answer, and report.

    Returns 0 when the reloaded pipeline answers exactly as the original, 1 otherwise.
    """
    from cherche_faiss import data

    queries = queries or DEFAULT_QUERIES
    documents = data.load_towns()
    titles = {document["id"]: document for document in documents}
    model_path = data.minilm_path()

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    say(f"cherche_faiss demo: {len(documents)} town passages, all-MiniLM-L6-v2 from {model_path} (offline)")
    started = time.perf_counter()
    search = build_search(documents, model_path)
    built = time.perf_counter() - started
    say(f"built TfIdf(k=30) + rank.Encoder(k=10) and indexed the corpus in {built:.2f} s")

    before = [search(query) for query in queries]

    folder = Path(keep).parent if keep else Path(tempfile.mkdtemp(prefix="cherche_faiss_demo_"))
    path = Path(keep) if keep else folder / "search.pkl"
    started = time.perf_counter()
    with open(path, "wb") as handle:
        pickle.dump(search, handle)
    dumped = time.perf_counter() - started
    size = path.stat().st_size

    import cherche_faiss

    saved = folder / "search-saved"
    started = time.perf_counter()
    cherche_faiss.save(search, saved)
    saved_in = time.perf_counter() - started
    saved_size = sum(file.stat().st_size for file in saved.rglob("*") if file.is_file())

    onnx_saved = folder / "search-onnx"
    started = time.perf_counter()
    cherche_faiss.save(search, onnx_saved, onnx=True)  # the same, plus MiniLM exported to ONNX
    onnx_saved_in = time.perf_counter() - started

    started = time.perf_counter()
    child = _load_in_a_fresh_process(path, "pickle", queries)
    cold = time.perf_counter() - started
    folder_child = _load_in_a_fresh_process(saved, "folder", queries)
    started = time.perf_counter()
    onnx_child = _load_in_a_fresh_process(onnx_saved, "onnx", queries)
    onnx_cold = time.perf_counter() - started
    for name, finished in (("the pickle", child), ("the saved folder", folder_child), ("the ONNX save", onnx_child)):
        if finished.returncode != 0:
            say(f"the fresh process could not load {name}:")
            say(finished.stderr.strip())
            return 1
    report = json.loads(child.stdout.strip().splitlines()[-1])
    folder_report = json.loads(folder_child.stdout.strip().splitlines()[-1])
    onnx_report = json.loads(onnx_child.stdout.strip().splitlines()[-1])

    for query, hits in zip(queries, report["answers"]):
        say(f"\nq={query!r}")
        for hit in hits[:3]:
            article = titles[hit["id"]]["article"]
            say(f"  {hit['similarity']:.3f}  [{titles[hit['id']]['title']}] {article[:80]}...")
    identical = report["answers"] == before
    say("")
    say(f"pickle size             {size / 1024:.1f} KiB ({path})")
    say(f"pickle dump time        {dumped * 1000:.1f} ms")
    say(f"load in fresh process   {report['load_s'] * 1000:.0f} ms (pickle.load, CUDA_VISIBLE_DEVICES='')")
    say(f"first query after load  {report['first_query_s'] * 1000:.0f} ms (loads the model lazily)")
    say(f"whole child process     {cold:.2f} s (interpreter start, imports, load, {len(queries)} queries)")
    say(f"answers identical to the original pipeline: {identical}")
    identical_saved = folder_report["answers"] == before
    say(f"safe format (cherche_faiss.save, no pickle): {saved_size / 1024:.1f} KiB in {saved}, saved in "
        f"{saved_in * 1000:.1f} ms, loaded in a fresh process in {folder_report['load_s'] * 1000:.0f} ms; "
        f"answers identical: {identical_saved}")
    same_onnx = _same_ranking(onnx_report["answers"], before)
    say(f"without torch (cherche_faiss.save(..., onnx=True), loaded with backend='onnx'): saved in "
        f"{onnx_saved_in:.1f} s (exports MiniLM), whole child process {onnx_cold:.2f} s against {cold:.2f} s for "
        f"the pickle, torch imported: {onnx_report['torch']}; same hits (similarities within 1e-5): {same_onnx}")
    shutil.rmtree(saved)
    shutil.rmtree(onnx_saved)
    if not keep:
        path.unlink()
        folder.rmdir()
    return 0 if identical and identical_saved and same_onnx and not onnx_report["torch"] else 1


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
        capture_output=True, text=True, env=env, check=False,
    )
