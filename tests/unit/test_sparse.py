"""TfIdf and BM25 score a batch as a batch (cherche_faiss.retrieve._sparse), with the old hits.

The reference is the algorithm the batched path replaced, written out here query by query:
TfIdf's float64 ``bincount`` (short queries) or float32 one-row scipy product (long ones), and
bm25s's own ``get_scores``; both followed by an exact sort (score, then document order). The
batched path must give the same bits, on random corpora full of ties, alone or in any batch,
through numpy and through numba (when installed)."""

from __future__ import annotations

import importlib.util
import json
import random

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import cherche_faiss
import cherche_faiss.retrieve.tfidf as tfidf_module
from cherche_faiss import retrieve
from cherche_faiss.retrieve import _sparse
from cherche_faiss.retrieve._tfidf_analyzers import WordBoundedAnalyzer, query_analyzer
from cherche_faiss.retrieve.tfidf import sklearn_vectorizer

from ..helpers import run_in_a_fresh_cpu_only_process

HAS_NUMBA = importlib.util.find_spec("numba") is not None
MODES = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed"))]
ALPHABET = "abcde"


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    """Each test runs through numpy and scipy, then through the numba kernels."""
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", request.param)
    return request.param


def random_corpus(seed: int, documents: int = 60) -> tuple[list[dict], list[str]]:
    """Documents of short words over a small alphabet (n-grams shared by many documents), some of
    them repeated (exact ties), and queries: known words, unknown ones, empty and blank texts."""
    generator = random.Random(seed)

    def text(words: int) -> str:
        return " ".join(
            "".join(generator.choice(ALPHABET) for _ in range(generator.randint(1, 7))) for _ in range(words)
        )

    corpus = [{"id": f"d{i}", "text": text(generator.randint(1, 12))} for i in range(documents)]
    for i in range(0, documents, 7):  # exact duplicates of earlier documents: tied scores
        corpus[i] = {"id": corpus[i]["id"], "text": corpus[generator.randrange(documents)]["text"]}
    queries = [text(generator.randint(1, 6)) for _ in range(25)]
    queries += ["zzz qqq", "", "   ", queries[0], queries[3] + " " + queries[3], "AbC, dE!"]
    return corpus, queries


def ranked(scores: np.ndarray, keys: list, k: int | None) -> list[dict]:
    """The old hits: positive scores, best first, ties by document order, the first k."""
    order = sorted((column for column in range(len(scores)) if scores[column] > 0), key=lambda c: (-scores[c], c))
    return [{"id": keys[column], "similarity": float(scores[column])} for column in order[:k]]


def old_tfidf_scores(retriever: retrieve.TfIdf, query: str) -> np.ndarray:
    """TfIdf's scoring before batching: the query's terms (scikit-learn's vectorizer: its counts in
    order of first appearance; NgramVectorizer: its analysis of the query alone, columns ascending),
    then one bincount in float64, or past _BINCOUNT_POSTINGS entries one float32 scipy product."""
    if isinstance(retriever.tfidf, retrieve.NgramVectorizer):
        columns, weights = retriever.tfidf._analyse([query])[0]
    else:
        analyzer, vocabulary, idf = retriever._fast_transform()
        counts: dict[int, int] = {}
        for gram in analyzer(query):
            column = vocabulary.get(gram)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
        weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) * idf[columns]
        norm = np.sqrt(weights @ weights)
        weights = weights / norm if norm > 0 else weights
    matrix_t = retriever._matrix.T.tocsr()
    starts, ends = matrix_t.indptr[columns], matrix_t.indptr[columns + 1]
    if int((ends - starts).sum()) > tfidf_module._BINCOUNT_POSTINGS:
        order = np.argsort(columns)
        index_dtype = matrix_t.indices.dtype
        row = sp.csr_matrix(
            (weights[order].astype(np.float32), columns[order].astype(index_dtype), np.array([0, len(columns)])),
            shape=(1, matrix_t.shape[0]),
        )
        return (row @ matrix_t).toarray()[0]
    positions = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)] + [np.zeros(0, dtype=np.int64)])
    contributions = matrix_t.data[positions] * np.repeat(weights, ends - starts)
    return np.bincount(matrix_t.indices[positions], weights=contributions, minlength=len(retriever)).astype(np.float32)


