"""The scaling model of docs/distributed.md, computed from a run of benchmarks/distributed.py.

It reads ``results/distributed/latest.json`` (the measured inputs: encoding throughput per worker,
the fan-out overhead per shard count, the scan time per code of IVF-SQ8 and IVF-PQ48 and the k-means time
per unit of work, all on this machine) and prints the model's tables for 100M and 1B x 384 documents on
machines of 64, 128 and 256 GB. Every assumption is a named constant below; change one and run again:

    python benchmarks/scaling_model.py [--results benchmarks/results/distributed/latest.json]

This is arithmetic on measured figures, not a measurement: what a real multi-machine run must still
confirm is listed in docs/distributed.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

DIMENSION = 384
CORPORA = {"100M": 100_000_000, "1B": 1_000_000_000}
MACHINES_GB = (64, 128, 256)
#: Share of a machine's memory a shard's index may take: the rest is the OS, Python, Ray (its object store
#: set small), search buffers, and the headroom IVF lists need while they grow.
USABLE = 0.6
#: Bytes per document besides its code: the IVF list's id (8), the key column (8, integer keys) and the ordinal (8).
PER_DOCUMENT = 24
CODES = {"IVF-SQ8": DIMENSION, "IVF-PQ48": 48}
#: Coarse lists (FAISS' rule of thumb: 4 to 16 x sqrt(N)); the coarse quantizer is an HNSW over the centroids
#: (IVF{nlist}_HNSW32,...), which FAISS' wiki finds the best trade-off at this scale: its cost is left out.
NLIST = {"100M": 65_536, "1B": 262_144}
NPROBE = 64
#: k-means sample: 50 vectors per centroid (the library's default), 10 iterations (FAISS' IVF default).
SAMPLE_PER_CENTROID, ITERATIONS = 50, 10
#: Cores of one machine that encode, train and search (a 64-256 GB machine of today).
CORES = 32
#: One query's encoding on the driver with the ONNX encoder (docs/onnx.md: 6.06 ms end to end, 2026-12-04).
ENCODE_QUERY_S = 0.006
#: Round trip of one call between machines of one data centre, added to the loopback overhead measured here.
NETWORK_RTT_S = 0.0003
NIC_BYTES_PER_S = 1.25e9  # 10 Gb/s


def _metric(records: list[dict], case: str, **params: object) -> dict:
    for record in records:
        if record["case"] == case and all(record["params"].get(key) == value for key, value in params.items()):
            return record["metrics"]
    raise KeyError(f"no {case} record with {params} in the results")


def inputs(records: list[dict]) -> dict[str, float]:
    """The measured figures the model uses (see the module docstring)."""
    fanout = {shards: _metric(records, "fanout", shards=shards) for shards in (1, 2, 4)}
    # Overhead per call and per shard: a line through the measured p50 overheads at 1 and 4 shards.
    per_shard = (fanout[4]["overhead_p50_s"] - fanout[1]["overhead_p50_s"]) / 3
    search = _metric(records, "search", shards=2)
    return {
        "encode_per_core": _metric(records, "build", side="Ray, 1 worker node")["documents_per_s"],
        "fanout_fixed_s": max(0.0, fanout[1]["overhead_p50_s"] - per_shard),
        "fanout_per_shard_s": max(0.0, per_shard),
        "tail": search["p99_s"] / search["p50_s"],  # p99 / p50 of a sharded search, measured
        "ns_per_code IVF-SQ8": _kernel(records, "SQ8")["ns_per_code"],
        "ns_per_code IVF-PQ48": _kernel(records, "PQ48")["ns_per_code"],
        "fixed_s IVF-SQ8": _kernel(records, "SQ8")["fixed_s"],
        "fixed_s IVF-PQ48": _kernel(records, "PQ48")["fixed_s"],
        "kmeans_ns_per_unit": _kernel(records, "SQ8")["training_ns_per_unit"],
    }


def _kernel(records: list[dict], codes: str) -> dict:
    for record in records:
        if record["case"] == "kernel" and record["params"]["factory"].endswith("," + codes):
            return record["metrics"]
    raise KeyError(f"no kernel record for {codes}")


def model(measured: dict[str, float], cpu_count: int) -> list[str]:
    lines = [
        "| corpus | index | bytes/doc | total | machine | shards | per shard | scan ms | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for corpus, n in CORPORA.items():
        for index, code in CODES.items():
            per_doc = code + PER_DOCUMENT
            total = n * per_doc
            for gigabytes in MACHINES_GB:
                shards = max(1, math.ceil(total / (USABLE * gigabytes * 1e9)))
                scanned = NPROBE * n / NLIST[corpus] / shards  # codes one shard scans for one query
                # One thread per query and shard: the codes scanned, plus what a query costs whatever it scans.
                scan = scanned * measured[f"ns_per_code {index}"] * 1e-9 + measured[f"fixed_s {index}"]
                fanout = measured["fanout_fixed_s"] + measured["fanout_per_shard_s"] * shards + NETWORK_RTT_S
                p50 = ENCODE_QUERY_S + fanout + scan
                # The slowest of the shards sets a query's time: each shard's p(1 - 0.01/S) quantile, bounded
                # here by the measured p99/p50 ratio applied to the shard-dependent part.
                p99 = ENCODE_QUERY_S + (fanout + scan) * measured["tail"]
                lines.append(
                    f"| {corpus} | {index} | {per_doc} | {total / 1e9:,.1f} GB | {gigabytes} GB | {shards} | "
                    f"{total / shards / 1e9:,.1f} GB | {scan * 1e3:.1f} | {p50 * 1e3:.1f} | {p99 * 1e3:.1f} |"
                )
    return lines


def build_times(measured: dict[str, float], cpu_count: int) -> list[str]:
    lines = [
        "| corpus | encode (core-hours) | encode on 8 machines | k-means sample | train on one machine | "
        "vectors through the driver |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    # The k-means figure was measured with every core of this machine: per core it is cpu_count times slower.
    per_core_ns = measured["kmeans_ns_per_unit"] * cpu_count
    for corpus, n in CORPORA.items():
        core_hours = n / measured["encode_per_core"] / 3600
        sample = SAMPLE_PER_CENTROID * NLIST[corpus]
        units = sample * NLIST[corpus] * DIMENSION * ITERATIONS
        train_hours = units * per_core_ns * 1e-9 / CORES / 3600
        transfer_min = n * DIMENSION * 4 / NIC_BYTES_PER_S / 60
        lines.append(
            f"| {corpus} | {core_hours:,.0f} | {core_hours / (8 * CORES):,.1f} h | {sample / 1e6:.1f}M | "
            f"{train_hours:,.1f} h | {transfer_min:,.0f} min |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parent / "results" / "distributed" / "latest.json"
    parser.add_argument("--results", type=Path, default=default)
    args = parser.parse_args(argv)
    report = json.loads(args.results.read_text())
    measured = inputs(report["records"])
    cpu_count = int(report["environment"]["cpu_count"])
    print("Measured inputs:", json.dumps({key: round(value, 6) for key, value in measured.items()}))
    print()
    print("\n".join(model(measured, cpu_count)))
    print()
    print("\n".join(build_times(measured, cpu_count)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
