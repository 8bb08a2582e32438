"""Run the benchmark suite and write ``results/latest.json``, ``results/latest.md`` and PNG plots.

    python benchmarks/run.py --size quick      # make bench (a few minutes on 2 cores)
    python benchmarks/run.py --size full       # make bench-full (1M vectors)
    python benchmarks/run.py --size smoke      # the harness on tiny sizes (CI)

Each workload module exposes ``run(config) -> records``, ``markdown(records)``
and ``plot(records, results_dir)``; this script runs them in turn, one process,
and records the machine with the results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, Config, environment  # noqa: E402

WORKLOADS = {
    "save_load": "Save & Load pipeline on towns (Cherche vs cherche_faiss)",
    "overhead": "Library overhead with a lookup-table encoder",
    "dense_search": "Exact dense search",
    "serialization": "Serialisation at scale",
    "large_corpus": "Large corpus: approximate indexes vs exact search, cherche_faiss vs raw FAISS",
    "server": "HTTP server: micro-batching on and off (towns, MiniLM)",
    "storage": "Save and load: the safe folder format against pickle",
    "torch_free": "Torch-free serving: the ONNX query encoder vs torch vs Cherche",
    "sparse": "TF-IDF and BM25 alone and in pipelines (Cherche, scikit-learn, bm25s)",
    "distributed": "Sharded dense retrieval on a Ray cluster of this machine against one index",
    "fixed_costs": "Fixed costs: single queries, pickle loads and adds at 1M against raw FAISS",
    "filtered": "Filtered search: ours against post-filtering and brute force (1M x 384)",
    "filter_threshold": "Filtered search planner: exact subset against a FAISS selector, raw FAISS (1M x 384)",
}
# Workloads too long for the quick suite: they run at smoke size (CI) and full size
# (``make bench-full``), or when named with --only.
# distributed starts a three-node Ray cluster and encodes with MiniLM on it (about 4 minutes): its results
# live in results/distributed (python benchmarks/run.py --size quick --only distributed --results-dir ...).
# fixed_costs builds six indexes of 1M vectors (cached in benchmarks/.cache): results in results/fixed_costs.
# filtered and filter_threshold work on 1M x 384 vectors (their results: results/filtered, with --only).
NOT_QUICK = {"large_corpus", "distributed", "fixed_costs", "filtered", "filter_threshold"}


def _header(env: dict, config: Config, seconds: float) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items() if version)
    load = ", ".join(f"{value:.2f}" for value in env["load_average"])
    return (
        f"## Benchmarks ({config.size})\n\n"
        f"Measured {env['date']} on {env['cpu']} ({env['cpu_count']} CPUs, load average {load}), "
        f"Python {env['python']}; {versions}. Threads: {json.dumps(env['threads'])}. "
        f"The suite ran in {seconds / 60:.1f} min. Sides are timed alternately in one process "
        "run; figures are medians unless marked otherwise, ratios are measured side by side.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("smoke", "quick", "full"), default="quick")
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), help="run these workloads only")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--repeats", type=int, default=None, help="override each workload's repeats")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)

    config = Config(size=args.size, results_dir=args.results_dir)
    if args.repeats is not None:
        config.repeats = args.repeats
    elif config.smoke:
        config.repeats = 1
    config.results_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    records: list[dict] = []
    sections: list[str] = []
    plots: list[str] = []
    failures: list[str] = []
    names = args.only or [name for name in WORKLOADS if not (config.size == "quick" and name in NOT_QUICK)]
    for name in names:
        module = importlib.import_module(name)
        print(f"[{name}] {WORKLOADS[name]} ...", file=sys.stderr, flush=True)
        try:
            workload_records = module.run(config)
        except Exception:  # one broken workload must not hide the others' results
            failures.append(name)
            sections.append(f"### {WORKLOADS[name]}\n\nFailed:\n\n```\n{traceback.format_exc()}```\n")
            continue
        records.extend(workload_records)
        sections.append(module.markdown(workload_records))
        if not args.no_plots:
            plots.extend(
                str(path.relative_to(config.results_dir)) for path in module.plot(workload_records, config.results_dir)
            )
    seconds = time.perf_counter() - started

    env = environment()
    stem = "latest" if config.size != "smoke" else "smoke"
    (config.results_dir / f"{stem}.json").write_text(
        json.dumps(
            {"environment": env, "size": config.size, "seconds": seconds, "plots": plots, "records": records}, indent=1
        )
        + "\n"
    )
    figures = "".join(f"\n![{path}]({path})\n" for path in plots)
    markdown = _header(env, config, seconds) + "\n" + "\n\n".join(sections) + "\n" + figures
    (config.results_dir / f"{stem}.md").write_text(markdown)
    print(markdown)
    if failures:
        print(f"failed workloads: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
