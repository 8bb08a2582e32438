"""The key table as a pickle stores it: packed into arrays when the keys allow.

A :class:`~._keys.KeyTable` of a million keys is a million Python objects;
pickling them one by one, and creating them again on load, costs more than
reading the index itself. A pickle therefore stores the ``id -> key`` column
packed (:class:`PackedKeys`: the int64 array, or the keys' UTF-8 text when
they are all strings) and no ``key -> id`` dict at all (:class:`PackedIds`).
Both still read as the list and the dict they replace, and the older layout
(a list and a dict, still written for keys that do not pack) still loads.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import IncompatibleStateError
from ._keys import KeyTable

__all__ = ["PackedIds", "PackedKeys", "pack", "table_from_pickle"]

# Separators tried, in order, to pack string keys as one text (one absent from every key).
_SEPARATORS = ("\n", "\x00", "\x1f")


def pack(table: KeyTable) -> tuple[Sequence[Any], Mapping[Hashable, int]]:
    """What a pickle stores: ``(keys, ids)`` read as :meth:`KeyTable.state`'s list and dict, packed when the keys allow.

    An int64 column, or string keys, give a :class:`PackedKeys` and a :class:`PackedIds`
    (no Python object per key in the pickle); other keys the list and the dict.
    """
    keys = PackedKeys.of(table)
    if keys is None:
        return table.state()
    return keys, PackedIds(keys)


def table_from_pickle(keys: Any, ids: Any) -> KeyTable:
    """The table of a pickle: a :class:`PackedKeys` and its :class:`PackedIds`, or (written before them,
    and for keys that do not pack) the list and the dict (nothing to rebuild)."""
    if isinstance(keys, PackedKeys) and isinstance(ids, PackedIds) and ids.keys_packed is keys:
        return keys.table()
    if not isinstance(keys, list) or not isinstance(ids, dict):
        raise IncompatibleStateError(
            f"the key table of this FaissIndex is a {type(keys).__name__} and a {type(ids).__name__}, "
            "not a list and a dict."
        )
    return KeyTable(keys, ids)


class PackedKeys(Sequence):
    """The ``id -> key`` column of a key table as a pickle stores it: one int64 array, or for string
    keys their UTF-8 text joined by a separator no key holds; holes (``removed``) read as None.

    It reads as the list it replaces (``packed[i]``, ``len``, iteration, ``==`` with a list) and
    pickles as its arrays, so that loading a million keys creates no Python object per key until
    the table needs them.
    """

    def __init__(self, kind: str, data: Any, removed: Any, count: int, separator: str = "") -> None:
        if kind not in ("int64", "utf-8") or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise IncompatibleStateError(f"the packed key table of this FaissIndex is damaged ({kind!r}, {count!r}).")
        removed = np.asarray(removed)
        if (
            removed.ndim != 1
            or removed.dtype != np.int64
            or (removed.size and not (removed.min() >= 0 and removed.max() < count))
        ):
            raise IncompatibleStateError("the removed ids of this FaissIndex's packed key table are damaged.")
        if kind == "int64":
            data = np.asarray(data)
            if data.ndim != 1 or data.dtype != np.int64 or len(data) != count:
                raise IncompatibleStateError("the int64 keys of this FaissIndex's packed key table are damaged.")
        elif not isinstance(data, (bytes, bytearray)) or separator not in _SEPARATORS:
            raise IncompatibleStateError("the string keys of this FaissIndex's packed key table are damaged.")
        self.kind, self.data, self.removed, self.length, self.separator = kind, data, removed, count, separator
        self._table: KeyTable | None = None
        self._items: list[Any] | None = None

    @classmethod
    def of(cls, table: KeyTable) -> PackedKeys | None:
        """``table``'s column packed, or None when its keys are neither 64-bit ints nor all strings."""
        removed = table.removed_ids()
        if table._ints is not None:
            packed = cls("int64", table._ints[: table._next], removed, table._next)
        else:
            column = table._list
            if not column or (removed.size == 0 and set(map(type, column)) != {str}):
                return None
            if removed.size:
                column = list(column)
                for id_ in removed.tolist():
                    column[id_] = ""
                if set(map(type, column)) != {str}:
                    return None
            for separator in _SEPARATORS:
                text = separator.join(column)
                if text.count(separator) == len(column) - 1:
                    break
            else:
                return None
            packed = cls("utf-8", text.encode("utf-8"), removed, len(column), separator)
        return packed

    def table(self) -> KeyTable:
        """A :class:`KeyTable` over these keys (the int64 array is used as is, the text decoded once)."""
        if self.kind == "int64":
            return KeyTable._of_ints(self.data, self.removed.tolist())
        try:
            column: list[Any] = bytes(self.data).decode("utf-8").split(self.separator) if self.length else []
        except UnicodeDecodeError:
            raise IncompatibleStateError("the string keys of this FaissIndex's packed key table are damaged.") from None
        if len(column) != self.length:
            raise IncompatibleStateError("the string keys of this FaissIndex's packed key table are damaged.")
        removed = self.removed.tolist()
        for id_ in removed:
            column[id_] = None
        table = KeyTable(column)
        table._removed = set(removed)
        return table

    def _column(self) -> KeyTable:
        """The table of these keys, made on first use (a snapshot: the table packed may change since)."""
        if self._table is None:
            self._table = self.table()
        return self._table

    def _list(self) -> list[Any]:
        if self._items is None:
            self._items = self._column().by_id
        return self._items

    def __reduce__(self) -> tuple[Any, tuple]:
        return (PackedKeys, (self.kind, self.data, self.removed, self.length, self.separator))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, position: Any) -> Any:
        return self._list()[position]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedKeys):
            other = other._list()
        return isinstance(other, list) and self._list() == other

    __hash__ = None  # type: ignore[assignment]  # a sequence compared by value, like the list it stands for


class PackedIds(Mapping):
    """The ``key -> id`` dict of a pickled key table: nothing is stored, it is rebuilt from the
    :class:`PackedKeys` it refers to (which it reads as, when asked)."""

    def __init__(self, keys_packed: PackedKeys) -> None:
        if not isinstance(keys_packed, PackedKeys):
            raise IncompatibleStateError("the packed key ids of this FaissIndex refer to no packed keys.")
        self.keys_packed = keys_packed

    def __reduce__(self) -> tuple[Any, tuple]:
        return (PackedIds, (self.keys_packed,))

    def _ids(self) -> dict[Hashable, int]:
        return self.keys_packed._column()._lookup()

    def __getitem__(self, key: Hashable) -> int:
        return self._ids()[key]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._ids())

    def __len__(self) -> int:
        return len(self._ids())
