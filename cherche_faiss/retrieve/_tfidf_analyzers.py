"""scikit-learn's text analyzers for the standard settings, written without scikit-learn.

Importing ``sklearn.feature_extraction.text`` takes about a second in a fresh
interpreter, which a loaded TF-IDF retriever would pay on its first query only
to split that query into terms. For the settings listed below this module
splits a text exactly as ``TfidfVectorizer(...).build_analyzer()`` does (a
property test compares both on random unicode text); for any other setting
:func:`query_analyzer` returns None and the caller uses scikit-learn.

Reproduced: ``analyzer`` ``"char_wb"``, ``"char"`` or ``"word"`` (any
``token_pattern`` with at most one group), ``ngram_range`` of two ints
``1 <= min_n <= max_n``, ``lowercase``, ``strip_accents`` None, ``"ascii"``
or ``"unicode"``, ``input="content"``. Not reproduced: callables
(``analyzer``, ``preprocessor``, ``tokenizer``, ``strip_accents``),
``stop_words``, ``input`` ``"file"`` / ``"filename"``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "WordBoundedAnalyzer",
    "char_ngrams",
    "char_wb_ngrams",
    "compiled_token_pattern",
    "query_analyzer",
    "word_ngrams",
]

Analyzer = Callable[[str], list[str]]

# scikit-learn replaces each run of two or more whitespace characters by one space before
# taking character n-grams (a lone tab or newline stays as it is).
_WHITESPACE_RUN = re.compile(r"\s\s+")


def char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """Character n-grams of each word padded with one space on each side (``analyzer="char_wb"``).

    A padded word no longer than ``n`` gives itself once, as a single short
    n-gram, and no longer n-grams (scikit-learn's rule: larger ``n`` would
    only repeat it).
    """
    # scikit-learn collapses whitespace runs first; str.split() already splits on runs, and the
    # regex \s and str.split() agree on every code point, so that step changes nothing here.
    # Plain loops: twice as fast as comprehensions or map() on these short slices.
    grams: list[str] = []
    append = grams.append
    for word in text.split():
        padded = " " + word + " "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            if length <= n:
                append(padded)
                break
            for start in range(length - n + 1):
                append(padded[start : start + n])
    return grams


def char_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """Character n-grams of the whole text, whitespace runs collapsed (``analyzer="char"``), by n then position."""
    text = _WHITESPACE_RUN.sub(" ", text)
    length = len(text)
    grams: list[str] = []
    append = grams.append
    for n in range(min_n, min(max_n, length) + 1):
        for start in range(length - n + 1):
            append(text[start : start + n])
    return grams


def word_ngrams(tokens: list[str], min_n: int, max_n: int) -> list[str]:
    """Token n-grams joined by one space (``analyzer="word"``): the tokens themselves when
    ``min_n == 1``, then longer n-grams, by n then position."""
    if max_n == 1:
        return tokens
    grams = list(tokens) if min_n == 1 else []
    append = grams.append
    count = len(tokens)
    for n in range(max(min_n, 2), min(max_n, count) + 1):
        for start in range(count - n + 1):
            append(" ".join(tokens[start : start + n]))
    return grams


def _strip_accents_unicode(text: str) -> str:
    # NFKD splits accented letters into a base letter and combining marks; the marks are dropped.
    if text.isascii():  # NFKD leaves ASCII unchanged: skip the work
        return text
    return "".join([char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char)])


def _strip_accents_ascii(text: str) -> str:
    # NFKD, then every character without an ASCII form is dropped.
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


_STRIP_ACCENTS: dict[Any, Callable[[str], str] | None] = {
    None: None,
    "ascii": _strip_accents_ascii,
    "unicode": _strip_accents_unicode,
}


def compiled_token_pattern(pattern: Any) -> re.Pattern | None:
    """``pattern`` compiled when scikit-learn's word tokenizer accepts it (a string with at
    most one capturing group: ``findall`` then returns whole matches or that group), else None."""
    if type(pattern) is not str:
        return None
    try:
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None
    return compiled if compiled.groups <= 1 else None


def _ngram_bounds(value: Any) -> tuple[int, int] | None:
    if type(value) is not tuple or len(value) != 2 or not all(type(bound) is int for bound in value):
        return None
    min_n, max_n = value
    return (min_n, max_n) if 1 <= min_n <= max_n else None


def query_analyzer(params: Mapping[str, Any]) -> Analyzer | None:
    """The analyzer of a ``TfidfVectorizer`` with these ``get_params()``, or None where this
    module does not reproduce scikit-learn's exactly (then use ``build_analyzer()``).

    Parameters
    ----------
    params
        Every parameter of the vectorizer, as ``get_params()`` gives them.

    Returns
    -------
    callable or None
        ``analyzer(text) -> list[str]``, equal to scikit-learn's ``build_analyzer()(text)``
        element for element.
    """
    kind = params.get("analyzer")
    bounds = _ngram_bounds(params.get("ngram_range"))
    strip_accents = params.get("strip_accents")
    lowercase = params.get("lowercase")
    if (
        kind not in ("char_wb", "char", "word")
        or type(kind) is not str
        or bounds is None
        or params.get("input") != "content"
        or params.get("preprocessor") is not None
        or params.get("tokenizer") is not None
        or params.get("stop_words") is not None
        or type(lowercase) is not bool
        or not (strip_accents is None or type(strip_accents) is str)
        or strip_accents not in _STRIP_ACCENTS
    ):
        return None
    min_n, max_n = bounds
    # scikit-learn lower-cases first, then strips accents.
    steps = [step for step in (str.lower if lowercase else None, _STRIP_ACCENTS[strip_accents]) if step is not None]
    if kind == "word":
        pattern = compiled_token_pattern(params.get("token_pattern"))
        if pattern is None:
            return None
        findall = pattern.findall

        def analyze_words(text: str) -> list[str]:
            for step in steps:
                text = step(text)
            return word_ngrams(findall(text), min_n, max_n)

        return analyze_words
    if kind == "char_wb":
        return WordBoundedAnalyzer(steps, min_n, max_n)

    def analyze_characters(text: str) -> list[str]:
        for step in steps:
            text = step(text)
        return char_ngrams(text, min_n, max_n)

    return analyze_characters


class WordBoundedAnalyzer:
    """``analyzer="char_wb"``: the text prepared (lower-cased, accents stripped), then the
    n-grams of each of its words, one word after another.

    A caller analysing many texts can therefore take the n-grams of each distinct word once:
    ``analyzer(text) == [gram for word in analyzer.prepare(text).split() for gram in analyzer.word_ngrams(word)]``.
    """

    __slots__ = ("max_n", "min_n", "steps")

    def __init__(self, steps: list[Callable[[str], str]], min_n: int, max_n: int) -> None:
        self.steps, self.min_n, self.max_n = steps, min_n, max_n

    def prepare(self, text: str) -> str:
        """The text as scikit-learn has it before taking n-grams (whitespace runs included)."""
        for step in self.steps:
            text = step(text)
        return text

    def word_ngrams(self, word: str) -> list[str]:
        """The n-grams of one word (a string without whitespace) of a prepared text."""
        return char_wb_ngrams(word, self.min_n, self.max_n)

    def __call__(self, text: str) -> list[str]:
        return char_wb_ngrams(self.prepare(text), self.min_n, self.max_n)
