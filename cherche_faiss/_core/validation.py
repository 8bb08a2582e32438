"""Checks shared by the public entry points; each raises a library error whose
message names what was wrong, what was expected and how to fix it."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal, overload

import numpy as np

from ..config import strict_fields
from ..exceptions import DimensionMismatchError, InvalidInputError, InvalidTypeError

try:  # np.einsum without its Python wrapper (which calls it when optimize is off): a single query's norm
    # costs a third of the time, and the numbers are the same, since it is the same function.
    from numpy._core.multiarray import c_einsum as _einsum
except ImportError:  # pragma: no cover - NumPy 1
    _einsum = np.einsum

__all__ = [
    "check_k",
    "per_query_lists",
    "check_positive_int",
    "check_key",
    "check_on",
    "check_component",
    "as_queries",
    "as_documents",
    "document_texts",
    "field_text",
    "as_text",
    "has_text",
    "keyless_texts",
    "as_matrix",
    "check_finite",
    "documents_with_vectors",
    "row_squares",
]


@overload
def check_positive_int(value: Any, name: str, allow_none: Literal[False]) -> int: ...


@overload
def check_positive_int(value: Any, name: str, allow_none: bool = True) -> int | None: ...


def check_positive_int(value: Any, name: str, allow_none: bool = True) -> int | None:
    """Return ``value`` if it is a positive int (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        expected = "a positive integer" + (" or None" if allow_none else "")
        raise InvalidInputError(f"{name} must be {expected}, got {value!r}. Pass e.g. {name}=10.")
    return int(value)


def check_k(k: Any) -> int | None:
    """Validate a number of results (``None`` means "all")."""
    return check_positive_int(k, "k")


def check_key(key: Any) -> str:
    """Validate the name of the documents' id field."""
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"key must be the name of the documents' id field, got {key!r}.")
    return key


def check_component(key: Any, on: Any, k: Any, batch_size: Any) -> tuple[str, list[str] | None, int | None, int]:
    """``key``, ``on`` (None allowed: components that read vectors, not fields), ``k`` and
    ``batch_size``, validated as every retriever and ranker validates them."""
    return (
        check_key(key),
        check_on(on) if on is not None else None,
        check_k(k),
        check_positive_int(batch_size, "batch_size", allow_none=False),
    )


def check_on(on: Any) -> list[str]:
    """Normalise the ``on`` parameter (one field name or a list of them) to a list."""
    fields = [on] if isinstance(on, str) else on
    if not isinstance(fields, (list, tuple)) or not fields or not all(isinstance(f, str) for f in fields):
        raise InvalidInputError(
            f"on must be a field name or a non-empty list of field names, got {on!r}. "
            "Pass e.g. on='title' or on=['title', 'article']."
        )
    return list(fields)


def as_queries(q: Any) -> tuple[list[str], bool]:
    """Return ``(queries, is_single)`` for a query string or a list of them."""
    if isinstance(q, str):
        return [q], True
    if not isinstance(q, (list, tuple)):
        raise InvalidTypeError(
            f"q must be a string or a list of strings, got {type(q).__name__}. "
            "Pass one query as a string, or several as a list of strings."
        )
    if len(q) == 0:
        raise InvalidInputError("q is an empty list: there is nothing to search. Pass at least one query string.")
    for position, query in enumerate(q):
        if not isinstance(query, str):
            raise InvalidTypeError(
                f"q[{position}] must be a string, got {query!r} ({type(query).__name__}). "
                "Every query in the list must be a string."
            )
    return list(q), False


def per_query_lists(documents: Any, n_queries: int, single: bool, noun: str, plural: str, item: str) -> list:
    """``documents`` as one list per query (a single query's list wrapped), or InvalidInputError.

    ``noun`` / ``plural`` name a query in the message ("query" / "queries",
    "question" / "questions") and ``item`` what each list holds.
    """
    lists = [documents] if single else documents
    if not isinstance(lists, list) or len(lists) != n_queries or not all(isinstance(one, list) for one in lists):
        raise InvalidInputError(f"got {n_queries} {plural}: pass documents as one list of {item} per {noun}.")
    return lists


def as_documents(documents: Any, key: str, on: Sequence[str] | None = None, start: int = 0) -> list[Mapping]:
    """Check that ``documents`` is a list of dicts holding ``key``.

    A document missing one of the ``on`` fields is accepted (the field reads as
    an empty string, as in Cherche) unless the ``strict_fields`` setting is on
    (:mod:`cherche_faiss.config`): then it is refused. ``start`` is the
    position of the first document in a longer stream, for the messages.
    """
    if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
        raise InvalidTypeError(
            f"documents must be a list of dicts, got {type(documents).__name__}. Pass e.g. [{{{key!r}: 0, ...}}, ...]."
        )
    documents = list(documents)
    fields: Sequence[str] = (on or ()) if strict_fields() else ()
    for position, document in enumerate(documents, start):
        if not isinstance(document, Mapping):
            raise InvalidTypeError(
                f"documents[{position}] must be a dict, got {type(document).__name__}. "
                "Every document is a dict of fields."
            )
        if key not in document:
            raise InvalidInputError(
                f"documents[{position}] has no key field {key!r} (fields: {sorted(map(str, document))}). "
                f"Every document needs a unique {key!r} value, or set key= to the name of its id field."
            )
        if not isinstance(document[key], Hashable):
            raise InvalidTypeError(
                f"documents[{position}][{key!r}] is a {type(document[key]).__name__}, which cannot "
                "be a key. Use a hashable value (int, str, tuple ...)."
            )
        for field in fields:
            if field not in document:
                raise InvalidInputError(
                    f"documents[{position}] (key {document[key]!r}) has no field {field!r}, one of "
                    f"on={list(fields)}. Add the field (an empty string is fine), remove it from on, or "
                    "turn strict_fields off (cherche_faiss.set_config(strict_fields=False)) to read it as empty."
                )
    return documents