def old_bm25_scores(retriever: retrieve.BM25, query: str) -> np.ndarray:
    """bm25s's scores of the query's tokens (what BM25 ranked before batching)."""
    tokens = retriever._tokenize([query])[0]
    if not tokens:
        return np.zeros(len(retriever), dtype=np.float32)
    return retriever._model.get_scores(tokens)


def tfidf(corpus: list[dict], setting: str = "cherche") -> retrieve.TfIdf:
    """TfIdf with its default vectorizer (Cherche's) or scikit-learn's (the default before)."""
    vectorizer = sklearn_vectorizer() if setting == "sklearn" else None
    return retrieve.TfIdf(key="id", on="text", documents=corpus, tfidf=vectorizer)


SETTINGS = ["cherche", "sklearn"]


# -- TfIdf ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [1 << 15, 40])
def test_tfidf_batch_equals_the_old_algorithm_query_by_query(mode, setting, seed, threshold, monkeypatch):
    monkeypatch.setattr(tfidf_module, "_BINCOUNT_POSTINGS", threshold)
    corpus, queries = random_corpus(seed)
    retriever = tfidf(corpus, setting)
    keys = [document["id"] for document in corpus]
    expected_scores = [old_tfidf_scores(retriever, query) for query in queries]
    for k in (1, 3, 40, 500, None):  # 500: more than any query matches
        expected = [ranked(scores, keys, k) for scores in expected_scores]
        assert retriever(queries, k=k) == expected, k
    if threshold == 40:  # both arithmetics in one batch: short queries in float64, long ones in float32
        analysed = _sparse.Queries(*_sparse.concatenate(retriever._analyse(queries)), wide=np.zeros(0, dtype=bool))
        work = _sparse.query_work(retriever._postings, analysed)
        assert (work > threshold).any() and ((work <= threshold) & (work > 0)).any()
    assert retriever(["zzz qqq", ""]) == [[], []]  # no known n-gram: no hit
    ties = [hits for hits in retriever(queries) if len({h["similarity"] for h in hits}) < len(hits)]
    assert ties  # the corpus has tied scores, broken by document order


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("seed", range(3))
def test_tfidf_answers_a_query_alone_as_in_any_batch(mode, setting, seed, monkeypatch):
    monkeypatch.setattr(tfidf_module, "_BINCOUNT_POSTINGS", 40)
    corpus, queries = random_corpus(seed)
    retriever = tfidf(corpus, setting)
    batch = retriever(queries, k=5)
    assert [retriever(query, k=5) for query in queries] == batch
    shuffled = list(range(len(queries)))
    random.Random(seed).shuffle(shuffled)
    assert retriever([queries[i] for i in shuffled], k=5) == [batch[i] for i in shuffled]
    assert retriever(queries, k=5, batch_size=4) == batch


