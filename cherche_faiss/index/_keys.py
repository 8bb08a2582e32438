"""The key table of a :class:`~cherche_faiss.index.FaissIndex`: document keys <-> FAISS ids.

FAISS addresses vectors by int64 ids; documents are addressed by any hashable
key. Ids are handed out in order (``0, 1, 2 ...``) and never reused, so the
``id -> key`` direction is a column indexed by id, and a removed id leaves a
hole in it. The column is one of

* an **int64 array**, while every key is a Python ``int`` that fits in 64
  bits (the usual case of large corpora: row numbers, database ids): no
  Python object per key, ids map to keys with one NumPy gather, and a stream
  of increasing keys is appended without looking any key up;
* a **list** of the keys otherwise (any hashable key; holes hold None).

The ``key -> id`` direction is a dict built on first use (a lookup, a
membership test, an upsert of keys that may be held) and kept up to date
from then on. The ids of the holes are kept in a set, since a real key may
be None too. Because ids only grow and a replaced key gets a new id, the
order of insertion (what :meth:`KeyTable.keys` returns) is the order of the
ids, which is why the dict is always rebuilt from the column as it was.

Pickles store the column packed (see :mod:`._packed_keys`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from ..exceptions import IncompatibleStateError, InvalidInputError, InvalidTypeError

__all__ = ["KeyTable", "check_keys", "checked_keys", "int_keys"]

# Key types every instance of which passes ``isinstance(key, Hashable)``: a batch made of
# them needs no per-key check.
_HASHABLE_TYPES = frozenset({int, str, bytes, float, complex, bool, type(None), tuple, frozenset})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def check_keys(keys: Any, n: int) -> list[Hashable]:
    """``keys`` as a list of ``n`` hashable keys, one per vector, else a clear error."""
    return checked_keys(keys, n)[0]


def checked_keys(keys: Any, n: int) -> tuple[list[Hashable], set[type]]:
    """:func:`check_keys`, and the set of the keys' types (for :func:`int_keys`: one pass over them)."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise InvalidTypeError(f"keys must be a list with one key per vector, got {type(keys).__name__}.")
    keys = list(keys)
    if len(keys) != n:
        raise InvalidInputError(f"got {n} vectors but {len(keys)} keys; pass exactly one key per vector.")
    types = set(map(type, keys))
    if not types <= _HASHABLE_TYPES:  # else every key is hashable by its type alone
        for key in keys:
            if not isinstance(key, Hashable):
                raise InvalidTypeError(
                    f"key {key!r} ({type(key).__name__}) is not hashable; use int, str or tuple keys."
                )
    return keys, types


def int_keys(keys: list[Hashable], types: set[type] | None = None) -> np.ndarray | None:
    """``keys`` as an int64 array when every one is a Python ``int`` (bools excluded) of 64 bits, else None.

    ``types``: the set of the keys' types, when :func:`checked_keys` gave it.
    """
    if not keys or (set(map(type, keys)) if types is None else types) != {int}:
        return None
    try:
        return np.array(keys, dtype=np.int64)
    except OverflowError:
        return None


