"""The parts FaissIndex is made of: the stream buffer (_stream), the raw FAISS helpers (_raw),
the saved layouts (_persistence), and the names it answers to (current_device, on)."""

from __future__ import annotations

import pickle
import warnings

import faiss
import numpy as np
import pytest

import cherche_faiss
from cherche_faiss.exceptions import IncompatibleStateError
from cherche_faiss.index import FaissIndex, IndexChoice
from cherche_faiss.index import _raw as raw
from cherche_faiss.index._persistence import (
    check_choice,
    choice_from_state,
    choice_to_state,
)
from cherche_faiss.index._stream import Pending, drain

PARAMS = [
    "dimension",
    "metric",
    "factory",
    "normalize",
    "device",
    "train_size",
    "search_params",
    "expected_size",
    "memory_budget",
    "target_recall",
]


def rows(rng, n, d=8):
    return rng.standard_normal((n, d)).astype(np.float32)


# -- _stream ------------------------------------------------------------------------------
def test_drain_copies_part_by_part_and_keeps_the_rest():
    parts = [np.full((2, 3), 1.0), np.full((3, 3), 2.0)]
    out = drain(parts, 3)
    assert out.dtype == np.float32 and out[:, 0].tolist() == [1, 1, 2]
    assert [len(part) for part in parts] == [2] and parts[0][0, 0] == 2.0
    assert drain(parts).shape == (2, 3) and parts == []


def test_pending_takes_the_training_sample_then_the_rest():
    pending = Pending()
    assert not pending and len(pending) == 0 and pending.take_all() is None
    pending.append(np.zeros((4, 2)), list("abcd"))
    pending.append(np.ones((3, 2)), list("efg"))
    matrix, keys = pending.take(5)
    assert keys == list("abcde") and matrix[:, 0].tolist() == [0, 0, 0, 0, 1] and len(pending) == 2
    matrix, keys = pending.take_all()
    assert keys == ["f", "g"] and matrix.shape == (2, 2) and not pending


def test_an_empty_batch_waits_with_the_others_and_is_dropped():
    pending = Pending()
    pending.append(np.zeros((0, 2)), [])
    assert pending and len(pending) == 0
    assert pending.take_all() is None and not pending


# -- _raw ---------------------------------------------------------------------------------
def test_with_ids_wraps_only_what_needs_it():
    flat = faiss.IndexFlatIP(8)
    assert isinstance(raw.with_ids(flat), faiss.IndexIDMap2)
    mapped = faiss.IndexIDMap2(faiss.IndexFlatIP(8))
    assert raw.with_ids(mapped) is mapped
    ivf = faiss.index_factory(8, "IVF4,Flat", faiss.METRIC_INNER_PRODUCT)
    assert raw.with_ids(ivf) is ivf  # IVF indexes take ids natively


def test_flat_storage_view_is_zero_copy(rng):
    index = raw.with_ids(faiss.IndexFlatIP(8))
    vectors, ids = raw.flat_storage_view(index)
    assert vectors.shape == (0, 8) and ids.shape == (0,)
    data = rows(rng, 5)
    index.add_with_ids(data, np.arange(10, 15, dtype=np.int64))
    vectors, ids = raw.flat_storage_view(index)
    assert np.array_equal(vectors, data) and ids.tolist() == [10, 11, 12, 13, 14]
    assert not vectors.flags.owndata  # FAISS' own memory
    assert raw.flat_storage_view(raw.with_ids(faiss.IndexFlatL2(8))) is None
    assert raw.flat_storage_view(faiss.IndexFlatIP(8)) is None  # no id map


def test_reserve_flat_codes_keeps_the_index_empty():
    index = raw.with_ids(faiss.IndexFlatIP(8))
    raw.reserve_flat_codes(index, 1_000)
    assert index.ntotal == 0


def test_read_index_from_bytes(rng):
    index = raw.with_ids(faiss.IndexFlatIP(8))
    index.add_with_ids(rows(rng, 3), np.arange(3, dtype=np.int64))
    read = raw.read_index_from(faiss.serialize_index(index))
    assert read.ntotal == 3 and np.array_equal(read.reconstruct(2), index.reconstruct(2))


def test_hnsw_exhaustive_ids_are_exact(rng):
    data = rows(rng, 300)
    index = raw.with_ids(faiss.index_factory(8, "HNSW8", faiss.METRIC_L2))
    index.add_with_ids(data, np.arange(100, 400, dtype=np.int64))
    exact = faiss.IndexFlatL2(8)
    exact.add(data)
    _, truth = exact.search(data[:10], 5)
    assert np.array_equal(raw.hnsw_exhaustive_ids(index, data[:10], 5), truth + 100)


def test_check_adoptable_and_index_from_factory():
    with pytest.raises(cherche_faiss.exceptions.InvalidTypeError, match="faiss.Index"):
        raw.check_adoptable("Flat", "ip", None)
    with pytest.raises(cherche_faiss.exceptions.InvalidInputError, match="metric_type"):
        raw.check_adoptable(faiss.IndexFlatL2(8), "ip", None)
    with pytest.raises(cherche_faiss.exceptions.DimensionMismatchError):
        raw.check_adoptable(faiss.IndexFlatIP(8), "ip", 4)
    with pytest.raises(cherche_faiss.exceptions.InvalidInputError, match="factory string 'Nope'"):
        raw.index_from_factory(8, "Nope", raw.metric_type("ip"))


