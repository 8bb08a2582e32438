"""Workload: TF-IDF and BM25, cherche_faiss against Cherche 2.2.1 and the libraries underneath.

SciFact (5,183 abstracts, the 300 test queries; every query at the full size; the packaged towns
corpus and 20 queries at the smoke size). Each cherche_faiss side runs twice: through numpy and
scipy (the core install) and through the numba kernels (the ``fast`` extra), chosen per call with
``CHERCHE_FAISS_SPARSE``.

* Retrievers alone, k=100, batches of 1, 16 and 300 queries (every query, in consecutive
  batches): cherche_faiss ``TfIdf`` (its default, Cherche's n-grams) and ``TfIdf`` with
  scikit-learn's ``char_wb`` vectorizer (the default before: "char_wb") against Cherche's ``TfIdf``
  (lenlp) and scikit-learn used directly (``vectorizer.transform(batch) @ matrix.T``, then
  ``argpartition`` and a sort, on the ``char_wb`` vectorizer and document matrix cherche_faiss
  fitted: the same settings); cherche_faiss ``BM25`` (bm25s's scoring, its default) and ``BM25``
  with Cherche's ``count_vectorizer`` ("lenlp-bm25") against Cherche's ``BM25`` (lenlp) and bm25s
  used directly (``bm25s.tokenize`` then ``retrieve``, its numpy backend, and its numba backend on
  every core when numba is installed). Each side's hits are compared with Cherche's: the overlap of
  the top-k sets (the share of Cherche's hits a side returns), and the queries answered with the
  same ids in the same order.
* Pipelines: ``TfIdf(k=100) + rank.Encoder(k=10)`` and ``BM25(k=100) + rank.Encoder(k=10)`` with
  the lookup-table encoder of ``overhead.py`` (vectors looked up, nothing computed), one call with
  every query and one query per call (p50), against Cherche's same pipelines.

Sides alternate within a measurement (``alternate``, single calls interleaved query by query);
figures are times per query, medians over passes. Run from the repository root::

    python benchmarks/run.py --only sparse --results-dir benchmarks/results/sparse
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before anything imports tqdm: Cherche draws bars otherwise

import importlib
import importlib.util
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Config, alternate, cherche_available, median, pyplot, record, run_alone, save_figure  # noqa: E402
from overhead import KEY, Corpus, LookupEncoder, scifact_corpus, towns_corpus  # noqa: E402
from save_load import column_name, format_ratio, format_seconds, interleaved_latencies  # noqa: E402

WORKLOAD = "sparse"
TITLE = "TF-IDF and BM25: retrievers alone and in pipelines"
RETRIEVER_K = 100
RANKER_K = 10
SMOKE_QUERIES = 20
BATCHES = (1, 16, 300)
OURS = ("cherche_faiss numpy", "cherche_faiss numba")
# The other setting of each family, one argument away: scikit-learn's char_wb TfIdf (the default
# before) and Cherche's BM25 (count_vectorizer); run through numpy and numba too.
SETTINGS = {"tfidf": "char_wb", "bm25": "lenlp-bm25"}
MODE_ENV = "CHERCHE_FAISS_SPARSE"
GOALS = {"batch": 10.0, "single": 2.0}  # pipeline speed-up over Cherche wanted (issue 15)


def _with_mode(mode: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        os.environ[MODE_ENV] = mode
        return function(*args, **kwargs)

    return run


def _sklearn_search(vectorizer: Any, documents_t: Any, k: int) -> Callable[[list[str]], list[list[int]]]:
    """scikit-learn's straightforward top k: one sparse product, argpartition, a sort."""

    def search(batch: list[str]) -> list[list[int]]:
        scores = (vectorizer.transform(batch) @ documents_t).toarray()
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.argsort(-scores, axis=1)
        values = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
        return [row[value > 0].tolist() for row, value in zip(top, values)]

    return search


