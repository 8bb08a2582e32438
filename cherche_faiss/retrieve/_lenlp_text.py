"""lenlp's text preparation and n-grams (Cherche's ``TfIdf`` and ``BM25``), as lenlp 1.1 computes them.

lenlp (Cherche's dependency, MIT) prepares a text in two steps before taking its n-grams:

1. ``normalize=True``: transliterated to ASCII (``unidecode``), lower-cased, ASCII punctuation
   removed, leading and trailing whitespace trimmed; done here by lenlp's own normaliser (Rust),
   imported on first use (it does not import scikit-learn);
2. ``stop_words``: the text split on whitespace (Unicode ``White_Space``, Rust's ``split_whitespace``),
   the stop words dropped, the rest joined by single spaces.

Its n-grams are then, for ``n`` from ``min_n`` to ``max_n``, every window of ``n`` characters of the
whole prepared text (``"char"``, and ``"char_wb"`` too: lenlp 1.1 takes no word boundaries, pads no
word and keeps runs of spaces), or of ``n`` whitespace-separated words joined by a space
(``"word"``). A text shorter than ``n`` gives no n-gram of that size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..exceptions import MissingDependencyError

__all__ = ["ANALYZERS", "char_ngrams", "normalize", "prepare", "split_words", "word_ngrams"]

ANALYZERS = ("char_wb", "char", "word")

# Unicode White_Space, what Rust's split_whitespace splits on (Python's str.split also splits on
# \x1c-\x1f, which lenlp keeps inside words).
_WHITESPACE = re.compile("[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _normalizer() -> Any:
    try:
        from lenlp.normalizer import normalize as lenlp_normalize
    except ImportError:  # pragma: no cover - a core dependency
        raise MissingDependencyError(
            "NgramVectorizer(normalize=True), TfIdf's default, needs lenlp (Cherche's text library): "
            "`pip install lenlp`."
        ) from None
    return lenlp_normalize


def normalize(texts: list[str]) -> list[str]:
    """lenlp's normalisation of each text: ASCII, lower case, no ASCII punctuation, trimmed.

    A lone surrogate (possible in a Python string, not in valid text) cannot cross into lenlp's
    Rust code: it is replaced by U+FFFD first, which the normaliser drops.
    """
    lenlp_normalize = _normalizer()
    # One text per call: lenlp's batch function spreads a list over a thread pool (rayon), whose
    # start costs more than normalising a few queries and varies with the machine's load.
    try:
        return [lenlp_normalize(text) for text in texts]
    except UnicodeEncodeError:
        return [lenlp_normalize(_SURROGATE.sub("\ufffd", text)) for text in texts]


def split_words(text: str) -> list[str]:
    """``text.split_whitespace()`` in Rust: the words between runs of Unicode whitespace."""
    return [word for word in _WHITESPACE.split(text) if word]


def prepare(texts: list[str], normalized: bool, stop_words: frozenset[str] | None) -> list[str]:
    """The texts as lenlp has them before taking n-grams."""
    if normalized:
        texts = normalize(texts)
    if stop_words is not None:
        texts = [" ".join(word for word in split_words(text) if word not in stop_words) for text in texts]
    return texts


def char_ngrams(text: str, sizes: Iterable[int]) -> list[str]:
    """Every window of ``n`` characters of ``text``, for each ``n`` of ``sizes``."""
    return [text[start : start + n] for n in sizes for start in range(len(text) - n + 1)]


def word_ngrams(text: str, sizes: Iterable[int]) -> list[str]:
    """Every window of ``n`` words of ``text`` joined by a space, for each ``n`` of ``sizes``."""
    words = split_words(text)
    return [" ".join(words[start : start + n]) for n in sizes for start in range(len(words) - n + 1)]
