"""Workload: FaissIndex's fixed costs against raw FAISS on the same index (issue 15).

Three measurements, each side by side with raw FAISS in one run, the sides alternating:

a. **Single queries.** For each index type (``Flat``, ``IVF{nlist},Flat``, ``IVF{nlist},SQ8``,
   ``IVF{nlist},PQ48``, ``HNSW32`` and ``"auto"``), in a fresh child process, one query per call:
   ``FaissIndex.search(query, k=10)`` (a float32 ``(d,)`` query with the index's default search
   parameters: the short single-query path) against ``faiss_index.search(query[None], 10,
   params=...)`` on the same ``faiss.Index`` with the same parameters, made once, of the query normalised
   beforehand as FaissIndex normalises it (the same search on both sides). Each query is
   timed on both sides back to back, the side that goes first alternating, on one thread (FAISS and
   BLAS: on shared cores a thread waiting for a core adds milliseconds at random); reported: QPS ours/raw
   (total time), p50 of both, and the per-call overhead (the median of the paired differences when
   ours runs first and when it runs second, averaged: the second finds the index in the caches) in
   microseconds and as a share of raw FAISS's p50.
b. **Loading.** ``pickle.load`` of a pickled FaissIndex (its CRC-32 checksum verified, as every
   load does) against ``faiss.read_index`` of the same index written by FAISS, Flat and IVF, at
   100k and at the size of (a); each load in a fresh interpreter (the libraries imported before
   the clock starts), the two alternating; both files are read from the page cache.
c. **Adding.** ``FaissIndex.add`` of all the vectors (normalising, validating, int keys) into an
   empty Flat index and into an empty, trained IVF index, against raw FAISS's ``add_with_ids`` of
   the same (unit) vectors into the same kind of index (an id-mapped ``IndexFlatIP``, a clone of
   the trained ``IndexIVFFlat``), and against ``faiss.normalize_L2`` then ``add_with_ids`` (what
   cosine similarity asks of raw FAISS; the copy normalised is made before the clock starts), the
   three alternating; the validation (``FaissIndex.prepare``'s checks:
   norms, finiteness, zero rows) and the key table (checking the keys, packing them into the int64
   column) are timed apart.

Sizes: smoke 3,000 vectors (IVF16, 4-bit PQ, no 100k), quick and full 1,000,000 (quick: 10,000 real MiniLM
SciFact sentence vectors grown with noise, full: every sentence; see ``embeddings.py``); 300 query
vectors (the SciFact claims). Built indexes are cached as pickles and FAISS files under
``benchmarks/.cache/fixed_costs`` (gitignored; delete them to rebuild). Run from the repository
root::

    python benchmarks/run.py --size quick --only fixed_costs --results-dir benchmarks/results/fixed_costs
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Config, format_ratio, median, record, run_alone  # noqa: E402

WORKLOAD = "fixed_costs"
TITLE = "Fixed costs: single queries, pickle loads and adds, cherche_faiss against raw FAISS"
K = 10
SIZES = {"smoke": 3_000, "quick": 1_000_000, "full": 1_000_000}
LOAD_SIZES = {"smoke": (3_000,), "quick": (100_000, 1_000_000), "full": (100_000, 1_000_000)}
QUERIES = {"smoke": 20, "quick": 300, "full": 300}
EXHAUSTIVE_QUERIES = 50  # the exact (Flat) index's queries at 1M, each a scan of 1.5 GB
GOALS = {"overhead_share": 0.10, "load_ratio": 1.3, "add_ratio": 1.10}  # issue 15
HELD_TO_GOAL = ("HNSW32", "PQ")  # the index types the single-query goal names


def nlist_for(n: int) -> int:
    """IVF lists: what ``"auto"`` takes at 1M (4096); 1024 at 100k; 16 at the smoke size."""
    return 4096 if n >= 500_000 else 1024 if n >= 50_000 else 16


def factories(n: int) -> list[str]:
    """The index types compared; PQ with 4-bit codes at the smoke size (too few vectors to train 8 bits)."""
    lists = nlist_for(n)
    pq = "PQ48" if n >= 50_000 else "PQ16x4"
    return ["Flat", f"IVF{lists},Flat", f"IVF{lists},SQ8", f"IVF{lists},{pq}", "HNSW32", "auto"]


def search_params(factory: str) -> dict[str, int]:
    """The parameters large_corpus.py's tuning chose at 1M for recall@10 0.95 (IVF-PQ48: the best it reaches)."""
    if factory.startswith("HNSW"):
        return {"efSearch": 48}
    if factory.startswith("IVF"):
        return {"nprobe": 8 if ",PQ" in factory else 64}
    return {}


