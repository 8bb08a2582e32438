"""Fuzz retriever: RapidFuzz's fuzzy string matching, as Cherche's ``retrieve.Fuzz``."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from .._core.optional import require
from .._core.validation import as_documents, document_texts
from ..exceptions import IncompatibleStateError, InvalidInputError
from ._hits import make_hits
from .base import Retriever

__all__ = ["Fuzz", "FUZZ_SCORERS"]

#: The scorers of ``rapidfuzz.fuzz`` a Fuzz retriever takes by name (or as the function itself).
FUZZ_SCORERS = (
    "ratio",
    "partial_ratio",
    "token_sort_ratio",
    "token_set_ratio",
    "token_ratio",
    "partial_token_sort_ratio",
    "partial_token_set_ratio",
    "partial_token_ratio",
    "WRatio",
    "QRatio",
)
# rapidfuzz.distance's metrics, each with these functions ("Levenshtein.normalized_similarity" ...).
_METRICS = ("Levenshtein", "Indel", "Hamming", "Jaro", "JaroWinkler", "DamerauLevenshtein", "OSA", "LCSseq")
_FUNCTIONS = ("similarity", "normalized_similarity", "distance", "normalized_distance")


def _scorer_names() -> list[str]:
    return [*FUZZ_SCORERS, *(f"{metric}.{function}" for metric in _METRICS for function in _FUNCTIONS)]


def _scorer_named(name: str) -> Callable:
    rapidfuzz = require("rapidfuzz", "retrieve.Fuzz")
    bare = name.removeprefix("fuzz.").removeprefix("distance.")
    if bare in FUZZ_SCORERS:
        return getattr(rapidfuzz.fuzz, bare)
    metric, _, function = bare.partition(".")
    if metric in _METRICS and function in _FUNCTIONS:
        return getattr(getattr(rapidfuzz.distance, metric), function)
    raise InvalidInputError(
        f"fuzzer {name!r} is not a rapidfuzz scorer. Pass one of {', '.join(_scorer_names())}, or the function "
        "itself (e.g. rapidfuzz.fuzz.partial_ratio)."
    )


def _name_of(scorer: Callable) -> str | None:
    """The name of one of rapidfuzz's scorers (None for any other callable)."""
    rapidfuzz = require("rapidfuzz", "retrieve.Fuzz")
    for name in FUZZ_SCORERS:
        if scorer is getattr(rapidfuzz.fuzz, name):
            return name
    for metric in _METRICS:
        for function in _FUNCTIONS:
            if scorer is getattr(getattr(rapidfuzz.distance, metric), function):
                return f"{metric}.{function}"
    return None


