"""Device names, the load policy, and the GPU code paths exercised with a stand-in GPU.

The stand-in replaces faiss' GPU entry points with objects that refuse to be
pickled, so these tests fail if a GPU index ever reaches a pickle, or if
``index_gpu_to_cpu`` is not used to serialise it.
"""

from __future__ import annotations

import pickle
import warnings

import faiss
import numpy as np
import pytest

import cherche_faiss._core.device as device_module
import cherche_faiss.index.faiss as index_module
from cherche_faiss._core.device import parse_device
from cherche_faiss.exceptions import DeviceFallbackWarning, DeviceUnavailableError, InvalidInputError
from cherche_faiss.index import FaissIndex


@pytest.mark.parametrize(
    ("name", "parsed"), [("cpu", "cpu"), ("CUDA", "cuda:0"), ("cuda:3", "cuda:3"), (" auto", "auto")]
)
def test_parse_device(name, parsed):
    assert parse_device(name) == parsed


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "mps", ""])
def test_unknown_devices_are_rejected(name):
    with pytest.raises(InvalidInputError, match=rf"unknown device {name!r}\. Expected 'cpu', 'cuda', 'cuda:N'"):
        parse_device(name)


def test_a_device_must_be_a_string():
    with pytest.raises(InvalidInputError, match=r"device must be a string, got 0 \(int\)"):
        parse_device(0)


def test_this_machine_has_no_faiss_gpu():
    assert device_module.faiss_gpu_count() == 0
    assert FaissIndex(device="auto").current_device == "cpu"


