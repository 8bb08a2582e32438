"""Large corpora: approximate indexes against exact search, and cherche_faiss against raw FAISS.

For each index type (``Flat``, ``HNSW32``, ``IVF{nlist},Flat``, ``IVF{nlist},SQ8``,
``IVF{nlist},PQ48``; ``nlist`` is what ``index="auto"`` picks for the size), a
fresh child process:

1. streams the documents into a :class:`~cherche_faiss.index.FaissIndex` with
   ``add_batches`` in batches of 10,000, as an encoder would hand them over
   (the vectors are generated batch by batch: a full copy never exists), and
   records the build time and the peak resident memory above the process's
   baseline (interpreter, libraries and the 45k real vectors the documents
   are derived from, which stand where the model would);
2. tunes ``nprobe`` / ``efSearch`` with :meth:`FaissIndex.tune` to recall@10 0.95
   on the 109 SciFact claims not used as test queries (a validation split:
   the derived documents come in clusters of near-copies, which makes the
   index's own vectors too easy as tuning queries);
3. measures recall@10 of the 1,000 held-out SciFact query vectors against the
   exact ground truth (computed once by the parent with NumPy);
4. times single queries (p50/p95/p99) and a batch of all queries, alternating
   ``FaissIndex.search`` with raw ``faiss_index.search`` on the same index and
   parameters (cherche_faiss's overhead);
5. writes the index with ``faiss.write_index`` (its size) and times
   ``pickle.load`` of the pickled FaissIndex against ``faiss.read_index``.

Sizes: smoke 5,000 vectors (Flat and IVF only), quick 100,000, full 1,000,000
(``make bench-full``). Documents are the real MiniLM SciFact sentence vectors
grown with noise (see ``embeddings.py``).
"""

from __future__ import annotations

import gc
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Config, format_ms, format_ratio, peak_rss_bytes, record, rss_bytes, run_alone, summary  # noqa: E402

WORKLOAD = "large_corpus"
K = 10
TARGET_RECALL = 0.95
QUERIES = 1_000
BATCH = 10_000
SIZES = {"smoke": 5_000, "quick": 100_000, "full": 1_000_000}


def size_for(config: Config) -> int:
    return int(config.extra.get("n", SIZES[config.size]))


def factories(n: int, smoke: bool) -> list[str]:
    from cherche_faiss.index.auto import _nlist_for

    nlist = _nlist_for(n)
    if smoke:
        return ["Flat", f"IVF{nlist},Flat"]
    return ["Flat", f"IVF{nlist},Flat", f"IVF{nlist},SQ8", f"IVF{nlist},PQ48", "HNSW32"]


# -- the data, generated batch by batch -------------------------------------------------------------
def _base_and_queries(config: Config) -> tuple[np.ndarray, np.ndarray, str]:
    from embeddings import QUICK_REAL, dataset, query_vectors, real_vectors

    if config.smoke:
        data = dataset(SIZES["smoke"], config)
        return data.documents, data.queries, data.source
    base = real_vectors(None if config.full else QUICK_REAL, config.cache_dir)
    queries = query_vectors(config.cache_dir)
    return base, queries, f"{len(base):,} real MiniLM SciFact sentence vectors, grown with noise"


def stream(base: np.ndarray, n: int, batch: int = BATCH, seed: int = 0):
    """Yield ``(vectors, keys)`` batches equal to ``embeddings.derived(n, seed, base)``.

    The producer stays small beside the index (it stands in for the encoder):
    each batch is built on its own. NumPy draws the same normal numbers
    whether they are asked for at once or piece by piece, so the rows equal
    ``derived()``'s, which draws them 65,536 rows at a time.
    """
    from embeddings import SIGMA

    m, d = base.shape
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        block = np.empty((stop - start, d), dtype=np.float32)
        real = max(0, min(stop, m) - start)
        block[:real] = base[start : start + real]
        if real < len(block):
            noisy = block[real:]
            rng.standard_normal(out=noisy, dtype=np.float32)
            noisy *= np.float32(SIGMA)
            noisy += base[np.arange(start + real, stop) % m]
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        yield block, list(range(start, stop))


