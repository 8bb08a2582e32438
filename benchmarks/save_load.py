"""Workload 1: Cherche's "Save & Load" example, timed side by side: Cherche 2.2.1 vs cherche_faiss.

Both libraries run the same pipeline (only the import differs) on the packaged
towns corpus with the offline MiniLM model::

    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=30)
    ranker = rank.Encoder(key="id", on=["title", "article"],
                          encoder=SentenceTransformer(path, device="cpu").encode, k=10)
    search = retriever + ranker
    search.add(documents=documents)

Measured per library, the libraries always alternating in one process run:

* build + add time;
* single-query latency (p50, p95, p99) over distinct queries taken from the
  corpus (the first words of each article), the libraries interleaved query
  by query;
* throughput: one call with a list of 1,000 queries (cycled), in queries per
  second;
* pickle size and ``pickle.dump`` time;
* cold load: a fresh Python process runs ``pickle.load`` then the first query
  (and its whole wall time is taken too), libraries alternating;
* warm load: ``pickle.loads`` in this process, then the first query.

The answer to the example query is checked to survive both round trips.
Without Cherche installed only the cherche_faiss side runs, and the table
says so.

Run from the repository root::

    python benchmarks/save_load.py [--size smoke|quick|full] [--repeats 5]

Prints a markdown table, writes ``benchmarks/results/save_load.json`` and a
PNG plot. ``benchmarks/run.py`` runs the same thing through :func:`run`,
:func:`markdown` and :func:`plot`.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub, tqdm or torch.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import importlib
import importlib.metadata
import itertools
import json
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS_DIR,
    Config,
    alternate,
    cherche_available,
    environment,
    median,
    pyplot,
    ratio,
    record,
    save_figure,
    summary,
)

WORKLOAD = "save_load"
TITLE = "Save & Load pipeline on towns"
ALL_LIBRARIES: tuple[str, ...] = ("cherche", "cherche_faiss")
QUERY = "bordeaux"
KEY = "id"
ON = ["title", "article"]
RETRIEVER_K = 30
RANKER_K = 10
QUERY_WORDS = 6  # a latency query is the first words of an article
THROUGHPUT_QUERIES = 1_000
SMOKE_LATENCY_QUERIES = 20
SMOKE_THROUGHPUT_QUERIES = 100
PROTOCOL = pickle.DEFAULT_PROTOCOL  # as in Cherche's example: pickle.dump(search, f)
SIMILARITY_TOLERANCE = 1e-5  # a fresh process may re-encode the query a few ulps apart
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


# -- shared with overhead.py -----------------------------------------------------------------
def libraries() -> tuple[str, ...]:
    """The libraries compared here: both when Cherche is importable, else cherche_faiss alone."""
    return ALL_LIBRARIES if cherche_available() else ("cherche_faiss",)


def cherche_version() -> str | None:
    """Cherche's installed version, None when it is not installed."""
    try:
        return importlib.metadata.version("cherche")
    except importlib.metadata.PackageNotFoundError:
        return None


def column_name(library: str) -> str:
    """Table header of a library: ``Cherche 2.2.1`` or ``cherche_faiss``."""
    if library == "cherche":
        return f"Cherche {cherche_version() or '(not installed)'}"
    return library


def towns_queries(documents: Sequence[Mapping[str, Any]], words: int = QUERY_WORDS) -> list[str]:
    """Distinct queries derived from the corpus: the first ``words`` words of each article.

    Deterministic: corpus order, duplicates dropped (176 queries for towns).
    """
    queries = (" ".join(str(document["article"]).split()[:words]) for document in documents)
    return list(dict.fromkeys(query for query in queries if query))