def _bm25s_search(corpus: Corpus, backend: str, k: int) -> Callable[[list[str]], list[list[int]]]:
    """bm25s used directly, as its README does: tokenize (English stop words, stemmer), index, retrieve."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    texts = corpus.texts()[: len(corpus.documents)]
    model = bm25s.BM25(backend=backend)
    model.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    threads = -1 if backend == "numba" else 0

    def search(batch: list[str]) -> list[list[int]]:
        tokens = bm25s.tokenize(batch, stopwords="en", stemmer=stemmer, show_progress=False)
        rows, scores = model.retrieve(tokens, k=k, show_progress=False, n_threads=threads)
        return [row[score > 0].tolist() for row, score in zip(rows, scores)]

    return search


def _ours_ids(retriever: Any) -> Callable[[list[str]], list[list[int]]]:
    inner = getattr(retriever, "_vectors", None) or retriever  # Cherche's BM25 keeps its keys in a TfIdf
    rows = {key: row for row, key in enumerate(inner._keys)}
    return lambda batch: [[rows[hit[KEY]] for hit in hits] for hits in retriever(batch)]


def _cherche_ids(retriever: Any, corpus: Corpus) -> Callable[[list[str]], list[list[int]]]:
    rows = {document[KEY]: row for row, document in enumerate(corpus.documents)}
    return lambda batch: [[rows[hit[KEY]] for hit in hits] for hits in retriever(batch, k=RETRIEVER_K)]


def _other_setting(corpus: Corpus, family: str) -> Any:
    """cherche_faiss's other setting of ``family`` (:data:`SETTINGS`)."""
    from cherche_faiss import retrieve
    from cherche_faiss.retrieve.tfidf import sklearn_vectorizer

    if family == "tfidf":
        return retrieve.TfIdf(
            key=KEY, on=corpus.on, documents=corpus.documents, tfidf=sklearn_vectorizer(), k=RETRIEVER_K
        )
    vectorizer = retrieve.NgramVectorizer(weighting="bm25", ngram_range=(3, 5))
    return retrieve.BM25(key=KEY, on=corpus.on, documents=corpus.documents, count_vectorizer=vectorizer, k=RETRIEVER_K)


def build_sides(corpus: Corpus, family: str) -> tuple[dict[str, Callable[[list[str]], Any]], dict[str, Any]]:
    """Each side's ``batch -> hits`` for ``family`` ("tfidf" or "bm25"), and the retrievers built."""
    from cherche_faiss import retrieve

    ours = (retrieve.TfIdf if family == "tfidf" else retrieve.BM25)(
        key=KEY, on=corpus.on, documents=corpus.documents, k=RETRIEVER_K
    )
    other = _other_setting(corpus, family)
    sides: dict[str, Callable[[list[str]], Any]] = {}
    for retriever, prefix in ((ours, "cherche_faiss"), (other, f"cherche_faiss {SETTINGS[family]}")):
        ids = _ours_ids(retriever)
        for mode in ("numpy", "numba"):
            if mode == "numba" and importlib.util.find_spec("numba") is None:
                continue
            sides[f"{prefix} {mode}"] = _with_mode(mode, ids)
    built: dict[str, Any] = {"cherche_faiss": ours}
    if cherche_available():
        cherche_retrieve = importlib.import_module("cherche.retrieve")
        theirs = (cherche_retrieve.TfIdf if family == "tfidf" else cherche_retrieve.BM25)(
            key=KEY, on=corpus.on, documents=corpus.documents, k=RETRIEVER_K
        )
        built["cherche"] = theirs
        sides[column_name("cherche")] = _cherche_ids(theirs, corpus)
    k = min(RETRIEVER_K, len(corpus.documents))
    if family == "tfidf":
        sides["scikit-learn"] = _sklearn_search(other.tfidf, other._matrix.T.tocsr(), k)
    else:
        sides["bm25s numpy"] = _bm25s_search(corpus, "numpy", k)
        if importlib.util.find_spec("numba") is not None:
            sides["bm25s numba"] = _bm25s_search(corpus, "numba", k)
    return sides, built


def _over(search: Callable[[list[str]], Any], batches: list[list[str]]) -> Callable[[], list]:
    return lambda: [search(batch) for batch in batches]


