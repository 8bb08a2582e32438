"""Named pipelines for evaluation: BM25, TF-IDF, dense, and their hybrids.

Used by ``cherche-faiss evaluate`` and the quality benchmark, so that the
quality table (docs/quality.md) comes from the command it shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import rank, retrieve
from ..exceptions import InvalidInputError

__all__ = ["RECIPES", "build", "MemoEncoder"]

ON = ["title", "text"]


class MemoEncoder:
    """Remember every text's vector so that several recipes encode a corpus once."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        missing = list(dict.fromkeys(text for text in texts if text not in self.vectors))
        if missing:
            self.vectors.update(zip(missing, self.encoder.encode(missing, batch_size=batch_size)))
        return np.stack([self.vectors[text] for text in texts])

    __call__ = encode


def _bm25(documents: list[dict], encoder: Any, k: int) -> Any:
    return retrieve.BM25(key="id", on=ON, documents=documents, k=k)


def _bm25_cherche(documents: list[dict], encoder: Any, k: int) -> Any:
    vectorizer = retrieve.NgramVectorizer(weighting="bm25", ngram_range=(3, 5))
    return retrieve.BM25(key="id", on=ON, documents=documents, count_vectorizer=vectorizer, k=k)


def _tfidf(documents: list[dict], encoder: Any, k: int) -> Any:
    return retrieve.TfIdf(key="id", on=ON, documents=documents, k=k)


def _tfidf_sklearn(documents: list[dict], encoder: Any, k: int) -> Any:
    from ..retrieve.tfidf import sklearn_vectorizer

    return retrieve.TfIdf(key="id", on=ON, documents=documents, tfidf=sklearn_vectorizer(), k=k)


def _encoder(documents: list[dict], encoder: Any, k: int) -> Any:
    return retrieve.Encoder(key="id", on=ON, encoder=encoder, k=k).add(documents)


def _union(documents: list[dict], encoder: Any, k: int) -> Any:
    return retrieve.BM25(key="id", on=ON, documents=documents, k=k) | _encoder(documents, encoder, k)


def _rerank(documents: list[dict], encoder: Any, k: int) -> Any:
    bm25 = retrieve.BM25(key="id", on=ON, documents=documents, k=k)
    ranker = rank.Encoder(key="id", on=ON, encoder=encoder, k=k).add(documents)
    return bm25 + ranker


#: name -> (builder(documents, encoder, k), needs an encoder, description)
RECIPES: dict[str, tuple[Callable[..., Any], bool, str]] = {
    "bm25": (_bm25, False, "retrieve.BM25 (words, stop words, Snowball stems)"),
    "bm25-cherche": (_bm25_cherche, False, "retrieve.BM25 with Cherche's count_vectorizer (character 3-5-grams)"),
    "tfidf": (_tfidf, False, "retrieve.TfIdf (Cherche's character 3-7-grams)"),
    "tfidf-sklearn": (
        _tfidf_sklearn,
        False,
        "retrieve.TfIdf with scikit-learn's char_wb 3-7-grams (the default before)",
    ),
    "encoder": (_encoder, True, "retrieve.Encoder, exact inner-product index"),
    "bm25|encoder": (_union, True, "retrieve.BM25 | retrieve.Encoder (reciprocal rank fusion)"),
    "bm25+encoder": (_rerank, True, "retrieve.BM25 + rank.Encoder (re-rank BM25's top k)"),
}


def build(name: str, documents: list[dict], encoder: Any = None, k: int = 100) -> Any:
    """Build and fill the recipe ``name`` on ``documents`` (fields ``id``, ``title``, ``text``)."""
    if name not in RECIPES:
        raise InvalidInputError(f"unknown pipeline {name!r}; choose one of {sorted(RECIPES)}.")
    builder, needs_encoder, _ = RECIPES[name]
    if needs_encoder and encoder is None:
        raise InvalidInputError(f"pipeline {name!r} needs an encoder (a model name or folder: --model).")
    return builder(documents, encoder, k)