class KeyTable:
    """Document keys and the FAISS ids their vectors were added under.

    Parameters
    ----------
    keys
        ``id -> key`` list; removed ids hold None. Taken as is, not copied.
    ids
        ``key -> id`` dict of the keys held, in insertion order. Taken as is.
        With ``keys`` and without ``ids`` every id of ``keys`` is held.

    Examples
    --------
    >>> table = KeyTable()
    >>> table.append(["a", "b", "c"]).tolist()
    [0, 1, 2]
    >>> table.forget([1])
    >>> table.keys(), table.id_of("c"), table.id_of("b"), table.removed_ids().tolist()
    (['a', 'c'], 2, -1, [1])
    """

    __slots__ = ("_list", "_ints", "_next", "_removed", "_ids", "_high", "version")

    def __init__(self, keys: list[Any] | None = None, ids: dict[Hashable, int] | None = None) -> None:
        self._list: list[Any] = [] if keys is None else keys  # the list column (empty in int mode)
        self._ints: np.ndarray | None = None  # the int64 column, with room to grow (None in list mode)
        self._next = len(self._list)  # the next id; the column's length
        self._removed: set[int] = set()
        self._ids: dict[Hashable, int] | None = ids  # key -> id, built on first use
        self._high = 0  # int column: the largest key it ever held (appending larger ones needs no lookup)
        self.version = 0  # changes with every append and removal (caches of key lookups compare it)
        if ids is not None and len(ids) != self._next:
            self._removed = _holes(self._list, ids)

    @classmethod
    def _of_ints(cls, keys: np.ndarray, removed: Iterable[int] = ()) -> KeyTable:
        """A table over the int64 column ``keys`` (used as is), ``removed`` ids being holes."""
        table = cls()
        table._ints = keys
        table._next = len(keys)
        table._removed = set(removed)
        table._high = int(keys.max()) if len(keys) else 0
        return table

    # -- reading -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._next - len(self._removed)

    def __contains__(self, key: Any) -> bool:
        try:
            return key in self._lookup()
        except TypeError:  # unhashable: never held
            return False

    def _lookup(self) -> dict[Hashable, int]:
        """The ``key -> id`` dict, built from the column on first use."""
        if self._ids is None:
            if self._ints is not None:
                column = self._ints[: self._next].tolist()
            else:
                column = self._list
            removed = self._removed
            if removed:
                ids = {key: id_ for id_, key in enumerate(column) if id_ not in removed}
            else:
                ids = dict(zip(column, range(self._next)))
            if len(ids) != len(self):
                raise IncompatibleStateError("the key table of this FaissIndex holds the same key twice.")
            self._ids = ids
        return self._ids

    def keys(self) -> list[Any]:
        """The keys held, in insertion order (a replaced key counts as inserted again)."""
        if self._ints is not None:
            column = self._ints[: self._next]
            if self._removed:
                column = np.delete(column, self.removed_ids())
            return column.tolist()
        if not self._removed:
            return list(self._list)
        if self._ids is not None:
            return list(self._ids)  # in id order: built from the column, then appended to in id order
        removed = self._removed
        return [key for id_, key in enumerate(self._list) if id_ not in removed]

    def id_of(self, key: Hashable, default: int = -1) -> int:
        """FAISS id of ``key``, ``default`` when it is not held (``TypeError`` when unhashable)."""
        return self._lookup().get(key, default)

    def ids_of(self, keys: Iterable[Hashable]) -> np.ndarray:
        """FAISS ids of ``keys`` as an int64 array, -1 for keys not held."""
        get = self._lookup().get
        return np.fromiter((get(key, -1) for key in keys), dtype=np.int64)

    def held_ids(self) -> np.ndarray:
        """The ids of the keys held, as an int64 array in the order of :meth:`keys`."""
        ids = np.arange(self._next, dtype=np.int64)
        return np.delete(ids, self.removed_ids()) if self._removed else ids

    def keys_at(self, ids: np.ndarray) -> list[Any]:
        """The keys of held ``ids`` (an int64 array, e.g. a row of search results), as a list."""
        if self._ints is not None:
            return self._ints[ids].tolist()
        column = self._list
        return [column[id_] for id_ in ids.tolist()]

    @property
    def by_id(self) -> list[Any]:
        """The ``id -> key`` list (holes hold None); a list column is returned itself: do not modify it."""
        if self._ints is not None:
            column = self._ints[: self._next].tolist()
            for id_ in self._removed:
                column[id_] = None
            return column
        return self._list

    @property
    def next_id(self) -> int:
        """The id the next key added gets (ids are never reused)."""
        return self._next

    @property
    def int_column(self) -> bool:
        """Whether the ``id -> key`` column is an int64 array (every key a 64-bit int)."""
        return self._ints is not None

    def removed_ids(self) -> np.ndarray:
        """The ids of removed vectors (holes of the column), as a sorted int64 array.

        A hole of a list column holds None, and so may a real key: the id of a held ``None`` key is no hole.
        """
        return np.asarray(sorted(self._removed), dtype=np.int64)

    def new_keys(self, keys: np.ndarray) -> bool:
        """Whether int ``keys`` can be appended as they are: strictly increasing, and above every key the
        table ever held (so none is held), the table's column being empty or int64."""
        if self._ints is None and self._next:
            return False
        if len(keys) > 1 and not bool((keys[1:] > keys[:-1]).all()):
            return False
        return not self._next or int(keys[0]) > self._high

    # -- changing ------------------------------------------------------------------------
    def append(self, keys: list[Hashable], ints: np.ndarray | None = None) -> np.ndarray:
        """Give ``keys`` (distinct, none of them held) the next ids; returns those ids.

        ``ints``: the same keys as an int64 array, when :func:`int_keys` gave one.
        """
        start, n = self._next, len(keys)
        if not n:
            return np.arange(start, start, dtype=np.int64)
        if ints is None and (self._ints is not None or not start):
            ints = int_keys(keys)
        if ints is not None and (self._ints is not None or not start):
            self._append_ints(ints)
        else:
            column = self._as_list()
            column.extend(keys)
        if self._ids is not None:
            self._ids.update(zip(keys, range(start, start + n)))
        self._next = start + n
        self.version += 1
        return np.arange(start, start + n, dtype=np.int64)

    def _append_ints(self, ints: np.ndarray) -> None:
        start, n = self._next, len(ints)
        if self._ints is None or len(self._ints) < start + n:
            grown = np.empty(max(start + n, 2 * start, 16), dtype=np.int64)
            if self._ints is not None:
                grown[:start] = self._ints[:start]
            self._ints = grown
        self._ints[start : start + n] = ints
        self._high = max(self._high, int(ints.max())) if start else int(ints.max())

    def _as_list(self) -> list[Any]:
        """The list column, converting an int64 column (a key of another type arrived)."""
        if self._ints is not None:
            self._list = self.by_id
            self._ints = None
        return self._list

    def forget(self, ids: Iterable[int]) -> None:
        """Remove the keys of ``ids`` (all held); their ids become holes."""
        lookup = self._lookup()
        for id_ in ids:
            key = self._ints[id_].item() if self._ints is not None else self._list[id_]
            if id_ in self._removed or lookup.get(key) != id_:
                raise KeyError(key)
            del lookup[key]
            self._removed.add(id_)
            self.version += 1
            if self._ints is None:
                self._list[id_] = None

    # -- saved forms ---------------------------------------------------------------------
    def state(self) -> tuple[list[Any], dict[Hashable, int]]:
        """``(keys, ids)``: the ``id -> key`` list and the ``key -> id`` dict (the layout of pickles
        before :mod:`._packed_keys`, and of keys that do not pack; a list column and a built dict are
        returned themselves)."""
        return self.by_id, self._lookup()

    @classmethod
    def from_saved(cls, keys: Any, removed: Any) -> KeyTable:
        """The table of a safe-format save: the ``id -> key`` list and the ids of its holes.

        The ``key -> id`` dict is rebuilt, checking that the keys are hashable and distinct.
        """
        if not isinstance(keys, list):
            raise IncompatibleStateError(f"the key table of this FaissIndex is a {type(keys).__name__}, not a list.")
        holes = set(np.asarray(removed if removed is not None else [], dtype=np.int64).tolist())
        try:
            ids = {key: id_ for id_, key in enumerate(keys) if id_ not in holes}
        except TypeError:
            raise IncompatibleStateError("the key table of this FaissIndex holds unhashable keys.") from None
        if len(ids) != len(keys) - len(holes):
            raise IncompatibleStateError("the key table of this FaissIndex holds the same key twice.")
        table = cls(keys)
        table._ids, table._removed = ids, holes
        return table


def _holes(keys: list[Any], ids: dict[Hashable, int]) -> set[int]:
    """The ids of ``keys`` that ``ids`` does not hold (holes hold None; a held None key is no hole)."""
    none_id = ids.get(None)
    return {id_ for id_, key in enumerate(keys) if key is None and id_ != none_id}
