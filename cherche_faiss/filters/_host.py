"""What a filterable component holds: its declared ``filter_fields`` and its columns.

Two layouts of :class:`~._columns.FieldColumns`:

* **by internal id** (dense retrievers and rankers, :class:`IdColumns` not
  needed): the rows are the FAISS ids of the component's index, written after
  each add; ids only grow, and a replaced or removed id is dropped (see
  :meth:`Filterable._sync_ids`), so no key is looked up at search time;
* **by key** (:class:`KeyedColumns`: TfIdf, BM25, Lunr, Flash, Fuzz, the
  cross-encoder): the rows are the columns' own numbering of the keys, since
  those components renumber their documents as they change.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import IncompatibleStateError, InvalidTypeError
from ._columns import FieldColumns
from ._compile import compile_mask

__all__ = ["Filterable", "KeyedColumns", "check_filter_fields"]


def check_filter_fields(filter_fields: Any) -> tuple[str, ...] | None:
    """``filter_fields`` as a tuple of field names (None: every scalar field), else a clear error."""
    if filter_fields is None:
        return None
    if isinstance(filter_fields, str):
        filter_fields = [filter_fields]
    if not isinstance(filter_fields, (list, tuple, set, frozenset)) or not all(
        isinstance(name, str) and name for name in filter_fields
    ):
        raise InvalidTypeError(
            f"filter_fields must be a list of field names, e.g. ['year', 'lang'], or None for every scalar "
            f"field; got {filter_fields!r:.80}."
        )
    return tuple(dict.fromkeys(sorted(filter_fields) if isinstance(filter_fields, (set, frozenset)) else filter_fields))


class KeyedColumns(FieldColumns):
    """:class:`FieldColumns` whose rows are its own numbering of document keys."""

    def __init__(self, fields: Sequence[str] | None = None, excluded: Iterable[str] = ()) -> None:
        super().__init__(fields, excluded)
        self.row_of: dict[Hashable, int] = {}

    def upsert(self, documents: Sequence[Mapping], key: str) -> None:
        """Write ``documents`` (each holding ``key``), replacing the fields of keys already held."""
        row_of = self.row_of
        rows = np.fromiter(
            (row_of.setdefault(document[key], len(row_of)) for document in documents),
            dtype=np.int64,
            count=len(documents),
        )
        self.write(rows, documents)

    def remove(self, keys: Iterable[Hashable]) -> None:
        """Forget ``keys`` (those not held are skipped)."""
        rows = [self.row_of.pop(key) for key in keys if key in self.row_of]
        self.drop(np.asarray(rows, dtype=np.int64))

    def rows_of(self, keys: Sequence[Hashable]) -> np.ndarray:
        get = self.row_of.get
        return np.fromiter((get(key, -1) for key in keys), dtype=np.int64, count=len(keys))

    def allows(self, filter: Any) -> Any:  # noqa: A002
        """A function ``keys -> bool array`` telling which keys ``filter`` allows."""
        mask = compile_mask(filter, self, self.rows_of, self.size)

        def allowed(keys: Sequence[Hashable]) -> np.ndarray:
            rows = self.rows_of(keys)
            return (rows >= 0) & mask[np.maximum(rows, 0)] if len(mask) else np.zeros(len(keys), dtype=bool)

        return allowed

    def state(self) -> dict[str, Any]:
        # Keys in row order (None where a row was removed): the dict is rebuilt from them.
        keys: list[Any] = [None] * self.size
        for key, row in self.row_of.items():
            keys[row] = key
        return {**super().state(), "keys": keys}

    @classmethod
    def from_state(cls, state: Any) -> KeyedColumns:
        base = FieldColumns.from_state(state)
        keys = state.get("keys")
        if not isinstance(keys, list) or len(keys) != base.size:
            raise IncompatibleStateError("the saved keys of the filter columns do not match their rows.")
        restored = cls.__new__(cls)
        restored.__dict__.update(base.__dict__)
        alive = base.alive[: base.size]
        try:
            restored.row_of = {key: row for row, key in enumerate(keys) if alive[row]}
        except TypeError:
            raise IncompatibleStateError("the saved keys of the filter columns are not hashable.") from None
        return restored

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(KeyedColumns.from_state(state).__dict__)


class Filterable:
    """Mixin of filterable components: ``filter_fields`` and ``_columns`` (None until documents arrive)."""

    def _filter_excluded(self) -> set[str]:
        """Fields never discovered as filterable: the key, the text fields searched, and ``similarity``
        (what a hit handed to a ranker carries besides its key)."""
        on = getattr(self, "on", None)
        return {getattr(self, "key", ""), "similarity", *([on] if isinstance(on, str) else (on or []))}

    def _filter_columns(self) -> FieldColumns | None:
        return self.__dict__.get("_columns")

    def _keyed_columns(self) -> KeyedColumns:
        columns = self.__dict__.get("_columns")
        if not isinstance(columns, KeyedColumns):
            columns = KeyedColumns(getattr(self, "filter_fields", None), self._filter_excluded())
            self.__dict__["_columns"] = columns
        return columns

    def _id_columns(self) -> FieldColumns:
        columns = self.__dict__.get("_columns")
        if columns is None:
            columns = FieldColumns(getattr(self, "filter_fields", None), self._filter_excluded())
            self.__dict__["_columns"] = columns
        return columns

    @property
    def filter_nbytes(self) -> int:
        """Bytes the filterable fields' columns hold (0 before any document)."""
        columns = self._filter_columns()
        return 0 if columns is None else columns.nbytes