def test_tfidf_chunks_of_a_batch_give_the_same_hits(mode, monkeypatch):
    corpus, queries = random_corpus(7)
    retriever = tfidf(corpus)
    whole = retriever(queries, k=4)
    monkeypatch.setattr(_sparse, "_DENSE_CELLS", 3 * len(corpus) + 1)  # 3 queries a chunk
    calls = counting(monkeypatch, "_search_compiled", "_score_block")
    assert retriever(queries, k=4) == whole
    assert sum(calls.values()) == -(-len(queries) // 3)


def counting(monkeypatch, *names: str) -> dict[str, int]:
    """Count the calls of these functions of _sparse (still called)."""
    calls = dict.fromkeys(names, 0)

    def wrap(name, function):
        def counted(*args):
            calls[name] += 1
            return function(*args)

        return counted

    for name in names:
        monkeypatch.setattr(_sparse, name, wrap(name, getattr(_sparse, name)))
    return calls


def test_a_batch_is_scored_in_one_pass_per_chunk(monkeypatch):
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numpy")
    monkeypatch.setattr(tfidf_module, "_BINCOUNT_POSTINGS", 40)
    corpus, queries = random_corpus(1)
    retriever = tfidf(corpus)
    calls = counting(monkeypatch, "_bincount_group", "_score_narrow")
    expected = retriever(queries)
    assert calls == {"_bincount_group": 1, "_score_narrow": 1}  # one of each for the batch, not one per query
    monkeypatch.setattr(_sparse, "_BINCOUNT_BATCH", 50)  # a bounded gather: several bincounts, the same hits
    calls.update(_bincount_group=0, _score_narrow=0)
    assert retriever(queries) == expected and calls["_bincount_group"] > 2


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_the_numba_path_splits_a_batch_over_threads_with_the_same_hits(monkeypatch):
    corpus, queries = random_corpus(2, documents=300)
    for document in corpus[::2]:  # n-grams of "common" in half the documents: dense rows
        document["text"] += " common"
    queries = [query + " commons" for query in queries]
    retriever = tfidf(corpus)
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numpy")
    expected = retriever(queries, k=7)
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numba")
    monkeypatch.setattr(_sparse, "_THREAD_POSTINGS", 1)
    monkeypatch.setattr(_sparse, "_cores", lambda: 3)
    submitted = []
    pool = _sparse._pool()
    monkeypatch.setattr(_sparse, "_pool", lambda: submitted.append(1) or pool)
    assert retriever(queries, k=7) == expected
    assert len(submitted) == 3
    arrays = retriever._postings.compiled(_sparse._state["kernels"])
    assert len(arrays[4]) > 0  # n-grams in half the documents or more were read from dense rows


def test_word_bounded_analyzer_splits_texts_word_by_word():
    params = {"analyzer": "char_wb", "ngram_range": (2, 5), "lowercase": True, "strip_accents": "unicode"}
    analyzer = query_analyzer({**params, "input": "content", "token_pattern": None})
    assert isinstance(analyzer, WordBoundedAnalyzer)
    for text in ["Île-de-France,\u00a0PARIS!", "  a\tb\n ccc  ", "", "ǅemal ΣΑΣ"]:
        by_word = [gram for word in analyzer.prepare(text).split() for gram in analyzer.word_ngrams(word)]
        assert analyzer(text) == by_word


def test_a_call_takes_the_n_grams_of_each_distinct_word_once(monkeypatch):
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numpy")  # the Python analysis; the compiled one: test_compiled_analysis
    corpus, queries = random_corpus(4)
    retriever = tfidf(corpus, "sklearn")
    expected = [old_tfidf_scores(retriever, query) for query in queries]
    words: list[str] = []
    word_ngrams = WordBoundedAnalyzer.word_ngrams
    monkeypatch.setattr(
        WordBoundedAnalyzer, "word_ngrams", lambda self, word: words.append(word) or word_ngrams(self, word)
    )
    keys = [document["id"] for document in corpus]
    assert retriever(queries) == [ranked(scores, keys, None) for scores in expected]
    distinct = {word for query in queries for word in query.lower().split()}
    assert sorted(words) == sorted(distinct)  # a query repeated, or a word in several queries: analysed once


# -- selection -----------------------------------------------------------------------------------
blocks = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.lists(st.sampled_from([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0]), min_size=n, max_size=n), max_size=6),
        st.one_of(st.none(), st.integers(1, n + 3)),
    )
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(case=blocks)
def test_top_k_equals_an_exact_sort(case):
    rows, k = case
    n = len(rows[0]) if rows else 1
    scores = np.array(rows, dtype=np.float32).reshape(len(rows), n)
    columns, values = _sparse.top_k_dense(scores, k)
    columns, values = [found.tolist() for found in columns], [found.tolist() for found in values]
    for row, found, found_values in zip(scores, columns, values):
        expected = sorted((c for c in range(n) if row[c] > 0), key=lambda c: (-row[c], c))[:k]
        assert found == expected and found_values == [float(row[c]) for c in expected]
    if HAS_NUMBA and len(rows):
        from cherche_faiss.retrieve import _sparse_numba

        width = n if k is None else min(k, n)
        for row, found in zip(scores, columns):
            out_columns, out_values = np.empty(width, dtype=np.int64), np.empty(width, dtype=np.float32)
            heap = np.empty(width, dtype=np.float32), np.empty(width, dtype=np.int64)
            count = _sparse_numba._select(row, width, *heap, out_columns, out_values)
            assert out_columns[:count].tolist() == found


