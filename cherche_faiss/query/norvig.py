"""Norvig's spelling corrector, as Cherche's ``query.Norvig``."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable
from typing import Any

from .._core.optional import require
from .._core.validation import keyless_texts
from ..exceptions import IncompatibleStateError
from .base import Query

__all__ = ["Norvig"]

# The words corrected and counted: runs of letters (digits, punctuation and spacing stay as they are).
_WORD = re.compile(r"[^\W\d_]+")


class Norvig(Query):
    """Correct each word of a query to the most frequent known word within two edits.

    After Peter Norvig's `How to Write a Spelling Corrector
    <https://norvig.com/spell-correct.html>`_: a known word is kept; otherwise
    the most frequent word of the vocabulary one edit away (a deletion,
    insertion, substitution or transposition of adjacent letters) replaces
    it, else the most frequent two edits away, else the word is kept. The
    vocabulary is the words of the documents given to :meth:`add`.

    Compared with Cherche's: words are runs of letters, so punctuation,
    digits and spacing of the query are kept ("paris?" stays "paris?"); with
    ``lower=True`` a word is lower-cased before it is looked up ("Parisa" is
    one edit from "paris", not two); equally frequent candidates are broken
    by the vocabulary's order (Cherche's pick among them varies from run to
    run); and candidates are found with RapidFuzz's Damerau-Levenshtein
    distance over the vocabulary instead of generating every edit (the same
    candidates, with letters outside a-z too, in far less time). Needs
    ``rapidfuzz`` (a dependency of the library, imported when first needed).

    Parameters
    ----------
    on
        Field(s) of the documents whose words make the vocabulary.
    lower
        Lower-case the vocabulary and the words looked up.

    Examples
    --------
    >>> from cherche_faiss import data, query
    >>> corrector = query.Norvig(on=["title", "article"]).add(data.load_towns())
    >>> corrector("tha citi af Parisa is in Fronce")
    'the city of paris is in france'
    >>> corrector(["Bordeau wine", "lyon"])
    ['bordeaux wine', 'lyon']
    """

    def __init__(self, on: Any, lower: bool = True) -> None:
        super().__init__(on=on)
        self.lower = bool(lower)
        self.occurrences: Counter[str] = Counter()
        self._vocabulary: list[str] | None = None  # the words in order, cached for the candidate search

    def _repr_extra(self) -> dict[str, Any]:
        return {"vocabulary": len(self.occurrences)}

    def add(self, documents: Any, **kwargs: Any) -> Norvig:
        """Count the words of ``documents`` (a list of dicts, read on ``on``, or a text).

        Returns
        -------
        Norvig
            ``self``.
        """
        text = documents if isinstance(documents, str) else " ".join(keyless_texts(documents, self.on))
        self.occurrences.update(_WORD.findall(text.lower() if self.lower else text))
        self._vocabulary = None
        return self

    def reset(self) -> Norvig:
        """Forget every word."""
        self.occurrences = Counter()
        self._vocabulary = None
        return self

    def _rewrite(self, queries: list[str]) -> list[str]:
        if not self.occurrences:
            return list(queries)
        corrections: dict[str, str] = {}

        def corrected(match: re.Match) -> str:
            word = match.group()
            if word not in corrections:
                corrections[word] = self.correct(word)
            return corrections[word]

        return [_WORD.sub(corrected, query) for query in queries]

    def correct(self, word: str) -> str:
        """The most probable spelling of ``word``: itself when known, else the most frequent known
        word one edit away, else two edits away, else ``word`` unchanged."""
        probe = word.lower() if self.lower else word
        if probe in self.occurrences:
            return probe
        if self._vocabulary is None:
            self._vocabulary = list(self.occurrences)
        rapidfuzz = require("rapidfuzz", "query.Norvig")
        vocabulary, counts = self._vocabulary, self.occurrences
        matches = rapidfuzz.process.extract(
            probe,
            vocabulary,
            scorer=rapidfuzz.distance.DamerauLevenshtein.distance,
            processor=None,
            score_cutoff=2,
            limit=None,
        )
        if not matches:
            return word
        nearest = min(distance for _, distance, _ in matches)
        candidates = sorted(index for _, distance, index in matches if distance == nearest)
        return max((vocabulary[index] for index in candidates), key=counts.__getitem__)  # first of the most frequent

    # -- persistence ---------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {**self.__dict__, "occurrences": dict(self.occurrences), "_vocabulary": None}

    def _set_state(self, state: dict[str, Any]) -> None:
        occurrences: dict[Hashable, Any] = state.get("occurrences", {})
        if not isinstance(occurrences, dict) or not all(
            isinstance(word, str) and type(count) is int and count > 0 for word, count in occurrences.items()
        ):
            raise IncompatibleStateError("the saved vocabulary of this Norvig is not a dict of words to counts.")
        super()._set_state({**state, "occurrences": Counter(occurrences), "_vocabulary": None})
