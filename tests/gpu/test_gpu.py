"""Real GPU round trips: build on a GPU, pickle, load where no GPU is visible.

Skipped unless faiss has GPU support and sees a GPU (CI never has one)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from cherche_faiss._core.device import faiss_gpu_count
from cherche_faiss.index import FaissIndex

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(faiss_gpu_count() == 0, reason="needs faiss-gpu and a CUDA GPU"),
]

LOAD = """
import json, pickle, sys
import numpy as np
index = pickle.loads(open(sys.argv[1], "rb").read())
queries = np.load(sys.argv[2])
print(json.dumps({"on": index.current_device, "keys": index.search(queries, k=10)[1]}))
"""


@pytest.mark.parametrize("factory", ["Flat", "IVF64,Flat"])
def test_build_on_gpu_and_load_without_gpu(tmp_path, factory):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5000, 64)).astype(np.float32)
    queries = vectors[:20] + 0.01 * rng.standard_normal((20, 64)).astype(np.float32)
    index = FaissIndex(factory=factory, device="cuda").add(vectors, list(range(5000)))
    assert index.current_device == "cuda:0"
    if factory.startswith("IVF"):
        index.set_search_params(nprobe=64)  # exhaustive probing: results comparable with the CPU
        assert index.search(queries, k=10, nprobe=1)[1] != index.search(queries, k=10)[1]
    expected = index.search(queries, k=10)[1]
    path = tmp_path / "index.pkl"
    path.write_bytes(pickle.dumps(index))
    np.save(tmp_path / "queries.npy", queries)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", LOAD, str(path), str(tmp_path / "queries.npy")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["on"] == "cpu"
    assert [row[:5] for row in report["keys"]] == [row[:5] for row in expected]
    same_process = pickle.loads(path.read_bytes())
    assert same_process.current_device == "cuda:0"
