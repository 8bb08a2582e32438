"""Flash retriever: FlashText keyword matching of whole fields (tags), as Cherche's ``retrieve.Flash``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .._core.optional import require
from .._core.validation import as_documents, as_text
from ..exceptions import IncompatibleStateError, InvalidTypeError
from ._hits import make_hits
from .base import Retriever

__all__ = ["Flash"]


class Flash(Retriever):
    """Find the documents whose keywords (whole fields, or each item of a list field) occur in the query.

    Each ``on`` field of a document is one keyword (a string field) or several
    (a list of strings: tags, say). A query's keywords are found with
    FlashText in one pass over the query, whatever the number of keywords; a
    document's similarity is its share of the matches: the number of times
    its keywords were found (a keyword it holds in two fields counts twice)
    over the matches of every document, as in Cherche. Uses ``flashtext``
    (a dependency of the library, imported at the first :meth:`add`).

    Parameters
    ----------
    key
        Field holding each document's unique id.
    on
        Field(s) holding the keywords (a string, or a list of strings).
    keywords
        A FlashText ``KeywordProcessor`` to use (its settings and any keywords
        already in it are kept); by default a new case-insensitive one.
    lowercase
        Lower-case keywords and queries.
    k
        Default number of hits; ``None`` returns every matching document.

    Examples
    --------
    >>> from cherche_faiss import retrieve
    >>> documents = [
    ...     {"id": 0, "title": "paris", "tags": ["eiffel tower", "france"]},
    ...     {"id": 1, "title": "paris", "tags": ["paris", "louvre"]},
    ...     {"id": 2, "title": "montreal", "tags": ["canada"]},
    ... ]
    >>> retriever = retrieve.Flash(key="id", on=["title", "tags"]).add(documents)
    >>> retriever("Paris and its Eiffel Tower")
    [{'id': 0, 'similarity': 0.5}, {'id': 1, 'similarity': 0.5}]
    >>> retriever(["paris", "montreal in canada"], k=1)
    [[{'id': 1, 'similarity': 0.666...}], [{'id': 2, 'similarity': 1.0}]]
    """

    def __init__(
        self,
        key: str,
        on: Any,
        keywords: Any = None,
        lowercase: bool = True,
        k: int | None = None,
        filter_fields: Any = None,
    ) -> None:
        super().__init__(key=key, on=on, k=k, batch_size=1024, filter_fields=filter_fields)
        if keywords is not None and not callable(getattr(keywords, "extract_keywords", None)):
            raise InvalidTypeError(
                f"keywords must be a flashtext.KeywordProcessor, got {type(keywords).__name__}. Leave it out for "
                "a new one."
            )
        self.keywords = keywords
        self.lowercase = bool(lowercase)
        self._processor: Any = keywords  # created at the first add when not given
        # key -> its keywords, one per field occurrence, in the order documents were (last) added.
        self._document_keywords: dict[Hashable, list[str]] = {}
        self._postings: dict[str, list[Hashable]] = {}  # keyword -> the key of each occurrence

    def __len__(self) -> int:
        return len(self._document_keywords)

    def _keywords_of(self, document: Mapping) -> list[str]:
        words = []
        for field in self.on:  # type: ignore[union-attr]
            value = document.get(field)
            for item in value if isinstance(value, (list, tuple)) else [value]:
                word = as_text(item)
                word = word.lower() if self.lowercase else word
                if word.strip():  # an empty keyword would match nothing; the document is kept
                    words.append(word)
        return words

    def add(self, documents: Sequence[Mapping], **kwargs: Any) -> Flash:
        """Add the keywords of ``documents`` (a key added again has its keywords replaced).

        Returns
        -------
        Flash
            ``self``.
        """
        documents = as_documents(documents, self.key, self.on)
        if self._processor is None:
            self._processor = require("flashtext", "retrieve.Flash").KeywordProcessor()
        for document in documents:
            key = document[self.key]
            self._forget(key)
            words = self._keywords_of(document)
            self._document_keywords[key] = words
            for word in words:
                keys = self._postings.setdefault(word, [])
                if not keys:
                    self._processor.add_keyword(word)
                keys.append(key)
        self._keyed_columns().upsert(documents, self.key)
        return self

    def _forget(self, key: Hashable) -> None:
        """Take the keywords of ``key`` out (before it is added again)."""
        for word in self._document_keywords.pop(key, ()):
            keys = self._postings.get(word)
            if keys is None:
                continue
            keys[:] = [other for other in keys if other != key]
            if not keys:
                del self._postings[word]
                self._processor.remove_keyword(word)

    def _search(self, queries: list[str], k: int | None, **options: Any) -> list[list[dict]]:
        results = []
        for query in queries:
            found = self._processor.extract_keywords(query.lower() if self.lowercase else query)
            counts: dict[Hashable, int] = {}
            for word in found:
                for key in self._postings.get(word, ()):
                    counts[key] = counts.get(key, 0) + 1
            total = sum(counts.values())
            ranked = sorted(counts, key=lambda key: -counts[key])[:k]  # stable: ties in order of matching
            results.append(make_hits(self.key, ranked, [counts[key] / total for key in ranked]))
        return results

    # -- persistence: the keywords of each document, and the processor's settings and keywords ---------
    def _processor_state(self) -> dict[str, Any]:
        processor = self._processor
        if processor is None:
            return {}
        return {
            "case_sensitive": bool(processor.case_sensitive),
            "non_word_boundaries": "".join(sorted(processor.non_word_boundaries)),
            "keywords": [[word, name] for word, name in processor.get_all_keywords().items()],
        }

    def _save_state(self) -> dict[str, Any]:
        state = {name: value for name, value in self.__dict__.items() if name not in ("_processor", "_postings")}
        # The processor is rebuilt from its settings and keywords: no FlashText object in the save.
        return {**state, "keywords": None, "_processor": self._processor_state(), "_custom": self.keywords is not None}

    def _load_state(self, state: dict[str, Any], context: Any = None) -> None:
        processor_state = state.pop("_processor", {})
        custom = bool(state.pop("_custom", False))
        self._set_state(state)
        self._processor = None
        if processor_state:
            flashtext = require("flashtext", "retrieve.Flash")
            processor = flashtext.KeywordProcessor(case_sensitive=bool(processor_state["case_sensitive"]))
            processor.set_non_word_boundaries(set(processor_state["non_word_boundaries"]))
            for word, name in processor_state["keywords"]:
                processor.add_keyword(str(word), str(name))
            self._processor = processor
        if custom:
            self.keywords = self._processor

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        postings: dict[str, list[Hashable]] = {}
        for key, words in self._document_keywords.items():
            for word in words:
                postings.setdefault(word, []).append(key)
        self._postings = postings

    def _check_loaded(self) -> None:
        if not isinstance(self._document_keywords, dict) or not all(
            isinstance(words, list) and all(isinstance(word, str) for word in words)
            for words in self._document_keywords.values()
        ):
            raise IncompatibleStateError("the saved keywords of this Flash are not a dict of keys to lists of strings.")
        if self._document_keywords and self._processor is None:
            raise IncompatibleStateError("this Flash has saved keywords but no keyword processor.")