def as_text(value: Any) -> str:
    """A field's value as text: ``""`` for None, else ``str(value)``."""
    return "" if value is None else str(value)


def field_text(document: Mapping, field: str) -> str:
    """The text of one field: ``""`` where it is missing or None, else the value as a string."""
    return as_text(document.get(field))


def document_texts(documents: Sequence[Mapping], on: Sequence[str]) -> list[str]:
    """The text of each document: its ``on`` fields joined by spaces, as in Cherche (a missing
    field, or one holding None, reads as an empty string)."""
    return [" ".join([field_text(document, field) for field in on]) for document in documents]


def keyless_texts(documents: Any, on: Sequence[str]) -> list[str]:
    """The texts of documents read without a key field (what query rewriters learn from), checked
    as :func:`as_documents` checks them."""
    if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
        raise InvalidTypeError(f"documents must be a list of dicts, got {type(documents).__name__}.")
    documents = list(documents)
    for position, document in enumerate(documents):
        if not isinstance(document, Mapping):
            raise InvalidTypeError(
                f"documents[{position}] must be a dict, got {type(document).__name__}. Every document is a dict "
                "of fields."
            )
        missing = [field for field in on if field not in document] if strict_fields() else []
        if missing:
            raise InvalidInputError(
                f"documents[{position}] has no field {missing[0]!r}, one of on={list(on)}. Add the field (an empty "
                "string is fine), remove it from on, or turn strict_fields off."
            )
    return document_texts(documents, on)


def has_text(candidate: Mapping, key: str | None, on: Sequence[str]) -> bool:
    """Whether a candidate handed to a ranker carries a document's text, rather than being a bare hit.

    With ``strict_fields`` on, every ``on`` field must be there. Otherwise a
    candidate holding any ``on`` field, or any field besides its key and
    ``"similarity"`` (a whole document that lacks the ``on`` fields), is read
    with the missing fields empty; a bare hit (``{key, "similarity"}``) is not:
    its text has to come from the documents added to the ranker. Without a
    ``key`` (a cross-encoder built without one) only the ``on`` fields count.
    """
    if strict_fields():
        return all(field in candidate for field in on)
    if any(field in candidate for field in on):
        return True
    return key is not None and any(name not in (key, "similarity") for name in candidate)


def as_matrix(vectors: Any, name: str, dimension: int | None = None, finite: bool = True) -> np.ndarray:
    """Return ``vectors`` as a C-contiguous float32 matrix ``(n, d)``; a 1-D vector is one row.

    ``finite=False`` leaves the check for NaN and infinite values to the caller (:func:`check_finite`).
    """
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InvalidTypeError(
            f"{name} must be a numeric array of shape (n, d), got {type(vectors).__name__} "
            f"that numpy cannot convert to float32 ({error})."
        ) from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise InvalidInputError(
            f"{name} must have shape (n, d) or (d,), got shape {array.shape}. Pass one vector per row."
        )
    if dimension is not None and array.shape[1] != dimension:
        raise DimensionMismatchError(
            f"{name} have dimension {array.shape[1]} but the index holds vectors of dimension "
            f"{dimension}. Encode them with the same model as the indexed documents."
        )
    if finite:
        check_finite(array, name)
    return np.ascontiguousarray(array)


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise :class:`InvalidInputError` naming the first rows of ``array`` that hold NaN or infinite values."""
    if not np.isfinite(array).all():
        rows = np.flatnonzero(~np.isfinite(array).all(axis=1))[:5].tolist()
        raise InvalidInputError(f"{name} contain NaN or infinite values (rows {rows}). Check the encoder's output.")


def row_squares(matrix: np.ndarray) -> np.ndarray:
    """The squared L2 norm of each row of a float32 matrix (float32): what normalisation divides by the root of.

    Every path that normalises vectors computes them here, so that one query normalised alone and
    the same query in a batch are divided by the same norm. A NaN or infinite value makes its
    row's square NaN or infinite (so does a finite value whose square overflows float32).
    """
    return _einsum("ij,ij->i", matrix, matrix)


def documents_with_vectors(documents: Any, vectors: Any, key: str, owner: str) -> tuple[list, np.ndarray]:
    """Keys and vectors given to an ``Embedding`` retriever or ranker's ``add``."""
    if vectors is None:
        raise InvalidInputError(
            f"{owner}.add needs embeddings_documents: one vector per document, e.g. "
            f"{owner.lower()}.add(documents, embeddings_documents=vectors)."
        )
    documents = as_documents(documents, key)
    return [document[key] for document in documents], as_matrix(vectors, "embeddings_documents")
