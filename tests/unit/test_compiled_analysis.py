"""TfIdf's compiled query analysis (retrieve/_compiled_analysis.py, numba) gives the terms and weights of
the Python analysis, bit for bit, and steps aside for the settings it does not serve."""

from __future__ import annotations

import importlib.util
import random
from collections import Counter

import numpy as np
import pytest

from cherche_faiss import retrieve
from cherche_faiss.retrieve._compiled_analysis import PackedVocabulary
from cherche_faiss.retrieve._deferred_vectorizer import DEFAULT_PARAMS
from cherche_faiss.retrieve._tfidf_analyzers import query_analyzer
from cherche_faiss.retrieve.tfidf import sklearn_vectorizer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")

# Words over an alphabet mixing ASCII, accents, Greek, CJK, an emoji and a lone surrogate.
CHARACTERS = "abcdeé-.,'0ΑβγδЖ中文😀\ud800"
SPACES = [" ", "  ", "\t", "\n", "\u2003", "\x1c", " \t "]


def texts(seed: int, count: int, characters: str = CHARACTERS) -> list[str]:
    generator = random.Random(seed)

    def word() -> str:
        return "".join(generator.choice(characters) for _ in range(generator.randint(1, 12)))

    made = []
    for _ in range(count):
        words = [word() for _ in range(generator.randint(0, 8))]
        made.append("".join(w + generator.choice(SPACES) for w in words) + generator.choice(["", "!", " "]))
    return made


def both_analyses(retriever: retrieve.TfIdf, queries: list[str], monkeypatch) -> tuple[list, list]:
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numpy")
    python = retriever._analyse(queries)
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numba")
    compiled = retriever._analyse(queries)
    assert retriever._packed is not None and retriever._packed is not False  # the compiled path ran
    return python, compiled


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ngram_range", [(3, 7), (1, 3), (2, 5)])
def test_the_compiled_analysis_equals_the_python_one(seed, ngram_range, monkeypatch):
    from sklearn.feature_extraction.text import TfidfVectorizer

    documents = [{"id": i, "text": text} for i, text in enumerate(texts(seed, 80))]
    vectorizer = TfidfVectorizer(lowercase=True, analyzer="char_wb", ngram_range=ngram_range, dtype=np.float32)
    retriever = retrieve.TfIdf(key="id", on="text", documents=documents, tfidf=vectorizer)
    queries = texts(seed + 100, 40) + texts(seed, 10) + ["", "   ", "zzzz qqqq", "ÉCOLE École", "a", "ab"]
    queries += [queries[3] + " " + queries[3], "x" * 40 + " " + queries[1]]
    python, compiled = both_analyses(retriever, queries, monkeypatch)
    for query, (columns, weights), (compiled_columns, compiled_weights) in zip(queries, python, compiled):
        assert compiled_columns.dtype == columns.dtype and compiled_weights.dtype == weights.dtype
        assert compiled_columns.tolist() == columns.tolist(), query
        assert compiled_weights.tobytes() == weights.tobytes(), query
    assert any(len(columns) for columns, _ in python)  # queries do share n-grams with the documents


def test_hits_are_the_same_through_either_analysis(monkeypatch):
    documents = [{"id": f"d{i}", "text": text} for i, text in enumerate(texts(7, 120))]
    retriever = retrieve.TfIdf(key="id", on="text", documents=documents, k=10)
    queries = texts(8, 60)
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numpy")
    expected = retriever(queries)
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numba")
    assert retriever(queries) == expected and [retriever(query) for query in queries] == expected


def test_query_terms_count_first_appearances():
    from cherche_faiss.retrieve import _ngrams_numba

    generator = np.random.default_rng(0)
    words = [generator.integers(0, 50, size=generator.integers(0, 30)) for _ in range(40)]
    column_ptr = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum([len(w) for w in words], out=column_ptr[1:])
    columns = np.concatenate(words).astype(np.int64)
    queries = [generator.integers(0, len(words), size=generator.integers(0, 12)) for _ in range(30)]
    query_ptr = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum([len(q) for q in queries], out=query_ptr[1:])
    terms, counts, ptr = _ngrams_numba.query_terms(
        query_ptr, np.concatenate(queries).astype(np.int64), columns, column_ptr
    )
    for number, query in enumerate(queries):
        expected = Counter(int(c) for word in query for c in words[word])
        a, b = ptr[number], ptr[number + 1]
        assert list(zip(terms[a:b].tolist(), counts[a:b].tolist())) == list(expected.items())


def test_settings_it_does_not_serve_keep_the_python_analysis(monkeypatch):
    from cherche_faiss.retrieve import _ngrams_numba

    vocabulary = {"abc": 0, " ab": 1}
    idf = np.ones(2)
    word = query_analyzer({**DEFAULT_PARAMS, "analyzer": "word", "ngram_range": (1, 1)})
    characters = query_analyzer({**DEFAULT_PARAMS, "analyzer": "char", "ngram_range": (1, 3)})
    assert word is not None and characters is not None
    assert PackedVocabulary.build(_ngrams_numba, word, vocabulary, idf) is None
    assert PackedVocabulary.build(_ngrams_numba, characters, vocabulary, idf) is None
    wide = query_analyzer({**DEFAULT_PARAMS, "analyzer": "char_wb", "ngram_range": (3, 7)})
    many = {chr(0x4E00 + i) * 3: i for i in range(600)}  # 600 characters: 10 bits each, 70 > 63
    assert PackedVocabulary.build(_ngrams_numba, wide, many, np.ones(600)) is None
    assert PackedVocabulary.build(_ngrams_numba, wide, vocabulary, idf) is not None
    documents = [{"id": i, "text": "".join(chr(0x4E00 + (3 * i + j) % 600) for j in range(9))} for i in range(200)]
    retriever = retrieve.TfIdf(key="id", on="text", documents=documents, tfidf=sklearn_vectorizer(), k=3)
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numba")
    retriever._analyse([documents[0]["text"]])
    assert retriever._packed is False  # refused once, remembered; the Python analysis answered
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numpy")
    assert retriever(documents[0]["text"])[0]["id"] == 0
