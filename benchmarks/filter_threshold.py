"""The selectivity below which exact search over the allowed documents beats an
approximate index searched with a FAISS selector, with raw FAISS (the filtered
search planner's threshold).

    python benchmarks/run.py --size quick --only filter_threshold --results-dir benchmarks/results/filtered

For ``IVF4096,Flat`` (what ``index="auto"`` builds at 1M) and ``HNSW32``, at 1,000,000 x 384
and each selectivity (see ``_filtered_data``), the workload times one query at a time:

* **exact over the allowed subset**, three ways: NumPy (``np.flatnonzero`` of the mask,
  gather the rows from a contiguous copy of the vectors, one matrix-vector product,
  ``argpartition``); the same rows read back from the index (``reconstruct_batch``:
  IVF lists hold no contiguous copy); FAISS scanning with an ``IDSelectorBitmap``
  (the HNSW index's flat storage; the IVF index with ``nprobe = nlist``);
* **the index with the selector**: ``SearchParametersIVF(sel, nprobe)`` /
  ``SearchParametersHNSW(sel, efSearch)``, the search parameter doubled from the
  unfiltered default until recall@10 against the exact filtered answer reaches
  0.95 (recall is measured on a batch of 100 queries; the doubling stops once a
  query costs more than 20 times the exact path, or 100 ms).

Every exact path starts from the column (``bucket < t``), so the mask is part of
its time, as is the bitmap (``np.packbits``) of the selector path. NumPy and FAISS
run on one thread each (what the server's thread policy gives on 2 cores). The two sides
at each selectivity are timed in pairs, query by query, alternating which goes first.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Config, format_ms, paired_single_queries, record, run_alone  # noqa: E402
from _filtered_data import (  # noqa: E402
    THRESHOLD_SELECTIVITIES,
    K,
    bitmap_selector,
    data,
    raw_index,
    recall,
    threshold_of,
    truths,
)

WORKLOAD = "filter_threshold"
TARGET = 0.95
PROBE = 10  # queries each exact path answers to be compared
GIVE_UP = 20.0  # stop raising the parameter once a query costs this many times the exact path ...
GIVE_UP_S = 0.1  # ... or this many seconds (50x the unfiltered IVF query at 1M: of no use to a planner)
ESCALATION = 100  # queries searched at each step of the parameter


def factories(n: int) -> list[str]:
    from cherche_faiss.index.auto import _nlist_for

    return [f"IVF{_nlist_for(n)},Flat", "HNSW32"]


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    if len(scores) > k:
        rows = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
    else:
        rows = np.arange(len(scores))
    return ids[rows[np.argsort(-scores[rows])]]


def exact_paths(index: Any, documents: np.ndarray, column: np.ndarray, k: int) -> dict[str, Any]:
    """``name -> search(query, t)`` answering the exact filtered top-k of one ``(1, d)`` query."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)

    def numpy_gather(query: np.ndarray, t: int) -> np.ndarray:
        ids = np.flatnonzero(column < t)
        return _top_k(documents[ids] @ query[0], ids, k)

    paths: dict[str, Any] = {"numpy gather": numpy_gather}
    if ivf is not None:
        ivf.make_direct_map()  # ids are row numbers: the array flavour

        def reconstructed(query: np.ndarray, t: int) -> np.ndarray:
            ids = np.flatnonzero(column < t)
            return _top_k(index.reconstruct_batch(ids) @ query[0], ids, k)

        def all_lists(query: np.ndarray, t: int) -> np.ndarray:
            selector, bits = bitmap_selector(column < t)
            params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nlist)
            return index.search(query, k, params=params)[1][0]

        paths["reconstruct_batch"] = reconstructed
        paths["IVF nprobe=nlist + selector"] = all_lists
    else:
        storage = faiss.downcast_index(faiss.downcast_index(index).storage)

        def flat_selector(query: np.ndarray, t: int) -> np.ndarray:
            selector, bits = bitmap_selector(column < t)
            return storage.search(query, k, params=faiss.SearchParameters(sel=selector))[1][0]

        paths["flat storage + selector"] = flat_selector
    return paths


