"""Filtered search at a million documents: ours against post-filtering and brute force.

    python benchmarks/run.py --size quick --only filtered --results-dir benchmarks/results/filtered

Documents: 1,000,000 x 384 SciFact MiniLM vectors (``embeddings.dataset``), each with an
integer ``bucket`` drawn uniformly from [0, 10000) (see ``_filtered_data``); the filter
``{"bucket": {"$lt": t}}`` allows 50 %, 10 %, 1 %, 0.1 % or 0.01 % of them. Queries: 200
SciFact claims, k = 10. For each index (``index="auto"``, which builds ``IVF4096,Flat`` at
this size, and ``HNSW32``), in a fresh child process:

* **ours**: ``retrieve.Embedding(key="id", index=...)`` called with ``filter=``;
* **post-filtering** as LangChain's and Haystack's FAISS stores do it: the same FAISS
  index searched for ``fetch_k`` neighbours at its default parameters, then the hits whose
  bucket fails the filter dropped (a NumPy lookup of the column: the cheapest form of
  their metadata check). ``fetch_k`` = 20 (LangChain's default) and 10 x k; then 1,000,
  10,000 and 100,000 until it reaches ours' recall (the smallest that does is timed);
* **brute force** over the allowed subset: the mask, its row numbers, those rows of a
  contiguous copy of the vectors, one matrix-vector product and ``argpartition``;
* the **unfiltered** search of the same retriever (the latency goal is relative to it).

``HNSW32`` searches with ``efSearch=48``, what ``tune()`` chose for recall@10 0.95 on these
vectors in ``large_corpus`` (FAISS' default of 16 gives about 0.8 unfiltered); ``"auto"``
keeps its choice's ``nprobe=64``. The baselines search the same index with the same parameters.

Recall@10 is against the exact filtered answer (NumPy over the allowed rows); latencies
are p50 of single queries, the sides timed query by query in rotation so that the
machine's noise falls on all of them. Also reported: the filter's compile time (parse and
mask, per query) and the memory of the filterable column per million documents. FAISS and
NumPy run on one thread each, as the server's thread policy sets them on 2 cores.

Built retrievers are saved under ``benchmarks/.cache`` (``cherche_faiss.save``) and loaded
on reruns; smoke size (20,000 documents, 20 queries) caches nothing.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Config, format_ms, paired_single_queries, record, run_alone  # noqa: E402
from _filtered_data import (  # noqa: E402
    SELECTIVITIES,
    K,
    data,
    data_tag,
    recall,
    size_for,
    threshold_of,
    truths,
)

WORKLOAD = "filtered"
FACTORIES = ("auto", "HNSW32")
FETCH_FIXED = (20, 10 * K)  # LangChain's default fetch_k, and 10 x k
FETCH_MORE = (1_000, 10_000, 100_000)  # tried in turn until post-filtering reaches ours' recall (or 0.95)
MORE_QUERIES = 50  # queries for the large fetches (a 100,000-neighbour HNSW search is slow)
# HNSW32 at the efSearch that tune() chose for recall@10 0.95 on these 1M vectors (docs/large-corpora.md): FAISS'
# default of 16 gives about 0.8 unfiltered. "auto" keeps its choice's default (nprobe 64: 0.965 there).
SEARCH_PARAMS = {"HNSW32": {"efSearch": 48}}
GOAL_RECALL = 0.95
GOAL_LATENCY = 2.0  # at most this many times the unfiltered latency of the same index
GOAL_SPEEDUP = 5.0  # at least this many times faster than post-filtering at the same recall


# -- the sides ---------------------------------------------------------------------------------------------
def _retriever(config: Config, factory: str, documents: np.ndarray, column: np.ndarray) -> tuple[Any, float, str]:
    """Ours, loaded from the cache or built (and saved there); returns it, the build time, where it came from."""
    import cherche_faiss
    from cherche_faiss import retrieve

    folder = Path(config.cache_dir) / f"filtered-ours-{factory.replace(',', '_')}-{data_tag(documents)}"
    if not config.smoke and folder.is_dir():
        try:
            return cherche_faiss.load(folder), 0.0, "loaded"
        except Exception as error:  # an older save this version cannot read: rebuild it
            print(f"[{WORKLOAD}] rebuilding {folder.name}: {error}", file=sys.stderr)
    started = time.perf_counter()
    retriever = retrieve.Embedding(key="id", index=factory, k=K)
    documents_ = [{"id": i, "bucket": int(b)} for i, b in enumerate(column.tolist())]
    retriever.add(documents_, embeddings_documents=documents, show_progress=False)
    seconds = time.perf_counter() - started
    if not config.smoke:
        cherche_faiss.save(retriever, folder)
    return retriever, seconds, "built"


def _post_filter(raw: Any, parameters: Any, column: np.ndarray, fetch: int):
    """LangChain/Haystack-style post-filtering: ``fetch`` neighbours, then the allowed ones, first ``K``."""

    def search(queries: np.ndarray, t: int) -> np.ndarray:
        _, ids = raw.search(queries, fetch, params=parameters)
        found = np.full((len(queries), K), -1, dtype=np.int64)
        for row, hits in enumerate(ids):
            hits = hits[hits >= 0]
            kept = hits[column[hits] < t][:K]
            found[row, : len(kept)] = kept
        return found

    return search


def _brute(documents: np.ndarray, column: np.ndarray):
    """Exact search over the allowed rows only."""

    def search(queries: np.ndarray, t: int) -> np.ndarray:
        ids = np.flatnonzero(column < t)
        scores = documents[ids] @ queries[0]
        if len(scores) > K:
            rows = np.argpartition(scores, len(scores) - K)[len(scores) - K :]
        else:
            rows = np.arange(len(scores))
        kept = ids[rows[np.argsort(-scores[rows])]]
        return np.concatenate([kept, np.full(K - len(kept), -1, dtype=np.int64)])[None, :]

    return search


def _ours(retriever: Any, filtered: bool):
    def search(queries: np.ndarray, t: int) -> np.ndarray:
        options = {"filter": {"bucket": {"$lt": t}}} if filtered else {}
        found = np.full((len(queries), K), -1, dtype=np.int64)
        answers = retriever(queries, k=K, **options)
        if len(queries) == 1:
            answers = [answers]
        for row, hits in enumerate(answers):
            keys = [hit["id"] for hit in hits][:K]
            found[row, : len(keys)] = keys
        return found

    return search


def _one_by_one(search: Any, queries: np.ndarray, t: int) -> np.ndarray:
    return np.concatenate([search(queries[i : i + 1], t) for i in range(len(queries))])


# -- compile time and column memory ---------------------------------------------------------------------
def _compile_cost(retriever: Any, t: int, repeats: int = 50) -> dict[str, Any]:
    """Per-query cost of the filter: parsing it, and compiling it to a mask over the index's ids (parse
    included); the memory of the filterable columns."""
    from cherche_faiss.filters import parse_filter

    condition = {"bucket": {"$lt": t}}
    started = time.perf_counter()
    for _ in range(repeats):
        parse_filter(condition)
    parse_s = (time.perf_counter() - started) / repeats
    retriever._filter_mask(condition)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        retriever._filter_mask(condition)
    mask_s = (time.perf_counter() - started) / repeats
    return {"parse_s": parse_s, "mask_s": mask_s, "column_bytes": int(retriever.filter_nbytes)}


# -- one index, in a child process -------------------------------------------------------------------------
def measure_one(factory: str, config: Config, truth_path: Path) -> dict[str, Any]:
    documents, column, queries, source = data(config)
    retriever, build_s, origin = _retriever(config, factory, documents, column)
    if factory in SEARCH_PARAMS:
        retriever.index.search_params = dict(SEARCH_PARAMS[factory])
    import faiss
    from threadpoolctl import threadpool_limits

    # Measured on one thread for FAISS and BLAS, what the server's thread policy gives on 2 cores (one for the
    # event loop): single queries are timed, and idle OpenMP/BLAS threads spinning beside other processes on a
    # shared machine make one-query searches up to 60x slower.
    faiss.omp_set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        return _measure(factory, retriever, build_s, origin, documents, column, queries, source, truth_path)


def _measure(factory, retriever, build_s, origin, documents, column, queries, source, truth_path) -> dict[str, Any]:
    from cherche_faiss.index._search_params import faiss_search_parameters

    stored = np.load(truth_path)
    truth = {s: stored[f"s{threshold_of(s)}"] for s in SELECTIVITIES}
    index = retriever.index
    first, last = index.id_of(0), index.id_of(len(documents) - 1)
    if (first, last) != (0, len(documents) - 1):  # the baselines read FAISS ids as row numbers
        raise RuntimeError(f"FAISS ids are not row numbers here: key 0 -> {first}, key n-1 -> {last}")
    raw = index.faiss_index
    params = dict(index._default_search_params())  # what ours searches with unfiltered (the "auto" choice's)
    parameters = faiss_search_parameters(raw, params, index.factory_used)
    unfiltered = _ours(retriever, filtered=False)
    result: dict[str, Any] = {
        "factory": factory,
        "factory_used": index.factory_used,
        "search_params": params,
        "n": len(documents),
        "queries": len(queries),
        "source": source,
        "build_s": build_s,
        "retriever": origin,
        "selectivities": [],
    }
    for selectivity in SELECTIVITIES:
        t = threshold_of(selectivity)
        expected = truth[selectivity]
        ours = _ours(retriever, filtered=True)
        ours_recall = recall(_one_by_one(ours, queries, t), expected)
        sides = {
            "ours": ours,
            "unfiltered": unfiltered,
            "brute": _brute(documents, column),
            **{f"post{fetch}": _post_filter(raw, parameters, column, fetch) for fetch in FETCH_FIXED},
        }
        recalls = {"ours": ours_recall, "unfiltered": None}
        recalls["brute"] = recall(_one_by_one(sides["brute"], queries, t), expected)
        for fetch in FETCH_FIXED:
            recalls[f"post{fetch}"] = recall(sides[f"post{fetch}"](queries, t), expected)
        # The smallest fetch_k whose post-filtering reaches ours' recall, or the 0.95 goal when ours is above it
        # (post-filtering is capped by the index's unfiltered recall at its default parameters, which ours,
        # raising them, can pass). Large fetches are measured on fewer queries: a 100,000-neighbour search is slow.
        target = min(ours_recall, GOAL_RECALL)
        matching, tried = None, {}
        for fetch in (*FETCH_FIXED, *FETCH_MORE):
            if fetch >= len(documents):
                break
            if fetch in FETCH_FIXED:
                tried[fetch] = recalls[f"post{fetch}"]
            else:
                search = _post_filter(raw, parameters, column, fetch)
                tried[fetch] = recall(search(queries[:MORE_QUERIES], t), expected[:MORE_QUERIES])
            if tried[fetch] >= target - 1e-9:
                matching = fetch
                break
        samples = paired_single_queries(sides, queries, t)
        p50 = {name: float(np.median(values)) for name, values in samples.items()}
        if matching is not None and f"post{matching}" not in p50:
            search = _post_filter(raw, parameters, column, matching)
            more = paired_single_queries({"ours": ours, "match": search}, queries[:MORE_QUERIES], t)
            p50[f"post{matching}"] = float(np.median(more["match"]))
            p50["ours_vs_match"] = float(np.median(more["ours"]))
        row = {
            "selectivity": selectivity,
            "t": t,
            "allowed": int((column < t).sum()),
            "recall": recalls,
            "p50_s": p50,
            "post_fetch_recalls": {str(fetch): value for fetch, value in tried.items()},
            "post_matching_fetch": matching,
            "post_target_recall": target,
            "compile": _compile_cost(retriever, t),
        }
        result["selectivities"].append(row)
        print(
            f"[{WORKLOAD}] {factory} s={selectivity:g}: ours recall {ours_recall:.3f} p50 {p50['ours'] * 1e3:.2f} ms "
            f"(unfiltered {p50['unfiltered'] * 1e3:.2f} ms), post20 {recalls['post20']:.3f}, brute "
            f"{p50['brute'] * 1e3:.2f} ms; matching fetch {matching}",
            file=sys.stderr,
            flush=True,
        )
        gc.collect()
    return result


# -- the workload -------------------------------------------------------------------------------------------
def run(config: Config) -> list[dict]:
    documents, column, queries, source = data(config)
    truth = truths(config, documents, column, queries, SELECTIVITIES)
    records = []
    with tempfile.TemporaryDirectory(prefix="cherche_faiss_filtered_") as folder:
        truth_path = Path(folder) / "truth.npz"
        np.savez(truth_path, **{f"s{threshold_of(s)}": found for s, found in truth.items()})
        del documents
        gc.collect()
        for factory in config.extra.get("factories") or FACTORIES:
            command = [
                sys.executable,
                __file__,
                "--child",
                factory,
                "--truth",
                str(truth_path),
                "--size",
                config.size,
                "--cache-dir",
                str(config.cache_dir),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=5400)
            sys.stderr.write(done.stderr[-4000:])
            if done.returncode != 0:
                raise RuntimeError(f"the {factory} child failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            records.append(record(WORKLOAD, factory, {"n": size_for(config), "source": source}, **result))
    return records


def _met(value: bool | None) -> str:
    return "-" if value is None else ("met" if value else "**missed**")


def markdown(records: list[dict]) -> str:
    if not records:
        return ""
    first = records[0]["metrics"]
    lines = [
        f"### Filtered search: {first['n']:,} x 384, k={K}, {first['queries']} queries",
        "",
        f'({first["source"]}; filter `{{"bucket": {{"$lt": t}}}}` on a uniform int column. Recall@10 against '
        "the exact filtered answer; p50 latency of single queries in ms, every side timed query by query in "
        "rotation. Goals: recall >= 0.95; latency <= 2x the unfiltered search of the same index; >= 5x faster "
        "than post-filtering that reaches the same recall.)",
        "",
        "| index | selectivity | ours recall | ours p50 | unfiltered p50 | ours / unfiltered | post fetch 20 "
        "recall / p50 | post fetch 100 recall / p50 | post-filter reaching ours' recall (or 0.95) | brute force p50 | "
        "recall goal | latency goal | 5x goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|---|",
    ]
    for row in records:
        m = row["metrics"]
        name = row["case"] if row["case"] == m["factory_used"] else f"{row['case']} ({m['factory_used']})"
        params = ", ".join(f"{key}={value}" for key, value in m["search_params"].items())
        name += f", {params}" if params else ""
        for item in m["selectivities"]:
            recalls, p50 = item["recall"], item["p50_s"]
            vs_unfiltered = p50["ours"] / p50["unfiltered"]
            matching = item["post_matching_fetch"]
            if matching is None:
                tried = ", ".join(f"{int(fetch):,}: {value:.3f}" for fetch, value in item["post_fetch_recalls"].items())
                match_cell, speedup_met = f"none tried (recall at fetch {tried})", None
            else:
                post = p50[f"post{matching}"]
                ours = p50.get("ours_vs_match", p50["ours"])
                reached = item["post_fetch_recalls"][str(matching)]
                match_cell = (
                    f"fetch {matching:,} (recall {reached:.3f}): {format_ms(post)} ms, {post / ours:.1f}x ours' time"
                )
                speedup_met = post / ours >= GOAL_SPEEDUP
            lines.append(
                f"| {name} | {item['selectivity']:.2%} ({item['allowed']:,}) | {recalls['ours']:.3f} | "
                f"{format_ms(p50['ours'])} | {format_ms(p50['unfiltered'])} | {vs_unfiltered:.2f}x | "
                f"{recalls['post20']:.3f} / {format_ms(p50['post20'])} | "
                f"{recalls[f'post{10 * K}']:.3f} / {format_ms(p50[f'post{10 * K}'])} | {match_cell} | "
                f"{format_ms(p50['brute'])} | {_met(recalls['ours'] >= GOAL_RECALL)} | "
                f"{_met(vs_unfiltered <= GOAL_LATENCY)} | {_met(speedup_met)} |"
            )
    lines += ["", "Filter compile time (per query) and column memory:", ""]
    for row in records:
        m = row["metrics"]
        for item in m["selectivities"][:1]:
            cost = item["compile"]
            memory = f"{cost['column_bytes'] / m['n'] * 1e6 / 2**20:.2f} MiB per million documents"
            lines.append(
                f"- {row['case']}: parse {cost['parse_s'] * 1e6:.1f} us, parse + mask "
                f"{format_ms(cost['mask_s'])} ms; `bucket` column: {memory}; "
                f"retriever {m['retriever']}" + (f" in {m['build_s']:.0f} s" if m["build_s"] else "") + "."
            )
    return "\n".join(lines) + "\n"


def plot(records: list[dict], folder: Path) -> list[Path]:
    return []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("--child")
        parser.add_argument("--truth", type=Path)
        parser.add_argument("--size", default="quick")
        parser.add_argument("--cache-dir", type=Path)
        args = parser.parse_args(argv)
        config = Config(size=args.size, cache_dir=args.cache_dir)
        print(json.dumps(measure_one(args.child, config, args.truth)))
        return 0
    return run_alone(__doc__, run, markdown, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
