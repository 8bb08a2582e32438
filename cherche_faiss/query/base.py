"""The base of query rewriters: components that turn queries into better queries."""

from __future__ import annotations

from typing import Any

from .._core.component import Component
from .._core.keywords import check_keywords
from .._core.tags import QUERY, Tags
from .._core.validation import as_queries, check_on
from ..compose.operators import ComposeMixin
from ..exceptions import InvalidInputError

__all__ = ["Query"]


class Query(ComposeMixin, Component):
    """Base of query rewriters: ``rewriter(q)`` returns the rewritten query (a string for a
    string, a list for a list).

    A rewriter goes at the head of a pipeline, as in Cherche:
    ``query.Norvig(...) + retriever + ranker`` searches the corrected queries
    (every later stage reads them). It cannot be fused with ``|``, ``&`` or ``*``:
    put it in front of the fusion instead (``rewriter + (a | b)``).

    Parameters
    ----------
    on
        Field(s) of the documents the rewriter learns from.
    """

    def __cherche_tags__(self) -> Tags:
        return Tags(role=QUERY)

    def __init__(self, on: Any) -> None:
        self.on = check_on(on)

    #: Keyword arguments a call takes besides ``q`` (none: see ``_core.keywords``).
    _call_keywords: frozenset[str] = frozenset()

    def __call__(self, q: Any, **kwargs: Any) -> Any:
        if kwargs:
            check_keywords(self, kwargs, ("q",))
        queries, single = as_queries(q)
        rewritten = self._rewrite(queries)
        return rewritten[0] if single else rewritten

    def _rewrite(self, queries: list[str]) -> list[str]:
        """The rewritten queries, one per query (subclasses implement this)."""
        raise NotImplementedError

    def _refuse(self, operator: str) -> Any:
        raise InvalidInputError(
            f"{type(self).__name__} rewrites queries and cannot be combined with {operator!r}: put it in front "
            f"of the combination instead, e.g. {type(self).__name__.lower()} + (retriever_a | retriever_b)."
        )

    def __or__(self, other: Any) -> Any:
        return self._refuse("|")

    def __and__(self, other: Any) -> Any:
        return self._refuse("&")

    def __mul__(self, other: Any) -> Any:
        return self._refuse("*")
