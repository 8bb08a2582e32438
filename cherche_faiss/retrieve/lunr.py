"""Lunr retriever: lunr.py's full-text index (a Python port of Lunr.js), as Cherche's ``retrieve.Lunr``."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .._core.optional import require
from .._core.validation import as_documents, as_text
from ..exceptions import IncompatibleStateError
from ._hits import make_hits
from .base import Retriever

__all__ = ["Lunr"]

# What a query keeps, as in Cherche: letters, digits, white space and dots. The rest (lunr's query
# syntax: + - : ~ ^ * and other punctuation) becomes a space, so no query is ever a syntax error.
# Unlike Cherche's ASCII-only rule, letters with accents are kept ("Montréal" finds Montréal).
_QUERY_NOISE = re.compile(r"[^\w\s.]|_")


def _field_value(value: Any) -> str | list[str]:
    """A field as lunr reads it: a string, or a list of strings (each tokenised on its own)."""
    if isinstance(value, (list, tuple)):
        return [as_text(item) for item in value]
    return as_text(value)


class Lunr(Retriever):
    """Lunr retriever: lunr.py's inverted index, English stemming and stop words, BM25-like scores.

    Unlike Cherche's, whose index is frozen at construction, this one takes
    more documents with :meth:`add` (a key added again replaces its
    document); the lunr index is rebuilt, from the texts it keeps, at the
    first search after a change. Uses ``lunr`` (a dependency of the
    library, imported when first needed).

    Parameters
    ----------
    key
        Field holding each document's unique id.
    on
        Field(s) indexed, each as a lunr field (a missing field reads as empty).
    documents
        Documents to index right away (Cherche requires them here; here they may
        also come later through :meth:`add`).
    k
        Default number of hits; ``None`` returns every matching document.

    Examples
    --------
    >>> from cherche_faiss import retrieve
    >>> documents = [
    ...     {"id": 0, "title": "Paris", "article": "Eiffel tower"},
    ...     {"id": 1, "title": "Paris", "article": "Paris is in France."},
    ...     {"id": 2, "title": "Montreal", "article": "Montreal is in Canada."},
    ... ]
    >>> retriever = retrieve.Lunr(key="id", on=["title", "article"], documents=documents)
    >>> retriever("paris", k=2)
    [{'id': 1, 'similarity': 0.268}, {'id': 0, 'similarity': 0.134}]
    >>> [[hit["id"] for hit in hits] for hits in retriever(["paris", "canada"])]
    [[1, 0], [2]]
    """

    def __init__(
        self,
        key: str,
        on: Any,
        documents: Sequence[Mapping] | None = None,
        k: int | None = None,
        filter_fields: Any = None,
    ) -> None:
        super().__init__(key=key, on=on, k=k, batch_size=1024, filter_fields=filter_fields)
        self._documents: dict[Hashable, dict[str, Any]] = {}  # key -> {field: text}, in the order added
        self._index: Any = None  # the lunr index, built at the first search after a change
        self._keys: list[Hashable] = []  # the key of each lunr ref ("0", "1" ...) of the built index
        if documents is not None:
            self.add(documents)

    def __len__(self) -> int:
        return len(self._documents)

    def add(self, documents: Sequence[Mapping], **kwargs: Any) -> Lunr:
        """Index ``documents`` (replacing those whose key is already indexed).

        Returns
        -------
        Lunr
            ``self``.
        """
        documents = as_documents(documents, self.key, self.on)
        for document in documents:
            fields = {field: _field_value(document.get(field)) for field in self.on}  # type: ignore[union-attr]
            self._documents[document[self.key]] = fields
        if documents:
            self._index = None
        self._keyed_columns().upsert(documents, self.key)
        return self

    def _built(self) -> Any:
        """The lunr index of the documents held (built when they changed since the last search)."""
        if self._index is None:
            lunr = require("lunr", "retrieve.Lunr").lunr
            self._keys = list(self._documents)
            # Refs are positions, so that keys of any type (1 and "1" included) stay apart.
            reference = "\x00ref"
            self._index = lunr(
                ref=reference,
                fields=tuple(self.on),  # type: ignore[arg-type]
                documents=[
                    {reference: str(position), **fields} for position, fields in enumerate(self._documents.values())
                ],
            )
        return self._index

    def _search(self, queries: list[str], k: int | None, **options: Any) -> list[list[dict]]:
        index = self._built()
        results = []
        for query in queries:
            cleaned = _QUERY_NOISE.sub(" ", query)
            matches = index.search(cleaned)[:k] if cleaned.strip() else []
            results.append(
                make_hits(
                    self.key,
                    [self._keys[int(match["ref"])] for match in matches],
                    [float(match["score"]) for match in matches],
                )
            )
        return results

    def _get_state(self) -> dict[str, Any]:
        # The texts only: the lunr index is rebuilt from them, the same, at the first search.
        return {**self.__dict__, "_index": None, "_keys": []}

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state({**state, "_index": None, "_keys": []})

    def _check_loaded(self) -> None:
        documents = self._documents
        if not isinstance(documents, dict) or not all(
            isinstance(fields, dict) and set(fields) == set(self.on)  # type: ignore[arg-type]
            for fields in documents.values()
        ):
            raise IncompatibleStateError(f"the saved texts of this Lunr are not a dict of keys to {self.on} fields.")
