"""Cherche's "Save & Load" example, timed side by side: Cherche 2.2.1 vs cherche_faiss.

Both libraries run the same pipeline (only the import differs) on the packaged
towns corpus with the offline MiniLM model::

    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=30)
    ranker = rank.Encoder(key="id", on=["title", "article"],
                          encoder=SentenceTransformer(path, device="cpu").encode, k=10)
    search = retriever + ranker
    search.add(documents=documents)

Measured per library: build + add time, pickle size, ``pickle.dump`` time,
cold load (a fresh Python process: ``pickle.load``, then the first query, and
the process's whole wall time), and warm load (``pickle.loads`` in this
process).  Cold-load processes alternate between the libraries.  Every figure
is the median of ``--repeats`` runs.  The answer to the query is checked to
survive the round trip.

Run from the repository root, with an interpreter that has Cherche installed::

    python benchmarks/save_load.py [--repeats 5]

Prints a markdown table and writes ``benchmarks/results/save_load.json``.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub, tqdm or torch.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import datetime
import importlib
import importlib.metadata
import json
import pickle
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

LIBRARIES: tuple[str, ...] = ("cherche", "cherche_faiss")
QUERY = "bordeaux"
KEY = "id"
ON = ["title", "article"]
RETRIEVER_K = 30
RANKER_K = 10
PROTOCOL = pickle.DEFAULT_PROTOCOL  # as in Cherche's example: pickle.dump(search, f)
SIMILARITY_TOLERANCE = 1e-5  # a fresh process may re-encode the query a few ulps apart
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS_FILE = RESULTS_DIR / "save_load.json"

# Run in a fresh interpreter: times pickle.load (imports triggered by unpickling
# included) and then the first query, and prints both with the hits as JSON.
CHILD_CODE = """\
import json, pickle, sys, time
path, query, key = sys.argv[1:4]
start = time.perf_counter()
with open(path, "rb") as handle:
    pipeline = pickle.load(handle)
loaded = time.perf_counter()
hits = pipeline(query)
queried = time.perf_counter()
answer = [[hit[key], float(hit["similarity"])] for hit in hits]
print(json.dumps({"load_s": loaded - start, "first_query_s": queried - loaded, "answer": answer}))
"""

Answer = list[list[Any]]  # [[document id, similarity], ...] in rank order


def require_cherche() -> str:
    """Return Cherche's version, or exit with instructions when it is not importable."""
    try:
        importlib.import_module("cherche")
    except ImportError as error:
        sys.exit(
            f"Cherche is not importable with {sys.executable} ({error}).\n"
            "Install it into this environment with `pip install cherche==2.2.1` "
            "(or `pip install -e '.[bench]'` from the repository root), then rerun "
            "`python benchmarks/save_load.py`."
        )
    return importlib.metadata.version("cherche")


def build_pipeline(library: str, documents: list[dict], encode: Callable) -> Any:
    """Build and fill the example pipeline with ``library``'s retrieve/rank modules."""
    retrieve = importlib.import_module(f"{library}.retrieve")
    rank = importlib.import_module(f"{library}.rank")
    retriever = retrieve.TfIdf(key=KEY, on=ON, documents=documents, k=RETRIEVER_K)
    ranker = rank.Encoder(key=KEY, on=ON, encoder=encode, k=RANKER_K)
    search = retriever + ranker
    search.add(documents=documents)
    return search


def to_answer(hits: Sequence[Mapping]) -> Answer:
    """The hits as JSON-friendly ``[id, similarity]`` pairs."""
    return [[hit[KEY], float(hit["similarity"])] for hit in hits]


def compare(before: Answer, after: Answer) -> dict[str, Any]:
    """How an answer after reloading compares with the one before pickling."""
    same_ids = [hit[0] for hit in before] == [hit[0] for hit in after]
    max_diff = (
        max((abs(b[1] - a[1]) for b, a in zip(before, after)), default=0.0) if same_ids else None
    )
    return {
        "same_ids": same_ids,
        "exact": before == after,
        "max_similarity_diff": max_diff,
        "equal": same_ids and max_diff is not None and max_diff <= SIMILARITY_TOLERANCE,
    }