def interleaved_latencies(
    functions: Mapping[str, Callable[[Any], Any]], inputs: Sequence[Any], warmup: int = 3, passes: int = 1
) -> dict[str, list[float]]:
    """Seconds of ``function(x)`` for each input, the sides interleaved input by input.

    Each input is run once by every side before the next input (the sides'
    order alternates from one input to the next, so that none always runs
    first); ``passes`` runs go over all the inputs. The first ``warmup``
    inputs are run by every side beforehand, untimed.
    """
    names = list(functions)
    for x in inputs[:warmup]:
        for run in functions.values():
            run(x)
    samples: dict[str, list[float]] = {name: [] for name in names}
    step = 0
    for _ in range(passes):
        for x in inputs:
            order = names if step % 2 == 0 else names[::-1]
            step += 1
            timed = alternate({name: _bind(functions[name], x) for name in order}, repeats=1, warmup=0)
            for name, values in timed.items():
                samples[name].extend(values)
    return samples


def _bind(function: Callable[[Any], Any], x: Any) -> Callable[[], Any]:
    return lambda: function(x)


def format_ratio(value: float | None) -> str:
    """A ratio with two significant figures or more, e.g. ``72×``, ``1.1×``, ``0.0028×``."""
    if value is None:
        return "—"
    if value >= 10:
        return f"{value:.0f}×"
    if value >= 1:
        return f"{value:.1f}×"
    return f"{value:.2g}×"


def format_seconds(seconds: float | None) -> str:
    """Seconds with a unit that keeps 3 significant figures readable: s, ms or µs."""
    if seconds is None:
        return "—"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


# -- the pipeline ------------------------------------------------------------------------------
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
    max_diff = max((abs(b[1] - a[1]) for b, a in zip(before, after)), default=0.0) if same_ids else None
    return {
        "same_ids": same_ids,
        "exact": before == after,
        "max_similarity_diff": max_diff,
        "equal": same_ids and max_diff is not None and max_diff <= SIMILARITY_TOLERANCE,
    }