class FakeGpuIndex:
    """Stands for a faiss GPU index: works like the CPU index it wraps, cannot be pickled."""

    def __init__(self, cpu_index, gpu):
        self.cpu_index, self.gpu = cpu_index, gpu

    def __getattr__(self, name):
        return getattr(self.cpu_index, name)

    def __reduce__(self):
        raise TypeError("a GPU index reached a pickle")


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend faiss has GPU support with ``count`` GPUs; record conversions."""
    calls = {"to_gpu": 0, "to_cpu": 0, "count": 1}

    def to_gpu(resources, gpu, index):
        calls["to_gpu"] += 1
        return FakeGpuIndex(faiss.clone_index(index), gpu)

    def to_cpu(index):
        assert isinstance(index, FakeGpuIndex)
        calls["to_cpu"] += 1
        return faiss.clone_index(index.cpu_index)

    monkeypatch.setattr(device_module, "faiss_gpu_count", lambda: calls["count"])
    monkeypatch.setattr(index_module, "gpu_resources", lambda gpu: object())
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", to_cpu, raising=False)
    # faiss' helpers that inspect an index see through the stand-in to the CPU index it wraps.
    for name in ("try_extract_index_ivf", "downcast_index"):
        real = getattr(faiss, name)
        monkeypatch.setattr(faiss, name, lambda index, real=real: real(getattr(index, "cpu_index", index)))
    return calls


def assert_same_search(actual, expected):
    assert actual[1] == expected[1]
    for a, e in zip(actual[0], expected[0]):
        assert a == pytest.approx(e, abs=1e-6)


def build(device, rng):
    vectors = rng.standard_normal((20, 8)).astype(np.float32)
    return FaissIndex(device=device).add(vectors, list(range(20))), vectors


def test_gpu_index_is_pickled_through_index_gpu_to_cpu(fake_gpus, rng):
    index, vectors = build("cuda", rng)
    assert isinstance(index.faiss_index, FakeGpuIndex) and index.current_device == "cuda:0"
    expected = index.search(vectors[:3], k=5)
    data = pickle.dumps(index)  # FakeGpuIndex.__reduce__ would raise if it got in
    assert fake_gpus["to_cpu"] == 1
    restored = pickle.loads(data)
    assert restored.current_device == "cuda:0" and isinstance(restored.faiss_index, FakeGpuIndex)
    assert restored.search(vectors[:3], k=5) == expected


def test_gpu_pickle_loads_on_cpu_with_a_warning_when_no_gpu(fake_gpus, rng):
    index, vectors = build("cuda:0", rng)
    data = pickle.dumps(index)
    fake_gpus["count"] = 0
    with pytest.warns(DeviceFallbackWarning, match="cuda:0"):
        restored = pickle.loads(data)
    assert restored.current_device == "cpu" and not isinstance(restored.faiss_index, FakeGpuIndex)
    # FAISS scored on the (stand-in) GPU, BLAS on the CPU: same keys, float32 rounding apart.
    assert_same_search(restored.search(vectors[:3], k=5), index.search(vectors[:3], k=5))


def test_environment_forces_cpu_without_warning(fake_gpus, rng, monkeypatch):
    index, _ = build("cuda", rng)
    data = pickle.dumps(index)
    monkeypatch.setenv("CHERCHE_FAISS_DEVICE", "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = pickle.loads(data)
    assert restored.current_device == "cpu"


def test_environment_can_send_cpu_pickles_to_a_gpu(fake_gpus, rng, monkeypatch):
    index, _ = build("cpu", rng)
    monkeypatch.setenv("CHERCHE_FAISS_DEVICE", "cuda:0")
    assert pickle.loads(pickle.dumps(index)).current_device == "cuda:0"
    monkeypatch.setenv("CHERCHE_FAISS_DEVICE", "nonsense")
    with pytest.raises(InvalidInputError, match="CHERCHE_FAISS_DEVICE"):
        pickle.loads(pickle.dumps(index))


def test_to_moves_between_devices(fake_gpus, rng):
    index, vectors = build("cpu", rng)
    expected = index.search(vectors[:2], k=3)
    index.to("cuda")
    assert index.current_device == "cuda:0" and isinstance(index.faiss_index, FakeGpuIndex)
    assert_same_search(index.search(vectors[:2], k=3), expected)
    index.to("cpu")
    assert index.current_device == "cpu" and fake_gpus["to_cpu"] == 1
    with pytest.raises(DeviceUnavailableError, match="only 1 GPU"):
        index.to("cuda:1")


def test_forged_state_built_on_cuda_loads_on_this_cpu_machine(rng):
    """No stand-in here: the real faiss-cpu of this machine, a state claiming cuda:0."""
    index, vectors = build("cpu", rng)
    state = index.__getstate__()
    state["state"]["_device"] = "cuda:0"
    state["state"]["device"] = "cuda"
    restored = FaissIndex.__new__(FaissIndex)
    with pytest.warns(DeviceFallbackWarning, match="loaded on the CPU"):
        restored.__setstate__(state)
    assert restored.current_device == "cpu"
    assert restored.search(vectors[:3], k=4) == index.search(vectors[:3], k=4)


def test_ivf_index_trains_and_searches_on_the_gpu_then_loads_on_the_cpu(fake_gpus, rng):
    vectors = rng.standard_normal((1_000, 8)).astype(np.float32)
    index = FaissIndex(factory="IVF16,Flat", device="cuda", search_params={"nprobe": 16})
    index.add(vectors, list(range(1_000)))
    # Moved to the GPU empty, then trained and filled there.
    assert isinstance(index.faiss_index, FakeGpuIndex) and index.faiss_index.is_trained
    assert fake_gpus["to_gpu"] == 1 and index.faiss_index.ntotal == 1_000
    expected = index.search(vectors[:5], k=5)
    assert [row[0] for row in expected[1]] == [0, 1, 2, 3, 4]  # nprobe=16 reached the GPU search
    fewer = index.search(vectors[:50], k=10, nprobe=1)[1]
    assert fewer != index.search(vectors[:50], k=10)[1]
    data = pickle.dumps(index)
    fake_gpus["count"] = 0
    with pytest.warns(DeviceFallbackWarning):
        restored = pickle.loads(data)
    assert restored.current_device == "cpu" and restored.search_params == {"nprobe": 16}
    assert_same_search(restored.search(vectors[:5], k=5), expected)
