"""Metadata filters: ``model(q, filter={"year": {"$gte": 2020}})``.

:func:`parse_filter` checks a filter and returns an immutable
:class:`Filter` (see ``docs/filtering.md`` for the language, the fields that
can be filtered on and how searches apply filters).
"""

from __future__ import annotations

from ..exceptions import InvalidFilterError
from ._language import (
    MAX_DEPTH,
    MAX_TERMS,
    MAX_VALUES,
    OPERATORS,
    AllowedKeys,
    And,
    Compare,
    Exists,
    Expression,
    Filter,
    Member,
    Not,
    Or,
    parse_filter,
)

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
    "InvalidFilterError",
    "Member",
    "Not",
    "Or",
    "parse_filter",
]
