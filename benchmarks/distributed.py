"""Workload: sharded dense retrieval on a Ray cluster (cherche_faiss.distributed) against one index.

The cluster is ``ray.cluster_utils.Cluster`` on this machine: a head node (this
process is its driver; 1 CPU) and two worker nodes of one CPU each, with a
``shard`` resource (shard actors go to the workers) and one ``encode`` unit
each (an encoder actor takes a worker of its own). Every node runs on this
machine's cores, memory and loopback network: the figures measure what Ray
and the library add, and how work spreads over nodes, not what more machines
would bring (``docs/distributed.md`` models that from these figures). Ray's
workers run at the same priority as this process (``RAY_WORKER_NICENESS=0``;
Ray's default, 15, would slow only the Ray sides on a shared machine).

Build
    ``B`` SciFact sentences (texts) encoded with MiniLM (smoke: the hashing
    encoder) and indexed in a Flat index: ``retrieve.Encoder.add`` in this
    process (torch on every core), against ``ShardedRetriever(shards=2).add``
    with one encoder actor on one worker node, and two on two. Documents per
    second include the actors' start and the model's load (each ``add`` starts
    its pool), the routing and the shards' additions.
Search
    ``N`` vectors (MiniLM sentence vectors, derived beyond the real ones) in a
    Flat index: ``retrieve.Embedding`` in this process against
    ``ShardedRetriever`` with 1, 2 and 4 shards spread over the two workers.
    Single-query latency (p50, p99 over the SciFact claims, sides interleaved
    query by query) and batch throughput (queries per second at batch 256).
Fan-out overhead
    The same sides over ``F`` vectors, where searching costs next to nothing:
    the latency above the unsharded index's is what a fan-out costs (a put of
    the query in Ray's store, one call per shard, the merge).
Kernel costs (for the scaling model)
    In this process, IVF-SQ8 and IVF-PQ48 indexes over the ``N`` vectors: the
    time per code scanned (the slope of one query's time between ``nprobe``
    16 and 256) and per query whatever it scans, and k-means training time per
    (training vector x centroid x dimension x iteration).

    python benchmarks/run.py --size quick --only distributed --results-dir benchmarks/results/distributed
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Config,
    alternate,
    format_ms,
    format_ratio,
    median,
    pyplot,
    ratio,
    record,
    run_alone,
    save_figure,
    summary,
)
from embeddings import dataset, sentences  # noqa: E402

WORKLOAD = "distributed"
K = 10
STORE = 200 * 2**20  # each node's object store
BATCH = 256
SHARD_COUNTS = (1, 2, 4)
ON_WORKERS = {"resources": {"shard": 1}}


def sizes(config: Config) -> dict[str, int]:
    """Documents built, vectors searched, vectors of the fan-out case, queries timed."""
    if config.smoke:
        return {"build": 300, "search": 2_000, "fanout": 500, "queries": 20}
    if config.full:
        return {"build": 8_000, "search": 300_000, "fanout": 1_000, "queries": 500}
    return {"build": 2_000, "search": 100_000, "fanout": 1_000, "queries": 200}


# -- the cluster -----------------------------------------------------------------------------------------
class LocalCluster:
    """A head node and two one-CPU workers on this machine (see the module docstring)."""

    def __enter__(self) -> LocalCluster:
        import ray
        from ray.cluster_utils import Cluster

        # Ray starts its workers at nice 15 (RAY_WORKER_NICENESS), which on a machine shared with other work
        # would slow the Ray sides only; on a machine of their own, as a cluster's nodes are, it changes nothing.
        os.environ.setdefault("RAY_WORKER_NICENESS", "0")

        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "object_store_memory": STORE, "include_dashboard": False},
        )
        for _ in range(2):
            self.cluster.add_node(num_cpus=1, object_store_memory=STORE, resources={"shard": 100, "encode": 1})
        ray.init(address=self.cluster.address, log_to_driver=False)
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()


# -- build ---------------------------------------------------------------------------------------------------
def _encoder(config: Config) -> tuple[Any, str]:
    if config.smoke:
        from cherche_faiss.encoders import HashingEncoder

        return HashingEncoder(dimension=384), "hashing encoder"
    from cherche_faiss.data import minilm_path
    from cherche_faiss.encoders import SentenceTransformerEncoder

    return SentenceTransformerEncoder(minilm_path(), device="cpu"), "MiniLM"


def build(config: Config, count: int) -> list[dict]:
    from cherche_faiss import retrieve
    from cherche_faiss.distributed import ShardedRetriever

    encoder, name = _encoder(config)
    documents = [{"id": i, "text": text} for i, text in enumerate(sentences(count))]
    encoder.encode(["warm the model up"])  # this process' model is loaded once, outside the timings

    def template() -> Any:
        return retrieve.Encoder(key="id", on="text", encoder=encoder, k=K, batch_size=64)

    def in_process() -> None:
        template().add(documents, show_progress=False)

    def on_ray(workers: int) -> Any:
        def run() -> None:
            sharded = ShardedRetriever(template(), shards=2, shard_options=ON_WORKERS)
            sharded.add(
                documents,
                batch_size=64,
                concurrency=workers,
                show_progress=False,
                encode_options={"resources": {"encode": 1}},
            )
            sharded.close()

        return run

    cases = {"in process": in_process, "Ray, 1 worker node": on_ray(1), "Ray, 2 worker nodes": on_ray(2)}
    samples = alternate(cases, repeats=max(1, min(config.repeats, 2)), warmup=0)
    baseline = median(samples["in process"])
    return [
        record(
            WORKLOAD,
            "build",
            {"side": side, "documents": count, "encoder": name},
            seconds=median(times),
            documents_per_s=count / median(times),
            speed_vs_in_process=ratio(baseline, median(times)),
        )
        for side, times in samples.items()
    ]


# -- search --------------------------------------------------------------------------------------------------
def _retrievers(vectors: np.ndarray) -> dict[str, Any]:
    from cherche_faiss import retrieve
    from cherche_faiss.distributed import ShardedRetriever

    documents = [{"id": i} for i in range(len(vectors))]
    unsharded = retrieve.Embedding(key="id", k=K).add(documents, embeddings_documents=vectors)
    sides: dict[str, Any] = {"unsharded": unsharded}
    for shards in SHARD_COUNTS:
        sharded = ShardedRetriever(retrieve.Embedding(key="id", k=K), shards=shards, shard_options=ON_WORKERS)
        sides[f"{shards} shard{'s' * (shards > 1)}"] = sharded.add(
            documents, embeddings_documents=vectors, show_progress=False
        )
    return sides


def search(config: Config, n: int, queries: np.ndarray, case: str, batches: bool) -> list[dict]:
    vectors = dataset(n, config).documents
    sides = _retrievers(vectors)
    expected = [hit["id"] for hit in sides["unsharded"](queries[0])]
    for name, retriever in sides.items():  # every side answers alike (warms them up too)
        assert [hit["id"] for hit in retriever(queries[0])] == expected, name
    timings: dict[str, list[float]] = {name: [] for name in sides}
    for query in queries:  # interleaved, query by query
        for name, retriever in sides.items():
            started = time.perf_counter()
            retriever(query)
            timings[name].append(time.perf_counter() - started)
    qps: dict[str, float] = {}
    if batches:
        batch = np.ascontiguousarray(np.resize(queries, (BATCH, queries.shape[1])))
        runs = {name: (lambda retriever=retriever: retriever(batch)) for name, retriever in sides.items()}
        samples = alternate(runs, repeats=max(2, min(config.repeats, 5)), warmup=1)
        qps = {name: BATCH / median(times) for name, times in samples.items()}
    base = summary(timings["unsharded"])
    results = []
    for name, times in timings.items():
        found = summary(times)
        results.append(
            record(
                WORKLOAD,
                case,
                {"side": name, "documents": n, "shards": 0 if name == "unsharded" else int(name.split()[0])},
                **found,
                overhead_p50_s=found["p50_s"] - base["p50_s"],
                latency_vs_unsharded=ratio(found["p50_s"], base["p50_s"]),
                qps=qps.get(name),
                qps_vs_unsharded=ratio(qps[name], qps["unsharded"]) if qps else None,
            )
        )
    for retriever in sides.values():
        getattr(retriever, "close", lambda: None)()
    return results


# -- kernel costs ----------------------------------------------------------------------------------------
def kernels(config: Config, n: int, queries: np.ndarray) -> list[dict]:
    """Per-code scan time of IVF-SQ8 and IVF-PQ48 at nprobe 16, and k-means time per unit of work."""
    from cherche_faiss.index import FaissIndex

    vectors = dataset(n, config).documents
    nlist = 16 if config.smoke else 1024
    results = []
    for codes in ("SQ8", "PQ48x4" if config.smoke else "PQ48"):  # smoke: 16 PQ centroids train on 2,000
        factory = f"IVF{nlist},{codes}"
        train_size = min(len(vectors), 40 * max(nlist, 16 if config.smoke else 256))
        index = FaissIndex(factory=factory, train_size=train_size)
        started = time.perf_counter()
        index.add(vectors[:train_size], keys=list(range(train_size)))  # trains, then adds the sample
        training = time.perf_counter() - started
        index.add(vectors[train_size:], keys=list(range(train_size, len(vectors))))
        # Query time at two nprobe values: the slope is the cost of one more code scanned, the intercept
        # what a query costs whatever it scans (the coarse quantizer, the lookup tables, the heap).
        probes = (4, 64) if config.smoke else (16, 256)
        medians, p99s = [], []
        for nprobe in probes:
            index.search(queries[:3], K, nprobe=nprobe)
            latency = []
            for query in queries:
                started = time.perf_counter()
                index.search(query, K, nprobe=nprobe)
                latency.append(time.perf_counter() - started)
            medians.append(float(np.median(latency)))
            p99s.append(float(np.percentile(latency, 99)))
        scanned = [nprobe * len(vectors) / nlist for nprobe in probes]  # codes a query scans, on average
        per_code = max(0.0, (medians[1] - medians[0]) / (scanned[1] - scanned[0]))
        import faiss

        iterations = int(faiss.extract_index_ivf(index.faiss_index).cp.niter)
        # The coarse k-means' work: training vectors x centroids x dimensions x iterations (the PQ index also
        # trains its codebooks, so its figure is an upper bound of the coarse k-means' cost).
        work = train_size * nlist * vectors.shape[1] * iterations
        results.append(
            record(
                WORKLOAD,
                "kernel",
                {"factory": factory, "documents": len(vectors), "nprobe": list(probes), "train_size": train_size},
                query_p50_s=medians[0],
                query_p99_s=p99s[0],
                query_p50_wide_s=medians[1],
                ns_per_code=per_code * 1e9,
                fixed_s=max(0.0, medians[0] - per_code * scanned[0]),
                training_s=training,
                training_ns_per_unit=training / work * 1e9,
            )
        )
    return results


def run(config: Config) -> list[dict]:
    import ray  # noqa: F401  # the workload needs the ray extra: fail here, clearly, without it

    size = sizes(config)
    queries = np.ascontiguousarray(dataset(size["fanout"], config).queries[: size["queries"]])
    results: list[dict] = []
    with LocalCluster():
        results += build(config, size["build"])
        results += search(config, size["search"], queries, "search", batches=True)
        results += search(config, size["fanout"], queries, "fanout", batches=False)
    results += kernels(config, size["search"], queries)
    return results


# -- report ----------------------------------------------------------------------------------------------
def markdown(records: Sequence[Mapping]) -> str:
    mine = [rec for rec in records if rec["workload"] == WORKLOAD]
    lines = ["### Sharded dense retrieval on a Ray cluster of this machine (head + 2 one-CPU workers)", ""]
    built = [rec for rec in mine if rec["case"] == "build"]
    if built:
        params = built[0]["params"]
        lines += [
            f"Build: {params['documents']:,} SciFact sentences, {params['encoder']}, Flat index, 2 shards.",
            "",
            "| side | documents/s | speed vs in process |",
            "|---|---:|---:|",
        ]
        for rec in built:
            metrics = rec["metrics"]
            lines.append(
                f"| {rec['params']['side']} | {metrics['documents_per_s']:,.0f} | "
                f"{format_ratio(metrics['speed_vs_in_process'])} |"
            )
    for case, title in (("search", "Search"), ("fanout", "Fan-out overhead")):
        found = [rec for rec in mine if rec["case"] == case]
        if not found:
            continue
        lines += [
            "",
            f"{title}: {found[0]['params']['documents']:,} vectors (d=384, Flat), top-{K}, "
            f"{found[0]['metrics']['n']} single queries interleaved"
            + (f", batch {BATCH}." if case == "search" else "."),
            "",
            "| side | p50 ms | p99 ms | p50 vs unsharded | p50 over unsharded ms |"
            + (" QPS at batch 256 | QPS vs unsharded |" if case == "search" else ""),
            "|---|---:|---:|---:|---:|" + ("---:|---:|" if case == "search" else ""),
        ]
        for rec in found:
            metrics = rec["metrics"]
            row = (
                f"| {rec['params']['side']} | {format_ms(metrics['p50_s'])} | {format_ms(metrics['p99_s'])} | "
                f"{format_ratio(metrics['latency_vs_unsharded'])} | {format_ms(metrics['overhead_p50_s'])} |"
            )
            if case == "search":
                row += f" {metrics['qps']:,.0f} | {format_ratio(metrics['qps_vs_unsharded'])} |"
            lines.append(row)
    measured = [rec for rec in mine if rec["case"] == "kernel"]
    if measured:
        lines += ["", "Kernel costs in this process (the scaling model's inputs):", ""]
        low, high = measured[0]["params"]["nprobe"]
        lines += [
            f"| index | documents | query p50 / p99 ms (nprobe {low}) | p50 ms (nprobe {high}) | ns per code scanned "
            "| fixed ms per query | training s | k-means ns per unit |"
        ]
        lines += ["|---|---:|---:|---:|---:|---:|---:|---:|"]
        for rec in measured:
            metrics = rec["metrics"]
            lines.append(
                f"| {rec['params']['factory']} | {rec['params']['documents']:,} | {format_ms(metrics['query_p50_s'])} "
                f"/ {format_ms(metrics['query_p99_s'])} | {format_ms(metrics['query_p50_wide_s'])} "
                f"| {metrics['ns_per_code']:.2f} | {format_ms(metrics['fixed_s'])} | {metrics['training_s']:.1f} "
                f"| {metrics['training_ns_per_unit']:.4f} |"
            )
        lines += [
            "",
            "ns per code: the slope of one query's time between the two nprobe values (one thread, FAISS' IVF "
            "search of one query); fixed: what remains at the lower one. k-means: the training time over training "
            "vectors x lists x dimensions x iterations, on every core of this machine.",
        ]
    lines += [
        "",
        "Every node shares this machine's two cores: a worker node is one core, and the fan-out travels over "
        "loopback. Each shard searches with one thread (it reserves no CPU); the unsharded index uses every core.",
    ]
    return "\n".join(lines) + "\n"


def plot(records: Sequence[Mapping], results_dir: Path) -> list[Path]:
    """Single-query latency per side (search and fan-out), and build throughput per side."""
    plt = pyplot()
    mine = [rec for rec in records if rec["workload"] == WORKLOAD]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for offset, case in enumerate(("search", "fanout")):
        found = [rec for rec in mine if rec["case"] == case]
        if not found:
            continue
        labels = [rec["params"]["side"] for rec in found]
        values = [rec["metrics"]["p50_s"] * 1e3 for rec in found]
        positions = np.arange(len(labels)) + offset * 0.4
        axes[0].bar(positions, values, 0.4, label=f"{case}: {found[0]['params']['documents']:,} vectors")
        axes[0].set_xticks(np.arange(len(labels)) + 0.2, labels)
    axes[0].set_ylabel("single query p50 (ms)")
    axes[0].set_title("Search latency: one index vs shards on Ray")
    axes[0].legend(fontsize=8)
    built = [rec for rec in mine if rec["case"] == "build"]
    axes[1].bar([rec["params"]["side"] for rec in built], [rec["metrics"]["documents_per_s"] for rec in built])
    axes[1].set_ylabel("documents per second")
    axes[1].set_title("Build: encode and index")
    figure.tight_layout()
    return [save_figure(figure, results_dir, "distributed.png")]


def main(argv: list[str] | None = None) -> int:
    return run_alone(__doc__, run, markdown, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