def merge_comparisons(comparisons: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """One verdict for several reloads: equal only if every reload was (None: no reload)."""
    if not comparisons:
        return None
    diffs = [c["max_similarity_diff"] for c in comparisons if c["max_similarity_diff"] is not None]
    return {
        "same_ids": all(c["same_ids"] for c in comparisons),
        "exact": all(c["exact"] for c in comparisons),
        "max_similarity_diff": max(diffs) if len(diffs) == len(comparisons) else None,
        "equal": all(c["equal"] for c in comparisons),
    }


# -- timings -------------------------------------------------------------------------------------
def time_builds(
    documents: list[dict], encoders: Mapping[str, Callable], repeats: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Build each library's pipeline ``repeats`` times, alternating; keep the last ones."""
    pipelines: dict[str, Any] = {}

    def builder(library: str) -> Callable[[], None]:
        def build() -> None:
            pipelines[library] = build_pipeline(library, documents, encoders[library])

        return build

    samples = alternate({library: builder(library) for library in encoders}, repeats=repeats, warmup=0)
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


def time_warm_loads(payload: bytes, repeats: int) -> tuple[list[float], list[float], Answer]:
    """``repeats`` times: ``pickle.loads(payload)`` then the first query, in this process.

    Returns
    -------
    tuple
        Seconds of each load, seconds of each first query, and the last answer.
    """
    loads, first_queries, answer = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        loaded = pickle.loads(payload)
        middle = time.perf_counter()
        hits = loaded(QUERY)
        loads.append(middle - start)
        first_queries.append(time.perf_counter() - middle)
        answer = to_answer(hits)
        del loaded
    return loads, first_queries, answer


def cold_load(path: Path) -> dict[str, Any]:
    """Load ``path`` and query it once in a fresh CPU-only, offline Python process."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", CHILD_CODE, str(path), QUERY, KEY],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"cold load of {path} failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def time_cold_loads(paths: Mapping[str, Path], repeats: int) -> dict[str, list[dict[str, Any]]]:
    """``repeats`` cold loads per library, alternating libraries (A, B, A, B ...)."""
    runs: dict[str, list[dict[str, Any]]] = {library: [] for library in paths}
    for _ in range(repeats):
        for library, path in paths.items():
            runs[library].append(cold_load(path))
    return runs


# -- the workload ------------------------------------------------------------------------------
def sizes(config: Config) -> dict[str, Any]:
    """How many queries and runs each measurement gets at ``config.size``."""
    return {
        # Cold loads start a fresh interpreter each (~7 s): 3 keeps the quick suite under 5 minutes.
        "repeats": config.repeats if config.full else min(config.repeats, 3),
        "latency_queries": SMOKE_LATENCY_QUERIES if config.smoke else None,  # None: all of them
        "throughput_queries": SMOKE_THROUGHPUT_QUERIES if config.smoke else THROUGHPUT_QUERIES,
        "cold_loads": not (config.smoke and not cherche_available()),
    }


def run(config: Config) -> list[dict]:
    """Run the workload; one record per (measurement, library) and one of settings.

    Parameters
    ----------
    config
        Size (``smoke`` runs few queries, one repeat when ``config.repeats`` is 1,
        and skips fresh-process loads when Cherche is absent), repeats and warm-ups.

    Returns
    -------
    list of dict
        Records of :func:`_common.record`, workload ``"save_load"``.
    """
    from sentence_transformers import SentenceTransformer

    from cherche_faiss import data

    plan = sizes(config)
    repeats = plan["repeats"]
    sides = libraries()
    documents = data.load_towns()
    model_path = str(data.minilm_path())
    encoders = {}
    for library in sides:  # one model per library, warmed up, so the pickles are independent
        model = SentenceTransformer(model_path, device="cpu")
        model.encode(["warm-up"])
        encoders[library] = model.encode

    records: list[dict] = []

    def add(case: str, library: str, params: Mapping[str, Any] | None = None, **metrics: Any) -> None:
        records.append(record(WORKLOAD, case, {"library": library, **(params or {})}, **metrics))

    # Build + add.
    build_s, pipelines = time_builds(documents, encoders, repeats)
    answers_before = {library: to_answer(pipelines[library](QUERY)) for library in sides}
    for library in sides:
        add(
            "build_add",
            library,
            {"documents": len(documents)},
            median_s=median(build_s[library]),
            samples_s=build_s[library],
            hits=len(answers_before[library]),
            answer=answers_before[library],
        )

    # Single-query latency, interleaved query by query.
    queries = towns_queries(documents)
    if plan["latency_queries"] is not None:
        queries = queries[: plan["latency_queries"]]
    samples = interleaved_latencies({library: pipelines[library] for library in sides}, queries, warmup=3)
    for library in sides:
        add(
            "latency",
            library,
            {"queries": len(queries), "query_words": QUERY_WORDS},
            **summary(samples[library]),
            samples_s=samples[library],
        )

    # Throughput: one call with a list of queries.
    batch = list(itertools.islice(itertools.cycle(queries), plan["throughput_queries"]))
    calls = alternate({library: _bind(pipelines[library], batch) for library in sides}, repeats, warmup=config.warmup)
    for library in sides:
        seconds = median(calls[library])
        add(
            "throughput",
            library,
            {"queries": len(batch), "distinct": len(set(batch))},
            median_s=seconds,
            queries_per_s=len(batch) / seconds,
            samples_s=calls[library],
        )

    # Pickle: size, dump, cold and warm loads.
    with tempfile.TemporaryDirectory(prefix="save_load_") as folder:
        paths = {library: Path(folder) / f"save_load_{library}.pkl" for library in sides}
        dump_s = {library: time_dumps(pipelines[library], paths[library], repeats) for library in sides}
        del pipelines  # the loads below should not compete with the built pipelines for memory
        cold = time_cold_loads(paths, repeats) if plan["cold_loads"] else {library: [] for library in sides}
        for library in sides:
            payload = paths[library].read_bytes()
            warm_s, warm_query_s, warm_answer = time_warm_loads(payload, repeats)
            runs = cold[library]
            cold_load_s = [one["load_s"] for one in runs]
            cold_query_s = [one["first_query_s"] for one in runs]
            add(
                "pickle",
                library,
                {"protocol": PROTOCOL, "query": QUERY},
                pickle_bytes=len(payload),
                dump_s=median(dump_s[library]),
                dump_samples_s=dump_s[library],
                warm_load_s=median(warm_s),
                warm_load_samples_s=warm_s,
                warm_first_query_s=median(warm_query_s),
                warm_first_query_samples_s=warm_query_s,
                warm_round_trip=compare(answers_before[library], warm_answer),
                cold_load_s=median(cold_load_s) if runs else None,
                cold_first_query_s=median(cold_query_s) if runs else None,
                cold_load_plus_query_s=median([a + b for a, b in zip(cold_load_s, cold_query_s)]) if runs else None,
                cold_wall_s=median([one["wall_s"] for one in runs]) if runs else None,
                cold_samples=runs,
                cold_round_trip=merge_comparisons([compare(answers_before[library], one["answer"]) for one in runs]),
            )

    records.append(
        record(
            WORKLOAD,
            "settings",
            {"libraries": list(sides), "cherche": cherche_version(), "size": config.size},
            repeats=repeats,
            warmup=config.warmup,
            query=QUERY,
            documents=len(documents),
            retriever_k=RETRIEVER_K,
            ranker_k=RANKER_K,
            pickle_protocol=PROTOCOL,
            similarity_tolerance=SIMILARITY_TOLERANCE,
            model_path=model_path,
            cold_loads=plan["cold_loads"],
            python_executable=sys.executable,
        )
    )
    return records


# -- reporting ---------------------------------------------------------------------------------
def _by_case(records: Sequence[Mapping]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Metrics of this workload's records by (case, library)."""
    return {
        (rec["case"], rec["params"].get("library", "")): rec["metrics"]
        for rec in records
        if rec["workload"] == WORKLOAD
    }


def _settings(records: Sequence[Mapping]) -> Mapping[str, Any]:
    for rec in records:
        if rec["workload"] == WORKLOAD and rec["case"] == "settings":
            return {**rec["params"], **rec["metrics"]}
    return {"libraries": list(ALL_LIBRARIES), "repeats": "?", "cold_loads": True}


def verdict(check: Mapping[str, Any] | None) -> str:
    """A table cell for a round-trip check."""
    if check is None:
        return "not run"
    if not check["equal"]:
        return "**NO**"
    if check["exact"]:
        return "yes (exact)"
    return f"yes (max Δsim {check['max_similarity_diff']:.1e})"


def markdown(records: Sequence[Mapping]) -> str:
    """The "Save & Load pipeline on towns" section: metric | Cherche | cherche_faiss | ratio.

    Ratios are Cherche / cherche_faiss for times and sizes and cherche_faiss /
    Cherche for queries per second: above 1, cherche_faiss is ahead.
    """
    metrics = _by_case(records)
    settings = _settings(records)
    sides = list(settings["libraries"])
    has_cherche = "cherche" in sides

    def value(case: str, library: str, name: str) -> Any:
        return metrics.get((case, library), {}).get(name)

    rows: list[tuple[str, ...]] = []

    def timed(label: str, case: str, name: str) -> None:
        a, b = value(case, "cherche", name), value(case, "cherche_faiss", name)
        rows.append(
            (
                label,
                format_seconds(a) if has_cherche else "—",
                format_seconds(b),
                format_ratio(ratio(a, b)) if a is not None and b is not None else "—",
            )
        )

    size_a, size_b = value("pickle", "cherche", "pickle_bytes"), value("pickle", "cherche_faiss", "pickle_bytes")
    latency_n = value("latency", "cherche_faiss", "n")
    batch_n = next(
        (rec["params"]["queries"] for rec in records if rec["workload"] == WORKLOAD and rec["case"] == "throughput"),
        THROUGHPUT_QUERIES,
    )
    timed("build + add", "build_add", "median_s")
    for percentile in ("p50", "p95", "p99"):
        timed(f"single query latency {percentile} ({latency_n} queries)", "latency", f"{percentile}_s")
    timed(f"one call with {batch_n:,} queries", "throughput", "median_s")
    qps_a, qps_b = (
        value("throughput", "cherche", "queries_per_s"),
        value("throughput", "cherche_faiss", "queries_per_s"),
    )
    rows.append(
        (
            f"throughput, {batch_n:,} queries in one call (queries/s)",
            f"{qps_a:,.0f}" if qps_a else "—",
            f"{qps_b:,.0f}",
            format_ratio(ratio(qps_b, qps_a)) if qps_a else "—",
        )
    )
    rows.append(
        (
            "pickle size",
            f"{size_a:,} B" if size_a else "—",
            f"{size_b:,} B",
            format_ratio(ratio(size_a, size_b)) if size_a else "—",
        )
    )
    timed("pickle.dump to file", "pickle", "dump_s")
    if settings.get("cold_loads", True):
        timed("cold: pickle.load in a fresh process", "pickle", "cold_load_s")
        timed(f'cold: first query "{QUERY}" after load', "pickle", "cold_first_query_s")
        timed("cold: load + first query", "pickle", "cold_load_plus_query_s")
        timed("cold: whole child process wall time", "pickle", "cold_wall_s")
    timed("warm: pickle.loads in the same process", "pickle", "warm_load_s")
    timed(f'warm: first query "{QUERY}" after loads', "pickle", "warm_first_query_s")
    hits_a, hits_b = value("build_add", "cherche", "hits"), value("build_add", "cherche_faiss", "hits")
    rows.append((f'hits for "{QUERY}"', str(hits_a) if has_cherche else "—", str(hits_b), "—"))
    for kind in ("cold", "warm"):
        if kind == "cold" and not settings.get("cold_loads", True):
            continue
        rows.append(
            (
                f"answer == before pickling ({kind})",
                verdict(value("pickle", "cherche", f"{kind}_round_trip")) if has_cherche else "—",
                verdict(value("pickle", "cherche_faiss", f"{kind}_round_trip")),
                "—",
            )
        )

    header = ("metric", column_name("cherche"), "cherche_faiss", "ratio")
    lines = [f"### {TITLE}", ""]
    if not has_cherche:
        lines += [
            "**Cherche is not installed here: only the cherche_faiss side ran** "
            "(`pip install -e '.[bench]'` for the comparison).",
            "",
        ]
    lines += ["| " + " | ".join(header) + " |", "| --- | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    notes = [
        f"Medians of {settings.get('repeats')} runs, libraries alternating; latencies interleaved query by "
        f"query over distinct queries (the first {QUERY_WORDS} words of each article); throughput queries "
        "cycle over the same list. Ratio: Cherche / cherche_faiss for times and sizes, cherche_faiss / "
        "Cherche for queries/s, so above 1 cherche_faiss is ahead.",
        f"Pipeline: TfIdf k={RETRIEVER_K} + Encoder (offline MiniLM, CPU) k={RANKER_K}; pickle protocol {PROTOCOL}.",
    ]
    if not settings.get("cold_loads", True):
        notes.append("Fresh-process loads skipped (smoke size without Cherche).")
    lines += ["", " ".join(notes)]
    return "\n".join(lines) + "\n"


def plot(records: Sequence[Mapping], results_dir: Path) -> list[Path]:
    """Bar charts: latency percentiles, throughput, and save/load times (log scale).

    Returns
    -------
    list of Path
        The PNG written, ``results_dir / "save_load.png"``.
    """
    plt = pyplot()
    import numpy as np

    metrics = _by_case(records)
    sides = [side for side in ALL_LIBRARIES if ("latency", side) in metrics]
    colors = {"cherche": "tab:gray", "cherche_faiss": "tab:blue"}
    width = 0.8 / max(len(sides), 1)
    figure, (latency_ax, qps_ax, load_ax) = plt.subplots(
        1, 3, figsize=(15, 4.5), gridspec_kw={"width_ratios": [3, 1.2, 5]}
    )

    percentiles = ["p50", "p95", "p99"]
    for offset, side in enumerate(sides):
        values = [metrics[("latency", side)][f"{p}_s"] * 1e3 for p in percentiles]
        latency_ax.bar(np.arange(3) + offset * width, values, width, label=column_name(side), color=colors[side])
    latency_ax.set_xticks(np.arange(3) + width * (len(sides) - 1) / 2, percentiles)
    latency_ax.set_ylabel("ms per query")
    latency_ax.set_title(f"Single-query latency ({metrics[('latency', sides[0])]['n']} queries)")
    latency_ax.legend()

    qps = [metrics[("throughput", side)]["queries_per_s"] for side in sides]
    qps_ax.bar(range(len(sides)), qps, color=[colors[side] for side in sides])
    qps_ax.set_xticks(range(len(sides)), [column_name(side) for side in sides], rotation=15)
    qps_ax.set_ylabel("queries / s")
    qps_ax.set_title("Throughput, one call")

    stages = [
        ("build + add", "build_add", "median_s"),
        ("dump", "pickle", "dump_s"),
        ("cold load", "pickle", "cold_load_s"),
        ("cold 1st query", "pickle", "cold_first_query_s"),
        ("warm load", "pickle", "warm_load_s"),
        ("warm 1st query", "pickle", "warm_first_query_s"),
    ]
    stages = [stage for stage in stages if all(metrics[(stage[1], side)].get(stage[2]) is not None for side in sides)]
    positions = np.arange(len(stages))
    for offset, side in enumerate(sides):
        values = [metrics[(case, side)][name] for _, case, name in stages]
        load_ax.bar(positions + offset * width, values, width, label=column_name(side), color=colors[side])
    load_ax.set_xticks(positions + width * (len(sides) - 1) / 2, [label for label, _, _ in stages], rotation=15)
    load_ax.set_yscale("log")
    load_ax.set_ylabel("seconds (log)")
    load_ax.set_title("Build, save and load (medians)")
    load_ax.legend()

    figure.suptitle(TITLE)
    figure.tight_layout()
    return [save_figure(figure, results_dir, "save_load.png")]


def failed_checks(records: Sequence[Mapping]) -> list[str]:
    """Descriptions of the round-trip and hit-count checks that failed."""
    failures = []
    for (case, library), metrics in _by_case(records).items():
        if case == "pickle":
            for kind in ("cold_round_trip", "warm_round_trip"):
                check = metrics.get(kind)
                if check is not None and not check["equal"]:
                    failures.append(f"{library}: answer after {kind.split('_')[0]} reload differs from before pickling")
        if case == "build_add" and library == "cherche_faiss" and metrics["hits"] != RANKER_K:
            failures.append(f"cherche_faiss returned {metrics['hits']} hits, not {RANKER_K}")
    return failures


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("smoke", "quick", "full"), default="quick")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 5, smoke 1)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the workload alone: print the table, write JSON (and a plot); non-zero exit if a check failed."""
    args = parse_args(argv)
    config = Config(size=args.size, results_dir=args.results_dir)
    config.repeats = args.repeats if args.repeats is not None else (1 if config.smoke else config.repeats)
    if not cherche_available():
        print(
            "Cherche is not importable here: timing cherche_faiss alone "
            "(`pip install -e '.[bench]'` for the comparison).",
            file=sys.stderr,
        )
    started = time.perf_counter()
    records = run(config)
    seconds = time.perf_counter() - started
    table = markdown(records)
    failures = failed_checks(records)
    folder = config.results_dir / "smoke" if config.smoke else config.results_dir  # smoke/ is gitignored
    folder.mkdir(parents=True, exist_ok=True)
    plots = [] if args.no_plots else [str(path) for path in plot(records, folder)]
    results_file = folder / "save_load.json"
    results_file.write_text(
        json.dumps(
            {
                "environment": environment(),
                "size": config.size,
                "seconds": seconds,
                "records": records,
                "failed_checks": failures,
                "plots": plots,
                "table_markdown": table,
            },
            indent=1,
            default=float,
        )
        + "\n"
    )
    print(table)
    print(f"Ran in {seconds:.1f} s. JSON written to {results_file}" + (f"; plot {plots[0]}" if plots else ""))
    for failure in failures:
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
