"""The key field a pipeline or fusion shares with its members.

Cherche's ``rank.CrossEncoder`` takes no ``key``: it reads texts, not keys.
Ours has an optional one (to look up the text of bare hits), and a member
built without it takes the key of the pipeline or fusion it joins (through
its ``_adopt_key`` method). Members built with different keys cannot be
combined: their hits would not name the same documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._core.tags import QUERY, READER, tags
from ..exceptions import InvalidInputError

__all__ = ["adopts_key", "shared_key", "give_key"]


def adopts_key(model: Any) -> bool:
    """Whether ``model`` has no key yet and can take one from what it joins."""
    return getattr(model, "key", None) is None and callable(getattr(model, "_adopt_key", None))


def shared_key(models: Sequence[Any], owner: str) -> str | None:
    """The one key field of ``models``, given to those without one.

    Returns None when no model has a key yet but every one can take one later
    (a fusion of cross-encoders, keyed by the pipeline it joins).

    Raises
    ------
    InvalidInputError
        Two models have different keys, or a model has no key and cannot take one.
    """
    keys = {getattr(model, "key", None) for model in models} - {None}
    if len(keys) > 1:
        raise InvalidInputError(
            f"the models of a {owner} must share one key field, got {sorted(map(str, keys))}. "
            "Build every model with the same key=..."
        )
    for model in models:
        if tags(model).role == QUERY:
            raise InvalidInputError(
                f"{type(model).__name__} rewrites queries and cannot be fused in a {owner}: put it in front "
                "of the fusion instead, e.g. rewriter + (retriever_a | retriever_b)."
            )
        if tags(model).role == READER:
            raise InvalidInputError(
                f"{type(model).__name__} reads answers in documents and cannot be fused in a {owner}: put it "
                "at the end of the pipeline instead, e.g. (retriever_a | retriever_b) + documents + reader."
            )
    keyless = [model for model in models if getattr(model, "key", None) is None]
    unable = [model for model in keyless if not adopts_key(model)]
    if unable:
        raise InvalidInputError(
            f"the models of a {owner} must share one key field, but {type(unable[0]).__name__} has none. "
            "Build it with key=... (the documents' id field)."
        )
    if not keys:
        return None
    key = str(next(iter(keys)))
    give_key(keyless, key)
    return key


def give_key(models: Sequence[Any], key: str) -> None:
    """Give ``key`` to each of ``models`` that has none yet."""
    for model in models:
        if adopts_key(model):
            model._adopt_key(key)