def merge_comparisons(comparisons: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One verdict for several reloads: equal only if every reload was."""
    diffs = [c["max_similarity_diff"] for c in comparisons if c["max_similarity_diff"] is not None]
    return {
        "same_ids": all(c["same_ids"] for c in comparisons),
        "exact": all(c["exact"] for c in comparisons),
        "max_similarity_diff": max(diffs) if len(diffs) == len(comparisons) else None,
        "equal": all(c["equal"] for c in comparisons),
    }


def time_builds(
    documents: list[dict], encoders: Mapping[str, Callable], repeats: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Build each library's pipeline ``repeats`` times, alternating; keep the last ones."""
    samples: dict[str, list[float]] = {library: [] for library in LIBRARIES}
    pipelines: dict[str, Any] = {}
    for _ in range(repeats):
        for library in LIBRARIES:
            start = time.perf_counter()
            pipelines[library] = build_pipeline(library, documents, encoders[library])
            samples[library].append(time.perf_counter() - start)
    return samples, pipelines


def time_dumps(pipeline: Any, path: Path, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` ``pickle.dump`` calls of ``pipeline`` to ``path``."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        with open(path, "wb") as handle:
            pickle.dump(pipeline, handle, protocol=PROTOCOL)
        samples.append(time.perf_counter() - start)
    return samples


def time_warm_loads(payload: bytes, repeats: int) -> tuple[list[float], Any]:
    """Seconds of each of ``repeats`` ``pickle.loads(payload)``; also the last object loaded."""
    samples, loaded = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        loaded = pickle.loads(payload)
        samples.append(time.perf_counter() - start)
    return samples, loaded


def cold_load(path: Path) -> dict[str, Any]:
    """Load ``path`` and query it once in a fresh CPU-only, offline Python process."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", CHILD_CODE, str(path), QUERY, KEY],
        env=env, capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(
            f"cold load of {path} failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
        )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def time_cold_loads(paths: Mapping[str, Path], repeats: int) -> dict[str, list[dict[str, Any]]]:
    """``repeats`` cold loads per library, alternating libraries (A, B, A, B ...)."""
    runs: dict[str, list[dict[str, Any]]] = {library: [] for library in LIBRARIES}
    for _ in range(repeats):
        for library in LIBRARIES:
            runs[library].append(cold_load(paths[library]))
    return runs


def versions(cherche_version: str) -> dict[str, str]:
    """Versions of Python and of the libraries involved."""
    import cherche_faiss
    import faiss
    import numpy
    import sentence_transformers
    import torch

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "faiss": faiss.__version__,
        "torch": torch.__version__,
        "sentence-transformers": sentence_transformers.__version__,
        "cherche": cherche_version,
        "cherche_faiss": cherche_faiss.__version__,
    }


def library_results(
    build_s: list[float], size: int, dump_s: list[float], cold: list[dict[str, Any]],
    warm_s: list[float], before: Answer, warm_answer: Answer,
) -> dict[str, Any]:
    """Raw samples, medians and round-trip checks of one library."""
    median = statistics.median
    cold_load_s = [run["load_s"] for run in cold]
    first_query_s = [run["first_query_s"] for run in cold]
    return {
        "samples": {
            "build_add_s": build_s,
            "dump_s": dump_s,
            "cold_load_s": cold_load_s,
            "cold_first_query_s": first_query_s,
            "cold_wall_s": [run["wall_s"] for run in cold],
            "warm_load_s": warm_s,
        },
        "median": {
            "build_add_s": median(build_s),
            "pickle_bytes": size,
            "dump_s": median(dump_s),
            "cold_load_s": median(cold_load_s),
            "cold_first_query_s": median(first_query_s),
            "cold_load_plus_query_s": median(a + b for a, b in zip(cold_load_s, first_query_s)),
            "cold_wall_s": median(run["wall_s"] for run in cold),
            "warm_load_s": median(warm_s),
        },
        "answer_before": before,
        "hits": len(before),
        "cold_answers": [run["answer"] for run in cold],
        "cold_round_trip": merge_comparisons([compare(before, run["answer"]) for run in cold]),
        "warm_round_trip": compare(before, warm_answer),
    }


def format_ratio(ratio: float) -> str:
    """A ratio with two significant figures or more, e.g. ``72×``, ``1.1×``, ``0.0028×``."""
    if ratio >= 10:
        return f"{ratio:.0f}×"
    if ratio >= 1:
        return f"{ratio:.1f}×"
    return f"{ratio:.2g}×"


def verdict(check: Mapping[str, Any]) -> str:
    """A table cell for a round-trip check."""
    if not check["equal"]:
        return "**NO**"
    if check["exact"]:
        return "yes (exact)"
    return f"yes (max Δsim {check['max_similarity_diff']:.1e})"


def markdown_table(results: Mapping[str, Mapping[str, Any]], cherche_version: str, repeats: int) -> str:
    """The side-by-side table: metric, Cherche, cherche_faiss, ratio Cherche / cherche_faiss."""
    a, b = (results[library] for library in LIBRARIES)
    timed = [
        ("build + add (s)", "build_add_s"),
        ("pickle.dump to file (s)", "dump_s"),
        ("cold: pickle.load in fresh process (s)", "cold_load_s"),
        (f'cold: first query "{QUERY}" after load (s)', "cold_first_query_s"),
        ("cold: load + first query (s)", "cold_load_plus_query_s"),
        ("cold: whole child process wall time (s)", "cold_wall_s"),
        ("warm: pickle.loads in same process (s)", "warm_load_s"),
    ]
    rows = [
        ("metric", f"Cherche {cherche_version}", "cherche_faiss", "ratio (Cherche / cherche_faiss)"),
        ("---", "---:", "---:", "---:"),
    ]
    size_a, size_b = a["median"]["pickle_bytes"], b["median"]["pickle_bytes"]
    rows.append(("pickle size (bytes)", f"{size_a:,}", f"{size_b:,}", format_ratio(size_a / size_b)))
    for label, name in timed:
        value_a, value_b = a["median"][name], b["median"][name]
        rows.append((label, f"{value_a:.4f}", f"{value_b:.4f}", format_ratio(value_a / value_b)))
    rows.append((f'hits for "{QUERY}"', str(a["hits"]), str(b["hits"]), "—"))
    rows.append(("answer == before pickling (cold)", verdict(a["cold_round_trip"]), verdict(b["cold_round_trip"]), "—"))
    rows.append(("answer == before pickling (warm)", verdict(a["warm_round_trip"]), verdict(b["warm_round_trip"]), "—"))
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.append("")
    lines.append(f"Times are medians of {repeats} runs; pickle protocol {PROTOCOL}.")
    return "\n".join(lines)


def failed_checks(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Descriptions of the round-trip and hit-count checks that failed."""
    failures = []
    for library, result in results.items():
        for kind in ("cold_round_trip", "warm_round_trip"):
            if not result[kind]["equal"]:
                failures.append(f"{library}: answer after {kind.split('_')[0]} reload differs from before pickling")
    if results["cherche_faiss"]["hits"] != RANKER_K:
        failures.append(f"cherche_faiss returned {results['cherche_faiss']['hits']} hits, not {RANKER_K}")
    return failures


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (default 5)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; non-zero exit if a check failed."""
    args = parse_args(argv)
    cherche_version = require_cherche()

    from sentence_transformers import SentenceTransformer

    from cherche_faiss import data

    load_before = os.getloadavg()
    documents = data.load_towns()
    model_path = str(data.minilm_path())
    encoders = {}
    for library in LIBRARIES:  # one model per library, warmed up, so the pickles are independent
        model = SentenceTransformer(model_path, device="cpu")
        model.encode(["warm-up"])
        encoders[library] = model.encode

    build_s, pipelines = time_builds(documents, encoders, args.repeats)
    answers_before = {library: to_answer(pipelines[library](QUERY)) for library in LIBRARIES}

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    paths = {library: RESULTS_DIR / f"save_load_{library}.pkl" for library in LIBRARIES}
    dump_s = {library: time_dumps(pipelines[library], paths[library], args.repeats) for library in LIBRARIES}
    cold = time_cold_loads(paths, args.repeats)

    results = {}
    for library in LIBRARIES:
        payload = paths[library].read_bytes()
        warm_s, reloaded = time_warm_loads(payload, args.repeats)
        results[library] = library_results(
            build_s[library], len(payload), dump_s[library], cold[library],
            warm_s, answers_before[library], to_answer(reloaded(QUERY)),
        )

    table = markdown_table(results, cherche_version, args.repeats)
    failures = failed_checks(results)
    report = {
        "benchmark": "Cherche 'Save & Load' example, towns corpus, offline MiniLM",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(cherche_version),
        "cpu_count": os.cpu_count(),
        "loadavg_start": load_before,
        "loadavg_end": os.getloadavg(),
        "platform": platform.platform(),
        "settings": {
            "repeats": args.repeats,
            "query": QUERY,
            "documents": len(documents),
            "retriever_k": RETRIEVER_K,
            "ranker_k": RANKER_K,
            "pickle_protocol": PROTOCOL,
            "similarity_tolerance": SIMILARITY_TOLERANCE,
            "model_path": model_path,
            "python_executable": sys.executable,
        },
        "results": results,
        "failed_checks": failures,
        "table_markdown": table,
    }
    RESULTS_FILE.write_text(json.dumps(report, indent=2) + "\n")

    print(table)
    print(f"\nJSON written to {RESULTS_FILE}")
    for failure in failures:
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