def selector_search(index: Any, column: np.ndarray, k: int, value: int) -> Any:
    """``search(queries, t)`` through the index with a bitmap selector and ``nprobe``/``efSearch`` = ``value``."""
    import faiss

    hnsw = faiss.try_extract_index_ivf(index) is None

    def search(queries: np.ndarray, t: int) -> np.ndarray:
        selector, bits = bitmap_selector(column < t)
        if hnsw:
            params: Any = faiss.SearchParametersHNSW(sel=selector, efSearch=value)
        else:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=value)
        return index.search(queries, k, params=params)[1]

    return search


def _padded(ids: np.ndarray) -> np.ndarray:
    """``ids`` padded with -1 to ``K`` (NumPy paths return fewer when fewer are allowed)."""
    return np.concatenate([ids, np.full(K - len(ids), -1, dtype=np.int64)]) if len(ids) < K else ids


def _per_query(run: Any, queries: np.ndarray, t: int) -> list[float]:
    samples = []
    for i in range(len(queries)):
        started = time.perf_counter()
        run(queries[i : i + 1], t)
        samples.append(time.perf_counter() - started)
    return samples


def study(factory: str, index: Any, documents, column, queries, truth, build_s: float, n: int) -> list[dict]:
    """Records of one index: every selectivity, exact paths against the selector path."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    start_value, last_value = (64, int(ivf.nlist)) if ivf is not None else (16, 16_384)
    exact = exact_paths(index, documents, column, K)
    records = []
    for selectivity in THRESHOLD_SELECTIVITIES:
        t = threshold_of(selectivity)
        expected = truth[selectivity]
        # Each exact path on a few queries (their answers must be exact); the fastest is timed in pairs below.
        exact_recall, quick = {}, {}
        for name, run in exact.items():
            answers, samples = [], []
            for i in range(PROBE):
                started = time.perf_counter()
                answers.append(_padded(run(queries[i : i + 1], t)))
                samples.append(time.perf_counter() - started)
            exact_recall[name] = recall(np.array(answers), expected[:PROBE])
            quick[name] = float(np.median(samples))
        best_exact = min(quick, key=quick.__getitem__)
        value, reached, batch_recall, steps = start_value, False, 0.0, []
        while True:
            search = selector_search(index, column, K, value)
            started = time.perf_counter()
            found = search(queries[:ESCALATION], t)
            per_query = (time.perf_counter() - started) / len(found)
            batch_recall = recall(found, expected[:ESCALATION])
            steps.append({"value": value, "recall": batch_recall, "batch_per_query_s": per_query})
            if batch_recall >= TARGET:
                reached = True
                break
            if value >= last_value or per_query > min(GIVE_UP * quick[best_exact], GIVE_UP_S):
                break
            value = min(2 * value, last_value)
        sides = {"exact": exact[best_exact], "selector": selector_search(index, column, K, value)}
        samples = paired_single_queries(sides, queries, t)
        p50 = {name: float(np.median(values)) for name, values in samples.items()}
        records.append(
            record(
                WORKLOAD,
                f"{factory} s={selectivity:g}",
                {"factory": factory, "n": n, "selectivity": selectivity, "allowed": int((column < t).sum())},
                build_s=build_s,
                exact_paths_p50_s=quick,
                exact_paths_recall=exact_recall,
                best_exact=best_exact,
                exact_p50_s=p50["exact"],
                selector_param="nprobe" if ivf is not None else "efSearch",
                selector_value=value,
                selector_reached_target=reached,
                selector_recall=batch_recall,
                selector_p50_s=p50["selector"],
                selector_steps=steps,
                exact_faster=p50["exact"] < p50["selector"] or not reached,
            )
        )
        print(
            f"[{WORKLOAD}] {factory} s={selectivity:g}: exact {best_exact} {p50['exact'] * 1e3:.2f} ms; "
            f"selector {value} recall {batch_recall:.3f} {p50['selector'] * 1e3:.2f} ms",
            file=sys.stderr,
            flush=True,
        )
    return records


def run(config: Config) -> list[dict]:
    # One BLAS thread: single queries are compared, and FAISS answers one query on one thread. On this
    # shared 2-core machine a multi-threaded OpenBLAS sgemv of one query is up to 60x slower under load.
    import faiss
    from threadpoolctl import threadpool_limits

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # the server's thread policy on 2 cores; spinning OpenMP threads add noise
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            return _run(config)
    finally:
        faiss.omp_set_num_threads(threads)


def _run(config: Config) -> list[dict]:
    documents, column, queries, source = data(config)
    n = len(documents)
    truth = truths(config, documents, column, queries, THRESHOLD_SELECTIVITIES)
    records = []
    for factory in config.extra.get("factories") or factories(n):
        index, build_s = raw_index(config, factory, documents, queries)
        for item in study(factory, index, documents, column, queries, truth, build_s, n):
            item["params"]["source"] = source
            records.append(item)
        del index
        gc.collect()
    return records


def crossover(rows: list[dict]) -> float | None:
    """The largest selectivity up to which exact search is faster at every selectivity measured
    (the planner's threshold), None when the selector wins even at the smallest."""
    threshold = None
    for row in sorted(rows, key=lambda r: r["params"]["selectivity"]):
        if not row["metrics"]["exact_faster"]:
            break
        threshold = row["params"]["selectivity"]
    return threshold


def markdown(records: list[dict]) -> str:
    if not records:
        return ""
    first = records[0]["params"]
    lines = [
        f"### Planner threshold: exact subset against a selector, raw FAISS, {first['n']:,} x 384",
        "",
        f"({first['source']}; {K} nearest; p50 of single queries in ms, both sides timed in pairs; the selector's "
        f"parameter doubled until recall@10 >= {TARGET} against the exact filtered answer.)",
        "",
        "| index | selectivity | allowed | exact (fastest path) | exact p50 | selector param | recall | "
        "selector p50 | faster |",
        "|---|---:|---:|---|---:|---|---:|---:|---|",
    ]
    for row in records:
        m, p = row["metrics"], row["params"]
        reached = "" if m["selector_reached_target"] else " (target not reached)"
        lines.append(
            f"| {p['factory']} | {p['selectivity']:.2%} | {p['allowed']:,} | {m['best_exact']} | "
            f"{format_ms(m['exact_p50_s'])} | {m['selector_param']}={m['selector_value']}{reached} | "
            f"{m['selector_recall']:.3f} | {format_ms(m['selector_p50_s'])} | "
            f"{'exact' if m['exact_faster'] else 'selector'} |"
        )
    lines.append("")
    for factory in dict.fromkeys(r["params"]["factory"] for r in records):
        rows = [r for r in records if r["params"]["factory"] == factory]
        threshold = crossover(rows)
        lines.append(
            f"- {factory}: exact search over the subset is faster at every selectivity up to "
            f"{'never' if threshold is None else f'{threshold:.2%}'} in this run."
        )
        paths = rows[0]["metrics"]["exact_paths_p50_s"].keys()
        cells = "; ".join(
            f"{name}: "
            + ", ".join(
                f"{format_ms(r['metrics']['exact_paths_p50_s'][name])} ms at {r['params']['selectivity']:.2%}"
                for r in rows
                if r["params"]["selectivity"] in (0.1, 0.01, 0.001)
            )
            for name in paths
        )
        lines.append(f"  Exact paths (p50 of 10 queries): {cells}.")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], folder: Path) -> list[Path]:
    return []


if __name__ == "__main__":
    sys.exit(run_alone(__doc__, run, markdown, plot))
