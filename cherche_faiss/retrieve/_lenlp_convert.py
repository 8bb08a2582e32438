"""lenlp's vectorizers, as Cherche users pass them to ``TfIdf`` and ``BM25``, read into an equal
:class:`~cherche_faiss.retrieve.NgramVectorizer`.

lenlp keeps its settings and vocabulary in a Rust object; they are read through its public methods
(``__getnewargs__``, ``vocabulary``) and its Python attributes (``idf``, ``k1``, ``b``, ``epsilon``,
``average_len``). The vocabulary's columns are renumbered in :class:`NgramVectorizer`'s order (lenlp
numbers them in hash order, different in every process).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidInputError, NotIndexedError
from ._packed_ngrams import Alphabet, codepoints, pack_terms
from .vectorizer import NgramVectorizer, term_order

__all__ = ["from_lenlp"]

_LENLP_CLASSES = {"CountVectorizer": "count", "TfidfVectorizer": "tfidf", "BM25Vectorizer": "bm25"}


def from_lenlp(vectorizer: Any, fitted: bool) -> NgramVectorizer | None:
    """The :class:`NgramVectorizer` equal to a lenlp vectorizer (its settings, and its vocabulary and
    weights when ``fitted``), or None when ``vectorizer`` is not one of lenlp's three classes."""
    kind = type(vectorizer)
    weighting = _LENLP_CLASSES.get(kind.__name__)
    if weighting is None or not kind.__module__.startswith("lenlp.sparse"):
        return None
    sizes, analyzer, stop_words, normalize = vectorizer.sparse_matrix.__getnewargs__()
    if not sizes or list(sizes) != list(range(min(sizes), max(sizes) + 1)):
        raise InvalidInputError(f"this lenlp vectorizer's n-gram sizes {sizes} are not a range (min, max).")
    params: dict[str, Any] = {
        "analyzer": analyzer,
        "ngram_range": (min(sizes), max(sizes)),
        "normalize": bool(normalize),
    }
    params.update(stop_words=stop_words, weighting=weighting)
    if weighting == "bm25":
        params.update(k1=vectorizer.k1, b=vectorizer.b, epsilon=vectorizer.epsilon)
    converted = NgramVectorizer(**params)
    if not fitted:
        return converted
    if not (vectorizer.fitted if weighting == "count" else getattr(vectorizer, "idf", None) is not None):
        raise NotIndexedError("fit=False but the lenlp vectorizer given is not fitted. Fit it first, or pass fit=True.")
    vocabulary = vectorizer.vocabulary
    terms = [""] * len(vocabulary)
    for term, column in vocabulary.items():
        terms[column] = term
    idf = None if weighting == "count" else np.asarray(vectorizer.idf, dtype=np.float64).reshape(-1)
    order = np.arange(len(terms))
    points, _ = codepoints(terms)
    alphabet = Alphabet.of(points)
    if analyzer != "word" and alphabet.fits(params["ngram_range"][1]) and all(terms):
        keys = pack_terms(terms, alphabet)
        order = np.argsort(keys, kind="stable")
        converted._alphabet, converted._keys = alphabet.characters, keys[order]
    else:
        order = np.asarray(sorted(range(len(terms)), key=lambda column: term_order(terms[column])), dtype=np.int64)
        converted._terms = [terms[column] for column in order.tolist()]
    converted.idf = None if idf is None else idf[order]
    if weighting == "bm25":
        converted.average_len = float(vectorizer.average_len)
    converted._check_loaded()
    return converted