class Fuzz(Retriever):
    """Rank every document by a RapidFuzz score of the query against its text.

    The text of a document is its ``on`` fields joined by spaces (a missing
    field reads as empty), cleaned by RapidFuzz's ``default_process``
    (lower case, letters and digits only) when ``default_process=True``;
    the query is cleaned the same way (Cherche cleans only the documents, so
    that "Paris" scored low against "paris"). Every document gets a score: ``k``
    keeps the best. Uses ``rapidfuzz`` (a dependency of the library, imported when first needed).

    Parameters
    ----------
    key
        Field holding each document's unique id.
    on
        Field(s) matched against the query.
    fuzzer
        The scorer: a function of ``rapidfuzz.fuzz`` (``fuzz.partial_ratio``,
        ``fuzz.ratio``, ``fuzz.WRatio``, ``fuzz.token_set_ratio`` ...) or of
        ``rapidfuzz.distance`` (``Levenshtein.normalized_similarity`` ...), or its
        name (``"partial_ratio"``, ``"Levenshtein.normalized_similarity"``);
        it is kept as its name, which a save stores. Any other callable
        ``scorer(query, text, **kwargs) -> float`` works too (but cannot be
        saved with :func:`cherche_faiss.save`). With a distance (lower is
        better) hits are still best first and ``"similarity"`` holds the distance.
    default_process
        Clean documents and queries with ``rapidfuzz.utils.default_process``.
    k
        Default number of hits; ``None`` returns every document.

    Examples
    --------
    >>> from cherche_faiss import retrieve
    >>> documents = [
    ...     {"id": 0, "title": "Paris", "article": "Eiffel tower"},
    ...     {"id": 1, "title": "Paris", "article": "Paris is in France."},
    ...     {"id": 2, "title": "Montreal", "article": "Montreal is in Canada."},
    ... ]
    >>> retriever = retrieve.Fuzz(key="id", on=["title", "article"], fuzzer="partial_ratio").add(documents)
    >>> retriever("Paris", k=2)
    [{'id': 0, 'similarity': 100.0}, {'id': 1, 'similarity': 100.0}]
    >>> [[hit["id"] for hit in hits] for hits in retriever(["montreal", "eifel"], k=1)]
    [[2], [0]]
    """

    def __init__(
        self,
        key: str,
        on: Any,
        fuzzer: Any = "partial_ratio",
        default_process: bool = True,
        k: int | None = None,
        filter_fields: Any = None,
    ) -> None:
        super().__init__(key=key, on=on, k=k, batch_size=1024, filter_fields=filter_fields)
        if isinstance(fuzzer, str):
            _scorer_named(fuzzer)  # refuse an unknown name now
            fuzzer = fuzzer.removeprefix("fuzz.").removeprefix("distance.")
        elif not callable(fuzzer):
            raise InvalidInputError(f"fuzzer must be a rapidfuzz scorer or its name, got {fuzzer!r}.")
        else:
            fuzzer = _name_of(fuzzer) or fuzzer
        self.fuzzer = fuzzer
        self.default_process = bool(default_process)
        self._texts: dict[Hashable, str] = {}  # key -> cleaned text, in the order first added
        self._choices: tuple[list[Hashable], list[str]] | None = None  # keys and texts, cached for searches

    def __len__(self) -> int:
        return len(self._texts)

    def _scorer(self) -> Callable:
        return _scorer_named(self.fuzzer) if isinstance(self.fuzzer, str) else self.fuzzer

    def _clean(self, texts: list[str]) -> list[str]:
        if not self.default_process:
            return texts
        process = require("rapidfuzz", "retrieve.Fuzz").utils.default_process
        return [process(text) for text in texts]

    def add(self, documents: Sequence[Mapping], **kwargs: Any) -> Fuzz:
        """Add ``documents``; a key added again has its text replaced, in its place.

        Returns
        -------
        Fuzz
            ``self``.
        """
        documents = as_documents(documents, self.key, self.on)
        texts = self._clean(document_texts(documents, self.on))  # type: ignore[arg-type]
        self._texts.update(zip((document[self.key] for document in documents), texts))
        self._choices = None
        self._keyed_columns().upsert(documents, self.key)
        return self

    def _search(self, queries: list[str], k: int | None, **options: Any) -> list[list[dict]]:
        extract = require("rapidfuzz", "retrieve.Fuzz").process.extract
        if self._choices is None:
            self._choices = (list(self._texts), list(self._texts.values()))
        keys, choices = self._choices
        scorer = self._scorer()
        results = []
        for query in self._clean(queries):
            # extract orders by score, ties by position: as Cherche's, from the same list of texts.
            matches = extract(query, choices, scorer=scorer, processor=None, limit=k or len(choices))
            results.append(
                make_hits(self.key, [keys[index] for _, _, index in matches], [float(score) for _, score, _ in matches])
            )
        return results

    def _get_state(self) -> dict[str, Any]:
        return {**self.__dict__, "_choices": None}

    def _check_loaded(self) -> None:
        if not isinstance(self._texts, dict) or not all(isinstance(text, str) for text in self._texts.values()):
            raise IncompatibleStateError("the saved texts of this Fuzz are not a dict of keys to strings.")
        self._choices = None
