"""FaissIndex's fixed-cost paths give what the general paths give (issue 15).

* the short single-query path (``_one_query``) answers exactly as ``prepare`` + ``search_prepared``,
  on every index type, both metrics, int and string keys, after removals; anything it does not
  take goes the general way and raises the general errors;
* the int64 key column answers as the object column (a list and a dict) does;
* the pickle layouts (packed int keys, packed string keys, the list and dict of other keys) load
  back the same index, after upserts and removals too, and an index read in place from a pickle
  takes memory of its own at its first change (the pickle's bytes stay as they were);
* vectors added block by block build the same FAISS index as one add.
"""

from __future__ import annotations

import pickle

import faiss
import numpy as np
import pytest

import cherche_faiss.index._keys as keys_module
import cherche_faiss.index._updates as updates_module
from cherche_faiss.exceptions import CherFaissError
from cherche_faiss.index import FaissIndex
from cherche_faiss.index._packed_keys import PackedIds, PackedKeys

from ..helpers import unit_rows

D = 16
N = 1_000
# Every kind of index the short path serves: exhaustive, IVF (flat, SQ, PQ codes), a graph, flat SQ.
FACTORIES = ["Flat", "IVF8,Flat", "IVF8,SQ8", "IVF8,PQ4x4", "HNSW16", "SQ8"]
REMOVABLE = [factory for factory in FACTORIES if not factory.startswith("HNSW")]


def _keys(kind: str, n: int, start: int = 0) -> list:
    return list(range(start, start + n)) if kind == "int" else [f"doc-{i}" for i in range(start, start + n)]


def _built(factory: str, metric: str, key_kind: str, normalize: bool = True, n: int = N, seed: int = 0) -> FaissIndex:
    vectors = unit_rows(np.random.default_rng(seed), n, D) * np.float32(3.0)  # not unit: normalising matters
    search_params = {"nprobe": 4} if factory.startswith("IVF") else {"efSearch": 32} if "HNSW" in factory else {}
    index = FaissIndex(factory=factory, metric=metric, normalize=normalize, search_params=search_params)
    return index.add(vectors, _keys(key_kind, n))


def _queries(n: int = 12, seed: int = 7) -> list[np.ndarray]:
    rows = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return [np.ascontiguousarray(row) for row in rows]


def _general(index: FaissIndex, query: np.ndarray, k: int):
    """What the general path answers: the query checked and normalised by ``prepare``."""
    return index.search_prepared(index.prepare(query[None, :]), k)


