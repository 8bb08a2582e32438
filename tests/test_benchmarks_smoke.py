"""The benchmark harness on tiny sizes: every workload runs and writes its files.

Benchmarks are not timed tests: nothing here asserts a speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_benchmark_suite_smoke(tmp_path):
    pytest.importorskip("matplotlib")
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--size", "smoke", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert {record["workload"] for record in report["records"]} >= {
        "save_load",
        "overhead",
        "dense_search",
        "serialization",
        "large_corpus",
        "server",
        "storage",
        "torch_free",
        "sparse",
        "distributed",
        "fixed_costs",
    }
    assert report["environment"]["versions"]["faiss"] and report["environment"]["cpu_count"]
    markdown = (tmp_path / "smoke.md").read_text()
    assert "Exact dense search" in markdown and "|" in markdown
    assert report["plots"] and all((tmp_path / plot).is_file() for plot in report["plots"])