def _batches(queries: list[str], size: int) -> list[list[str]]:
    return [queries[start : start + size] for start in range(0, len(queries), size)]


def measure_alone(corpus: Corpus, family: str, config: Config) -> tuple[list[dict], dict[str, Any]]:
    """Time per query of every side at each batch size, how their hits agree, and the retrievers built."""
    started = time.perf_counter()
    sides, built = build_sides(corpus, family)
    build_s = time.perf_counter() - started
    queries = corpus.queries
    records: list[dict] = []
    params = {"corpus": corpus.name, "documents": len(corpus.documents), "queries": len(queries), "k": RETRIEVER_K}
    for size in sorted({min(size, len(queries)) for size in BATCHES}):
        batches = _batches(queries, size)
        cases = {side: _over(search, batches) for side, search in sides.items()}
        samples = alternate(cases, repeats=config.repeats, warmup=config.warmup)
        for side, seconds in samples.items():
            records.append(
                record(
                    WORKLOAD,
                    "alone",
                    {**params, "family": family, "side": side, "batch": size},
                    per_query_s=median(seconds) / len(queries),
                    samples_s=seconds,
                )
            )
    answers = {side: search(queries) for side, search in sides.items()}
    cherche = answers.get(column_name("cherche"))
    metrics = {"agreement": _agreement(answers, answers[OURS[0]]), "build_s": build_s}
    if cherche is not None:
        metrics["against_cherche"] = _agreement(answers, cherche)
    records.append(record(WORKLOAD, "agreement", {**params, "family": family}, **metrics))
    return records, built


def _agreement(answers: Mapping[str, list[list[int]]], reference: list[list[int]]) -> dict[str, dict[str, Any]]:
    """Each side's hits against ``reference``'s: queries with the same ids in order, the same id sets,
    and the overlap of the top-k sets (the share of the reference's hits the side returns, averaged)."""
    return {
        side: {
            "same_ids_in_order": sum(a == b for a, b in zip(found, reference)),
            "same_id_sets": sum(set(a) == set(b) for a, b in zip(found, reference)),
            "overlap": float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(found, reference)])),
        }
        for side, found in answers.items()
    }