def _no_prepare(index: FaissIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the general path's ``prepare`` fail the test: the short path must not call it."""

    def refuse(*args, **kwargs):
        pytest.fail("a single float32 query went the general way (prepare)")

    monkeypatch.setattr(index, "prepare", refuse)


# -- the short single-query path --------------------------------------------------------------------
@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("key_kind", ["int", "str"])
def test_the_short_path_answers_as_the_general_path(factory, metric, key_kind, monkeypatch):
    index = _built(factory, metric, key_kind)
    queries = _queries()
    expected = [_general(index, query, 10) for query in queries]
    expected_2d = [_general(index, query, 10) for query in queries]  # a (1, d) query: the same
    expected_arrays = [index.search_arrays(query[None, :].astype(np.float64), 10) for query in queries]
    _no_prepare(index, monkeypatch)
    for query, want, want_2d, arrays in zip(queries, expected, expected_2d, expected_arrays):
        assert index._one_query(query, 10) is not None
        assert index.search(query, k=10) == want
        assert index.search(query[None, :], k=10) == want_2d
        scores, ids = index.search_arrays(query, 10)
        np.testing.assert_array_equal(scores, arrays[0])
        np.testing.assert_array_equal(ids, arrays[1])
    assert all(isinstance(key, int if key_kind == "int" else str) for key in index.search(queries[0], k=3)[1][0])


@pytest.mark.parametrize("factory", REMOVABLE)
@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("key_kind", ["int", "str"])
def test_the_short_path_answers_as_the_general_path_after_removals_and_upserts(factory, metric, key_kind, monkeypatch):
    index = _built(factory, metric, key_kind)
    keys = _keys(key_kind, N)
    index.remove(keys[::3])
    index.add(unit_rows(np.random.default_rng(3), 20, D), keys[1:40:2])  # replaced: new ids
    queries = _queries()
    expected = [_general(index, query, 25) for query in queries]
    removed = set(keys[::3]) - set(keys[1:40:2])
    _no_prepare(index, monkeypatch)
    for query, want in zip(queries, expected):
        found = index.search(query, k=25)
        assert found == want
        assert not removed & set(found[1][0])


@pytest.mark.parametrize("normalize", [True, False])
def test_k_is_clamped_to_the_vectors_held_on_the_short_path(normalize, monkeypatch):
    index = _built("Flat", "ip", "int", normalize=normalize, n=5)
    query = _queries(1)[0]
    want = _general(index, query, 5)
    _no_prepare(index, monkeypatch)
    assert index.search(query, k=50) == want
    assert len(want[1][0]) == 5


def test_without_normalisation_the_query_is_used_as_given():
    index = _built("Flat", "ip", "int", normalize=False)
    query = _queries(1)[0]
    scores, ids = index.search_arrays(query, 3)
    raw_scores, raw_ids = index.faiss_index.search(query[None, :], 3)
    np.testing.assert_array_equal(ids, raw_ids)
    np.testing.assert_allclose(scores, raw_scores, rtol=1e-5)


def _error_of(call):
    """The library error ``call`` raises (type and message), else what it returns."""
    try:
        return call()
    except CherFaissError as error:
        return type(error), str(error)


@pytest.mark.parametrize(
    ("label", "make", "k"),
    [
        ("zero vector", lambda q: np.zeros_like(q), 3),
        ("NaN", lambda q: np.where(np.arange(D) == 2, np.float32(np.nan), q).astype(np.float32), 3),
        ("infinity", lambda q: np.where(np.arange(D) == 2, np.float32(np.inf), q).astype(np.float32), 3),
        ("overflowing square", lambda q: np.full_like(q, 3e38), 3),  # accepted by both ways: the same hits
        ("wrong dimension", lambda q: np.ascontiguousarray(q[:-1]), 3),
        ("k zero", lambda q: q, 0),
        ("k negative", lambda q: q, -2),
        ("k bool", lambda q: q, True),
        ("k float", lambda q: q, 2.0),
    ],
)
def test_input_the_short_path_does_not_take_raises_the_general_errors(label, make, k):
    index = _built("HNSW16", "ip", "str")
    query = make(_queries(1)[0])
    assert index._one_query(query, k) is None
    general = _error_of(lambda: index.search(query.astype(np.float64), k=k))  # float64: always the general way
    assert isinstance(general, tuple) and (isinstance(general[0], type) or label == "overflowing square"), label
    assert _error_of(lambda: index.search(query, k=k)) == general
    if isinstance(general[0], type):
        assert _error_of(lambda: index.search_arrays(query, k)) == general


@pytest.mark.parametrize(
    "make",
    [
        lambda q: q.astype(np.float64),
        lambda q: np.repeat(q, 2)[::2],  # not contiguous
        lambda q: np.stack([q, q]),  # two queries
        lambda q: q.tolist(),
    ],
)
def test_other_shapes_and_types_go_the_general_way_with_the_same_answer(make):
    index = _built("IVF8,Flat", "l2", "int")
    query = _queries(1)[0]
    given = make(query)
    assert index._one_query(given, 4) is None
    first = index.search(given, k=4)
    assert first[1][0] == index.search(query, k=4)[1][0]
    assert first[0][0] == pytest.approx(index.search(query, k=4)[0][0], abs=1e-5)


def test_an_empty_index_refuses_a_single_query_as_a_batch():
    index = FaissIndex(dimension=D)
    query = _queries(1)[0]
    assert index._one_query(query, 3) is None
    assert _error_of(lambda: index.search(query, k=3)) == _error_of(lambda: index.search(np.stack([query]), k=3))


def test_the_short_path_follows_changed_search_parameters():
    index = _built("IVF8,Flat", "ip", "int")
    query = _queries(1)[0]
    narrow = index.search(query, k=50)
    index.set_search_params(nprobe=8)
    wide = index.search(query, k=50)
    assert wide == _general(index, query, 50)
    assert len(wide[1][0]) >= len(narrow[1][0])
    assert wide != narrow


# -- the int64 key column -----------------------------------------------------------------------------
def _object_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never pack int keys into the int64 column: every table keeps the list and dict."""
    monkeypatch.setattr(updates_module, "int_keys", lambda keys, types=None: None)
    monkeypatch.setattr(keys_module, "int_keys", lambda keys, types=None: None)


def _changed(index: FaissIndex) -> FaissIndex:
    """The same changes on any index of ``_built(..., "int")``: removals, upserts, new keys, repeats."""
    rng = np.random.default_rng(5)
    index.remove(list(range(0, N, 7)))
    index.add(unit_rows(rng, 30, D), list(range(1, 60, 2)))  # replaced, some of them removed before
    index.add(unit_rows(rng, 4, D), [N + 5, N + 1, N + 5, N + 9])  # a repeated key: the last wins
    return index.add(unit_rows(rng, 10, D), list(range(N + 100, N + 110)))  # increasing: appended as is


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
def test_the_int_column_answers_as_object_keys(factory, monkeypatch):
    column = _changed(_built(factory, "ip", "int"))
    with monkeypatch.context() as patch:
        _object_keys(patch)
        objects = _changed(_built(factory, "ip", "int"))
    assert column.key_space.int_column and not objects.key_space.int_column
    assert column.keys() == objects.keys()
    assert len(column) == len(objects)
    assert column.held_ids().tolist() == objects.held_ids().tolist()
    assert column.key_space.removed_ids().tolist() == objects.key_space.removed_ids().tolist()
    probes = [0, 1, 3, 7, N + 5, N + 1, N + 105, -1, N * 10, "1"]
    assert [column.id_of(key) for key in probes] == [objects.id_of(key) for key in probes]
    assert [key in column for key in probes] == [key in objects for key in probes]
    queries = np.stack(_queries())
    assert column.search(queries, k=20) == objects.search(queries, k=20)
    assert column.search(queries[0], k=20) == objects.search(queries[0], k=20)
    assert all(type(key) is int for key in column.search(queries, k=20)[1][0])


def test_increasing_int_keys_are_appended_without_a_lookup_table():
    index = FaissIndex().add(unit_rows(np.random.default_rng(0), 50, D), list(range(50)))
    index.add(unit_rows(np.random.default_rng(1), 50, D), list(range(100, 150)))
    table = index.key_space
    assert table.int_column and table._ids is None  # no dict of 100 keys was built
    assert index.id_of(120) == 70 and 49 in index and 50 not in index
    assert table._ids is not None  # built by the lookup, then kept up to date
    index.add(unit_rows(np.random.default_rng(2), 2, D), [200, 10])
    assert index.id_of(10) == 101 and index.id_of(200) == 100 and len(index) == 101


@pytest.mark.parametrize(
    "keys",
    [
        [np.int64(i) for i in range(20)],  # NumPy ints: hashed like ints, returned as given
        [True, False] + list(range(2, 20)),  # bools are no int keys
        [2**63] + list(range(1, 20)),  # beyond 64 bits
        [-(2**63) - 1] + list(range(1, 20)),
    ],
)
def test_keys_that_are_no_64_bit_python_ints_keep_the_object_column(keys):
    index = FaissIndex().add(unit_rows(np.random.default_rng(0), 20, D), keys)
    assert not index.key_space.int_column
    assert index.keys() == keys
    assert [type(key) for key in index.keys()] == [type(key) for key in keys]
    found = index.search(unit_rows(np.random.default_rng(0), 20, D)[3], k=1)[1][0][0]
    assert found == keys[3] and type(found) is type(keys[3])


def test_a_key_of_another_type_turns_the_int_column_into_a_list():
    index = FaissIndex().add(unit_rows(np.random.default_rng(0), 10, D), list(range(10)))
    index.remove([4])
    assert index.key_space.int_column
    extra = unit_rows(np.random.default_rng(9), 1, D)
    index.add(extra, ["ten"])
    assert not index.key_space.int_column
    assert index.keys() == [0, 1, 2, 3, 5, 6, 7, 8, 9, "ten"]
    assert index.search(extra[0], k=1)[1] == [["ten"]]
    assert index.id_of(5) == 5 and index.id_of("ten") == 10 and 4 not in index


# -- pickle layouts ------------------------------------------------------------------------------------
def _layout(kind: str) -> list:
    if kind == "int":
        return list(range(N))
    if kind == "str":
        return [f"doc\n{i}" if i % 5 else f"doc {i}" for i in range(N)]  # a newline: another separator
    return [i if i % 3 else (f"doc-{i}", i) for i in range(N)]  # ints and tuples: no packing


def _same_index(loaded: FaissIndex, original: FaissIndex, same_graph: bool = True, same_column: bool = True) -> None:
    """The same keys, ids, holes and FAISS index (byte for byte); ``same_graph=False``: an HNSW graph
    grown after a load links new vectors with another random level generator, so only its stored
    vectors are compared."""
    assert loaded.keys() == original.keys()
    assert len(loaded) == len(original)
    assert loaded.key_space.next_id == original.key_space.next_id
    assert loaded.key_space.int_column == original.key_space.int_column or not same_column
    assert loaded.key_space.removed_ids().tolist() == original.key_space.removed_ids().tolist()
    assert [loaded.id_of(key) for key in original.keys()] == [original.id_of(key) for key in original.keys()]
    if not same_graph:
        ids = original.held_ids()
        np.testing.assert_array_equal(
            loaded.faiss_index.reconstruct_batch(ids), original.faiss_index.reconstruct_batch(ids)
        )
        return
    queries = np.stack(_queries())
    assert loaded.search(queries, k=15) == original.search(queries, k=15)
    assert loaded.search(queries[2], k=15) == original.search(queries[2], k=15)
    assert faiss.serialize_index(loaded.faiss_index).tobytes() == faiss.serialize_index(original.faiss_index).tobytes()


def _changed_layout(index: FaissIndex, keys: list) -> FaissIndex:
    rng = np.random.default_rng(11)
    index.remove(keys[::4])
    return index.add(unit_rows(rng, 25, D), keys[1:50:2])  # upserts


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "HNSW16"])
@pytest.mark.parametrize(("kind", "packed"), [("int", "int64"), ("str", "utf-8"), ("mixed", None)])
def test_each_pickle_layout_loads_the_same_index(factory, kind, packed):
    keys = _layout(kind)
    index = FaissIndex(factory=factory).add(unit_rows(np.random.default_rng(0), N, D), keys)
    state = index._get_state()
    if packed is None:
        assert isinstance(state["_keys"], list) and isinstance(state["_ids"], dict)
    else:
        assert isinstance(state["_keys"], PackedKeys) and state["_keys"].kind == packed
        assert isinstance(state["_ids"], PackedIds)
        assert state["_keys"] == index.key_space.by_id and dict(state["_ids"]) == index.key_space._lookup()
    _same_index(pickle.loads(pickle.dumps(index, protocol=5)), index)


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
@pytest.mark.parametrize(("kind", "packed"), [("int", "int64"), ("str", "utf-8"), ("mixed", None)])
def test_each_pickle_layout_loads_the_same_index_after_upserts_and_removals(factory, kind, packed):
    keys = _layout(kind)
    index = _changed_layout(FaissIndex(factory=factory).add(unit_rows(np.random.default_rng(0), N, D), keys), keys)
    state = index._get_state()
    assert (state["_keys"].kind if isinstance(state["_keys"], PackedKeys) else None) == packed
    loaded = pickle.loads(pickle.dumps(index, protocol=5))
    _same_index(loaded, index)
    # And they go on the same way: the next ids, removals and upserts.
    for target in (index, loaded):
        _changed_layout(target, target.keys())
    _same_index(loaded, index)


def test_string_keys_holding_every_separator_are_pickled_as_a_list():
    keys = [f"a\n{i}\x00b\x1f" for i in range(30)]
    index = FaissIndex().add(unit_rows(np.random.default_rng(0), 30, D), keys)
    assert isinstance(index._get_state()["_keys"], list)
    _same_index(pickle.loads(pickle.dumps(index)), index)


def test_an_empty_string_key_survives_holes_in_a_packed_string_table():
    keys = ["", "a", "b", "c"]
    index = FaissIndex().add(unit_rows(np.random.default_rng(0), 4, D), keys)
    index.remove(["a", "c"])
    assert index._get_state()["_keys"].kind == "utf-8"
    loaded = pickle.loads(pickle.dumps(index))
    _same_index(loaded, index)
    assert "" in loaded and "a" not in loaded and loaded.keys() == ["", "b"]


def test_a_pickle_of_the_list_layout_written_for_int_keys_still_loads(monkeypatch):
    index = _changed_layout(FaissIndex().add(unit_rows(np.random.default_rng(0), N, D), _layout("int")), _layout("int"))
    packed = pickle.dumps(index)
    with monkeypatch.context() as patch:  # as versions before the packed keys wrote it
        patch.setattr("cherche_faiss.index._persistence.pack", lambda table: table.state())
        unpacked = pickle.dumps(index)
    assert b"PackedKeys" in packed and b"PackedKeys" not in unpacked
    old = pickle.loads(unpacked)
    _same_index(old, index, same_column=False)  # a list and a dict: read back as a list column
    assert not old.key_space.int_column
    _same_index(pickle.loads(packed), index)


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "HNSW16"])
def test_an_index_read_in_place_takes_memory_of_its_own_at_its_first_change(factory):
    keys = _layout("int")
    vectors = unit_rows(np.random.default_rng(0), N, D)
    index = FaissIndex(factory=factory).add(vectors, keys)
    data = pickle.dumps(index, protocol=5)
    loaded = pickle.loads(data)
    assert loaded._in_place is not None  # FAISS views the pickle's bytes
    before = bytes(loaded._in_place)
    searched = loaded.search(np.stack(_queries()), k=10)
    extra = unit_rows(np.random.default_rng(1), 40, D)
    loaded.add(extra, list(range(N, N + 40)))  # grows: FAISS would abort on a view
    index.add(extra, list(range(N, N + 40)))
    assert loaded._in_place is None
    _same_index(loaded, index, same_graph=not factory.startswith("HNSW"))
    again = pickle.loads(data)  # the bytes the first load read were left as they were
    assert bytes(again._in_place) == before
    assert again.search(np.stack(_queries()), k=10) == searched and len(again) == N


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
def test_a_removal_from_an_index_read_in_place_copies_it_first(factory):
    index = FaissIndex(factory=factory).add(unit_rows(np.random.default_rng(0), N, D), _layout("str"))
    data = pickle.dumps(index, protocol=5)
    loaded = pickle.loads(data)
    assert loaded._in_place is not None
    loaded.remove(_layout("str")[:100])
    index.remove(_layout("str")[:100])
    assert loaded._in_place is None
    _same_index(loaded, index)
    assert len(pickle.loads(data)) == N


def test_a_damaged_packed_table_is_a_library_error():
    index = FaissIndex().add(unit_rows(np.random.default_rng(0), 5, D), list(range(5)))
    state = index._get_state()
    packed = state["_keys"]
    with pytest.raises(CherFaissError, match="damaged"):
        PackedKeys("int64", packed.data[:3], packed.removed, 5)
    with pytest.raises(CherFaissError, match="damaged"):
        PackedKeys("utf-8", b"a\nb", np.array([7], dtype=np.int64), 2, "\n")


# -- block adds ----------------------------------------------------------------------------------------
def _one_add(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FaissIndex, "_adds_in_blocks", lambda self: False)


def _counting_adds(index: FaissIndex) -> list[int]:
    """Record the number of rows of each ``add_with_ids`` FAISS gets from ``index``."""
    calls: list[int] = []
    raw = index.faiss_index
    original = raw.add_with_ids

    def add_with_ids(x, ids):
        calls.append(len(x))
        return original(x, ids)

    raw.add_with_ids = add_with_ids
    return calls


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "IVF8,SQ8", "IVF8,PQ4x4", "SQ8"])
def test_block_adds_build_the_same_index_as_one_add(factory, monkeypatch):
    rng = np.random.default_rng(0)
    first, second = unit_rows(rng, N, D) * np.float32(2.5), unit_rows(rng, 300, D) * np.float32(0.5)
    train = {"train_size": N}

    def build() -> tuple[FaissIndex, list[int]]:
        index = FaissIndex(factory=factory, dimension=D, **train)
        index._train_if_needed(index.prepare(first))  # trained alike on both sides, before counting
        calls = _counting_adds(index)
        index.add(first, list(range(N)))
        index.add(second, list(range(N - 100, N + 200)))  # 100 upserts, 200 new
        return index, calls

    with monkeypatch.context() as patch:
        _one_add(patch)
        whole, whole_calls = build()
    monkeypatch.setattr(updates_module, "_BLOCK_BYTES", 4 * D * 64)  # blocks of 64 rows
    monkeypatch.setattr(updates_module, "_IVF_BLOCK_ROWS", 64)
    blocks, block_calls = build()
    assert whole_calls == [N, 300]
    assert len(block_calls) == -(-N // 64) + -(-300 // 64) and max(block_calls) == 64
    assert faiss.serialize_index(blocks.faiss_index).tobytes() == faiss.serialize_index(whole.faiss_index).tobytes()
    assert blocks.keys() == whole.keys()
    queries = np.stack(_queries())
    assert blocks.search(queries, k=10) == whole.search(queries, k=10)


def test_graph_and_unnormalised_adds_go_in_whole(monkeypatch):
    monkeypatch.setattr(updates_module, "_BLOCK_BYTES", 4 * D * 64)
    hnsw = FaissIndex(factory="HNSW16", dimension=D)
    assert not hnsw._adds_in_blocks()  # an HNSW graph links each batch as a whole
    calls = _counting_adds(hnsw)
    hnsw.add(unit_rows(np.random.default_rng(0), 500, D), list(range(500)))
    assert calls == [500]
    raw = FaissIndex(dimension=D, normalize=False)
    assert raw._adds_in_blocks()
    calls = _counting_adds(raw)
    raw.add(unit_rows(np.random.default_rng(0), 500, D), list(range(500)))
    assert calls == [500]


def _general_error(index: FaissIndex, vectors: np.ndarray) -> tuple:
    """The error the general way's checks (``prepare``'s) raise for ``vectors``."""
    with pytest.raises(CherFaissError) as raised:
        index._validated(vectors, "vectors")
    return type(raised.value), str(raised.value)


def _bad(rows: int, seed: int, fault: str) -> np.ndarray:
    vectors = unit_rows(np.random.default_rng(seed), rows, D)
    if fault == "zero":
        vectors[150] = 0.0  # in the 10th block of 16 rows
        vectors[190] = 0.0
    else:
        vectors[150, 3] = np.nan if fault == "nan" else np.inf
    return vectors


@pytest.mark.parametrize("fault", ["zero", "nan", "inf"])
@pytest.mark.parametrize("start", ["new", "Flat", "IVF8,Flat", "IVF8,PQ4x4"])
def test_vectors_checked_while_adding_leave_the_index_as_it_was_when_one_is_bad(fault, start, monkeypatch):
    monkeypatch.setattr(updates_module, "_BLOCK_BYTES", 4 * D * 16)
    monkeypatch.setattr(updates_module, "_IVF_BLOCK_ROWS", 16)
    if start == "new":
        index = FaissIndex()
    else:
        index = FaissIndex(factory=start).add(unit_rows(np.random.default_rng(0), 1_000, D), list(range(1_000)))
    before = None if index.faiss_index is None else faiss.serialize_index(index.faiss_index).tobytes()
    keys_before = index.keys()
    bad = _bad(200, 1, fault)
    expected = _general_error(index, bad)
    assert index._validates_while_adding()
    calls = _counting_adds(index) if index.faiss_index is not None else []
    for keys in (list(range(5_000, 5_200)), [f"k{i}" for i in range(200)]):
        with pytest.raises(CherFaissError) as raised:
            index.add(bad, keys)
        assert (type(raised.value), str(raised.value)) == expected
        assert index.keys() == keys_before and len(index) == len(keys_before)
        if before is None:
            assert index.faiss_index is None and index.d is None  # the index built for the add is dropped
        else:
            assert faiss.serialize_index(index.faiss_index).tobytes() == before
    if start != "new":
        assert calls and sum(calls) >= 2 * 144  # nine good blocks went in, then came out again
    # Bad vectors are reported before bad keys, as ever.
    with pytest.raises(CherFaissError) as raised:
        index.add(bad, list(range(7)))
    assert (type(raised.value), str(raised.value)) == expected
    good = unit_rows(np.random.default_rng(2), 200, D)
    index.add(good, list(range(5_000, 5_200)))
    assert index.search(good[150], k=1)[1] == [[5_150]]


def test_new_keys_are_checked_while_adding_without_the_general_checks(monkeypatch):
    index = FaissIndex()

    def refuse(*args, **kwargs):
        pytest.fail("the vectors were checked the general way (all of them before adding)")

    monkeypatch.setattr(index, "_validated", refuse)
    vectors = unit_rows(np.random.default_rng(0), 300, D) * np.float32(4.0)
    index.add(vectors, [f"d{i}" for i in range(300)])
    index.add(vectors[:10], list(range(10)))  # other keys, new too
    reference = FaissIndex()
    monkeypatch.setattr(reference, "_validates_while_adding", lambda: False)  # all checked first, then added
    reference.add(vectors, [f"d{i}" for i in range(300)])
    reference.add(vectors[:10], list(range(10)))
    assert faiss.serialize_index(index.faiss_index).tobytes() == faiss.serialize_index(reference.faiss_index).tobytes()
    assert index.keys() == reference.keys()


@pytest.mark.parametrize(
    "keys",
    [
        [f"d{i}" for i in range(10)] + ["d0"],  # a repeated key: the last vector wins
        ["d5", "x", "y", "z", "w", "v", "u", "t", "s", "r", "q"],  # a held key: replaced
    ],
)
def test_repeated_or_held_keys_go_the_general_way(keys):
    vectors = unit_rows(np.random.default_rng(0), 11, D)
    index = FaissIndex().add(unit_rows(np.random.default_rng(1), 10, D), [f"d{i}" for i in range(10)])
    index.add(vectors, keys)
    last = {key: row for row, key in enumerate(keys)}
    for key, row in last.items():
        assert index.search(vectors[row], k=1)[1] == [[key]]
    assert len(index) == len(set(keys) | {f"d{i}" for i in range(10)})


def test_squares_that_overflow_are_accepted_while_adding_as_before():
    vectors = unit_rows(np.random.default_rng(0), 20, D)
    vectors[4] = 3e38  # finite values whose squares overflow float32
    index = FaissIndex().add(vectors, list(range(20)))
    reference = FaissIndex().add(vectors, [("k", i) for i in range(20)])  # tuples: the same checks, general way
    assert len(index) == 20
    np.testing.assert_array_equal(
        index.faiss_index.reconstruct_batch(np.arange(20)), reference.faiss_index.reconstruct_batch(np.arange(20))
    )


def test_ivf_indexes_take_blocks_of_their_own_size(monkeypatch):
    monkeypatch.setattr(updates_module, "_IVF_BLOCK_ROWS", 100)  # FAISS's own add block, scaled down
    monkeypatch.setattr(updates_module, "_BLOCK_BYTES", 4 * D * 30)  # a flat index's blocks: 30 rows
    vectors = unit_rows(np.random.default_rng(0), N, D)
    ivf = FaissIndex(factory="IVF8,Flat", dimension=D)
    ivf._train_if_needed(ivf.prepare(vectors))
    flat = FaissIndex(dimension=D)
    sizes = {"ivf": _counting_adds(ivf), "flat": _counting_adds(flat)}
    ivf.add(vectors, list(range(N)))
    flat.add(vectors, list(range(N)))
    assert sizes["ivf"] == [100] * 10
    assert sizes["flat"] == [30] * 33 + [10]
