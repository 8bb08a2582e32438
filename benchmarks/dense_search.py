"""Workload 3, exact dense search: cherche_faiss against raw FAISS, NumPy and Cherche.

``N`` document vectors (d=384, MiniLM embeddings of SciFact sentences, grown
by :func:`embeddings.derived` beyond the real ones) are searched for their
top-10 with batches of 1, 16, 64, 256 and 1,024 held-out query vectors (the
SciFact claims, cycled to reach 1,024). The sides, timed alternately in one
process after a warm-up:

``cherche_faiss``
    ``retrieve.Embedding(key="id", k=10)`` called on the query matrix: the
    whole user path, down to the list of hit dicts.
``FaissIndex.search``
    Its index layer (similarities and keys as lists, no dicts).
``faiss``
    ``faiss.IndexFlatIP.search`` on the same vectors (NumPy arrays out).
``numpy``
    One matrix product, ``argpartition`` and a sort of the top-k. Queries go
    in blocks of at most 2**25 scores (128 MiB) so that 1,024 queries x 1M
    documents do not ask for 4 GiB of scores and 8 GiB of indexes.
``cherche``
    Cherche 2.2.1's ``index.Faiss`` (an ``IndexFlatL2``; it reports
    ``1 / (1 + distance)``, which ranks unit vectors as inner product does).
    Each call turns its list of documents into an object array
    (``np.take``), O(N) Python work: about 75 ms at 1M. Left out when
    Cherche is not installed or its copies of the vectors would not fit in
    memory.

Reported per N and batch size: the median time of one call per side,
cherche_faiss over the faster of raw FAISS and NumPy (target <= 1.0), and at
batch 1 the memory-bandwidth bound, ``N * d * 4`` bytes scanned divided by
:func:`_common.copy_bandwidth`, with cherche_faiss' ratio to it (target
<= 1.3). Every side's top-10 ids are compared with NumPy's (recall@10).

Fast calls are repeated inside one sample (about 50 ms per sample) and the
sample divided by the count. At N=1M, batch 1,024 (about 1 G scores per call)
keeps two repeats.

    python benchmarks/dense_search.py --size quick
"""

from __future__ import annotations

import gc
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Config,
    alternate,
    cherche_available,
    copy_bandwidth,
    format_ms,
    format_ratio,
    median,
    peak_rss_bytes,
    pyplot,
    ratio,
    record,
    run_alone,
    save_figure,
    summary,
)
from embeddings import dataset  # noqa: E402

WORKLOAD = "dense_search"
K = 10
SIDES: dict[str, str] = {
    "cherche_faiss": "cherche_faiss",
    "index_layer": "FaissIndex.search",
    "faiss": "raw FAISS",
    "numpy": "NumPy",
    "cherche": "Cherche",
}
BASELINES = ("faiss", "numpy")
NUMPY_BLOCK_CELLS = 1 << 25  # scores computed at once by the NumPy side
SAMPLE_SECONDS = 0.05  # fast calls are repeated up to this long per sample
MAX_INNER = 200
HEAVY_CELLS = 1 << 28  # N * batch from which a cell keeps at most two repeats


def sizes(config: Config) -> tuple[list[int], list[int]]:
    """Collection sizes and batch sizes for ``config.size``."""
    if config.smoke:
        return [2_000], [1, 16]
    batches = [1, 16, 64, 256, 1024]
    if config.full:
        return [10_000, 100_000, 1_000_000], batches
    return [10_000, 100_000], batches


