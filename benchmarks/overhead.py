"""Workload 2: library overhead alone, Cherche 2.2.1 vs cherche_faiss.

The Save & Load pipeline (TfIdf retriever + Encoder ranker) with an encoder
that costs almost nothing: :class:`LookupEncoder` looks texts up in a table of
precomputed vectors (deterministic random unit vectors, float32, dimension
384, made beforehand for every document text and every query). What is timed
is the libraries' own work: TF-IDF retrieval, gathering candidates' vectors,
scoring, sorting and building the hits.

Corpora:

* towns (176 documents; TfIdf k=30 candidates, ranker k=10), queries: the
  first words of each article (as in ``save_load.py``);
* SciFact (5,183 documents; TfIdf k=100 candidates, ranker k=10), queries: the
  300 test queries of ``qrels/test.tsv`` (every query of ``queries.jsonl`` at
  the full size). Skipped, with a note, when ``shared/data/scifact`` is missing.

Measured per corpus, for each library, the libraries alternating:

* the whole pipeline, one query per call (interleaved query by query; p50)
  and one call with all the queries (time per query, median over repeats);
* the ranker stage alone, given fixed candidate lists computed once by the
  cherche_faiss retriever, so that both libraries rank the same lists: one
  query per call and one call with all of them.

Both rankers must return the same top-10 ids on the ranker-alone case (same
vectors, same candidates); the table says whether they do.

Run from the repository root::

    python benchmarks/overhead.py [--size smoke|quick|full] [--repeats 5] [--profile]

``--profile`` also profiles cherche_faiss's single-query calls with cProfile
and prints the functions that take the most time.
"""

from __future__ import annotations

import os

# Before anything imports tqdm: Cherche draws progress bars on every call otherwise.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import cProfile
import gzip
import hashlib
import importlib
import io
import json
import pstats
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS_DIR,
    SCIFACT,
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
from save_load import (  # noqa: E402
    column_name,
    format_ratio,
    format_seconds,
    interleaved_latencies,
    libraries,
    towns_queries,
)

WORKLOAD = "overhead"
TITLE = "Library overhead alone (lookup-table encoder)"
DIMENSION = 384
SEED = 0
KEY = "id"
RANKER_K = 10
SMOKE_QUERIES = 20
SCIFACT_TEST_QUERIES = SCIFACT / "qrels" / "test.tsv"
STAGES = ("pipeline", "ranker")
MODES = ("single", "batch")


# -- the encoder -------------------------------------------------------------------------------
def text_vector(text: str, dimension: int = DIMENSION, seed: int = SEED) -> np.ndarray:
    """A deterministic random unit vector for ``text`` (float32), seeded by a hash of the text."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=seed.to_bytes(8, "little")).digest()
    vector = np.random.default_rng(int.from_bytes(digest, "little")).standard_normal(dimension).astype(np.float32)
    return vector / np.linalg.norm(vector)


class LookupEncoder:
    """An encoder that costs almost nothing: texts looked up in a table of precomputed vectors.

    Callable like Cherche's encoders (``texts -> np.ndarray`` of shape
    ``(len(texts), dimension)``) and picklable. Vectors are unit-norm, so
    cosine similarity and inner product rank alike in both libraries.

    Parameters
    ----------
    texts
        Every text that will be encoded: documents' joined ``on`` fields and queries.
    dimension
        Size of the vectors.
    seed
        Seed mixed into each text's hash.

    Attributes
    ----------
    vectors : dict of str to np.ndarray
        The table.
    misses : int
        Texts asked for that were not in the table (computed on the fly; expected 0).
    """

    def __init__(self, texts: Iterable[str], dimension: int = DIMENSION, seed: int = SEED) -> None:
        self.dimension = dimension
        self.seed = seed
        self.vectors: dict[str, np.ndarray] = {
            text: text_vector(text, dimension, seed) for text in dict.fromkeys(texts)
        }
        self.misses = 0

    def _vector(self, text: str) -> np.ndarray:
        vector = self.vectors.get(text)
        if vector is None:
            self.misses += 1
            vector = text_vector(text, self.dimension, self.seed)
        return vector

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors of ``texts`` as a new ``(len(texts), dimension)`` float32 array."""
        if isinstance(texts, str):
            texts = [texts]
        return np.stack([self._vector(text) for text in texts])


