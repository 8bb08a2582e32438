"""A streamed IVF build hands the inverted lists' freed blocks back to the OS (index/_memory.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cherche_faiss.index._memory import release_free_heap

REPO = Path(__file__).resolve().parents[2]

# Streams 80,000 x 384 clustered vectors into IVF256,Flat in batches of 2,000 and prints the
# peak resident memory above the starting point (VmHWM: the child's own, not inherited from
# pytest) over the size of the codes. argv[1] == "off" disables the release.
_CHILD = textwrap.dedent(
    """
    import gc, sys
    import numpy as np
    import cherche_faiss.index._storage as module
    from cherche_faiss.index import FaissIndex

    if sys.argv[1] == "off":
        module.release_free_heap = lambda: False

    def resident():
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * 4096

    def peak():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    n, d, batch = 80_000, 384, 2_000
    FaissIndex().add(np.eye(4, d, dtype=np.float32), list(range(4)))  # libraries loaded before the baseline

    def batches():
        rng = np.random.default_rng(0)
        centers = rng.standard_normal((64, d), dtype=np.float32)
        for start in range(0, n, batch):
            block = centers[rng.integers(0, 64, batch)] + rng.standard_normal((batch, d), dtype=np.float32)
            yield block, list(range(start, start + batch))

    gc.collect()
    baseline = resident()
    index = FaissIndex(factory="IVF256,Flat").add_batches(batches(), total=n, show_progress=False)
    assert len(index) == n
    print((peak() - baseline) / (n * d * 4))
    """
)


def _peak_over_codes(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=False, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and malloc_trim are Linux/glibc")
def test_streamed_ivf_build_releases_freed_heap_pages():
    if not release_free_heap():
        pytest.skip("this C library has no malloc_trim")
    with_release = _peak_over_codes("on")
    without = _peak_over_codes("off")
    # Measured here: 1.52x with the release, 1.82x without (deterministic: same data, same allocator).
    assert with_release < without - 0.15, (with_release, without)
    assert with_release < 1.7