def measure_pipelines(corpus: Corpus, family: str, retrievers: Mapping[str, Any], config: Config) -> list[dict]:
    """``retriever(k=100) + rank.Encoder(k=10)`` of each library (its retriever of ``retrievers``),
    batch and single calls."""
    encoder = LookupEncoder(corpus.texts())
    pipelines: dict[str, Any] = {}
    for library, retriever in retrievers.items():
        rank = importlib.import_module(f"{library}.rank")
        ranker = rank.Encoder(key=KEY, on=corpus.on, encoder=encoder, k=RANKER_K)
        ranker.add(documents=corpus.documents)
        pipelines[library] = retriever + ranker
    sides: dict[str, Callable[[Any], Any]] = {}
    for side in OURS:
        if side.endswith("numba") and importlib.util.find_spec("numba") is None:
            continue
        sides[side] = _with_mode(side.split()[1], pipelines["cherche_faiss"])
    if "cherche" in pipelines:
        sides[column_name("cherche")] = pipelines["cherche"]
    queries = corpus.queries
    params = {"corpus": corpus.name, "queries": len(queries), "family": family, "k": RETRIEVER_K, "ranker_k": RANKER_K}
    passes = 1 if config.smoke else max(1, config.repeats // 2)
    single = interleaved_latencies(sides, queries, warmup=3, passes=passes)
    batch = alternate({side: (lambda run=run: run(queries)) for side, run in sides.items()}, config.repeats, 1)
    records = [
        record(WORKLOAD, "pipeline", {**params, "side": side, "mode": "single"}, per_query_s=median(single[side]))
        for side in sides
    ]
    records += [
        record(
            WORKLOAD,
            "pipeline",
            {**params, "side": side, "mode": "batch"},
            per_query_s=median(batch[side]) / len(queries),
            samples_s=batch[side],
        )
        for side in sides
    ]
    ours = pipelines["cherche_faiss"]
    os.environ[MODE_ENV] = "numpy"
    numpy_hits = ours(queries)
    os.environ[MODE_ENV] = "numba"
    records.append(record(WORKLOAD, "pipeline_agreement", params, numpy_equals_numba=ours(queries) == numpy_hits))
    return records


def run(config: Config) -> list[dict]:
    """Both families, alone and in pipelines, on towns (smoke) or SciFact."""
    previous = os.environ.get(MODE_ENV)
    notes: list[str] = []
    corpora = [towns_corpus(SMOKE_QUERIES if config.smoke else None)]
    if not config.smoke:
        found = scifact_corpus(None, all_queries=config.full)
        if found is None:
            notes.append("SciFact is missing: the towns corpus alone.")
        corpora += [found] if found is not None else []
    records: list[dict] = []
    try:
        for corpus in corpora:
            for family in ("tfidf", "bm25"):
                alone, retrievers = measure_alone(corpus, family, config)
                records += alone + measure_pipelines(corpus, family, retrievers, config)
    finally:
        if previous is None:
            os.environ.pop(MODE_ENV, None)
        else:
            os.environ[MODE_ENV] = previous
    records.append(record(WORKLOAD, "settings", {"size": config.size}, repeats=config.repeats, notes=notes))
    return records


# -- reporting ---------------------------------------------------------------------------------
def _times(records: Sequence[Mapping], case: str, column: str, corpus: str) -> dict[tuple, float]:
    return {
        (rec["params"]["family"], rec["params"][column], rec["params"]["side"]): rec["metrics"]["per_query_s"]
        for rec in records
        if rec["workload"] == WORKLOAD and rec["case"] == case and rec["params"]["corpus"] == corpus
    }


def _corpora(records: Sequence[Mapping]) -> list[Mapping]:
    """The params of each corpus's agreement record, in the order measured."""
    return [rec["params"] for rec in records if rec["workload"] == WORKLOAD and rec["case"] == "agreement"][::2]


def _speedup(times: Mapping[tuple, float], row: tuple, other: str, ours: str) -> float | None:
    a, b = times.get((*row, other)), times.get((*row, ours))
    return a / b if a and b else None


def markdown(records: Sequence[Mapping]) -> str:
    """Per corpus, two tables: retrievers alone by batch size, and the pipelines; speed-ups are their time / ours."""
    lines = [f"### {TITLE}", ""]
    for corpus in _corpora(records):
        lines += _corpus_tables(records, corpus)
    lines += [
        "cherche_faiss's TfIdf and its BM25 with a count_vectorizer compute Cherche's vectors (lenlp's "
        "normalisation and character n-grams of the whole text, the same weights), so their hits are Cherche's "
        "but where tied or float-close scores are ordered differently (cherche_faiss breaks ties by document "
        "order, Cherche's argpartition arbitrarily). BM25's default (bm25s over words) and scikit-learn's char_wb "
        "n-grams (each word padded with spaces) are other analyses: other hits. scikit-learn and bm25s used "
        "directly score like the cherche_faiss side of the same settings.",
    ]
    return "\n".join(lines) + "\n"


def _corpus_tables(records: Sequence[Mapping], corpus: Mapping) -> list[str]:
    name = corpus["corpus"]
    alone = _times(records, "alone", "batch", name)
    lines = [
        f"**{name}**: {corpus.get('documents', '?'):,} documents, {corpus.get('queries', '?')} "
        f"queries, k={RETRIEVER_K}. Time per query (median over passes, sides alternating); speed-up = the other "
        "side's time / cherche_faiss's (numpy path | numba path).",
        "",
    ]
    for family, label in (("tfidf", "TF-IDF"), ("bm25", "BM25")):
        sides = list(dict.fromkeys(side for fam, _, side in alone if fam == family))
        others = [side for side in sides if side not in OURS]
        header = " | ".join(sides)
        ratios = " | ".join(f"vs {side}" for side in others)
        lines += [f"| {label} retriever | batch | {header} | {ratios} |", "|---" * (2 + len(sides) + len(others)) + "|"]
        for size in sorted({size for fam, size, _ in alone if fam == family}):
            row = (family, size)
            cells = " | ".join(format_seconds(alone.get((*row, side))) for side in sides)
            speedups = " | ".join(
                " \\| ".join(format_ratio(_speedup(alone, row, other, ours)) for ours in OURS if (*row, ours) in alone)
                for other in others
            )
            lines.append(f"| {label} | {size} | {cells} | {speedups} |")
        lines.append("")
    pipelines = _times(records, "pipeline", "mode", name)
    cherche = column_name("cherche")
    lines += [
        f"| pipeline (retriever k={RETRIEVER_K} + rank.Encoder k={RANKER_K}, lookup encoder) | calls | {cherche} | "
        "cherche_faiss numpy | cherche_faiss numba | speed-up numpy | speed-up numba | goal |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for family, label in (("tfidf", "TfIdf + Encoder"), ("bm25", "BM25 + Encoder")):
        for mode, described in (("batch", "all queries in one call"), ("single", "one query per call (p50)")):
            row = (family, mode)
            if not any(key[:2] == row for key in pipelines):
                continue
            speedups = [_speedup(pipelines, row, cherche, ours) for ours in OURS]
            best = max((value for value in speedups if value), default=None)
            goal = GOALS[mode]
            verdict = "—" if best is None else f"≥ {goal:g}×: {'met' if best >= goal else 'missed'}"
            times = " | ".join(format_seconds(pipelines.get((*row, side))) for side in (cherche, *OURS))
            lines.append(f"| {label} | {described} | {times} | {' | '.join(map(format_ratio, speedups))} | {verdict} |")
    lines.append("")
    for rec in records:
        if rec["workload"] != WORKLOAD or rec["params"].get("corpus") != name:
            continue
        if rec["case"] == "agreement":
            family, queries = rec["params"]["family"], rec["params"]["queries"]
            for reference, label in ((OURS[0], "cherche_faiss numpy's"), (cherche, f"{cherche}'s")):
                metric = "agreement" if reference == OURS[0] else "against_cherche"
                parts = [
                    f"{side}: {value['same_ids_in_order']}/{queries} same ids in order, {value['overlap']:.1%} overlap"
                    for side, value in rec["metrics"].get(metric, {}).items()
                    if side != reference
                ]
                if parts:
                    lines.append(f"- {family} top-{RETRIEVER_K} hits against {label}: " + "; ".join(parts) + ".")
        if rec["case"] == "pipeline_agreement":
            same = rec["metrics"]["numpy_equals_numba"]
            lines.append(f"- {rec['params']['family']} pipeline: numpy and numba paths give identical hits: {same}.")
    return [*lines, ""]


def plot(records: Sequence[Mapping], results_dir: Path) -> list[Path]:
    """Time per query of each side by batch size (log scale), one panel per family."""
    plt = pyplot()
    alone = _times(records, "alone", "batch", _corpora(records)[-1]["corpus"])
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, (family, label) in zip(axes, (("tfidf", "TF-IDF"), ("bm25", "BM25"))):
        sizes = sorted({size for fam, size, _ in alone if fam == family})
        sides = list(dict.fromkeys(side for fam, _, side in alone if fam == family))
        width = 0.8 / max(len(sides), 1)
        for offset, side in enumerate(sides):
            values = [alone.get((family, size, side), np.nan) * 1e6 for size in sizes]
            axis.bar(np.arange(len(sizes)) + offset * width, values, width, label=side)
        axis.set_xticks(np.arange(len(sizes)) + width * (len(sides) - 1) / 2, [f"batch {s}" for s in sizes])
        axis.set_yscale("log")
        axis.set_ylabel("µs per query (log)")
        axis.set_title(f"{label} retriever, k={RETRIEVER_K}")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return [save_figure(figure, results_dir, "sparse.png")]


def main(argv: list[str] | None = None) -> int:
    return run_alone(__doc__, run, markdown, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