# -- corpora -----------------------------------------------------------------------------------
@dataclass
class Corpus:
    """Documents, queries and the pipeline's settings for one corpus."""

    name: str
    documents: list[dict]
    on: list[str]
    queries: list[str]
    retriever_k: int
    ranker_k: int = RANKER_K

    def texts(self) -> list[str]:
        """Every text either library will encode: documents' ``on`` fields joined by spaces, queries."""
        return [
            " ".join(str(document.get(field, "")) for field in self.on) for document in self.documents
        ] + self.queries


def towns_corpus(n_queries: int | None) -> Corpus:
    """The packaged towns corpus; queries are the first words of each article."""
    from cherche_faiss import data

    documents = data.load_towns()
    queries = towns_queries(documents)[:n_queries]
    return Corpus("towns", documents, ["title", "article"], queries, retriever_k=30)


def scifact_corpus(n_queries: int | None, all_queries: bool = False) -> Corpus | None:
    """SciFact (BEIR) from ``shared/data/scifact``, None when it is not there.

    Queries: those of ``qrels/test.tsv`` (300), or every query of
    ``queries.jsonl`` when ``all_queries``; then the first ``n_queries``.
    """
    corpus_file, queries_file = SCIFACT / "corpus.jsonl.gz", SCIFACT / "queries.jsonl"
    if not (corpus_file.is_file() and queries_file.is_file()):
        return None
    with gzip.open(corpus_file, "rt", encoding="utf-8") as handle:
        documents = [
            {KEY: row["_id"], "title": row.get("title") or "", "text": row.get("text") or ""}
            for row in map(json.loads, handle)
        ]
    with open(queries_file, encoding="utf-8") as handle:
        texts = {row["_id"]: row["text"] for row in map(json.loads, handle)}
    if all_queries or not SCIFACT_TEST_QUERIES.is_file():
        ids = list(texts)
    else:
        with open(SCIFACT_TEST_QUERIES, encoding="utf-8") as handle:
            next(handle)  # header
            ids = list(dict.fromkeys(line.split("\t")[0] for line in handle if line.strip()))
    queries = list(dict.fromkeys(texts[query_id] for query_id in ids if query_id in texts))[:n_queries]
    return Corpus("scifact", documents, ["title", "text"], queries, retriever_k=100)


# -- building ----------------------------------------------------------------------------------
@dataclass
class Side:
    """One library's pipeline on one corpus, and its two stages."""

    retriever: Any
    ranker: Any
    pipeline: Any


def build(library: str, corpus: Corpus, encoder: LookupEncoder) -> Side:
    """``TfIdf + Encoder`` of ``library`` on ``corpus``, filled with ``pipeline.add``."""
    retrieve = importlib.import_module(f"{library}.retrieve")
    rank = importlib.import_module(f"{library}.rank")
    retriever = retrieve.TfIdf(key=KEY, on=corpus.on, documents=corpus.documents, k=corpus.retriever_k)
    ranker = rank.Encoder(key=KEY, on=corpus.on, encoder=encoder, k=corpus.ranker_k)
    pipeline = retriever + ranker
    pipeline.add(documents=corpus.documents)
    return Side(retriever, ranker, pipeline)


def candidate_lists(retriever: Any, queries: list[str]) -> list[list[dict]]:
    """The retriever's candidates of each query, as ``{"id": ...}`` dicts (computed once)."""
    return [[{KEY: hit[KEY]} for hit in hits] for hits in retriever(queries)]


def top_ids(answers: Sequence[Sequence[Mapping]]) -> list[list[Any]]:
    """The ids of each query's hits, in rank order."""
    return [[hit[KEY] for hit in hits] for hits in answers]


def agreement(answers: Mapping[str, Sequence[Sequence[Mapping]]]) -> dict[str, Any] | None:
    """How many queries get the same ids, in the same order, from both libraries (None: one side)."""
    if len(answers) < 2:
        return None
    a, b = (top_ids(answers[library]) for library in answers)
    same = sum(x == y for x, y in zip(a, b))
    same_sets = sum(set(x) == set(y) for x, y in zip(a, b))
    return {"queries": len(a), "same_ids_in_order": same, "same_id_sets": same_sets, "all_equal": same == len(a)}


