"""A saved ``TfidfVectorizer`` kept as its parameters, vocabulary and idf until scikit-learn is needed.

Loading a save of a :class:`~cherche_faiss.retrieve.TfIdf` and answering a
query needs the vectorizer's vocabulary, idf and analyzer, not scikit-learn
(whose import costs about a second in a fresh interpreter). The safe format's
loader therefore returns a :class:`DeferredTfidfVectorizer` for the settings it
checks completely without scikit-learn (:meth:`DeferredTfidfVectorizer.from_params`);
``TfIdf`` builds the real ``TfidfVectorizer`` from it only when something needs
one (fitting or transforming documents, ``retriever.tfidf``, ``repr``, pickling).

This module imports neither scikit-learn nor the persistence package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..exceptions import IncompatibleStateError
from ._tfidf_analyzers import Analyzer, compiled_token_pattern, query_analyzer

__all__ = ["DEFAULT_PARAMS", "DeferredTfidfVectorizer", "direct_query_plan", "is_fitted", "vocabulary_of"]

#: ``TfidfVectorizer()``'s parameters and defaults (unchanged from scikit-learn 1.3 to 1.9; a
#: test compares them with the installed version), sorted by name as ``get_params()`` gives them.
DEFAULT_PARAMS: dict[str, Any] = {
    "analyzer": "word",
    "binary": False,
    "decode_error": "strict",
    "dtype": np.float64,
    "encoding": "utf-8",
    "input": "content",
    "lowercase": True,
    "max_df": 1.0,
    "max_features": None,
    "min_df": 1,
    "ngram_range": (1, 1),
    "norm": "l2",
    "preprocessor": None,
    "smooth_idf": True,
    "stop_words": None,
    "strip_accents": None,
    "sublinear_tf": False,
    "token_pattern": r"(?u)\b\w\w+\b",
    "tokenizer": None,
    "use_idf": True,
    "vocabulary": None,
}

_BOOLEANS = ("binary", "lowercase", "smooth_idf", "sublinear_tf", "use_idf")
_CHOICES: dict[str, tuple] = {
    "analyzer": ("word", "char", "char_wb"),
    "decode_error": ("strict", "ignore", "replace"),
    "input": ("content",),  # "file" and "filename" are valid, but left to scikit-learn
    "norm": ("l1", "l2", None),
    "strip_accents": (None, "ascii", "unicode"),
}
# Left to scikit-learn whenever they are set: callables cannot be saved, and stop words and a
# fixed vocabulary change how the analyzer and the vocabulary are built.
_NONE_ONLY = ("preprocessor", "tokenizer", "stop_words", "vocabulary")


def _document_frequency_bound(value: Any) -> bool:
    """scikit-learn's rule for ``min_df`` / ``max_df``: a float in [0, 1] or an int >= 1."""
    if type(value) is float:
        return 0.0 <= value <= 1.0  # False for NaN
    return type(value) is int and value >= 1


def _plain_dtype(value: Any) -> bool:
    return isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic))


def _accepted(params: dict[str, Any]) -> bool:
    """Whether scikit-learn accepts every parameter (its ``_validate_params``, its n-gram range
    check and the analyzer it builds), judged here only for plain values: anything this
    function is unsure of returns False, and scikit-learn judges it instead."""
    for name in _BOOLEANS:
        if type(params[name]) is not bool:
            return False
    for name, choices in _CHOICES.items():
        value = params[name]
        if not (value is None or type(value) is str) or value not in choices:
            return False
    if any(params[name] is not None for name in _NONE_ONLY):
        return False
    if type(params["encoding"]) is not str or not _plain_dtype(params["dtype"]):
        return False
    if not (_document_frequency_bound(params["min_df"]) and _document_frequency_bound(params["max_df"])):
        return False
    max_features = params["max_features"]
    if max_features is not None and not (type(max_features) is int and max_features >= 1):
        return False
    token_pattern = params["token_pattern"]
    if params["analyzer"] == "word":
        if compiled_token_pattern(token_pattern) is None:  # scikit-learn compiles it for every word analyzer
            return False
    elif not (token_pattern is None or type(token_pattern) is str):
        return False
    return query_analyzer(params) is not None  # n-gram range included


