"""What several test modules share: paths, the hits comparison, a recording encoder.

Imported by test modules as ``from ..helpers import ...``; fixtures stay in ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cherche_faiss.encoders import HashingEncoder

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def assert_same_hits(actual, expected, tolerance=1e-6):
    """Same keys in the same order and similarities equal up to float32 rounding.

    A query alone runs as a matrix-vector product, a batch as a matrix product:
    BLAS sums them in different orders, a few ulps apart.
    """
    if expected and isinstance(expected[0], list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same_hits(a, e, tolerance)
        return
    assert [{k: v for k, v in hit.items() if k != "similarity"} for hit in actual] == [
        {k: v for k, v in hit.items() if k != "similarity"} for hit in expected
    ]
    assert [hit["similarity"] for hit in actual] == pytest.approx(
        [hit["similarity"] for hit in expected], abs=tolerance
    )


class CountingEncoder(HashingEncoder):
    """A hashing encoder that records every text it encodes."""

    def __init__(self, dimension: int = 64) -> None:
        super().__init__(dimension=dimension)
        self.seen: list[str] = []

    def encode(self, texts, batch_size=None):
        self.seen.extend(texts)
        return super().encode(texts, batch_size)


def unit_rows(rng, n, d=16):
    """``n`` random unit vectors of dimension ``d``."""
    rows = rng.standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def recall_at(index, queries, truth, k=10, **params):
    """Mean recall@k of ``index`` against the ``truth`` keys of each query."""
    found = index.search(queries, k=k, **params)[1]
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def run_in_a_fresh_cpu_only_process(code: str, *args: str, timeout: int = 300):
    """Run ``python -c code args...`` with no GPU visible and the hub offline; the JSON its last line prints."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