def candidate_overlap(ids: Mapping[str, Sequence[Sequence[Any]]]) -> float | None:
    """Mean share of cherche_faiss's candidates that Cherche's retriever also returns (None: one side)."""
    if len(ids) < 2:
        return None
    shares = [len(set(a) & set(b)) / len(b) for a, b in zip(ids["cherche"], ids["cherche_faiss"]) if b]
    return float(np.mean(shares)) if shares else None


# -- measuring ---------------------------------------------------------------------------------
def measure_corpus(corpus: Corpus, sides: Sequence[str], config: Config) -> list[dict]:
    """Pipeline and ranker-alone timings, single and batch, for one corpus; one record per result."""
    encoder = LookupEncoder(corpus.texts())
    started = time.perf_counter()
    built = {library: build(library, corpus, encoder) for library in sides}
    build_s = time.perf_counter() - started
    queries = corpus.queries
    candidates = candidate_lists(built["cherche_faiss"].retriever, queries)
    passes = 1 if config.smoke else config.repeats
    params = {
        "corpus": corpus.name,
        "documents": len(corpus.documents),
        "queries": len(queries),
        "retriever_k": corpus.retriever_k,
        "ranker_k": corpus.ranker_k,
        "dimension": DIMENSION,
    }
    records: list[dict] = []

    def keep(stage: str, mode: str, samples: Mapping[str, list[float]], per_call: int) -> None:
        for library in sides:
            seconds = samples[library]
            metrics = summary(seconds) if mode == "single" else {"median_s": median(seconds), "n": len(seconds)}
            per_query = (metrics["p50_s"] if mode == "single" else metrics["median_s"]) / per_call
            records.append(
                record(
                    WORKLOAD,
                    f"{stage}_{mode}",
                    {**params, "library": library, "stage": stage, "mode": mode, "queries_per_call": per_call},
                    per_query_s=per_query,
                    **metrics,
                    samples_s=seconds,
                )
            )

    # Whole pipeline: one query per call, then one call with every query.
    pipelines = {library: built[library].pipeline for library in sides}
    keep("pipeline", "single", interleaved_latencies(pipelines, queries, warmup=3, passes=passes), 1)
    keep(
        "pipeline",
        "batch",
        alternate({library: _call(pipelines[library], queries) for library in sides}, config.repeats, config.warmup),
        len(queries),
    )

    # Ranker alone on fixed candidate lists.
    rankers = {library: built[library].ranker for library in sides}
    pairs = list(zip(queries, candidates))
    single_rankers = {library: _rank_one(rankers[library]) for library in sides}
    keep("ranker", "single", interleaved_latencies(single_rankers, pairs, warmup=3, passes=passes), 1)
    keep(
        "ranker",
        "batch",
        alternate(
            {library: _call(rankers[library], queries, documents=candidates) for library in sides},
            config.repeats,
            config.warmup,
        ),
        len(queries),
    )

    retrieved = {library: top_ids(candidate_lists(built[library].retriever, queries)) for library in sides}
    ranked = {library: rankers[library](queries, documents=candidates) for library in sides}
    whole = {library: pipelines[library](queries) for library in sides}
    singles = {library: [rankers[library](q, documents=c) for q, c in pairs] for library in sides}
    records.append(
        record(
            WORKLOAD,
            "agreement",
            params,
            ranker_batch=agreement(ranked),
            ranker_single=agreement(singles),
            pipeline_batch=agreement(whole),
            candidates_per_query=float(np.mean([len(c) for c in candidates])) if candidates else 0.0,
            retriever_overlap=candidate_overlap(retrieved),
            encoder_misses=encoder.misses,
            build_s=build_s,
        )
    )
    return records


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: function(*args, **kwargs)


def _rank_one(ranker: Any) -> Callable[[tuple[str, list[dict]]], Any]:
    return lambda pair: ranker(pair[0], documents=pair[1])


def corpora(config: Config) -> tuple[list[Corpus], list[str]]:
    """The corpora at ``config.size``, and notes on those skipped."""
    n_queries = SMOKE_QUERIES if config.smoke else None
    selected = [towns_corpus(n_queries)]
    notes: list[str] = []
    if config.smoke:
        notes.append("SciFact is not run at the smoke size.")
    else:
        scifact = scifact_corpus(n_queries, all_queries=config.full)
        if scifact is None:
            notes.append(f"SciFact skipped: {SCIFACT} (corpus.jsonl.gz, queries.jsonl) is missing.")
        else:
            selected.append(scifact)
    return selected, notes