class DeferredTfidfVectorizer:
    """A ``TfidfVectorizer``'s parameters and fitted state, without scikit-learn.

    Build one with :meth:`from_params` (and :meth:`set_fitted`); :meth:`build`
    makes the scikit-learn object.

    Attributes
    ----------
    params
        Every constructor parameter, sorted by name (``TfidfVectorizer.get_params()``).
    terms
        The vocabulary's terms by column, or None before fitting.
    vocabulary
        ``{term: column}`` (``vocabulary_``), or None before fitting.
    idf
        The idf of each column (``idf_``) when ``use_idf``, else None.
    fixed_vocabulary
        scikit-learn's ``fixed_vocabulary_``.
    """

    __slots__ = ("fixed_vocabulary", "idf", "params", "terms", "vocabulary")

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.terms: list[str] | None = None
        self.vocabulary: dict[str, int] | None = None
        self.idf: np.ndarray | None = None
        self.fixed_vocabulary = False

    @classmethod
    def from_params(cls, params: Any) -> DeferredTfidfVectorizer | None:
        """A deferred vectorizer when scikit-learn would accept ``params`` and this module can
        answer queries with them exactly; None otherwise (let scikit-learn build and judge them).

        Parameters
        ----------
        params
            Saved constructor parameters (missing ones take scikit-learn's defaults).
        """
        if not isinstance(params, dict) or not all(type(name) is str and name in DEFAULT_PARAMS for name in params):
            return None
        full = {name: params.get(name, default) for name, default in DEFAULT_PARAMS.items()}
        return cls(full) if _accepted(full) else None

    def set_fitted(
        self, terms: list[str], vocabulary: dict[str, int], idf: np.ndarray | None, fixed_vocabulary: bool
    ) -> None:
        """Give it the vocabulary and idf of a fitted vectorizer (already checked by the loader)."""
        self.terms, self.vocabulary, self.idf, self.fixed_vocabulary = terms, vocabulary, idf, fixed_vocabulary

    def build(self) -> Any:
        """The scikit-learn ``TfidfVectorizer`` these parameters and this state describe.

        Raises
        ------
        IncompatibleStateError
            The installed scikit-learn refuses the saved parameters (only a version other than
            the ones this module was checked against could).
        """
        from sklearn.feature_extraction.text import TfidfVectorizer

        try:
            vectorizer = TfidfVectorizer(**self.params)
            if self.vocabulary is not None:
                vectorizer.vocabulary_ = self.vocabulary
                if self.idf is not None:
                    vectorizer.idf_ = self.idf
                vectorizer.fixed_vocabulary_ = self.fixed_vocabulary
        except (TypeError, ValueError) as error:
            import sklearn

            raise IncompatibleStateError(
                f"scikit-learn {sklearn.__version__} cannot rebuild the saved TF-IDF vectorizer ({error}). "
                "Load the save with the scikit-learn version that wrote it, or rebuild the retriever."
            ) from None
        return vectorizer

    def __repr__(self) -> str:
        fitted = f"{len(self.vocabulary)} terms" if self.vocabulary is not None else "not fitted"
        return f"DeferredTfidfVectorizer(analyzer={self.params['analyzer']!r}, {fitted})"


def is_fitted(vectorizer: Any) -> bool:
    """Whether ``vectorizer`` (scikit-learn's or deferred) has a vocabulary."""
    if isinstance(vectorizer, DeferredTfidfVectorizer):
        return vectorizer.vocabulary is not None
    return hasattr(vectorizer, "vocabulary_")


def vocabulary_of(vectorizer: Any) -> Mapping[str, int] | None:
    """The ``{term: column}`` vocabulary of ``vectorizer``, or None before fitting."""
    if isinstance(vectorizer, DeferredTfidfVectorizer):
        return vectorizer.vocabulary
    return getattr(vectorizer, "vocabulary_", None)


def _standard_weighting(params: Mapping[str, Any]) -> bool:
    # Raw counts times idf, L2-normalised: what the direct query path computes.
    return params["norm"] == "l2" and params["use_idf"] and not params["sublinear_tf"] and not params["binary"]


def direct_query_plan(vectorizer: Any) -> tuple[Analyzer, Mapping[str, int], np.ndarray] | None:
    """``(analyzer, vocabulary, idf)`` for computing a query's TF-IDF row directly, or None
    when only the vectorizer's own ``transform`` gives it (other weightings, subclasses).

    A deferred vectorizer never needs scikit-learn here. For a scikit-learn
    ``TfidfVectorizer`` whose analyzer :mod:`._tfidf_analyzers` does not
    reproduce, its own ``build_analyzer()`` is used.
    """
    if isinstance(vectorizer, DeferredTfidfVectorizer):
        if vectorizer.vocabulary is None or not _standard_weighting(vectorizer.params):
            return None
        analyzer = query_analyzer(vectorizer.params)
        if analyzer is None:  # from_params admits only what query_analyzer reproduces
            return None
        return analyzer, vectorizer.vocabulary, np.asarray(vectorizer.idf, dtype=np.float64)
    from sklearn.feature_extraction.text import TfidfVectorizer  # already imported: it made this object

    if type(vectorizer) is not TfidfVectorizer:
        return None
    params = vectorizer.get_params(deep=False)
    if not _standard_weighting(params):
        return None
    analyzer = query_analyzer(params) or vectorizer.build_analyzer()
    return analyzer, vectorizer.vocabulary_, np.asarray(vectorizer.idf_, dtype=np.float64)
