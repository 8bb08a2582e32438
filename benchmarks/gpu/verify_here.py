"""Load what ``seed_on_gpu.py`` wrote on the GPU machine in a fresh CPU-only process here, and compare.

    python benchmarks/gpu/verify_here.py FOLDER   # FOLDER holds seed.pkl, seed_save.tar, expected.json

The pickle and the safe save name the model by its path, which must be this machine's
(``seed_on_gpu.py`` runs with the model recreated at the same absolute path). Prints one JSON
line per way of loading: same ids as on the GPU, the largest similarity difference, warnings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CHILD = """
import json, pickle, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if sys.argv[2] == "pickle":
        with open(sys.argv[1], "rb") as handle:
            search = pickle.load(handle)
    else:
        import cherche_faiss
        search = cherche_faiss.load(sys.argv[1])
    hits = search(json.loads(sys.argv[3]))
import torch
print(json.dumps({"hits": hits, "warnings": sorted({type(w.message).__name__ for w in caught}),
                  "cuda": torch.cuda.is_available()}))
"""


def main(folder: str) -> int:
    folder = Path(folder)
    expected = json.loads((folder / "expected.json").read_text())
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(folder / "seed_save.tar") as tar:
        tar.extractall(scratch, filter="data")
        ways = {"pickle": folder / "seed.pkl", "safe": Path(scratch) / "seed_save"}
        failed = 0
        for way, path in ways.items():
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), way, json.dumps(expected["queries"])],
                capture_output=True,
                text=True,
                env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
            )
            if done.returncode:
                print(json.dumps({"way": way, "error": done.stderr[-2000:]}))
                failed += 1
                continue
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            same = [[h["id"] for h in a] for a in answer["hits"]] == [[h["id"] for h in a] for a in expected["hits"]]
            diff = max(
                abs(a["similarity"] - b["similarity"])
                for x, y in zip(answer["hits"], expected["hits"])
                for a, b in zip(x, y)
            )
            print(
                json.dumps(
                    {
                        "way": way,
                        "same_ids": same,
                        "max_similarity_diff": diff,
                        "warnings": answer["warnings"],
                        "cuda_here": answer["cuda"],
                    }
                )
            )
            failed += not same
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