def run(config: Config) -> list[dict]:
    """Run the workload: towns (and SciFact unless smoke), both libraries when Cherche is importable.

    Parameters
    ----------
    config
        Size (``smoke``: towns only, 20 queries, one pass), repeats and warm-ups.

    Returns
    -------
    list of dict
        Records of :func:`_common.record`, workload ``"overhead"``.
    """
    sides = libraries()
    selected, notes = corpora(config)
    records: list[dict] = []
    for corpus in selected:
        records.extend(measure_corpus(corpus, sides, config))
    records.append(
        record(
            WORKLOAD,
            "settings",
            {"libraries": list(sides), "size": config.size, "cherche": column_name("cherche")},
            repeats=config.repeats,
            warmup=config.warmup,
            notes=notes,
            corpora=[corpus.name for corpus in selected],
        )
    )
    return records


# -- reporting ---------------------------------------------------------------------------------
def _records(records: Sequence[Mapping], case: str | None = None) -> list[Mapping]:
    return [rec for rec in records if rec["workload"] == WORKLOAD and (case is None or rec["case"] == case)]


def _settings(records: Sequence[Mapping]) -> Mapping[str, Any]:
    found = _records(records, "settings")
    return {**found[0]["params"], **found[0]["metrics"]} if found else {"libraries": ["cherche_faiss"], "notes": []}


def per_query(records: Sequence[Mapping]) -> dict[tuple[str, str, str, str], float]:
    """Seconds per query by (corpus, stage, mode, library)."""
    return {
        (rec["params"]["corpus"], rec["params"]["stage"], rec["params"]["mode"], rec["params"]["library"]): rec[
            "metrics"
        ]["per_query_s"]
        for rec in _records(records)
        if "stage" in rec["params"]
    }


def _agreement_cell(check: Mapping[str, Any] | None, expected: bool = True) -> str:
    """``yes (n/n queries)``; a difference is flagged in bold only where equality is ``expected``."""
    if check is None:
        return "—"
    if not expected:
        return f"{check['same_ids_in_order']}/{check['queries']} queries identical"
    verdict = "yes" if check["all_equal"] else "**NO**"
    return f"{verdict} ({check['same_ids_in_order']}/{check['queries']} queries)"


