"""BM25's tokenizers and checks of bm25s models (the helpers of :mod:`.bm25`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..exceptions import IncompatibleStateError, InvalidInputError, MissingDependencyError
from ._deferred_vectorizer import DEFAULT_PARAMS
from ._tfidf_analyzers import WordBoundedAnalyzer, query_analyzer

__all__ = ["bm25s_module", "check_bm25s_scores", "check_settings", "make_tokenizer"]

_TOKENIZERS = ("word", "char")
_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


def check_settings(
    tokenizer: Any, stopwords: Any, stemmer: Any, ngram_range: Any, method: Any, k1: Any, b: Any, delta: Any
) -> None:
    """Refuse BM25 settings bm25s or the tokenizers cannot use, naming what is expected."""
    if not callable(tokenizer) and tokenizer not in _TOKENIZERS:
        raise InvalidInputError(f"tokenizer must be 'word', 'char' or a callable str -> list[str], got {tokenizer!r}.")
    if (
        stopwords is not None
        and not isinstance(stopwords, str)
        and not (isinstance(stopwords, (list, tuple)) and all(isinstance(word, str) for word in stopwords))
    ):
        raise InvalidInputError(
            f"stopwords must be a language such as 'en', a list of words, or None; got {stopwords!r}."
        )
    if stemmer is not None and not isinstance(stemmer, str):
        raise InvalidInputError(f"stemmer must be a Snowball language such as 'english', or None; got {stemmer!r}.")
    if (
        not isinstance(ngram_range, (tuple, list))
        or len(ngram_range) != 2
        or not all(type(n) is int for n in ngram_range)
        or not 1 <= ngram_range[0] <= ngram_range[1]
    ):
        raise InvalidInputError(f"ngram_range must be (min, max) with 1 <= min <= max, got {ngram_range!r}.")
    if method not in _METHODS:
        raise InvalidInputError(f"method must be one of {_METHODS}, got {method!r}.")
    for name, value in (("k1", k1), ("b", b), ("delta", delta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise InvalidInputError(f"{name} must be a non-negative number, got {value!r}.")


def bm25s_module() -> Any:
    try:
        import bm25s
    except ImportError:  # pragma: no cover - a core dependency
        raise MissingDependencyError("retrieve.BM25 needs bm25s: `pip install bm25s`.") from None
    return bm25s


def check_bm25s_scores(model: Any, documents: int) -> None:
    """The score matrix of a loaded bm25s model is well formed (its compiled search trusts it)."""
    # Anything a damaged save holds (None included): what cannot be indexed is caught below as not well formed.
    scores: Any = getattr(model, "scores", None)
    try:
        data, indices, indptr = (np.asarray(scores[name]) for name in ("data", "indices", "indptr"))
        well_formed = (
            scores["num_docs"] == documents
            and data.ndim == indices.ndim == indptr.ndim == 1
            and len(data) == len(indices)
            and indptr.dtype.kind in "iu"
            and indices.dtype.kind in "iu"
            and len(indptr) >= 1
            and indptr[0] == 0
            and indptr[-1] == len(data)
            and not (np.diff(indptr) < 0).any()
            and (not len(indices) or (indices.min() >= 0 and indices.max() < documents))
            and np.isfinite(data).all()
        )
    except (TypeError, KeyError, ValueError, IndexError):
        well_formed = False
    if not well_formed:
        raise IncompatibleStateError(
            f"the saved bm25s score matrix of this BM25 is damaged or does not index {documents} documents."
        )


# bm25s.tokenize's default token pattern (scikit-learn's).
_TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")


def _word_tokenizer(
    stopwords: frozenset[str], stem: Callable[[list[str]], list[str]] | None
) -> Callable[[list[str]], list[list[str]]]:
    """``bm25s.tokenize(texts, stopwords=..., stemmer=..., return_ids=False)``, token for token, without
    its progress bars (three per call, which cost more than tokenizing one query): lower-cased words
    of two characters or more, stop words removed, then each distinct word stemmed once."""
    findall = _TOKEN_PATTERN.findall

    def tokenize(texts: list[str]) -> list[list[str]]:
        tokenized = [[token for token in findall(text.lower()) if token not in stopwords] for text in texts]
        if stem is None:
            return tokenized
        distinct = list(dict.fromkeys(token for tokens in tokenized for token in tokens))
        stems = dict(zip(distinct, stem(distinct)))
        return [[stems[token] for token in tokens] for tokens in tokenized]

    return tokenize


def _char_tokenizer(ngram_range: tuple[int, ...]) -> Callable[[list[str]], list[list[str]]]:
    """scikit-learn's ``char_wb`` analyzer, lower-cased (as ``TfidfVectorizer(analyzer="char_wb")``
    builds it), without importing scikit-learn; each distinct word's n-grams taken once a call."""
    analyzer = query_analyzer({**DEFAULT_PARAMS, "analyzer": "char_wb", "ngram_range": ngram_range})
    if not isinstance(analyzer, WordBoundedAnalyzer):  # pragma: no cover - query_analyzer takes these settings
        from sklearn.feature_extraction.text import TfidfVectorizer

        built = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range, lowercase=True).build_analyzer()
        return lambda texts: [built(text) for text in texts]
    words = analyzer

    def tokenize(texts: list[str]) -> list[list[str]]:
        known: dict[str, list[str]] = {}
        tokenized = []
        for text in texts:
            grams: list[str] = []
            for word in words.prepare(text).split():
                of_word = known.get(word)
                if of_word is None:
                    of_word = known[word] = words.word_ngrams(word)
                grams += of_word
            tokenized.append(grams)
        return tokenized

    return tokenize


def make_tokenizer(
    tokenizer: str | Callable[[str], list[str]],
    stopwords: str | list[str] | None,
    stemmer_language: str | None,
    ngram_range: tuple[int, ...],
) -> Callable[[list[str]], list[list[str]]]:
    """The function ``texts -> tokens of each text`` of :class:`~cherche_faiss.retrieve.BM25`'s settings."""
    if callable(tokenizer):
        function = tokenizer
        return lambda texts: [list(function(text)) for text in texts]
    if tokenizer == "char":
        return _char_tokenizer(tuple(ngram_range))
    bm25s = bm25s_module()
    stemmer = None
    if stemmer_language is not None:
        try:
            import Stemmer
        except ImportError:
            raise MissingDependencyError(
                f"stemmer={stemmer_language!r} needs PyStemmer: `pip install PyStemmer`, or pass stemmer=None."
            ) from None
        stemmer = Stemmer.Stemmer(stemmer_language).stemWords
    infer_stopwords = getattr(bm25s.tokenization, "_infer_stopwords", None)
    if infer_stopwords is None:  # pragma: no cover - another bm25s: its own tokenizer
        return lambda texts: bm25s.tokenize(
            texts, stopwords=stopwords or [], stemmer=stemmer, return_ids=False, show_progress=False
        )
    return _word_tokenizer(frozenset(infer_stopwords(stopwords or [])), stemmer)
