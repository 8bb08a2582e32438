"""Typed columns of the filterable fields, one row per internal id of their owner.

A component that can be filtered keeps the filterable fields of its documents
here, not as a list of dicts: per field, up to three typed parts

* numbers: an int64 array (float64 once a float arrives) and a presence mask;
* strings: int32 codes into the field's categories (-1: no string);
* bools: an int8 array (-1: no bool);

so that a field holding strings in some documents and numbers in others keeps
both, and a filter compares numbers with numbers, strings with strings. A
missing value (no field, or None) is no value. Rows are the owner's internal
ids (FAISS ids of a dense retriever, positions of a lexical one); ``alive``
marks the rows that hold a document. Compiling a filter to a mask over the
rows is :mod:`._compile`'s job.

Which fields are kept: the ``fields`` declared (``filter_fields=[...]``), or,
when None, every field of the documents that holds a scalar (str, int,
float, bool), except the ``excluded`` ones (the key field and the text fields
a retriever searches: long texts are not metadata, and keeping them would
cost their whole size). Values of other types (lists, dicts) are not kept: a
declared field holding one is refused at ``add``; a discovered field holding
one in some document has no value there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import IncompatibleStateError, InvalidInputError

__all__ = ["Column", "FieldColumns"]

_SCALARS = (str, int, float, bool)


class Column:
    """The typed parts of one field over ``size`` rows (each part allocated when its first value arrives)."""

    __slots__ = ("numbers", "has_number", "codes", "categories", "category_codes", "bools")

    def __init__(self) -> None:
        self.numbers: np.ndarray | None = None  # int64 or float64
        self.has_number: np.ndarray | None = None  # bool
        self.codes: np.ndarray | None = None  # int32, -1: no string
        self.categories: list[str] = []
        self.category_codes: dict[str, int] = {}
        self.bools: np.ndarray | None = None  # int8, -1: no bool

    def grow(self, size: int) -> None:
        """Make every allocated part ``size`` rows long (new rows hold no value)."""
        if self.numbers is not None and len(self.numbers) < size:
            self.numbers = _grown(self.numbers, size, 0)
            self.has_number = _grown(self.has_number, size, False)  # type: ignore[arg-type]
        if self.codes is not None and len(self.codes) < size:
            self.codes = _grown(self.codes, size, -1)
        if self.bools is not None and len(self.bools) < size:
            self.bools = _grown(self.bools, size, -1)

    def clear(self, rows: np.ndarray) -> None:
        """Rows ``rows`` hold no value."""
        if self.has_number is not None:
            self.has_number[rows] = False
        if self.codes is not None:
            self.codes[rows] = -1
        if self.bools is not None:
            self.bools[rows] = -1

    def write(self, rows: np.ndarray, values: list[Any], size: int) -> None:
        """Row ``rows[i]`` holds ``values[i]`` (None or an unsupported type: no value)."""
        self.clear(rows)
        kinds = [_kind(value) for value in values]
        numbers = [i for i, kind in enumerate(kinds) if kind == "number"]
        strings = [i for i, kind in enumerate(kinds) if kind == "string"]
        flags = [i for i, kind in enumerate(kinds) if kind == "bool"]
        if numbers:
            picked = [values[i] for i in numbers]
            floats = any(isinstance(value, float) for value in picked)
            try:
                array = np.asarray(picked, dtype=np.float64 if floats else np.int64)
            except OverflowError:  # ints beyond 64 bits: compared as floats
                array = np.asarray(picked, dtype=np.float64)
            if self.numbers is None:
                self.numbers = np.zeros(size, dtype=array.dtype)
                self.has_number = np.zeros(size, dtype=bool)
            elif array.dtype == np.float64 and self.numbers.dtype != np.float64:
                self.numbers = self.numbers.astype(np.float64)
            self.numbers[rows[numbers]] = array
            self.has_number[rows[numbers]] = True  # type: ignore[index]
        if strings:
            if self.codes is None:
                self.codes = np.full(size, -1, dtype=np.int32)
            codes, categories = self.category_codes, self.categories
            for i in strings:
                value = values[i]
                code = codes.get(value)
                if code is None:
                    code = codes[value] = len(categories)
                    categories.append(value)
                self.codes[rows[i]] = code
        if flags:
            if self.bools is None:
                self.bools = np.full(size, -1, dtype=np.int8)
            self.bools[rows[flags]] = np.asarray([values[i] for i in flags], dtype=np.int8)

    def take(self, order: np.ndarray) -> None:
        """Keep rows ``order`` (an int64 array), in that order."""
        if self.numbers is not None:
            self.numbers, self.has_number = self.numbers[order], self.has_number[order]  # type: ignore[index]
        if self.codes is not None:
            self.codes = self.codes[order]
        if self.bools is not None:
            self.bools = self.bools[order]

    def present(self, size: int) -> np.ndarray:
        """Whether each row holds a value of any type."""
        mask = np.zeros(size, dtype=bool)
        if self.has_number is not None:
            mask |= self.has_number[:size]
        if self.codes is not None:
            mask |= self.codes[:size] >= 0
        if self.bools is not None:
            mask |= self.bools[:size] >= 0
        return mask

    def kinds(self) -> list[str]:
        """The types of value this field holds somewhere ("number", "string", "bool")."""
        kinds = []
        if self.has_number is not None and self.has_number.any():
            kinds.append("number")
        if self.codes is not None and (self.codes >= 0).any():
            kinds.append("string")
        if self.bools is not None and (self.bools >= 0).any():
            kinds.append("bool")
        return kinds

    @property
    def nbytes(self) -> int:
        arrays = (self.numbers, self.has_number, self.codes, self.bools)
        strings = sum(len(text) for text in self.categories)
        return sum(array.nbytes for array in arrays if array is not None) + strings

    def state(self) -> dict[str, Any]:
        return {
            "numbers": self.numbers,
            "has_number": self.has_number,
            "codes": self.codes,
            "categories": list(self.categories),
            "bools": self.bools,
        }

    @classmethod
    def from_state(cls, state: Any, size: int, name: str) -> Column:
        if not isinstance(state, Mapping):
            raise IncompatibleStateError(f"the saved filter column {name!r} is not a dict.")
        column = cls()
        parts = {"numbers": None, "has_number": np.bool_, "codes": np.int32, "bools": np.int8}
        for part, dtype in parts.items():
            value = state.get(part)
            if value is None:
                continue
            if not isinstance(value, np.ndarray) or value.ndim != 1 or len(value) < size:
                raise IncompatibleStateError(f"the saved filter column {name!r} has a damaged {part} array.")
            if dtype is not None and value.dtype != dtype:
                raise IncompatibleStateError(f"the saved filter column {name!r} has {part} of dtype {value.dtype}.")
            setattr(column, part, np.array(value))  # writable: a mapped load gives read-only arrays
        if (column.numbers is None) != (column.has_number is None) or (
            column.numbers is not None and column.numbers.dtype not in (np.int64, np.float64)
        ):
            raise IncompatibleStateError(f"the saved filter column {name!r} has damaged numbers.")
        categories = state.get("categories", [])
        if not isinstance(categories, list) or not all(isinstance(text, str) for text in categories):
            raise IncompatibleStateError(f"the saved filter column {name!r} has damaged categories.")
        if column.codes is not None and len(column.codes) and int(column.codes.max(initial=-1)) >= len(categories):
            raise IncompatibleStateError(f"the saved filter column {name!r} has codes beyond its categories.")
        column.categories = categories
        column.category_codes = {text: code for code, text in enumerate(categories)}
        return column


class FieldColumns:
    """The filterable fields of a component's documents, as typed columns over its internal ids.

    Parameters
    ----------
    fields
        The declared filterable fields (``filter_fields=[...]``), or None:
        every scalar field of the documents but ``excluded``.
    excluded
        Fields never discovered (the key field, the text fields searched).
    """

    def __init__(self, fields: Sequence[str] | None = None, excluded: Iterable[str] = ()) -> None:
        self.fields = None if fields is None else tuple(fields)
        self.excluded = frozenset(excluded)
        self.columns: dict[str, Column] = {name: Column() for name in self.fields or ()}
        self.alive = np.zeros(0, dtype=bool)  # rows that hold a document (capacity-long)
        self.size = 0  # number of rows (internal ids) so far
        self.version = 0  # changes with every write, drop and take
        self._written: frozenset[str] = frozenset()
        self.synced: Any = None  # the owner's marker of the ids last synced (not saved)

    def __len__(self) -> int:
        return int(np.count_nonzero(self.alive[: self.size]))

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns' arrays and categories (what filtering costs in memory)."""
        return self.alive.nbytes + sum(column.nbytes for column in self.columns.values())

    def _reserve(self, size: int) -> None:
        if size <= len(self.alive):
            return
        capacity = max(size, 2 * len(self.alive), 16)
        self.alive = _grown(self.alive, capacity, False)
        for column in self.columns.values():
            column.grow(capacity)

    def write(self, rows: Any, documents: Sequence[Mapping]) -> None:
        """Rows ``rows`` (the owner's ids of ``documents``, in order) hold these documents' fields."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != len(documents):
            raise InvalidInputError(f"got {len(rows)} rows for {len(documents)} documents.")
        if not len(rows):
            return
        if int(rows.min()) < 0:
            raise InvalidInputError("filter columns: a document has no internal id (-1).")
        size = max(self.size, int(rows.max()) + 1)
        self._reserve(size)
        self.size = size
        for name in self._fields_of(documents):
            column = self.columns.get(name)
            if column is None:
                column = self.columns[name] = Column()
            values = [document.get(name) for document in documents]
            if self.fields is not None:
                _check_declared(name, values)
            column.write(rows, values, len(self.alive))
        for name, column in self.columns.items():
            if name not in self._written:
                column.clear(rows)
        self.alive[rows] = True
        self.version += 1

    def _fields_of(self, documents: Sequence[Mapping]) -> list[str]:
        """The fields written: the declared ones, or every scalar field met (known ones included)."""
        if self.fields is not None:
            names = list(self.fields)
        else:
            seen: dict[str, None] = dict.fromkeys(self.columns)
            excluded = self.excluded
            for document in documents:
                for name, value in document.items():
                    if name not in seen and isinstance(name, str) and name not in excluded and _kind(value):
                        seen[name] = None
            names = list(seen)
        self._written = frozenset(names)
        return names

    def drop(self, rows: Any) -> None:
        """Rows ``rows`` hold no document any more (removed, or replaced under another id)."""
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[(rows >= 0) & (rows < self.size)]
        if not len(rows):
            return
        self.alive[rows] = False
        for column in self.columns.values():
            column.clear(rows)
        self.version += 1

    def take(self, order: Any) -> None:
        """Keep rows ``order`` only, renumbered ``0, 1 ...`` in that order (owners that renumber)."""
        order = np.asarray(order, dtype=np.int64)
        self.alive = self.alive[order]
        for column in self.columns.values():
            column.take(order)
        self.size = len(order)
        self.version += 1

    def state(self) -> dict[str, Any]:
        """Plain values (arrays, lists, strings) for pickles and the safe format."""
        size = self.size
        return {
            "fields": None if self.fields is None else list(self.fields),
            "excluded": sorted(self.excluded),
            "size": size,
            "alive": self.alive[:size].copy(),
            "columns": {name: _cut(column.state(), size) for name, column in self.columns.items()},
        }

    @classmethod
    def from_state(cls, state: Any) -> FieldColumns:
        if not isinstance(state, Mapping):
            raise IncompatibleStateError("the saved filter columns are not a dict.")
        fields, excluded, size = state.get("fields"), state.get("excluded", []), state.get("size")
        alive, columns = state.get("alive"), state.get("columns")
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
            raise IncompatibleStateError("the saved filter fields are not a list of strings.")
        if type(size) is not int or size < 0 or not isinstance(alive, np.ndarray) or alive.dtype != np.bool_:
            raise IncompatibleStateError("the saved filter columns have a damaged size or alive mask.")
        if len(alive) != size or not isinstance(columns, Mapping) or not isinstance(excluded, list):
            raise IncompatibleStateError("the saved filter columns do not match their size.")
        restored = cls(fields, excluded)
        restored.alive, restored.size = np.array(alive), size
        restored.columns = {str(name): Column.from_state(value, size, str(name)) for name, value in columns.items()}
        return restored

    def __getstate__(self) -> dict[str, Any]:
        return self.state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(FieldColumns.from_state(state).__dict__)


def _cut(state: dict[str, Any], size: int) -> dict[str, Any]:
    return {name: value[:size].copy() if isinstance(value, np.ndarray) else value for name, value in state.items()}


def _kind(value: Any) -> str:
    """``"number"``, ``"string"``, ``"bool"``, or ``""`` for no filterable value (None, NaN, lists ...)."""
    kind = type(value)
    if kind is str:
        return "string"
    if kind is bool or kind is np.bool_:
        return "bool"
    if kind is int or isinstance(value, np.integer):
        return "number"
    if kind is float or isinstance(value, np.floating):
        return "number" if math.isfinite(value) else ""
    if isinstance(value, str):
        return "string"
    return ""


def _check_declared(name: str, values: list[Any]) -> None:
    for value in values:
        if value is not None and not _kind(value) and not (isinstance(value, float) and math.isnan(value)):
            raise InvalidInputError(
                f"filter field {name!r} holds {type(value).__name__} {value!r:.60}: filterable fields hold "
                "strings, numbers or bools (None or no field: no value). Leave it out of filter_fields."
            )


def _grown(array: np.ndarray, size: int, fill: Any) -> np.ndarray:
    grown = np.full(size, fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
