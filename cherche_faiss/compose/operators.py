"""The composition operators every retriever, ranker and pipeline has: ``+``, ``|``, ``&``, ``*``.

``a + b`` runs ``a`` then ``b``, left to right; ``a + documents`` (a list of
dicts) maps the keys of ``a``'s hits back to those documents; ``a | b``,
``a & b`` and ``a * b`` fuse the hits of both (union, intersection, vote).

The classes the operators build (:class:`~cherche_faiss.compose.Pipeline`,
:class:`~cherche_faiss.compose.Union` ...) are themselves composable, so they
register themselves here when their modules are imported (``cherche_faiss.compose``
imports them all) instead of being imported by this module: the import graph
stays acyclic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .._core.tags import tags

__all__ = ["ComposeMixin", "register", "add_once", "needs_documents"]

# operator name -> builder(left, right); filled by pipeline.py and combine.py.
_BUILDERS: dict[str, Callable[[Any, Any], Any]] = {}


def register(operator: str, builder: Callable[[Any, Any], Any]) -> None:
    """Make ``builder(left, right)`` what ``left <operator> right`` returns (``"+"``, ``"|"``, ``"&"``, ``"*"``)."""
    _BUILDERS[operator] = builder


def _build(operator: str, left: Any, right: Any) -> Any:
    return _BUILDERS[operator](left, right)


class ComposeMixin:
    """``+``, ``|``, ``&`` and ``*`` for the library's components (see the module docstring)."""

    def _stages(self) -> list[Any]:
        """What this component contributes to a pipeline built with ``+`` (a pipeline: its stages)."""
        return [self]

    def __add__(self, other: Any) -> Any:
        # Any callable can be a stage, as in Cherche's pipelines (without tags it answers the queries, see tags).
        if isinstance(other, list) or isinstance(other, ComposeMixin) or callable(other):
            return _build("+", self, other)
        return NotImplemented

    def __or__(self, other: Any) -> Any:
        return _build("|", self, other) if isinstance(other, ComposeMixin) else NotImplemented

    def __and__(self, other: Any) -> Any:
        return _build("&", self, other) if isinstance(other, ComposeMixin) else NotImplemented

    def __mul__(self, other: Any) -> Any:
        return _build("*", self, other) if isinstance(other, ComposeMixin) else NotImplemented


def needs_documents(model: Any) -> bool:
    """Whether ``model`` ranks candidates given to it (a ranker) rather than finding its own."""
    return tags(model).needs_candidates


def add_once(models: list[Any], documents: Iterable[Mapping], **kwargs: Any) -> None:
    """Call ``add`` on every model that has one, once per model even if it appears twice.

    Every model reads the documents, so a one-shot iterator (a generator) is
    read into a list first when more than one model needs it.
    """
    unique: dict[int, Any] = {}
    for model in models:
        if callable(getattr(model, "add", None)):
            unique.setdefault(id(model), model)
    if (
        len(unique) > 1
        and not isinstance(documents, Sequence)
        and isinstance(documents, Iterable)
        and not isinstance(documents, Mapping)
    ):
        documents = list(documents)
    for model in unique.values():
        model.add(documents=documents, **kwargs)