# -- the sides -----------------------------------------------------------------------------------
def numpy_top_k(documents: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by inner product the plain NumPy way, best first.

    Parameters
    ----------
    documents
        Float32 ``(n, d)``.
    queries
        Float32 ``(nq, d)``.
    k
        Number of results, ``k <= n``.

    Returns
    -------
    scores, rows
        ``(nq, k)`` arrays.
    """
    n = len(documents)
    step = max(1, NUMPY_BLOCK_CELLS // n)
    all_scores, all_rows = [], []
    for start in range(0, len(queries), step):
        scores = queries[start : start + step] @ documents.T
        rows = np.argpartition(scores, n - k, axis=1)[:, -k:]
        top = np.take_along_axis(scores, rows, axis=1)
        order = np.argsort(-top, axis=1)
        all_scores.append(np.take_along_axis(top, order, axis=1))
        all_rows.append(np.take_along_axis(rows, order, axis=1))
    return np.concatenate(all_scores), np.concatenate(all_rows)


def _cherche_fits(documents: np.ndarray) -> bool:
    """Whether Cherche's copies of the vectors (about three while adding) fit in half the free memory."""
    try:
        import psutil
    except ImportError:
        return True
    return 3 * documents.nbytes < psutil.virtual_memory().available // 2


Searcher = Callable[[np.ndarray], Any]
IdReader = Callable[[Any], np.ndarray]


def build_sides(documents: np.ndarray, with_cherche: bool) -> tuple[dict[str, Searcher], dict[str, IdReader]]:
    """The searchers over ``documents`` (keys are row numbers), and how to read ids from each output.

    Returns
    -------
    searchers, ids
        ``searchers[side](queries)`` runs one top-10 search;
        ``ids[side](output)`` turns its output into an ``(nq, 10)`` int array.
    """
    import faiss

    from cherche_faiss import retrieve

    n, d = documents.shape
    retriever = retrieve.Embedding(key="id", k=K).add([{"id": i} for i in range(n)], embeddings_documents=documents)
    index_layer = retriever.index
    flat = faiss.IndexFlatIP(d)
    flat.add(documents)

    searchers: dict[str, Searcher] = {
        "cherche_faiss": lambda q: retriever(q, k=K),
        "index_layer": lambda q: index_layer.search(q, K),
        "faiss": lambda q: flat.search(q, K),
        "numpy": lambda q: numpy_top_k(documents, q, K),
    }

    def hit_ids(output: Any) -> np.ndarray:
        rows = [output] if output and isinstance(output[0], dict) else output
        return np.array([[hit["id"] for hit in row] for row in rows])

    ids: dict[str, IdReader] = {
        "cherche_faiss": hit_ids,
        "index_layer": lambda output: np.array(output[1]),
        "faiss": lambda output: output[1],
        "numpy": lambda output: output[1],
    }
    if with_cherche:
        from cherche import index as cherche_index

        cherche = cherche_index.Faiss(key="id").add([{"id": i} for i in range(n)], embeddings=documents)
        searchers["cherche"] = lambda q: cherche(embeddings=q, k=K)
        ids["cherche"] = hit_ids
    return searchers, ids


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` found in the same row of ``found``."""
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(found, truth)]))


def _time_cell(
    searchers: dict[str, Searcher], queries: np.ndarray, repeats: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, Any], int]:
    """Per-call samples of every side on ``queries``, their last outputs, and the calls per sample."""
    outputs: dict[str, Any] = {}
    probe = math.inf
    for _ in range(max(1, warmup)):  # the warm-up also sizes the inner loop
        for name, search in searchers.items():
            start = time.perf_counter()
            outputs[name] = search(queries)
            probe = min(probe, time.perf_counter() - start)
    inner = int(min(MAX_INNER, max(1, math.ceil(SAMPLE_SECONDS / max(probe, 1e-9)))))

    def looped(name: str, search: Searcher) -> Callable[[], None]:
        def run() -> None:
            for _ in range(inner):
                outputs[name] = search(queries)

        return run

    cases = {name: looped(name, search) for name, search in searchers.items()}
    samples = alternate(cases, repeats=repeats, warmup=0)
    return {name: [s / inner for s in values] for name, values in samples.items()}, outputs, inner


# -- the workload ------------------------------------------------------------------------------------
def run(config: Config) -> list[dict]:
    """Time every side at each N and batch size.

    Returns
    -------
    list of dict
        One record per (N, batch size), from :func:`_common.record`.
    """
    collection_sizes, batch_sizes = sizes(config)
    bandwidth = copy_bandwidth()
    records: list[dict] = []
    for n in collection_sizes:
        data = dataset(n, config)
        documents = data.documents
        queries = data.queries[np.arange(max(batch_sizes)) % len(data.queries)]
        with_cherche = cherche_available() and _cherche_fits(documents)
        searchers, ids = build_sides(documents, with_cherche)
        d = documents.shape[1]
        for batch in batch_sizes:
            repeats = min(config.repeats, 2) if n * batch >= HEAVY_CELLS else config.repeats
            samples, outputs, inner = _time_cell(searchers, queries[:batch], repeats, config.warmup)
            medians = {name: median(values) for name, values in samples.items()}
            truth = ids["numpy"](outputs["numpy"])
            found = {name: ids[name](outputs[name]) for name in searchers}
            best = min(medians[name] for name in BASELINES)
            metrics: dict[str, Any] = {
                "median_s": medians,
                "summary": {name: summary(values) for name, values in samples.items()},
                "ratio_vs_best_baseline": ratio(medians["cherche_faiss"], best),
                "index_layer_vs_best_baseline": ratio(medians["index_layer"], best),
                "recall_at_10": {name: recall(found[name], truth) for name in found},
                "same_order": {name: bool(np.array_equal(found[name], truth)) for name in found},
                "calls_per_sample": inner,
                "peak_rss_bytes": peak_rss_bytes(),
            }
            if batch == 1:
                scanned = n * d * 4
                bound = scanned / bandwidth
                metrics.update(
                    bytes_scanned=scanned,
                    copy_bandwidth_bytes_per_s=bandwidth,
                    bandwidth_bound_s=bound,
                    ratio_to_bound={name: ratio(value, bound) for name, value in medians.items()},
                )
            params = {
                "n": n, "d": d, "batch": batch, "k": K, "repeats": repeats,
                "cherche": with_cherche, "source": data.source,
                "load_average_1min": os.getloadavg()[0],  # other work on the machine skews these timings
            }  # fmt: skip
            records.append(record(WORKLOAD, f"N={n} batch={batch}", params, **metrics))
        del searchers, ids, data, documents, queries, outputs
        gc.collect()
    return records


# -- reporting -----------------------------------------------------------------------------------------
_ms, _x = format_ms, format_ratio


def markdown(records: list[dict]) -> str:
    """A section with one table row per (N, batch size): medians in ms and the ratios."""
    records = [r for r in records if r["workload"] == WORKLOAD]
    if not records:
        return "### Exact dense search\n\nNo results.\n"
    sides = [name for name in SIDES if any(name in r["metrics"]["median_s"] for r in records)]
    header = (
        ["N", "batch"] + [f"{SIDES[name]} (ms)" for name in sides]
        + ["cherche_faiss / min(FAISS, NumPy)", "cherche_faiss / bandwidth bound", "recall@10 vs NumPy (min)"]
    )  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        p, m = r["params"], r["metrics"]
        cells = [f"{p['n']:,}", str(p["batch"])] + [_ms(m["median_s"].get(name)) for name in sides]
        bound = m.get("ratio_to_bound", {}).get("cherche_faiss")
        cells += [_x(m["ratio_vs_best_baseline"]), _x(bound), f"{min(m['recall_at_10'].values()):.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    bandwidths = [r["metrics"].get("copy_bandwidth_bytes_per_s") for r in records if r["params"]["batch"] == 1]
    bandwidth = bandwidths[0] if bandwidths else None
    sources = sorted({r["params"]["source"] for r in records})
    repeats = sorted({r["params"]["repeats"] for r in records}, reverse=True)
    loads = [r["params"].get("load_average_1min", 0.0) for r in records]
    notes = [
        f"Top-{K} by inner product, d={records[0]['params']['d']}, medians of "
        + "/".join(str(value) for value in repeats)
        + " alternated samples per cell (fast calls repeated within a sample; the fewer repeats where N x batch "
        f">= 2^28). 1-minute load average during the cells: {min(loads):.2f}-{max(loads):.2f}. "
        "Targets: cherche_faiss <= 1.0x the "
        "faster of raw FAISS and NumPy; at batch 1 <= 1.3x the bandwidth bound (N x d x 4 bytes / copy bandwidth"
        + (f", {bandwidth / 1e9:.1f} GB/s" if bandwidth else "")
        + "). FaissIndex.search is cherche_faiss' index layer (no hit dicts).",
        "Documents: " + "; ".join(sources) + ".",
    ]
    if any(not r["params"]["cherche"] for r in records):
        notes.append(
            "Cherche is missing where its column says `-` (not installed, or its copies would not fit in memory)."
        )
    return "### Exact dense search\n\n" + "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def plot(records: list[dict], results_dir: Path) -> list[Path]:
    """Latency per call against batch size (log-log), one line per side, one panel per N."""
    plt = pyplot()

    records = [r for r in records if r["workload"] == WORKLOAD]
    if not records:
        return []
    collection_sizes = sorted({r["params"]["n"] for r in records})
    figure, axes = plt.subplots(1, len(collection_sizes), figsize=(5 * len(collection_sizes), 4), squeeze=False)
    for axis, n in zip(axes[0], collection_sizes):
        rows = sorted((r for r in records if r["params"]["n"] == n), key=lambda r: r["params"]["batch"])
        for name, label in SIDES.items():
            medians = [(r["params"]["batch"], r["metrics"]["median_s"].get(name)) for r in rows]
            points = [(batch, seconds) for batch, seconds in medians if seconds is not None]
            if points:
                batches, seconds = zip(*points)
                axis.plot(batches, [s * 1e3 for s in seconds], marker="o", label=label)
        bound = next((r["metrics"].get("bandwidth_bound_s") for r in rows if r["params"]["batch"] == 1), None)
        if bound:
            axis.axhline(bound * 1e3, color="grey", linestyle=":", label="bandwidth bound (batch 1)")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("queries per call")
        axis.set_ylabel("ms per call (median)")
        axis.set_title(f"N = {n:,}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.suptitle(f"Exact top-{K} dense search, d={records[0]['params']['d']}")
    figure.tight_layout()
    return [save_figure(figure, results_dir, "dense_search.png")]


def main(argv: list[str] | None = None) -> int:
    """Run this workload alone."""
    return run_alone(__doc__, run, markdown, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
