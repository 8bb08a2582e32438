"""What every benchmark shares: configuration, timers that alternate the sides
being compared, percentiles, memory, the machine's description, result records.

These machines are noisy: a benchmark never reports a lone absolute time as a
verdict. It runs the sides it compares in the same process run, alternating,
after a warm-up, and reports medians and ratios.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = BENCH_DIR / ".cache"  # embeddings computed once (gitignored)
SHARED = REPO.parent / "shared"
SCIFACT = SHARED / "data" / "scifact"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class Config:
    """How big and how long: ``smoke`` (CI, seconds), quick (``make bench``), ``full``."""

    size: str = "quick"  # "smoke" | "quick" | "full"
    repeats: int = 5
    warmup: int = 1
    results_dir: Path = RESULTS_DIR
    cache_dir: Path = CACHE_DIR
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def smoke(self) -> bool:
        return self.size == "smoke"

    @property
    def full(self) -> bool:
        return self.size == "full"


def record(workload: str, case: str, params: Mapping[str, Any] | None = None, **metrics: Any) -> dict[str, Any]:
    """One result: which workload and case, its parameters, and the measured metrics."""
    return {"workload": workload, "case": case, "params": dict(params or {}), "metrics": metrics}


# -- timing ----------------------------------------------------------------------------------
def alternate(cases: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each case ``repeats`` times, interleaved (A, B, C, A, B, C ...), after warm-ups.

    Interleaving spreads the machine's noise evenly over the sides compared.
    """
    for _ in range(warmup):
        for run in cases.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return samples


def latencies(run: Callable[[Any], Any], inputs: list[Any], warmup: int = 3) -> list[float]:
    """Time ``run(x)`` once for each input (e.g. one query at a time)."""
    for x in inputs[:warmup]:
        run(x)
    samples = []
    for x in inputs:
        start = time.perf_counter()
        run(x)
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p95, p99, mean and min of timings in seconds."""
    values = np.asarray(samples, dtype=float)
    return {
        "p50_s": float(np.percentile(values, 50)),
        "p95_s": float(np.percentile(values, 95)),
        "p99_s": float(np.percentile(values, 99)),
        "mean_s": float(values.mean()),
        "min_s": float(values.min()),
        "n": int(values.size),
    }


def format_ms(seconds: float | None) -> str:
    """Milliseconds with 3 significant digits (thousands separated), "-" for None."""
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3g}" if seconds < 1 else f"{seconds * 1e3:,.0f}"


def format_ratio(value: float | None) -> str:
    """A ratio as ``1.23x``, "-" for None."""
    return "-" if value is None else f"{value:.2f}x"


def median(samples: list[float]) -> float:
    return float(statistics.median(samples))


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, None when the denominator is zero."""
    return float(numerator / denominator) if denominator else None


# -- memory ------------------------------------------------------------------------------------
def rss_bytes() -> int:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage().ru_maxrss``: Linux carries the parent's peak into a child
    started by ``subprocess`` (``execve`` keeps the larger of the two), so a
    child measured right after a big parent would report the parent's peak.
    ``VmHWM`` belongs to the child's own address space.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: the best there is


# -- plots and child processes ---------------------------------------------------------------------
def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (these machines have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, results_dir: Path, name: str) -> Path:
    """Write ``figure`` to ``results_dir / name`` (the folder is made if needed), close it, return the path."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / name
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return path


def child_reporter(command: list[str], what: str, reports: list[dict]) -> Callable[[], None]:
    """A case for :func:`alternate` that runs ``command`` (a fresh interpreter) and appends the JSON
    object its last line prints to ``reports``."""
    environment = dict(os.environ, PYTHONWARNINGS="ignore")

    def run() -> None:
        import json
        import subprocess

        done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the {what} child failed:\n{done.stderr[-2000:]}")
        reports.append(json.loads(done.stdout.strip().splitlines()[-1]))

    return run


def copy_bandwidth(nbytes: int = 1 << 28, repeats: int = 5) -> float:
    """Memory bandwidth in bytes per second: ``nbytes`` copied between two
    preallocated buffers (each byte read once and written once), best of ``repeats``."""
    source = np.ones(nbytes // 4, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)  # fault the pages in
    best = min(_timed(lambda: np.copyto(target, source)) for _ in range(repeats))
    return nbytes / best


def _timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# -- the machine ---------------------------------------------------------------------------------
def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """Versions, threads, CPU and load: recorded with every result file."""
    threads: dict[str, Any] = {}
    try:
        import faiss

        threads["faiss_omp"] = faiss.omp_get_max_threads()
    except ImportError:
        pass
    if "torch" in sys.modules:
        threads["torch"] = sys.modules["torch"].get_num_threads()
    try:
        from threadpoolctl import threadpool_info

        threads["blas"] = [
            {key: info.get(key) for key in ("internal_api", "num_threads", "architecture")}
            for info in threadpool_info()
        ]
    except ImportError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "threads": threads,
        "versions": {
            name: _version(distribution)
            for name, distribution in {
                "numpy": "numpy",
                "faiss": "faiss-cpu",
                "torch": "torch",
                "sentence_transformers": "sentence-transformers",
                "scikit_learn": "scikit-learn",
                "cherche": "cherche",
                "cherche_faiss": "cherche-faiss",
            }.items()
        },
        "env": {key: os.environ[key] for key in ("OPENBLAS_CORETYPE", "OMP_NUM_THREADS") if key in os.environ},
    }


def cherche_available() -> bool:
    """Whether Cherche (the comparison baseline) is importable here."""
    return importlib.util.find_spec("cherche") is not None


def run_alone(doc: str, run: Callable, markdown: Callable, plot: Callable, argv: list[str] | None = None) -> int:
    """Command line of a workload run on its own: print its table, write its plots.

    Smoke-size outputs go to ``results/smoke`` (gitignored) unless a folder is given.
    """
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("smoke", "quick", "full"), default="quick")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    config = Config(size=args.size)
    if args.results_dir is not None:
        config.results_dir = args.results_dir
    elif config.smoke:
        config.results_dir = config.results_dir / "smoke"
    config.repeats = args.repeats if args.repeats is not None else (1 if config.smoke else 5)
    started = time.perf_counter()
    records = run(config)
    print(markdown(records))
    if not args.no_plots:
        for path in plot(records, config.results_dir):
            print(f"plot: {path}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def paired_single_queries(sides: Mapping[str, Callable], queries: np.ndarray, *args: Any) -> dict[str, list[float]]:
    """Seconds of each side on each query, one query a call, back to back, the order rotating from query to
    query (so that cache warmth and noise fall on every side alike); ``side(queries[i : i + 1], *args)``,
    after one warm-up call each."""
    names = list(sides)
    for name in names:
        sides[name](queries[:1], *args)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(len(queries)):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            started = time.perf_counter()
            sides[name](queries[i : i + 1], *args)
            samples[name].append(time.perf_counter() - started)
    return samples
