"""FaissIndex: keys, metrics, training, updates, validation, pickling."""

from __future__ import annotations

import pickle

import faiss
import numpy as np
import pytest

from cherche_faiss.exceptions import (
    CorruptFileError,
    DeviceUnavailableError,
    DimensionMismatchError,
    InvalidInputError,
    InvalidTypeError,
    NotIndexedError,
    UnknownKeyError,
)
from cherche_faiss.index import FaissIndex


def unit_rows(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cosine_search_matches_numpy(rng):
    vectors = rng.standard_normal((50, 16)).astype(np.float32)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    keys = [f"doc{i}" for i in range(50)]
    similarities, found = FaissIndex().add(vectors, keys).search(queries, k=5)
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ normed.T
    for row in range(7):
        best = np.argsort(-expected[row])[:5]
        assert found[row] == [keys[i] for i in best]
        np.testing.assert_allclose(similarities[row], expected[row, best], rtol=1e-5)
        assert all(type(s) is float for s in similarities[row])


def test_inner_product_without_normalisation(rng):
    vectors = np.array([[1.0, 0.0], [10.0, 10.0]], dtype=np.float32)
    similarities, keys = FaissIndex(normalize=False).add(vectors, ["small", "big"]).search([1.0, 0.0], k=2)
    assert keys == [["big", "small"]]
    assert similarities[0] == pytest.approx([10.0, 1.0])


def test_l2_similarity_is_minus_squared_distance():
    index = FaissIndex(metric="l2", normalize=False).add(np.array([[0.0, 0.0], [3.0, 4.0]]), ["o", "p"])
    similarities, keys = index.search(np.array([0.0, 0.0]), k=2)
    assert keys == [["o", "p"]]
    assert similarities[0] == pytest.approx([0.0, -25.0])


def test_keys_of_any_hashable_type(rng):
    keys = [0, "a", ("t", 1), 2.5, None]
    index = FaissIndex().add(unit_rows(rng, 5), keys)
    for key, row in zip(keys, unit_rows(np.random.default_rng(0), 5)):
        assert index.search(row, k=1)[1] == [[key]]
    assert index.keys() == keys and None in index


def test_k_is_clamped_and_one_dimensional_query_accepted(rng):
    index = FaissIndex().add(unit_rows(rng, 3), ["a", "b", "c"])
    similarities, keys = index.search(unit_rows(rng, 1)[0], k=100)
    assert len(keys) == 1 and sorted(keys[0]) == ["a", "b", "c"]


def test_missing_results_are_dropped(rng):
    # An IVF index probing one list cannot find documents of other lists: FAISS pads with -1.
    vectors = unit_rows(rng, 400)
    index = FaissIndex(factory="IVF8,Flat").add(vectors, list(range(400)))
    similarities, keys = index.search(vectors[:4], k=300, nprobe=1)
    for row_keys, row_scores in zip(keys, similarities):
        assert 0 < len(row_keys) < 300 and len(row_keys) == len(row_scores)
        assert all(isinstance(key, int) and 0 <= key < 400 for key in row_keys)


def test_re_adding_a_key_replaces_its_vector(rng):
    index = FaissIndex().add(np.eye(3), ["a", "b", "c"])
    index.add(np.array([[0.0, 1.0, 0.0]]), ["a"])
    assert len(index) == 3 and index.faiss_index.ntotal == 3
    similarities, keys = index.search(np.array([1.0, 0.0, 0.0]), k=3)
    assert keys[0][0] == "b" or similarities[0][0] < 0.5  # "a" no longer points along x
    np.testing.assert_allclose(index.reconstruct(["a"]), [[0.0, 1.0, 0.0]])


def test_repeated_key_in_one_add_keeps_last():
    index = FaissIndex().add(np.array([[1.0, 0.0], [0.0, 1.0]]), ["a", "a"])
    assert len(index) == 1
    np.testing.assert_allclose(index.reconstruct(["a"]), [[0.0, 1.0]])


def test_remove(rng):
    index = FaissIndex().add(unit_rows(rng, 4), ["a", "b", "c", "d"])
    index.remove(["b", "d"])
    assert len(index) == 2 and index.faiss_index.ntotal == 2
    assert sorted(index.search(unit_rows(rng, 1), k=10)[1][0]) == ["a", "c"]
    with pytest.raises(UnknownKeyError, match="'b'"):
        index.remove(["b"])


def test_ivf_index_is_trained_automatically(rng):
    vectors = unit_rows(rng, 300)
    index = FaissIndex(factory="IVF4,Flat", train_size=200).add(vectors, list(range(300)))
    assert index.faiss_index.is_trained
    assert index.search(vectors[7], k=1, nprobe=4)[1] == [[7]]
    np.testing.assert_allclose(index.reconstruct([7, 8]), vectors[7:9], rtol=1e-6)


def test_too_few_vectors_to_train_is_a_clear_error(rng):
    index = FaissIndex(factory="IVF64,Flat")
    with pytest.raises(InvalidInputError, match="at least 2,496 vectors"):
        index.add(unit_rows(rng, 100), list(range(100)))
    assert len(index) == 0


def test_ready_faiss_index_is_adopted(rng):
    index = FaissIndex(factory=faiss.IndexFlatIP(16)).add(unit_rows(rng, 5), list("abcde"))
    assert index.search(unit_rows(np.random.default_rng(0), 1), k=1)[1] == [["a"]]
    with pytest.raises(InvalidInputError, match="metric"):
        FaissIndex(factory=faiss.IndexFlatL2(16))
    filled = faiss.IndexFlatIP(2)
    filled.add(np.eye(2, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="without keys"):
        FaissIndex(factory=filled)


def test_bad_factory_string():
    with pytest.raises(InvalidInputError, match="factory string 'NotAnIndex'"):
        FaissIndex(dimension=8, factory="NotAnIndex")


@pytest.mark.parametrize(
    ("vectors", "keys", "error", "message"),
    [
        (np.zeros((2, 4)), ["a", "b"], InvalidInputError, "zero vectors"),
        (np.ones((2, 5)), ["a", "b"], DimensionMismatchError, "dimension 5"),
        (np.ones((2, 4)), ["a"], InvalidInputError, "2 vectors but 1 keys"),
        (np.full((1, 4), np.nan), ["a"], InvalidInputError, "NaN"),
        (np.ones((1, 4)), [["unhashable"]], InvalidTypeError, "not hashable"),
        (np.ones((2, 2, 2)), ["a", "b"], InvalidInputError, r"shape \(n, d\)"),
    ],
)
def test_failed_add_leaves_index_unchanged(rng, vectors, keys, error, message):
    index = FaissIndex().add(unit_rows(rng, 3, d=4), ["x", "y", "z"])
    before = index.search(np.ones(4), k=3)
    with pytest.raises(error, match=message):
        index.add(vectors, keys)
    assert len(index) == 3 and index.search(np.ones(4), k=3) == before


def test_search_errors(rng):
    with pytest.raises(NotIndexedError, match="add vectors"):
        FaissIndex(dimension=4).search(np.ones(4), k=1)
    index = FaissIndex().add(unit_rows(rng, 3, d=4), ["x", "y", "z"])
    with pytest.raises(InvalidInputError, match="k must be a positive integer"):
        index.search(np.ones(4), k=0)
    with pytest.raises(DimensionMismatchError):
        index.search(np.ones(3), k=1)
    with pytest.raises(InvalidInputError, match="zero vectors"):
        index.search(np.zeros(4), k=1)


def test_constructor_validation():
    with pytest.raises(InvalidInputError, match="metric"):
        FaissIndex(metric="cosine")
    with pytest.raises(InvalidInputError, match="unknown device"):
        FaissIndex(device="tpu")
    with pytest.raises(DeviceUnavailableError, match="cherche-faiss\\[gpu\\]"):
        FaissIndex(device="cuda")


def test_pickle_round_trip_twice(rng):
    index = FaissIndex(factory="IVF4,Flat").add(unit_rows(rng, 200), list(range(200)))
    index.set_search_params(nprobe=2)  # search parameters survive pickling
    queries = unit_rows(rng, 5)
    expected = index.search(queries, k=10)
    once = pickle.loads(pickle.dumps(index))
    twice = pickle.loads(pickle.dumps(once, protocol=5))
    assert once.search(queries, k=10) == expected == twice.search(queries, k=10)
    assert twice.keys() == index.keys() and twice.current_device == "cpu" and twice.search_params == {"nprobe": 2}
    assert twice.search(queries, k=10) != twice.search(queries, k=10, nprobe=1)  # nprobe=2 was in effect
    twice.add(unit_rows(rng, 1), [1000])  # still usable for updates after loading
    assert len(twice) == 201


def test_tampered_index_bytes_raise_corrupt_file_error(rng):
    index = FaissIndex().add(unit_rows(rng, 10), list(range(10)))
    state = index.__getstate__()
    data = bytearray(state["state"]["index_bytes"].tobytes())
    data[len(data) // 2] ^= 0xFF
    state["state"]["index_bytes"] = np.frombuffer(bytes(data), dtype=np.uint8)
    fresh = FaissIndex.__new__(FaissIndex)
    with pytest.raises(CorruptFileError, match="checksum"):
        fresh.__setstate__(state)


def test_repr_names_size_and_device(rng):
    index = FaissIndex(factory="Flat").add(unit_rows(rng, 3), ["a", "b", "c"])
    assert "size=3" in repr(index) and "on='cpu'" in repr(index) and "factory='Flat'" in repr(index)


def test_checksum_covers_every_block(monkeypatch):
    import cherche_faiss._core.checksum as checksum

    monkeypatch.setattr(checksum, "BLOCK", 1000)  # many blocks, hashed in threads
    data = bytearray(np.random.default_rng(0).integers(0, 255, 10_500, dtype=np.uint8).tobytes())
    before = checksum.block_crc32(bytes(data))
    assert len(before) == 11
    data[9_999] ^= 1
    after = checksum.block_crc32(bytes(data))
    assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [9]
    assert checksum.block_crc32(bytes(data[:-1]))[-1] != after[-1]
