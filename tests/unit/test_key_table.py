"""KeyTable (index/_keys.py): document keys <-> FAISS ids, holes for removed ids, saved forms."""

from __future__ import annotations

import numpy as np
import pytest

from cherche_faiss.exceptions import (
    IncompatibleStateError,
    InvalidInputError,
    InvalidTypeError,
)
from cherche_faiss.index._keys import KeyTable, check_keys
from cherche_faiss.index._packed_keys import table_from_pickle


def test_ids_are_handed_out_in_order_and_never_reused():
    table = KeyTable()
    assert table.append(["a", "b"]).tolist() == [0, 1] and table.next_id == 2
    table.forget([0])
    assert table.append(["a"]).tolist() == [2]  # a key added again gets a new id
    assert table.keys() == ["b", "a"] and len(table) == 2
    assert table.by_id == [None, "b", "a"]
    assert table.held_ids().tolist() == [1, 2]


def test_lookups():
    table = KeyTable()
    table.append([(1, "t"), 7, None])
    assert table.id_of((1, "t")) == 0 and table.id_of("missing") == -1 and table.id_of("missing", -5) == -5
    assert table.ids_of([None, 7, "x"]).tolist() == [2, 1, -1]
    assert None in table and 7 in table and "x" not in table
    assert [1] not in table  # unhashable: never held, no TypeError
    with pytest.raises(TypeError):
        table.id_of([1])  # the rankers' lookup lets TypeError through to say which candidate


def test_removed_ids_tell_holes_from_a_none_key():
    table = KeyTable()
    table.append([None, "a", "b", "c"])
    table.forget([1, 3])
    assert table.by_id == [None, None, "b", None]
    assert table.removed_ids().tolist() == [1, 3]  # id 0 holds the key None, not a hole
    table.forget([0])
    assert table.removed_ids().tolist() == [0, 1, 3]
    assert table.removed_ids().dtype == np.int64


def test_saved_form_round_trips():
    table = KeyTable()
    table.append([None, "a", "b", "c"])
    table.forget([1])
    keys, _ = table.state()
    restored = KeyTable.from_saved(list(keys), table.removed_ids())
    assert restored.keys() == table.keys() and restored.by_id == table.by_id
    assert restored.ids_of(table.keys()).tolist() == table.ids_of(table.keys()).tolist()


def test_pickled_form_is_the_list_and_the_dict_themselves():
    table = KeyTable()
    table.append(["a", "b"])
    keys, ids = table.state()
    assert keys == ["a", "b"] and ids == {"a": 0, "b": 1}
    assert table_from_pickle(keys, ids).by_id is keys


@pytest.mark.parametrize(
    "keys, removed, message",
    [
        (None, None, "NoneType, not a list"),
        ({"a": 0}, None, "dict, not a list"),
        ([["a"]], None, "unhashable"),
        (["a", "a"], None, "same key twice"),
        (["a", None, "a"], [1], "same key twice"),
    ],
)
def test_damaged_saved_tables_are_refused(keys, removed, message):
    with pytest.raises(IncompatibleStateError, match=message):
        KeyTable.from_saved(keys, removed)


def test_damaged_pickled_tables_are_refused():
    with pytest.raises(IncompatibleStateError, match="not a list and a dict"):
        table_from_pickle(("a",), {"a": 0})
    with pytest.raises(IncompatibleStateError, match="not a list and a dict"):
        table_from_pickle(["a"], [("a", 0)])


def test_check_keys():
    assert check_keys(iter(["a", 1]), 2) == ["a", 1]
    with pytest.raises(InvalidTypeError, match="one key per vector"):
        check_keys("ab", 2)
    with pytest.raises(InvalidInputError, match="2 vectors but 1 keys"):
        check_keys(["a"], 2)
    with pytest.raises(InvalidTypeError, match="not hashable"):
        check_keys([["a"]], 1)