def exact_truth(base: np.ndarray, queries: np.ndarray, n: int, k: int = K) -> np.ndarray:
    """Ids of the exact top-k of each query (NumPy BLAS, scanned batch by batch)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for vectors, keys in stream(base, n, batch=65_536):
        scores = queries @ vectors.T
        ids = np.broadcast_to(np.asarray(keys, dtype=np.int64), scores.shape)
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate([best_ids, ids], axis=1)
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(ids, top, axis=1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_ids, order, axis=1)


# -- one index type, in a child process ---------------------------------------------------------------
def measure_one(factory: str, config: Config, n: int, truth_path: Path) -> dict:
    import faiss

    from cherche_faiss.index import FaissIndex
    from cherche_faiss.index._search_params import faiss_search_parameters

    base, queries, _ = _base_and_queries(config)
    base = np.ascontiguousarray(base)
    validation = np.ascontiguousarray(queries[QUERIES:])  # the other SciFact claims: tuning only
    queries = np.ascontiguousarray(queries[:QUERIES])
    truth = np.load(truth_path)
    FaissIndex().add(base[:10], list(range(10)))  # warm the libraries up before the baseline
    gc.collect()
    baseline = rss_bytes()
    index = FaissIndex(factory=factory)
    start = time.perf_counter()
    index.add_batches(stream(base, n), total=n, show_progress=False)
    build_s = time.perf_counter() - start
    peak_above_baseline = peak_rss_bytes() - baseline

    start = time.perf_counter()
    tuning = index.tune(target_recall=TARGET_RECALL, k=K, show_progress=False, queries=validation)
    tune_s = time.perf_counter() - start
    params = dict(index.search_params)

    _, found = index.search(queries, k=K)
    recall = float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth)]))

    raw = index.faiss_index
    parameters = faiss_search_parameters(raw, params, factory)
    single = [queries[i : i + 1] for i in range(len(queries))]
    ours, theirs = paired_latencies(
        lambda q: index.search(q, k=K), lambda q: raw.search(q, K, params=parameters), single
    )
    batch_ours, batch_theirs = [], []
    for _ in range(3):
        batch_ours.append(_timed(lambda: index.search(queries, k=K)))
        batch_theirs.append(_timed(lambda: raw.search(queries, K, params=parameters)))

    with tempfile.TemporaryDirectory(prefix="cherche_faiss_large_") as folder:
        index_file = Path(folder) / "index.faiss"
        faiss.write_index(raw, str(index_file))
        index_bytes = index_file.stat().st_size
        pickle_file = Path(folder) / "index.pkl"
        with open(pickle_file, "wb") as handle:
            pickle.dump(index, handle, protocol=5)
        pickle_bytes = pickle_file.stat().st_size
        index = raw = None  # dropped before the loads are timed (the closures above are done with them)
        gc.collect()
        pickle_load, read_index = [], []
        for _ in range(2):
            pickle_load.append(_timed(lambda: _load_pickle(pickle_file)))
            read_index.append(_timed(lambda: faiss.read_index(str(index_file))))
    return {
        "factory": factory,
        "n": n,
        "build_s": build_s,
        "peak_rss_above_baseline": peak_above_baseline,
        "baseline_rss": baseline,
        "index_bytes": index_bytes,
        "pickle_bytes": pickle_bytes,
        "tune_s": tune_s,
        "search_params": params,
        "tuned_recall_own_vectors": tuning.recall,
        "recall_at_10": recall,
        "single_ours": summary(ours),
        "single_raw": summary(theirs),
        "batch_ours_s": float(np.median(batch_ours)),
        "batch_raw_s": float(np.median(batch_theirs)),
        "pickle_load_s": float(np.median(pickle_load)),
        "read_index_s": float(np.median(read_index)),
    }


def paired_latencies(ours, theirs, inputs: list, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Time both sides on every input, one right after the other, the first side alternating.

    Pairing each query puts both sides under the same machine noise (these
    machines are shared); alternating the order cancels cache warm-up effects.
    """
    for x in inputs[:warmup]:
        ours(x), theirs(x)
    samples: tuple[list[float], list[float]] = ([], [])
    for position, x in enumerate(inputs):
        order = ((0, ours), (1, theirs)) if position % 2 == 0 else ((1, theirs), (0, ours))
        for side, run in order:
            start = time.perf_counter()
            run(x)
            samples[side].append(time.perf_counter() - start)
    return samples


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _load_pickle(path: Path) -> None:
    with open(path, "rb") as handle:
        pickle.load(handle)