# -- BM25 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "settings_",
    [
        {},
        {"method": "robertson"},  # negative idf: negative and zero scores
        {"method": "bm25+"},  # a non-occurrence score added to every document
        {"method": "bm25l", "k1": 0.9, "b": 0.4},
        {"method": "atire", "stopwords": None, "stemmer": None},
        {"tokenizer": "char", "ngram_range": (2, 4)},
    ],
)
def test_bm25_batch_equals_bm25s_query_by_query(mode, seed, settings_):
    corpus, queries = random_corpus(seed)
    queries += ["the of and", "a"]  # stop words only: an empty query for the word tokenizer
    retriever = retrieve.BM25(key="id", on="text", documents=corpus, **settings_)
    keys = [document["id"] for document in corpus]
    expected_scores = [old_bm25_scores(retriever, query) for query in queries]
    for k in (1, 4, 500, None):
        expected = [ranked(scores, keys, k) for scores in expected_scores]
        assert retriever(queries, k=k) == expected, k
    assert [retriever(query, k=4) for query in queries] == retriever(queries, k=4)


_TEXT = "aAbBzZ éÉİıßΣς ǅ½\u00a0\t\n-_.,'0123 the and ab running runs"
token_texts = st.lists(st.text(alphabet=st.sampled_from(_TEXT), max_size=30), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    texts=token_texts,
    stopwords=st.sampled_from(["en", None, ["the", "ab"]]),
    stemmer=st.sampled_from(["english", None]),
)
def test_the_word_tokenizer_equals_bm25s(texts, stopwords, stemmer):
    import bm25s
    import Stemmer

    retriever = retrieve.BM25(key="id", on="text", stopwords=stopwords, stemmer=stemmer)
    stem = Stemmer.Stemmer(stemmer).stemWords if stemmer else None
    expected = bm25s.tokenize(texts, stopwords=stopwords or [], stemmer=stem, return_ids=False, show_progress=False)
    assert retriever._tokenize(texts) == expected


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(texts=token_texts, ngram_range=st.sampled_from([(3, 5), (1, 1), (2, 4), (1, 8)]))
def test_the_character_tokenizer_equals_scikit_learn(texts, ngram_range):
    from sklearn.feature_extraction.text import TfidfVectorizer

    retriever = retrieve.BM25(key="id", on="text", tokenizer="char", ngram_range=ngram_range)
    analyzer = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range, lowercase=True).build_analyzer()
    assert retriever._tokenize(texts + texts[:1]) == [analyzer(text) for text in texts + texts[:1]]


# -- loading numba -------------------------------------------------------------------------------
def test_the_numpy_path_is_kept_until_the_work_repays_numba(monkeypatch):
    monkeypatch.delenv("CHERCHE_FAISS_SPARSE", raising=False)
    monkeypatch.setitem(_sparse._state, "kernels", None)
    monkeypatch.setitem(_sparse._state, "failed", False)
    monkeypatch.setitem(_sparse._state, "spent", 0.0)
    monkeypatch.setattr(_sparse, "_ACCELERATE_SECONDS", 1.0)
    monkeypatch.setattr(_sparse, "_SECONDS_PER_POSTING", 1e-9)
    assert _sparse._kernels(10**8) is None  # a call of about 0.1 s: not yet
    corpus, queries = random_corpus(5)
    retriever = tfidf(corpus)
    retriever(queries)
    assert 0 < _sparse._state["spent"] < 1.0 and _sparse._state["kernels"] is None  # the numpy path's time, counted
    assert (_sparse._kernels(10**9) is not None) == HAS_NUMBA  # a call that would take a second: numba
    monkeypatch.setitem(_sparse._state, "kernels", None)
    monkeypatch.setitem(_sparse._state, "spent", 0.99)
    assert (_sparse._kernels(2 * 10**7) is not None) == HAS_NUMBA  # the time spent so far, and this call's
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numpy")
    assert _sparse._kernels(10**12) is None


_COLD = """
import json, sys
import cherche_faiss
search = cherche_faiss.load(sys.argv[1])
queries = json.loads(sys.argv[2])
answers = {"alone": [search(query) for query in queries], "batch": search(queries)}
print(json.dumps({"numba": "numba" in sys.modules, "answers": answers}))
"""


def test_a_loaded_tfidf_answers_without_importing_numba(tmp_path, monkeypatch):
    monkeypatch.delenv("CHERCHE_FAISS_SPARSE", raising=False)
    corpus, queries = random_corpus(3)
    retriever = retrieve.TfIdf(key="id", on="text", documents=corpus, k=5)
    folder = cherche_faiss.save(retriever, tmp_path / "tfidf")
    report = run_in_a_fresh_cpu_only_process(_COLD, str(folder), json.dumps(queries))
    assert report["numba"] is False
    expected = json.loads(json.dumps(retriever(queries)))
    assert report["answers"] == {"alone": expected, "batch": expected}