def markdown(records: Sequence[Mapping]) -> str:
    """The section: per corpus, stage and calling mode, time per query of each library and the ratio."""
    settings = _settings(records)
    sides = list(settings["libraries"])
    has_cherche = "cherche" in sides
    times = per_query(records)
    lines = [f"### {TITLE}", ""]
    if not has_cherche:
        lines += [
            "**Cherche is not installed here: only the cherche_faiss side ran** "
            "(`pip install -e '.[bench]'` for the comparison).",
            "",
        ]
    lines += [
        f"| corpus | stage | calls | {column_name('cherche')} | cherche_faiss | ratio (Cherche / cherche_faiss) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    described = {"single": "one query per call (p50)", "batch": "all queries in one call"}
    agreements = {rec["params"]["corpus"]: rec for rec in _records(records, "agreement")}
    for corpus, rec in agreements.items():
        params = rec["params"]
        label = (
            f"{corpus} ({params['documents']:,} docs, {params['queries']} queries, {params['retriever_k']} candidates)"
        )
        for stage in STAGES:
            for mode in MODES:
                a = times.get((corpus, stage, mode, "cherche"))
                b = times[(corpus, stage, mode, "cherche_faiss")]
                stage_label = "TfIdf + Encoder" if stage == "pipeline" else "Encoder ranker alone"
                lines.append(
                    f"| {label} | {stage_label} | {described[mode]} | {format_seconds(a)} | "
                    f"{format_seconds(b)} | {format_ratio(ratio(a, b)) if a is not None else '—'} |"
                )
    lines.append("")
    for corpus, rec in agreements.items():
        metrics = rec["metrics"]
        overlap = metrics.get("retriever_overlap")
        shared = f", the two TfIdf retrievers sharing {overlap:.0%} of their candidates" if overlap is not None else ""
        lines.append(
            f"- {corpus}: same top-{rec['params']['ranker_k']} ids from both rankers on the same candidates: "
            f"batch {_agreement_cell(metrics['ranker_batch'])}, single {_agreement_cell(metrics['ranker_single'])}; "
            f"whole pipeline (each library's own TfIdf) "
            f"{_agreement_cell(metrics['pipeline_batch'], expected=False)}{shared}. "
            f"Encoder table misses: {metrics['encoder_misses']}."
        )
    lines += [
        "",
        "Time per query, medians, libraries alternating (single calls interleaved query by query, "
        f"{settings.get('repeats')} passes; batch calls: median of {settings.get('repeats')} calls divided by "
        "the number of queries). The encoder looks vectors up in a table (random unit vectors, dimension "
        f"{DIMENSION}), so the times are the libraries' own work. Candidates of the ranker-alone rows come from "
        "the cherche_faiss TfIdf, computed once; both rankers rank the same lists. Ratio above 1: cherche_faiss "
        "spends less time. Cherche's tqdm bars are disabled (TQDM_DISABLE=1), which only lowers its overhead.",
    ]
    for note in settings.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def plot(records: Sequence[Mapping], results_dir: Path) -> list[Path]:
    """Grouped bars of time per query (log scale), per corpus, stage and calling mode.

    Returns
    -------
    list of Path
        The PNG written, ``results_dir / "overhead.png"``.
    """
    plt = pyplot()

    times = per_query(records)
    sides = [side for side in ("cherche", "cherche_faiss") if any(key[3] == side for key in times)]
    groups = list(dict.fromkeys(key[:3] for key in times))
    colors = {"cherche": "tab:gray", "cherche_faiss": "tab:blue"}
    width = 0.8 / max(len(sides), 1)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.4 * len(groups) + 2), 4.5))
    positions = np.arange(len(groups))
    for offset, side in enumerate(sides):
        values = [times.get((*group, side), np.nan) * 1e6 for group in groups]
        axis.bar(positions + offset * width, values, width, label=column_name(side), color=colors[side])
    axis.set_xticks(
        positions + width * (len(sides) - 1) / 2, [f"{corpus}\n{stage}\n{mode}" for corpus, stage, mode in groups]
    )
    axis.set_yscale("log")
    axis.set_ylabel("µs per query (log)")
    axis.set_title(TITLE)
    axis.legend()
    figure.tight_layout()
    return [save_figure(figure, results_dir, "overhead.png")]


# -- profiling ---------------------------------------------------------------------------------
def profile(corpus: Corpus, top: int = 15) -> str:
    """cProfile of cherche_faiss's single-query calls (pipeline, then ranker alone) on ``corpus``."""
    encoder = LookupEncoder(corpus.texts())
    side = build("cherche_faiss", corpus, encoder)
    candidates = candidate_lists(side.retriever, corpus.queries)
    report = io.StringIO()
    for label, work in (
        ("pipeline, one query per call", lambda: [side.pipeline(q) for q in corpus.queries]),
        (
            "ranker alone, one query per call",
            lambda: [side.ranker(q, documents=c) for q, c in zip(corpus.queries, candidates)],
        ),
    ):
        work()  # warm-up
        profiler = cProfile.Profile()
        profiler.enable()
        work()
        profiler.disable()
        report.write(f"\n== cherche_faiss {label}, {corpus.name}, {len(corpus.queries)} queries ==\n")
        pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(top)
    return report.getvalue()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("smoke", "quick", "full"), default="quick")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 5, smoke 1)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also cProfile cherche_faiss's single-query calls")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the workload alone: print the table and write JSON and a plot."""
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
    folder = config.results_dir / "smoke" if config.smoke else config.results_dir  # smoke/ is gitignored
    folder.mkdir(parents=True, exist_ok=True)
    plots = [] if args.no_plots else [str(path) for path in plot(records, folder)]
    results_file = folder / "overhead.json"
    results_file.write_text(
        json.dumps(
            {
                "environment": environment(),
                "size": config.size,
                "seconds": seconds,
                "records": records,
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
    if args.profile:
        for corpus in corpora(config)[0]:
            print(profile(corpus))
    return 0


if __name__ == "__main__":
    sys.exit(main())