# -- the workload ---------------------------------------------------------------------------------------
def run(config: Config) -> list[dict]:
    """Build every index type in a fresh child process and compare them; returns records."""
    n = size_for(config)
    base, queries, source = _base_and_queries(config)
    queries = np.ascontiguousarray(queries[:QUERIES])
    records = []
    with tempfile.TemporaryDirectory(prefix="cherche_faiss_truth_") as folder:
        truth_path = Path(folder) / "truth.npy"
        start = time.perf_counter()
        np.save(truth_path, exact_truth(np.ascontiguousarray(base), queries, n))
        truth_s = time.perf_counter() - start
        del base
        gc.collect()
        types = config.extra.get("factories") or factories(n, config.smoke)
        for factory in types:
            command = [
                sys.executable,
                __file__,
                "--child",
                factory,
                "--n",
                str(n),
                "--truth",
                str(truth_path),
                "--size",
                config.size,
            ]
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=config.extra.get("child_timeout", 3600),
                )
            except subprocess.TimeoutExpired:
                records.append(record(WORKLOAD, factory, {"n": n, "source": source}, error="timed out"))
                continue
            if done.returncode != 0:
                raise RuntimeError(f"the {factory} child failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            records.append(record(WORKLOAD, factory, {"n": n, "source": source, "truth_s": truth_s}, **result))
            progress_file = config.extra.get("progress_file")
            if progress_file:  # partial results survive a later failure
                Path(progress_file).write_text(json.dumps(records, indent=1))
    from cherche_faiss.index import choose_index

    choice = choose_index(n, 384)
    records.append(record(WORKLOAD, "auto", {"n": n}, chose=choice.factory, reason=choice.reason))
    return records


def _mb(value: float) -> str:
    return f"{value / 1e6:,.0f} MB" if value >= 1e6 else f"{value / 1e3:,.1f} kB"


def markdown(records: list[dict]) -> str:
    failed = [r["case"] for r in records if "error" in r["metrics"]]
    rows = [r for r in records if r["case"] != "auto" and "error" not in r["metrics"]]
    if not rows:
        return ""
    exact = next((r["metrics"] for r in rows if r["case"] == "Flat"), None)
    n = rows[0]["params"]["n"]
    lines = [
        f"### Large corpus: {n:,} vectors, d=384 ({rows[0]['params']['source']}), {QUERIES:,} held-out queries",
        "",
        "Recall@10 of the 1,000 held-out queries against exact search, at the parameters "
        "`tune(target_recall=0.95, queries=...)` chose on the 109 other SciFact claims; single-query latency "
        "(ms) through cherche_faiss; *vs exact*: how many times faster than the Flat index's single query; "
        "*QPS ours/raw*: cherche_faiss queries per second over raw `faiss_index.search` with the same index and "
        "parameters, each query timed on both sides back to back (above 1: we are faster; cherche_faiss "
        "answers exact single queries with its own BLAS scan), and for one batch of all queries; *peak build "
        "mem / index*: peak resident memory above the process baseline during the streamed build, over the "
        "index size (no model in this process: vectors are streamed); pickle load vs `faiss.read_index` "
        "of the same index, in ms. Each index is built in a fresh process.",
        "",
        "| index | params | recall@10 | p50 single (ms) | p99 single (ms) | vs exact | QPS ours/raw single | "
        "QPS ours/raw batch | build | index size | peak build mem / index | pickle load (ms) | read_index (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        m = row["metrics"]
        vs_exact = exact["single_ours"]["p50_s"] / m["single_ours"]["p50_s"] if exact else None
        single_qps = m["single_raw"]["p50_s"] / m["single_ours"]["p50_s"]
        batch_qps = m["batch_raw_s"] / m["batch_ours_s"]
        params = ", ".join(f"{k}={v}" for k, v in m["search_params"].items()) or "-"
        lines.append(
            f"| {row['case']} | {params} | {m['recall_at_10']:.3f} | {format_ms(m['single_ours']['p50_s'])} | "
            f"{format_ms(m['single_ours']['p99_s'])} | {format_ratio(vs_exact)} | {single_qps:.2f} | {batch_qps:.2f} | "
            f"{m['build_s']:.0f} s | {_mb(m['index_bytes'])} | {m['peak_rss_above_baseline'] / m['index_bytes']:.2f} | "
            f"{format_ms(m['pickle_load_s'])} | {format_ms(m['read_index_s'])} |"
        )
    if failed:
        lines += ["", f"Not measured (the child timed out): {', '.join(failed)}."]
    auto = next((r for r in records if r["case"] == "auto"), None)
    if auto:
        lines += ["", f'`index="auto"` at this size chooses `{auto["metrics"]["chose"]}`: {auto["metrics"]["reason"]}.']
    return "\n".join(lines) + "\n"


def plot(records: list[dict], folder: Path) -> list[Path]:
    return []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("--child")
        parser.add_argument("--n", type=int)
        parser.add_argument("--truth", type=Path)
        parser.add_argument("--size", default="quick")
        args = parser.parse_args(argv)
        result = measure_one(args.child, Config(size=args.size), args.n, args.truth)
        print(json.dumps(result))
        return 0
    if "--progress-file" in argv:  # a long run keeps its finished rows in this file
        position = argv.index("--progress-file")
        _PROGRESS["file"] = argv[position + 1]
        argv = argv[:position] + argv[position + 2 :]
    return run_alone(__doc__, _with_progress(run), markdown, plot, argv)


_PROGRESS: dict[str, str] = {}


def _with_progress(run_function):
    def wrapped(config: Config) -> list[dict]:
        if "file" in _PROGRESS:
            config.extra["progress_file"] = _PROGRESS["file"]
        return run_function(config)

    return wrapped


if __name__ == "__main__":
    sys.exit(main())
