"""Keyword arguments of a call: which a model uses, and a clear error for the others.

Every call used to take ``**kwargs`` and ignore what it did not use, so a
misspelt ``retriever(q, filtre=...)`` returned unfiltered hits without a word.
Now each component declares the keyword arguments its call uses beyond its
named parameters (``_call_keywords``); a pipeline or fusion accepts the union
over its stages (``_accepted_keywords``) and hands each stage the ones it
takes (Cherche's pass-through of keywords keeps working); any other keyword
raises :class:`~cherche_faiss.exceptions.InvalidTypeError` naming it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from ..exceptions import InvalidTypeError

__all__ = ["call_keywords", "check_keywords", "keywords_for"]


def call_keywords(model: Any) -> frozenset[str] | None:
    """The keyword arguments ``model``'s call uses beyond its named parameters (None: any).

    A composition answers its own (``_accepted_keywords``), a component its
    class's ``_call_keywords``; any other callable its signature's names
    (None when it takes ``**kwargs``).
    """
    accepted = getattr(model, "_accepted_keywords", None)
    if callable(accepted):
        return frozenset(accepted())
    declared = getattr(type(model), "_call_keywords", None)
    if declared is not None:
        return frozenset(declared)
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):
        return None
    names = set()
    for name, parameter in signature.parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            names.add(name)
    return frozenset(names)


def keywords_for(model: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``kwargs`` that ``model`` takes (all of them when it takes any)."""
    if not kwargs:
        return {}
    accepted = call_keywords(model)
    if accepted is None:
        return dict(kwargs)
    return {name: value for name, value in kwargs.items() if name in accepted}


def check_keywords(model: Any, kwargs: Mapping[str, Any], named: Iterable[str] = ()) -> None:
    """Raise :class:`InvalidTypeError` when ``kwargs`` holds a keyword no stage of ``model``'s call uses.

    ``named``: the call's named parameters, listed in the message with the accepted keywords.
    """
    if not kwargs:
        return
    accepted = call_keywords(model)
    if accepted is None:
        return
    unknown = [name for name in kwargs if name not in accepted]
    if not unknown:
        return
    known = sorted({*named, *accepted})
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            hints.append(f" Did you mean {close[0]!r} instead of {name!r}?")
    listed = ", ".join(repr(name) for name in unknown)
    raise InvalidTypeError(
        f"{type(model).__name__} got unexpected keyword argument(s) {listed}: no stage of this call uses "
        f"{'it' if len(unknown) == 1 else 'them'} (they used to be ignored silently). It takes "
        f"{', '.join(known)}.{''.join(hints)}"
    )
