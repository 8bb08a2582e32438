"""Library-wide settings: :func:`set_config`, :func:`get_config` and :func:`config_context`.

After scikit-learn's ``set_config``. One setting today:

``strict_fields`` (default ``False``)
    How documents missing one of a component's ``on`` fields are read. By
    default, as in Cherche, a missing field (or one holding ``None``) reads as
    an empty string: the document is indexed, and a document whose ``on``
    fields are all missing or empty is simply never matched by its text.
    With ``strict_fields=True`` every retriever, ranker, query rewriter and
    reader refuses such a document with an
    :class:`~cherche_faiss.exceptions.InvalidInputError` that names it and the
    missing field, before anything is indexed. A missing ``key`` field is an
    error either way.

:func:`set_config` changes the setting for the whole process (every thread);
:func:`config_context` changes it for the code in its ``with`` block only (the
current thread or asyncio task), then restores it.

Examples
--------
>>> import cherche_faiss
>>> from cherche_faiss import retrieve
>>> documents = [{"id": 0, "title": "Paris"}, {"id": 1, "article": "Wine of Bordeaux"}]
>>> retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents)
>>> [hit["id"] for hit in retriever("bordeaux")]
[1]
>>> with cherche_faiss.config_context(strict_fields=True):
...     retrieve.TfIdf(key="id", on=["title", "article"], documents=documents)
Traceback (most recent call last):
...
cherche_faiss.exceptions.InvalidInputError: documents[0] (key 0) has no field 'article', one of ...
>>> cherche_faiss.get_config()
{'strict_fields': False}
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .exceptions import InvalidInputError, InvalidTypeError

__all__ = ["get_config", "set_config", "config_context"]

_DEFAULTS: dict[str, Any] = {"strict_fields": False}
_process: dict[str, Any] = dict(_DEFAULTS)
# Overrides of a config_context block; None outside any block (the process-wide settings apply).
_context: ContextVar[dict[str, Any] | None] = ContextVar("cherche_faiss_config", default=None)


def _checked(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(changes) - set(_DEFAULTS))
    if unknown:
        raise InvalidInputError(f"unknown setting(s) {unknown}; the settings are {sorted(_DEFAULTS)}.")
    for name, value in changes.items():
        if not isinstance(value, bool):
            raise InvalidTypeError(f"{name} must be True or False, got {value!r}.")
    return changes


def get_config() -> dict[str, Any]:
    """The settings in force here (a new dict: changing it changes nothing)."""
    overrides = _context.get()
    return {**_process, **overrides} if overrides else dict(_process)


def set_config(strict_fields: bool | None = None) -> None:
    """Change settings for the whole process; ``None`` leaves a setting as it is.

    Parameters
    ----------
    strict_fields
        Refuse documents missing one of a component's ``on`` fields (default
        ``False``: such a field reads as an empty string, as in Cherche).
    """
    changes = {name: value for name, value in {"strict_fields": strict_fields}.items() if value is not None}
    _process.update(_checked(changes))


@contextmanager
def config_context(**settings: Any) -> Iterator[None]:
    """Change settings inside a ``with`` block only (this thread or asyncio task).

    Parameters
    ----------
    **settings
        ``strict_fields=True`` or ``False``.
    """
    overrides = {**(_context.get() or {}), **_checked(settings)}
    token = _context.set(overrides)
    try:
        yield
    finally:
        _context.reset(token)


def strict_fields() -> bool:
    """Whether documents missing an ``on`` field are refused (the ``strict_fields`` setting)."""
    overrides = _context.get()
    if overrides and "strict_fields" in overrides:
        return bool(overrides["strict_fields"])
    return bool(_process["strict_fields"])
