"""The filter language: a ``filter=`` checked and turned into an immutable expression.

A filter is either

* a dict in the operator language of Mongo, Chroma, LangChain and Haystack:
  ``{"year": {"$gte": 2020}, "lang": "en"}``; field conditions side by side
  must all hold; a plain value means ``$eq``; the operators are ``$eq $ne
  $gt $gte $lt $lte $in $nin $exists`` (on a field) and ``$and $or $not``
  (``$not`` also on a field: ``{"year": {"$not": {"$gt": 2020}}}``); or
* an explicit collection of allowed keys (a list, tuple, set, frozenset or
  NumPy array of keys).

This module checks the structure alone (operators, operand types, limits);
whether the fields exist and hold values of the operand's type is checked
when the filter is compiled against a model's columns (``_columns``).
Nothing here imports NumPy at module level: the server validates filters
before anything reaches a model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidFilterError

__all__ = [
    "MAX_DEPTH",
    "MAX_TERMS",
    "MAX_VALUES",
    "OPERATORS",
    "AllowedKeys",
    "And",
    "Compare",
    "Exists",
    "Expression",
    "Filter",
    "Member",
    "Not",
    "Or",
    "parse_filter",
]

#: Deepest nesting of ``$and``/``$or``/``$not`` and field conditions accepted (a guard against
#: filters built to exhaust the stack: real ones nest a few levels).
MAX_DEPTH = 32
#: Most field conditions (``$eq``, ``$in`` ...) one filter may hold.
MAX_TERMS = 1024
#: Most values one ``$in`` or ``$nin`` may list (an explicit key collection has no such limit).
MAX_VALUES = 65536

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
ORDERINGS = ("$gt", "$gte", "$lt", "$lte")
FIELD_OPERATORS = (*COMPARISONS, "$in", "$nin", "$exists", "$not")
LOGICAL_OPERATORS = ("$and", "$or", "$not")
OPERATORS = (*COMPARISONS, "$in", "$nin", "$exists", "$and", "$or", "$not")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Compare:
    """``field op value``: ``op`` one of ``$eq $ne $gt $gte $lt $lte``."""

    field: str
    op: str
    value: Scalar
    path: str


@dataclass(frozen=True)
class Member:
    """``field`` is one of ``values`` (``$in``) or none of them (``negate``: ``$nin``)."""

    field: str
    values: tuple[Scalar, ...]
    negate: bool
    path: str


@dataclass(frozen=True)
class Exists:
    """``field`` holds a value (``present``) or not."""

    field: str
    present: bool
    path: str


@dataclass(frozen=True)
class And:
    """Every term holds (no term: every document)."""

    terms: tuple[Expression, ...]


@dataclass(frozen=True)
class Or:
    """At least one term holds."""

    terms: tuple[Expression, ...]


@dataclass(frozen=True)
class Not:
    """The term does not hold."""

    term: Expression


@dataclass(frozen=True)
class AllowedKeys:
    """Only these document keys (in the order given, without repeats)."""

    keys: tuple[Hashable, ...]


Expression = Compare | Member | Exists | And | Or | Not | AllowedKeys


@dataclass(frozen=True)
class Filter:
    """A checked filter: its ``expression`` and the ``fields`` it reads.

    Built by :func:`parse_filter`; immutable, so that one parsed filter can be
    shared by threads and compiled against several models.
    """

    expression: Expression
    fields: frozenset[str]

    @property
    def keys_only(self) -> bool:
        """Whether the filter is an explicit collection of allowed keys (no field read)."""
        return isinstance(self.expression, AllowedKeys)


def parse_filter(filter: Any) -> Filter:  # noqa: A002 - the keyword users pass is `filter`
    """Check a ``filter=`` and return it as an immutable :class:`Filter`.

    Parameters
    ----------
    filter
        A dict in the operator language (see the module's docstring) or an
        explicit collection of allowed keys; a :class:`Filter` is returned as it is.

    Raises
    ------
    InvalidFilterError
        The filter is malformed: its message names the offending part (e.g.
        ``filter["year"]["$gt"]``), also given as the error's ``path``.

    Examples
    --------
    >>> from cherche_faiss.filters import parse_filter
    >>> parsed = parse_filter({"year": {"$gte": 2020}, "lang": "en"})
    >>> sorted(parsed.fields)
    ['lang', 'year']
    >>> parse_filter({"year": {"$gt": [2020]}})
    Traceback (most recent call last):
    ...
    cherche_faiss.exceptions.InvalidFilterError: filter["year"]["$gt"] must be a number or a string, got list [2020]...
    >>> parse_filter(["doc-1", "doc-7"]).keys_only
    True
    """
    if isinstance(filter, Filter):
        return filter
    if isinstance(filter, Mapping):
        parser = _Parser()
        expression = parser.document(filter, "filter", 1)
        return Filter(expression, frozenset(parser.fields))
    keys = _key_collection(filter)
    if keys is not None:
        return Filter(AllowedKeys(keys), frozenset())
    raise InvalidFilterError(
        f"filter must be a dict such as {{'year': {{'$gte': 2020}}, 'lang': 'en'}} or a collection "
        f"(list, tuple, set, NumPy array) of allowed keys, got {type(filter).__name__} {_show(filter)}.",
        "filter",
    )


def _key_collection(value: Any) -> tuple[Hashable, ...] | None:
    """The keys of an explicit collection (repeats dropped, order kept), None when ``value`` is not one."""
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    elif type(value).__module__ == "numpy" and type(value).__name__ == "ndarray":
        if value.ndim != 1:
            raise InvalidFilterError(
                f"a NumPy array of allowed keys must be one-dimensional, got shape {value.shape}.", "filter"
            )
        items = value.tolist()
    else:
        return None
    for position, key in enumerate(items):
        try:
            hash(key)
        except TypeError:
            raise InvalidFilterError(
                f"filter[{position}] must be a document key (hashable: int, str, tuple ...), got "
                f"{type(key).__name__} {_show(key)}.",
                f"filter[{position}]",
            ) from None
    return tuple(dict.fromkeys(items))


class _Parser:
    """One filter's walk: the fields met and the number of field conditions, for the limits."""

    def __init__(self) -> None:
        self.fields: set[str] = set()
        self.terms = 0

    def _count(self, path: str) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise InvalidFilterError(
                f"{path}: the filter holds more than {MAX_TERMS} field conditions (MAX_TERMS). Split the "
                "search, or pass the allowed keys as a list.",
                path,
            )

    def _depth(self, depth: int, path: str) -> None:
        if depth > MAX_DEPTH:
            raise InvalidFilterError(
                f"{path}: the filter nests deeper than {MAX_DEPTH} levels (MAX_DEPTH); flatten it.", path
            )

    def document(self, value: Any, path: str, depth: int) -> Expression:
        """A dict of field conditions and logical operators, all of which must hold."""
        self._depth(depth, path)
        if not isinstance(value, Mapping):
            raise InvalidFilterError(
                f"{path} must be a dict of conditions such as {{'year': {{'$gte': 2020}}}}, got "
                f"{type(value).__name__} {_show(value)}.",
                path,
            )
        terms: list[Expression] = []
        for name, condition in value.items():
            where = f"{path}[{json.dumps(name) if isinstance(name, str) else repr(name)}]"
            if not isinstance(name, str) or not name:
                raise InvalidFilterError(
                    f"{where}: field names and operators are non-empty strings, got {type(name).__name__} {name!r}.",
                    where,
                )
            if name.startswith("$"):
                terms.append(self.logical(name, condition, where, depth))
            else:
                self.fields.add(name)
                terms.append(self.field(name, condition, where, depth + 1))
        return terms[0] if len(terms) == 1 else And(tuple(terms))  # {}: every document

    def logical(self, name: str, value: Any, path: str, depth: int) -> Expression:
        if name == "$not":
            return Not(self.document(value, path, depth + 1))
        if name in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidFilterError(
                    f"{path} must be a non-empty list of filters, got {type(value).__name__} {_show(value)}.", path
                )
            terms = tuple(self.document(item, f"{path}[{number}]", depth + 1) for number, item in enumerate(value))
            return And(terms) if name == "$and" else Or(terms)
        hint = f" (it applies to a field: {{'field': {{'{name}': ...}}}})" if name in FIELD_OPERATORS else ""
        raise InvalidFilterError(
            f"{path}: unknown operator {name!r} at the top of a filter{hint}. Logical operators are "
            f"{', '.join(LOGICAL_OPERATORS)}; field names may not start with '$'.",
            path,
        )

    def field(self, field: str, condition: Any, path: str, depth: int) -> Expression:
        """The conditions on one field: a plain value (``$eq``) or a dict of operators."""
        self._depth(depth, path)
        if not isinstance(condition, Mapping):
            self._count(path)
            return Compare(field, "$eq", _scalar(condition, path, "$eq"), path)
        if not condition:
            raise InvalidFilterError(
                f"{path} is an empty dict: give an operator such as {{'$eq': ...}} or a plain value.", path
            )
        terms: list[Expression] = []
        for operator, operand in condition.items():
            where = f"{path}[{json.dumps(operator) if isinstance(operator, str) else repr(operator)}]"
            terms.append(self.operator(field, operator, operand, where, depth))
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def operator(self, field: str, operator: Any, operand: Any, path: str, depth: int) -> Expression:
        if operator == "$not":
            if not isinstance(operand, Mapping):
                raise InvalidFilterError(
                    f"{path} must be a dict of operators such as {{'$gt': 2020}}, got "
                    f"{type(operand).__name__} {_show(operand)}.",
                    path,
                )
            return Not(self.field(field, operand, path, depth + 1))
        if operator not in FIELD_OPERATORS:
            near = " (a logical operator: put it at the top of a filter)" if operator in LOGICAL_OPERATORS else ""
            raise InvalidFilterError(
                f"{path}: unknown operator {operator!r}{near}. Operators on a field are {', '.join(FIELD_OPERATORS)}.",
                path,
            )
        self._count(path)
        if operator == "$exists":
            if not isinstance(operand, bool):
                raise InvalidFilterError(
                    f"{path} must be True or False, got {type(operand).__name__} {_show(operand)}.", path
                )
            return Exists(field, operand, path)
        if operator in ("$in", "$nin"):
            return Member(field, _values(operand, path), operator == "$nin", path)
        return Compare(field, operator, _scalar(operand, path, operator), path)


def _scalar(value: Any, path: str, operator: str) -> Scalar:
    """A comparison's operand: a string, a finite number or (for equality) a bool; NumPy scalars too."""
    module = type(value).__module__
    if module == "numpy" and hasattr(value, "item"):
        value = value.item()
    if operator in ORDERINGS:
        if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return _finite(value, path)
        raise InvalidFilterError(
            f"{path} must be a number or a string, got {type(value).__name__} {_show(value)}. Ordering "
            "operators compare numbers with numbers and strings with strings.",
            path,
        )
    if isinstance(value, (str, int, float, bool)):
        return _finite(value, path)
    if value is None:
        raise InvalidFilterError(
            f"{path} is None: missing values are not compared. Use {{'$exists': False}} for documents "
            "without the field.",
            path,
        )
    raise InvalidFilterError(
        f"{path} must be a string, a number or a bool, got {type(value).__name__} {_show(value)}. Use "
        "$in for a list of values.",
        path,
    )


def _finite(value: Scalar, path: str) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidFilterError(f"{path} must be a finite number, got {value!r}.", path)
    return value


def _values(operand: Any, path: str) -> tuple[Scalar, ...]:
    if type(operand).__module__ == "numpy" and type(operand).__name__ == "ndarray":
        operand = operand.tolist()
    if not isinstance(operand, (list, tuple, set, frozenset)):
        raise InvalidFilterError(
            f"{path} must be a list of values, got {type(operand).__name__} {_show(operand)}.", path
        )
    if not operand:
        raise InvalidFilterError(
            f"{path} is empty: it would match nothing (or everything, for $nin). Give at least one value.", path
        )
    if len(operand) > MAX_VALUES:
        raise InvalidFilterError(
            f"{path} lists {len(operand)} values, more than {MAX_VALUES} (MAX_VALUES). To allow a set of "
            "documents pass their keys as the filter itself (filter=[key, ...]).",
            path,
        )
    items = sorted(operand, key=repr) if isinstance(operand, (set, frozenset)) else list(operand)
    return tuple(dict.fromkeys(_scalar(item, f"{path}[{number}]", "$eq") for number, item in enumerate(items)))


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
