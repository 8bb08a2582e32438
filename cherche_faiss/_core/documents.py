"""Documents from any iterable, validated and encoded batch by batch.

Lists are validated whole before anything is encoded, so that a bad document
leaves a model unchanged; a generator is validated batch by batch as it is
read (nothing else is possible without holding it all), so the batches
before a bad document stay added.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np

from ..exceptions import InvalidTypeError
from .validation import as_documents, document_texts

__all__ = ["document_batches", "encoded_batches", "length_of"]


def length_of(documents: Any) -> int | None:
    """``len(documents)`` when it has one (for progress bars), else None."""
    try:
        return len(documents)
    except TypeError:
        return None


def document_batches(
    documents: Iterable[Mapping], key: str, on: Sequence[str] | None, batch_size: int
) -> Iterator[list[Mapping]]:
    """Consecutive validated batches of at most ``batch_size`` documents."""
    if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
        raise InvalidTypeError(
            f"documents must be a list (or any iterable) of dicts, got {type(documents).__name__}. "
            f"Pass e.g. [{{{key!r}: 0, ...}}, ...]."
        )
    if isinstance(documents, Sequence):
        documents = as_documents(documents, key, on)
        for start in range(0, len(documents), batch_size):
            yield documents[start : start + batch_size]
        return
    iterator = iter(documents)
    start = 0
    while batch := list(islice(iterator, batch_size)):
        yield as_documents(batch, key, on, start=start)
        start += len(batch)


def encoded_batches(
    encoder: Any, documents: Iterable[Mapping], key: str, on: Sequence[str], batch_size: int
) -> Iterator[tuple[np.ndarray, list[Hashable]]]:
    """``(vectors, keys)`` of each batch; a key repeated within a batch keeps its last document."""
    for batch in document_batches(documents, key, on, batch_size):
        last = {document[key]: document for document in batch}
        yield encoder.encode(document_texts(list(last.values()), on), batch_size=batch_size), list(last)