# -- data and the index cache ---------------------------------------------------------------------
def _documents(n: int, config: Config) -> np.ndarray:
    from embeddings import dataset

    return np.ascontiguousarray(dataset(n, config).documents)


def _queries(config: Config) -> np.ndarray:
    from embeddings import dataset, query_vectors

    queries = dataset(100, config).queries if config.smoke else query_vectors(config.cache_dir)
    return np.ascontiguousarray(queries[: QUERIES[config.size]], dtype=np.float32)


def _slug(factory: str) -> str:
    return factory.replace(",", "_")


def cached_paths(factory: str, n: int, config: Config) -> tuple[Path, Path]:
    """``(pickle, faiss file)`` of the FaissIndex of ``factory`` over ``n`` vectors, built if missing."""
    folder = Path(config.cache_dir) / "fixed_costs"
    stem = folder / f"{config.size}-{n}-{_slug(factory)}"  # quick and full grow from different real vectors
    pickled, written = stem.with_suffix(".pkl"), stem.with_suffix(".faiss")
    if not (pickled.exists() and written.exists()):
        _build(factory, n, config, pickled, written)
    return pickled, written


def _build(factory: str, n: int, config: Config, pickled: Path, written: Path) -> None:
    import faiss

    from cherche_faiss.index import FaissIndex

    documents = _documents(n, config)
    extra = {"expected_size": n} if factory == "auto" else {"search_params": search_params(factory)}
    started = time.perf_counter()
    index = FaissIndex(factory=factory, **extra)
    index.add(documents, list(range(n)), show_progress=False)
    print(f"[fixed_costs] built {factory} over {n:,} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    del documents
    pickled.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{pickled}.tmp", "wb") as handle:
        pickle.dump(index, handle, protocol=5)
    faiss.write_index(index.faiss_index, f"{written}.tmp")
    Path(f"{pickled}.tmp").rename(pickled)
    Path(f"{written}.tmp").rename(written)


def _load(path: Path) -> Any:
    with open(path, "rb") as handle:
        return pickle.load(handle)


# -- a. single queries ------------------------------------------------------------------------------
def measure_queries(factory: str, n: int, config: Config) -> dict[str, Any]:
    """Child process: one index type's single-query times, ours and raw FAISS's, paired per query."""
    import faiss

    from cherche_faiss.index._search_params import index_kind

    pickled, _ = cached_paths(factory, n, config)
    index = _load(pickled)
    index._own_storage()  # the memory an index built in this process would have (not the pickle's view)
    raw = index.faiss_index
    params = index._default_search_params()
    if "nprobe" in params:
        parameters = faiss.SearchParametersIVF(nprobe=params["nprobe"])
    elif "efSearch" in params:
        parameters = faiss.SearchParametersHNSW(efSearch=params["efSearch"])
    else:
        parameters = None
    queries = _queries(config)
    if index_kind(raw) == "other" and not config.smoke:
        queries = queries[:EXHAUSTIVE_QUERIES]  # each scans all the vectors: tens of ms a query
    singles = [np.ascontiguousarray(query) for query in queries]
    # Raw FAISS searches the query as FaissIndex normalises it (the same bits), made beforehand: both sides
    # then do the same search, and what differs is the per-call work around it.
    prepared = {id(query): index.prepare(query) for query in singles}

    def ours(query: np.ndarray) -> Any:
        return index.search(query, k=K)

    def theirs(query: np.ndarray) -> Any:
        return raw.search(prepared[id(query)], K, params=parameters)

    agree = sum(ours(q)[1][0] == theirs(q)[1][0].tolist() for q in singles[:20])
    samples: tuple[list[float], list[float]] = ([], [])
    ours_first: list[bool] = []
    clock = time.perf_counter
    for _ in range(2):  # passes; the first query of each is a warm-up left out
        for position, query in enumerate(singles):
            order = ((0, ours), (1, theirs)) if position % 2 == 0 else ((1, theirs), (0, ours))
            for side, run in order:
                start = clock()
                run(query)
                if position:
                    samples[side].append(clock() - start)
            if position:
                ours_first.append(position % 2 == 0)
    mine, raws = np.asarray(samples[0]), np.asarray(samples[1])
    first = np.asarray(ours_first)
    # The side that runs a query second finds the index's lists (or graph) in the caches: the paired
    # differences come in two groups, ours first and ours second, one slower and one faster by that
    # warm-up. The overhead is the mean of the two groups' medians (the warm-up cancels, noise does not
    # weigh as in a mean).
    differences = mine - raws
    overhead = 0.5 * (float(np.median(differences[first])) + float(np.median(differences[~first])))
    return {
        "factory": factory,
        "factory_used": index.factory_used,
        "n": n,
        "search_params": params,
        "queries": len(mine),
        "same_hits_of_20": int(agree),
        "ours_p50_s": float(np.median(mine)),
        "raw_p50_s": float(np.median(raws)),
        "ours_mean_s": float(mine.mean()),
        "raw_mean_s": float(raws.mean()),
        "qps_ratio": float(raws.sum() / mine.sum()),
        "overhead_s": overhead,
        "overhead_ours_first_s": float(np.median(differences[first])),
        "overhead_ours_second_s": float(np.median(differences[~first])),
    }


# -- b. loading ----------------------------------------------------------------------------------
def load_child(kind: str, path: str) -> dict[str, Any]:
    """Child process: one timed load (``pickle`` or ``read_index``), the libraries imported first."""
    import faiss

    import cherche_faiss.index  # noqa: F401  (imported before the clock, as faiss is)

    start = time.perf_counter()
    if kind == "pickle":
        loaded = _load(Path(path))
        size = len(loaded)
    else:
        loaded = faiss.read_index(path)
        size = int(loaded.ntotal)
    return {"kind": kind, "seconds": time.perf_counter() - start, "size": size}


def measure_loads(factory: str, n: int, config: Config, repeats: int) -> dict[str, Any]:
    pickled, written = cached_paths(factory, n, config)
    here = str(Path(__file__).resolve())
    times: dict[str, list[float]] = {"pickle": [], "read_index": []}
    sides = [("pickle", str(pickled)), ("read_index", str(written))]
    for repeat in range(repeats + 1):  # the first round warms the page cache and is left out
        for kind, path in sides if repeat % 2 == 0 else sides[::-1]:
            done = subprocess.run(
                [sys.executable, here, "--child-load", kind, path], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(f"the {kind} load child failed:\n{done.stderr[-2000:]}")
            report = json.loads(done.stdout.strip().splitlines()[-1])
            if report["size"] != n:
                raise RuntimeError(f"the {kind} load of {path} holds {report['size']} vectors, not {n}")
            if repeat:
                times[kind].append(report["seconds"])
    return {
        "factory": factory,
        "n": n,
        "pickle_bytes": pickled.stat().st_size,
        "faiss_bytes": written.stat().st_size,
        "pickle_s": median(times["pickle"]),
        "read_index_s": median(times["read_index"]),
        "pickle_samples": times["pickle"],
        "read_index_samples": times["read_index"],
    }


# -- c. adding ---------------------------------------------------------------------------------------
def measure_adds(n: int, config: Config, repeats: int) -> list[dict[str, Any]]:
    """Child process: ``FaissIndex.add`` of ``n`` vectors against raw ``add_with_ids``, Flat and IVF."""
    import faiss

    from cherche_faiss.index import FaissIndex
    from cherche_faiss.index._keys import KeyTable, check_keys, int_keys

    documents = _documents(n, config)
    keys = list(range(n))
    ids = np.arange(n, dtype=np.int64)
    ivf_factory = factories(n)[1]
    trained = faiss.read_index(str(cached_paths(ivf_factory, n, config)[1]))  # memory of its own (not a view)
    trained.reset()  # trained, empty
    results = []
    for factory in ("Flat", ivf_factory):

        def ours(factory: str = factory) -> float:
            target = FaissIndex(factory="Flat") if factory == "Flat" else FaissIndex(factory=faiss.clone_index(trained))
            return _timed(lambda: target.add(documents, keys))

        def empty(factory: str = factory) -> Any:
            if factory == "Flat":
                return faiss.IndexIDMap2(faiss.IndexFlatIP(documents.shape[1]))  # what FaissIndex builds
            return faiss.clone_index(trained)

        def raw(factory: str = factory) -> float:
            target = empty(factory)
            return _timed(lambda: target.add_with_ids(documents, ids))

        def raw_normalised(factory: str = factory) -> float:
            """What cosine similarity asks of raw FAISS: normalising (a copy made beforehand), then adding."""
            target, copy = empty(factory), documents.copy()

            def work() -> None:
                faiss.normalize_L2(copy)
                target.add_with_ids(copy, ids)

            return _timed(work)

        times: dict[str, list[float]] = {"ours": [], "raw": [], "raw_normalised": [], "validation": [], "keys": []}
        cases = {"ours": ours, "raw": raw, "raw_normalised": raw_normalised}
        for repeat in range(repeats):
            for name in cases if repeat % 2 == 0 else list(cases)[::-1]:
                times[name].append(cases[name]())
                gc.collect()
        probe = FaissIndex(factory="Flat", dimension=documents.shape[1])
        for _ in range(max(2, repeats)):
            times["validation"].append(_timed(lambda probe=probe: probe._validated(documents, "vectors")))
            times["keys"].append(_timed(lambda: KeyTable().append(check_keys(keys, n), int_keys(keys))))
        results.append(
            {
                "factory": factory,
                "n": n,
                "ours_s": median(times["ours"]),
                "raw_s": median(times["raw"]),
                "raw_normalised_s": median(times["raw_normalised"]),
                "validation_s": median(times["validation"]),
                "keys_s": median(times["keys"]),
                "samples": times,
            }
        )
    return results


def _timed(run: Any) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# -- the workload -----------------------------------------------------------------------------------
# Single queries run on one thread on both sides: on shared cores an OpenMP region (FAISS) or a BLAS
# call (our exact scan) waiting for a descheduled thread adds milliseconds to either side at random.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _child(arguments: list[str], environment: dict[str, str] | None = None) -> Any:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *arguments],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(environment or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"fixed_costs child {arguments} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(config: Config) -> list[dict]:
    """Measure (a), (b) and (c) (see the module docstring); each index type in a fresh child."""
    n = SIZES[config.size]
    size = ["--size", config.size, "--cache-dir", str(config.cache_dir)]
    records = []
    for factory in config.extra.get("factories") or factories(n):
        result = _child(["--child-queries", factory, "--n", str(n), *size], ONE_THREAD)
        records.append(record(WORKLOAD, "single_query", {"factory": factory, "n": n}, **result))
        print(f"[fixed_costs] {factory}: {result}", file=sys.stderr, flush=True)
    for load_n in LOAD_SIZES[config.size]:
        for factory in ("Flat", factories(load_n)[1]):
            result = measure_loads(factory, load_n, config, repeats=max(1, min(config.repeats, 3)))
            records.append(record(WORKLOAD, "load", {"factory": factory, "n": load_n}, **result))
            print(f"[fixed_costs] load {factory} {load_n:,}: {result}", file=sys.stderr, flush=True)
    for result in _child(["--child-adds", "--n", str(n), "--repeats", str(2 if not config.smoke else 1), *size]):
        records.append(record(WORKLOAD, "add", {"factory": result["factory"], "n": n}, **result))
    return records


# -- tables ------------------------------------------------------------------------------------------
def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}" if abs(seconds) >= 1e-4 else f"{seconds * 1e6:.1f}"


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def markdown(records: list[dict]) -> str:
    lines = [f"### {TITLE}\n"]
    queries = [r["metrics"] for r in records if r["case"] == "single_query"]
    if queries:
        n = queries[0]["n"]
        lines += [
            f"**Single queries** over {n:,} vectors (d=384), k={K}, the SciFact claims' vectors "
            f"({EXHAUSTIVE_QUERIES} for the exhaustive index at 1M) timed twice, each on both sides back "
            "to back (the first side alternating), one thread on both sides (OMP_NUM_THREADS=1: on shared "
            "cores a thread waiting for a core adds milliseconds to "
            "either side at random): `FaissIndex.search` "
            "of one float32 query against `faiss_index.search` of the same `faiss.Index` with the same "
            "parameters. Overhead: the paired differences' median when ours runs first and when it runs second, "
            "averaged (the second side finds the lists in the caches; negative: we are faster; the Flat "
            f"index is scanned by our own BLAS call). Goal: overhead <= {GOALS['overhead_share']:.0%} of raw "
            "FAISS's time for HNSW32 and IVF-PQ.\n",
            "| index | params | queries timed | ours p50 (us) | raw p50 (us) | QPS ours/raw | overhead (us) | "
            "overhead / raw | goal |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for m in queries:
            share = m["overhead_s"] / m["raw_p50_s"]
            held = any(name in m["factory_used"] for name in HELD_TO_GOAL)
            goal = _met(share <= GOALS["overhead_share"]) if held else "-"
            params = ", ".join(f"{key}={value}" for key, value in m["search_params"].items()) or "-"
            name = m["factory"] if m["factory"] != "auto" else f"auto ({m['factory_used']})"
            lines.append(
                f"| {name} | {params} | {m['queries']} | {_us(m['ours_p50_s'])} | {_us(m['raw_p50_s'])} | "
                f"{format_ratio(m['qps_ratio'])} | {_us(m['overhead_s'])} | {share:+.1%} | {goal} |"
            )
        lines.append("")
    loads = [r["metrics"] for r in records if r["case"] == "load"]
    if loads:
        lines += [
            "**Loading**, each load in a fresh interpreter (libraries imported first), pickle and "
            "`faiss.read_index` alternating, files in the page cache; medians of "
            f"{len(loads[0]['pickle_samples'])}. The pickle load verifies the CRC-32 checksum of the index "
            f"bytes. Goal: pickle <= {GOALS['load_ratio']}x read_index.\n",
            "| index | vectors | pickle (MB) | pickle.load (ms) | read_index (ms) | ratio | goal |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for m in loads:
            value = m["pickle_s"] / m["read_index_s"]
            lines.append(
                f"| {m['factory']} | {m['n']:,} | {m['pickle_bytes'] / 1e6:,.0f} | {m['pickle_s'] * 1e3:,.0f} | "
                f"{m['read_index_s'] * 1e3:,.0f} | {format_ratio(value)} | {_met(value <= GOALS['load_ratio'])} |"
            )
        lines.append("")
    adds = [r["metrics"] for r in records if r["case"] == "add"]
    if adds:
        lines += [
            f"**Adding** {adds[0]['n']:,} unit vectors with int keys `list(range(n))` into an empty index: "
            "`FaissIndex.add` (validation, normalisation, keys) against raw `add_with_ids` of the same "
            "vectors into the same kind of index (an id-mapped `IndexFlatIP`; a clone of the trained, empty "
            "IVF index), alternating. Validation (norms, finite values, zero rows) and the key table "
            "(checking the keys, the int64 column) timed apart; they are part of *ours*. Goal: <= "
            f"{GOALS['add_ratio'] - 1:.0%} above raw.\n",
            "| index | ours (ms) | raw add (ms) | ours/raw | raw normalize_L2 + add (ms) | ours/that | "
            "validation (ms) | key table (ms) | goal |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for m in adds:
            value = m["ours_s"] / m["raw_s"]
            lines.append(
                f"| {m['factory']} | {m['ours_s'] * 1e3:,.0f} | {m['raw_s'] * 1e3:,.0f} | {format_ratio(value)} | "
                f"{m['raw_normalised_s'] * 1e3:,.0f} | {format_ratio(m['ours_s'] / m['raw_normalised_s'])} | "
                f"{m['validation_s'] * 1e3:,.0f} | {m['keys_s'] * 1e3:,.0f} | {_met(value <= GOALS['add_ratio'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(records: list[dict], results_dir: Path) -> list[Path]:
    return []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child-load":
        print(json.dumps(load_child(argv[1], argv[2])))
        return 0
    if argv and argv[0] in ("--child-queries", "--child-adds"):
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("--child-queries")
        parser.add_argument("--child-adds", action="store_true")
        parser.add_argument("--n", type=int)
        parser.add_argument("--repeats", type=int, default=2)
        parser.add_argument("--size", default="quick")
        parser.add_argument("--cache-dir", type=Path)
        args = parser.parse_args(argv)
        config = Config(size=args.size)
        if args.cache_dir is not None:
            config.cache_dir = args.cache_dir
        if args.child_adds:
            print(json.dumps(measure_adds(args.n, config, args.repeats)))
        else:
            print(json.dumps(measure_queries(args.child_queries, args.n, config)))
        return 0
    return run_alone(__doc__, run, markdown, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