# -- _persistence: the saved layouts stay exactly those of state layout 1 ------------------
def test_pickled_state_layout(rng):
    index = FaissIndex(factory="auto").add(rows(rng, 10), list("abcdefghij"))
    index.remove(["c"])
    state = index.__getstate__()
    assert state["_state_version"] == 1
    inner = state["state"]
    assert list(inner) == [*PARAMS, "_choice", "_device", "_keys", "_ids", "index_bytes", "index_checksum"]
    assert inner["_choice"] == {"factory": "Flat", "reason": index.choice["reason"], "search_params": {}}
    assert inner["_keys"][2] is None and "c" not in inner["_ids"] and inner["_ids"]["d"] == 3
    assert list(FaissIndex().__getstate__()["state"])[-1] == "index_bytes"  # nothing to checksum


def test_safe_state_layout(rng):
    index = FaissIndex().add(rows(rng, 4), [None, "a", "b", "c"])
    index.remove(["a"])
    state = index._save_state()
    assert list(state) == [*PARAMS, "_choice", "_device", "_keys", "_index", "_removed"]
    assert state["_keys"] == [None, None, "b", "c"] and state["_removed"].tolist() == [1]
    assert isinstance(state["_index"], faiss.Index) and state["_choice"] is None


def test_a_state_in_the_layout_written_before_loads(rng):
    """A pickled state built by hand in layout 1, as every earlier build wrote it."""
    data = rows(rng, 3)
    written = FaissIndex().add(data, ["x", "y", "z"])
    index_bytes = written.__getstate__()["state"]["index_bytes"]
    state = {
        "dimension": None,
        "metric": "ip",
        "factory": "auto",
        "normalize": True,
        "device": "cpu",
        "train_size": None,
        "search_params": {},
        "expected_size": None,
        "memory_budget": None,
        "target_recall": 0.95,
        "_choice": {"factory": "Flat", "reason": "exact search: hand-made", "search_params": {}},
        "_device": "cpu",
        "_keys": ["x", "y", "z"],
        "_ids": {"x": 0, "y": 1, "z": 2},
        "index_bytes": index_bytes,
        "index_checksum": written.__getstate__()["state"]["index_checksum"],
    }
    restored = FaissIndex.__new__(FaissIndex)
    restored.__setstate__(
        {"_cherche_faiss_version": cherche_faiss.__version__, "_class": "x", "_state_version": 1, "state": state}
    )
    assert restored.choice == state["_choice"] and restored.factory_used == "Flat"
    assert restored.search(data[1], k=1)[1] == [["y"]]


def test_unknown_attributes_in_a_state_are_refused(rng):
    state = FaissIndex().add(rows(rng, 2), [0, 1]).__getstate__()
    state["state"]["_stray"] = 1
    with pytest.raises(IncompatibleStateError, match="_stray"):
        FaissIndex.__new__(FaissIndex).__setstate__(state)


def test_the_choice_is_an_index_choice_in_memory_and_a_dict_when_saved(rng, tmp_path):
    index = FaissIndex(factory="auto").add(rows(rng, 10), list(range(10)))
    assert isinstance(index._choice, IndexChoice) and index._choice.estimated_bytes > 0
    for restored in (pickle.loads(pickle.dumps(index)), cherche_faiss.load(cherche_faiss.save(index, tmp_path / "i"))):
        assert isinstance(restored._choice, IndexChoice) and restored._choice.estimated_bytes is None
        assert restored.choice == index.choice


@pytest.mark.parametrize(
    "saved",
    [["Flat"], {"factory": 1, "reason": "r", "search_params": {}}, {"factory": "Flat", "reason": "r"}],
)
def test_a_damaged_choice_is_refused(saved):
    with pytest.raises(IncompatibleStateError, match="choice of index='auto' is damaged"):
        choice_from_state(saved)


def test_choice_conversions():
    choice = IndexChoice("IVF4,Flat", {"nprobe": 2}, "because", 123)
    saved = choice_to_state(choice)
    assert saved == {"factory": "IVF4,Flat", "reason": "because", "search_params": {"nprobe": 2}}
    assert choice_from_state(saved) == IndexChoice("IVF4,Flat", {"nprobe": 2}, "because")
    assert choice_to_state(None) is None and choice_from_state(None) is None
    check_choice(choice)
    with pytest.raises(IncompatibleStateError):
        check_choice(saved)  # a dict is the saved form, not what an index holds
    with pytest.raises(cherche_faiss.exceptions.InvalidInputError):
        choice_from_state({"factory": "IVF4,Flat", "reason": "r", "search_params": {"nprobe": 0}})


# -- names --------------------------------------------------------------------------------
def test_current_device_and_the_deprecated_on(rng):
    index = FaissIndex().add(rows(rng, 2), [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert index.current_device == "cpu"
    with pytest.warns(DeprecationWarning, match="current_device"):
        assert index.on == "cpu"


def test_views_are_dropped_on_every_change(rng):
    index = FaissIndex().add(rows(rng, 4), list("abcd"))
    before = index._flat_storage()
    assert before is not None and index._flat is before
    index.add(rows(rng, 1), ["e"])
    assert index._flat is None and index._rows_by_id is None
    vectors, _ = index._flat_storage()
    assert len(vectors) == 5
    index.remove(["a"])
    assert index._flat is None
    assert index.reconstruct(["e"]).shape == (1, 8)


def test_the_parameters_cache_is_declared_and_reset_with_the_index(rng):
    index = FaissIndex(factory="IVF2,Flat").add(rows(rng, 200), list(range(200)))
    assert index._parameters_cache == {}
    index._faiss_parameters({"nprobe": 2})
    assert len(index._parameters_cache) == 1
    restored = pickle.loads(pickle.dumps(index))
    assert restored._parameters_cache == {}
