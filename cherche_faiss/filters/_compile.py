"""A parsed filter compiled to a boolean mask over a component's internal ids.

Every condition is one vectorised NumPy operation over a typed column (see
:mod:`._columns`): no Python loop over documents. Missing values follow
Mongo's rules: ``$eq``, ordering operators and ``$in`` never match a document
without the field; ``$ne``, ``$nin`` and ``$not`` do (they are negations).
Numbers compare with numbers, strings with strings (ordered as Python orders
them), bools with bools; comparing a field with an operand of a type it never
holds raises :class:`~cherche_faiss.exceptions.InvalidFilterError`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..exceptions import InvalidFilterError
from ._columns import Column, FieldColumns
from ._language import AllowedKeys, And, Compare, Exists, Expression, Member, Not, Or, parse_filter

__all__ = ["compile_mask", "Resolver"]

#: ``keys -> int64 rows`` of the owner (-1 for keys it does not hold), for filters that list keys.
Resolver = Callable[[Sequence[Any]], np.ndarray]

_OPERATIONS = {
    "$eq": operator.eq,
    "$ne": operator.ne,
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def compile_mask(filter: Any, columns: FieldColumns | None, rows_of: Resolver, size: int) -> np.ndarray:  # noqa: A002
    """Which of the owner's ``size`` internal ids ``filter`` allows (a bool array; dead ids: False).

    Parameters
    ----------
    filter
        A filter (parsed here when it is not a :class:`Filter` yet).
    columns
        The owner's columns (None: it keeps no filterable field).
    rows_of
        The owner's ``keys -> rows``, for a filter that lists keys.
    size
        The number of internal ids of the owner (the mask's length).
    """
    parsed = parse_filter(filter)
    if not parsed.keys_only and (columns is None or not columns.columns):
        declared = "" if columns is None or columns.fields is None else " (filter_fields=[] declares none)"
        raise InvalidFilterError(
            f"this model has no filterable field{declared}: its documents were added without scalar fields "
            "other than the key and the searched text, or before filters existed. Add documents with metadata "
            "fields (or declare filter_fields=[...] and add them again), or pass the allowed keys as the filter.",
            "filter",
        )
    compiler = _Compiler(columns, rows_of, size)
    mask = compiler.mask(parsed.expression)
    return mask & compiler.alive()


class _Compiler:
    def __init__(self, columns: FieldColumns | None, rows_of: Resolver, size: int) -> None:
        self.columns, self.rows_of, self.size = columns, rows_of, size
        self._alive: np.ndarray | None = None

    def alive(self) -> np.ndarray:
        if self._alive is None:
            alive = self.columns.alive if self.columns is not None else np.zeros(0, dtype=bool)
            self._alive = _fit(alive[: self.size], self.size, False)
        return self._alive

    def mask(self, expression: Expression) -> np.ndarray:
        if isinstance(expression, And):
            mask = np.ones(self.size, dtype=bool)
            for term in expression.terms:
                mask &= self.mask(term)
            return mask
        if isinstance(expression, Or):
            mask = np.zeros(self.size, dtype=bool)
            for term in expression.terms:
                mask |= self.mask(term)
            return mask
        if isinstance(expression, Not):
            return ~self.mask(expression.term)
        if isinstance(expression, AllowedKeys):
            mask = np.zeros(self.size, dtype=bool)
            if expression.keys:
                rows = np.asarray(self.rows_of(list(expression.keys)), dtype=np.int64)
                mask[rows[(rows >= 0) & (rows < self.size)]] = True
            return mask
        column = self._column(expression.field, expression.path)
        if isinstance(expression, Exists):
            present = _fit(column.present(min(self.size, self._rows())), self.size, False)
            return present if expression.present else ~present
        if isinstance(expression, Member):
            mask = np.zeros(self.size, dtype=bool)
            for value in expression.values:
                mask |= self._compare(column, expression.field, "$eq", value, expression.path)
            return ~mask if expression.negate else mask
        if isinstance(expression, Compare):
            if expression.op == "$ne":
                return ~self._compare(column, expression.field, "$eq", expression.value, expression.path)
            return self._compare(column, expression.field, expression.op, expression.value, expression.path)
        raise InvalidFilterError(f"unknown filter expression {expression!r}.")  # pragma: no cover

    def _rows(self) -> int:
        return self.columns.size if self.columns is not None else 0

    def _column(self, field: str, path: str) -> Column:
        columns = self.columns
        column = None if columns is None else columns.columns.get(field)
        if column is None:
            known = sorted(columns.columns) if columns is not None else []
            shown = ", ".join(map(repr, known[:20])) + (" ..." if len(known) > 20 else "")
            how = (
                "declare it in filter_fields=[...]"
                if columns is not None and columns.fields is not None
                else "add documents holding it (a scalar value)"
            )
            raise InvalidFilterError(
                f"{path}: unknown filter field {field!r}. The filterable fields of this model are {shown or 'none'}; "
                f"to filter on {field!r}, {how}.",
                path,
            )
        return column

    def _compare(self, column: Column, field: str, op: str, value: Any, path: str) -> np.ndarray:
        n = min(self.size, self._rows())
        kind = "bool" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"
        operation = _OPERATIONS[op]
        if kind == "number" and column.numbers is not None and column.has_number is not None:
            found = column.has_number[:n] & operation(column.numbers[:n], value)
        elif kind == "string" and column.codes is not None:
            codes = column.codes[:n]
            if op == "$eq":
                code = column.category_codes.get(value)
                found = codes == code if code is not None else np.zeros(n, dtype=bool)
            else:
                categories = np.array(column.categories, dtype=object)
                allowed = np.append(operation(categories, value).astype(bool), False)  # code -1: no string
                found = allowed[codes]
        elif kind == "bool" and column.bools is not None:
            found = column.bools[:n] == int(value)
        else:
            held = column.kinds()
            if held:
                raise InvalidFilterError(
                    f"{path} compares field {field!r} with {kind} {value!r}, but {field!r} holds "
                    f"{' and '.join(held)} values. Compare numbers with numbers, strings with strings.",
                    path,
                )
            found = np.zeros(n, dtype=bool)  # the field holds no value yet: nothing matches
        return _fit(found, self.size, False)


def _fit(mask: np.ndarray, size: int, fill: bool) -> np.ndarray:
    """``mask`` cut or padded (with ``fill``) to ``size``."""
    if len(mask) == size:
        return mask
    if len(mask) > size:
        return mask[:size]
    grown = np.full(size, fill, dtype=bool)
    grown[: len(mask)] = mask
    return grown
