"""NgramVectorizer gives lenlp's vectors (Cherche's TfIdf and BM25), alone and inside TfIdf and BM25.

lenlp is a core dependency, so the comparisons with its vectorizers run everywhere: the same vocabulary,
the same rows (to float32 rounding) on random unicode text, for every analyzer and weighting. The
packed analysis (numpy, sorted integers) is compared with the plain Python one, a query's analysis alone
with the same query in a batch (bit for bit), and the saves and pickles round trip."""

from __future__ import annotations

import importlib.util
import json
import pickle
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lenlp import sparse

import cherche_faiss
from cherche_faiss import data, retrieve
from cherche_faiss.contract import check_component
from cherche_faiss.exceptions import (
    IncompatibleStateError,
    InvalidInputError,
    InvalidTypeError,
    NotIndexedError,
)
from cherche_faiss.persist import safe
from cherche_faiss.retrieve import NgramVectorizer, _packed_ngrams
from cherche_faiss.retrieve._packed_ngrams import Alphabet
from cherche_faiss.retrieve.tfidf import sklearn_vectorizer

ON = ["title", "article"]
QUERIES = ["bordeaux wine", "Île-de-France, PARIS!", "zzzzqqq", "é", "  spaced\tout\n query  ", "", "a", "Montréal"]
# Characters where a careless rewrite of lenlp would differ: whitespace Rust and Python split on
# differently, case changes, accents and ligatures unidecode expands, punctuation, CJK, an emoji.
_TRICKY = " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2000\u2028\u3000aAbBzZéÉçÇñßẞΣσςǅﬁ½²0123456789_-.,;!?'\"()日本語😀"
texts = st.lists(st.text(alphabet=st.sampled_from(_TRICKY), max_size=30), min_size=1, max_size=6)
lenlp_settings = st.fixed_dictionaries(
    {
        "analyzer": st.sampled_from(["char_wb", "char", "word"]),
        "ngram_range": st.sampled_from([(1, 1), (1, 3), (2, 4), (3, 5), (3, 7), (2, 9)]),
        "normalize": st.booleans(),
        "stop_words": st.sampled_from([None, [], ["the", "a"]]),
    }
)
LENLP = {"tfidf": sparse.TfidfVectorizer, "bm25": sparse.BM25Vectorizer, "count": sparse.CountVectorizer}


def in_our_columns(theirs, ours, lenlp_vectorizer) -> np.ndarray:
    """lenlp's rows with their columns renumbered as ours (lenlp numbers them in hash order)."""
    vocabulary = lenlp_vectorizer.vocabulary
    mine = ours.vocabulary
    assert set(vocabulary) == set(mine)
    order = np.array([vocabulary[term] for term in sorted(mine, key=mine.get)], dtype=np.int64)
    return theirs.toarray()[:, order] if len(order) else np.zeros((theirs.shape[0], 0))


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(params=lenlp_settings, weighting=st.sampled_from(["tfidf", "bm25", "count"]), fitted=texts, queries=texts)
def test_rows_equal_lenlps(params, weighting, fitted, queries):
    theirs = LENLP[weighting](**params)
    ours = NgramVectorizer(**params, weighting=weighting)
    try:
        with np.errstate(all="ignore"):  # lenlp divides by a zero average length on texts without n-grams
            expected = theirs.fit_transform(fitted)
    except (ValueError, ZeroDivisionError, FloatingPointError):  # lenlp fails on some texts without n-grams
        return
    if not theirs.vocabulary:
        with pytest.raises(InvalidInputError, match="no n-gram"):
            ours.fit(fitted)
        return
    with np.errstate(all="ignore"):
        found = ours.fit_transform(fitted)
        assert found.dtype == np.float32 and found.has_sorted_indices
        np.testing.assert_allclose(found.toarray(), in_our_columns(expected, ours, theirs), rtol=2e-6, atol=1e-7)
        expected_queries = in_our_columns(theirs.transform(queries), ours, theirs)
    np.testing.assert_allclose(ours.transform(queries).toarray(), expected_queries, rtol=2e-6, atol=1e-7)
    for query, (columns, weights) in zip(queries, ours._analyse(queries)):  # the query path: the same rows
        row = np.zeros(ours.n_terms)
        row[columns] = weights
        assert (np.diff(columns) > 0).all()
        np.testing.assert_allclose(row, ours.transform([query]).toarray()[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("weighting", ["tfidf", "bm25", "count"])
def test_the_packed_analysis_equals_the_plain_one(weighting, monkeypatch):
    generator = random.Random(0)
    corpus = ["".join(generator.choice("abcde fghé日 ") for _ in range(generator.randint(0, 60))) for _ in range(80)]
    packed = NgramVectorizer(weighting=weighting, normalize=False, ngram_range=(2, 6))
    rows = packed.fit_transform(corpus)
    monkeypatch.setattr(Alphabet, "fits", lambda self, max_n: False)  # too many characters to pack
    plain = NgramVectorizer(weighting=weighting, normalize=False, ngram_range=(2, 6))
    assert (plain.fit_transform(corpus) != rows).nnz == 0
    assert plain._terms == packed._alphabet_packer().decode(packed._keys, 6) and plain._keys is None
    queries = corpus[:10] + ["日日 abc", "zzz"]
    for (a, x), (b, y) in zip(packed._analyse(queries), plain._analyse(queries)):
        assert a.tolist() == b.tolist() and x.tolist() == y.tolist()


def test_chunks_and_batches_change_no_bit(monkeypatch):
    corpus = [d["title"] + " " + d["article"] for d in data.load_towns()]
    whole = NgramVectorizer()
    rows = whole.fit_transform(corpus)
    monkeypatch.setattr(_packed_ngrams, "_CHUNK_CODEPOINTS", 5_000)  # dozens of chunks
    chunked = NgramVectorizer()
    assert (chunked.fit_transform(corpus) != rows).nnz == 0
    assert np.array_equal(chunked._keys, whole._keys) and np.array_equal(chunked.idf, whole.idf)
    batch = whole._analyse(QUERIES + corpus[:20])
    for query, (columns, weights) in zip(QUERIES + corpus[:20], batch):
        alone_columns, alone_weights = whole._analyse([query])[0]
        assert columns.tolist() == alone_columns.tolist() and weights.tolist() == alone_weights.tolist()


def test_alphabet_packs_and_decodes_every_character():
    terms = ["abc", "\x00ab", "ab\x00", "日本語", "😀a", "\ud800xy", "a b", "zz"]
    points, _ = _packed_ngrams.codepoints(terms)
    alphabet = Alphabet.of(points)
    keys = _packed_ngrams.pack_terms(terms, alphabet)
    assert len(set(keys.tolist())) == len(terms)
    assert alphabet.decode(keys, 3) == terms and alphabet.lengths(keys, 3).tolist() == [3, 3, 3, 3, 2, 3, 3, 2]
    outside = alphabet.codes(np.array([ord("q"), 0x10FFFF], dtype=np.uint32))
    assert outside.tolist() == [0, 0]


def test_lone_surrogates_and_empty_texts_are_analysed():
    vectorizer = NgramVectorizer(ngram_range=(2, 3)).fit(["ab\ud800cd", "", "abcd"])
    assert "abc" in vectorizer.vocabulary and "bcd" in vectorizer.vocabulary
    columns, weights = vectorizer._analyse(["x\udfffabc"])[0]
    assert len(columns) == 3 and np.isclose(weights @ weights, 1.0)
    with pytest.raises(InvalidInputError, match="no n-gram"):
        NgramVectorizer().fit(["", "!!", "ab"])
    with pytest.raises(NotIndexedError, match="not fitted"):
        NgramVectorizer().transform(["abc"])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"analyzer": "char_xx"}, "analyzer must be one of"),
        ({"ngram_range": (0, 2)}, "ngram_range"),
        ({"ngram_range": (4, 3)}, "ngram_range"),
        ({"normalize": "yes"}, "normalize"),
        ({"stop_words": "the"}, "stop_words"),
        ({"stop_words": 3}, "stop_words"),
        ({"weighting": "bm26"}, "weighting"),
        ({"k1": -1}, "k1"),
        ({"b": 1.5}, "b must be"),
        ({"epsilon": float("nan")}, "epsilon"),
    ],
)
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(InvalidInputError, match=message):
        NgramVectorizer(**params)


# -- inside TfIdf and BM25 -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def towns():
    return data.load_towns()


def test_tfidf_takes_lenlp_vectorizers_as_cherche_users_pass_them(towns):
    texts = [d["title"] + " " + d["article"] for d in towns]
    default = retrieve.TfIdf(key="id", on=ON, documents=towns, k=10)
    assert isinstance(default.tfidf, NgramVectorizer) and default.tfidf.ngram_range == (3, 7)
    lenlp = sparse.TfidfVectorizer(normalize=True, ngram_range=(3, 7), analyzer="char_wb")
    assert retrieve.TfIdf(key="id", on=ON, documents=towns, tfidf=lenlp, k=10)(QUERIES) == default(QUERIES)
    assert lenlp.idf is None  # read, never fitted in place
    fitted = sparse.TfidfVectorizer(normalize=True, ngram_range=(3, 7), analyzer="char_wb").fit(texts)
    prefitted = retrieve.TfIdf(key="id", on=ON, documents=towns, tfidf=fitted, fit=False, k=10)
    for found, expected in zip(prefitted(QUERIES), default(QUERIES)):
        assert [hit["id"] for hit in found] == [hit["id"] for hit in expected]
        np.testing.assert_allclose([h["similarity"] for h in found], [h["similarity"] for h in expected], rtol=1e-6)
    with pytest.raises(NotIndexedError, match="not fitted"):
        retrieve.TfIdf(key="id", on=ON, tfidf=sparse.TfidfVectorizer(), fit=False)


def test_bm25_with_a_count_vectorizer_is_cherches(towns):
    lenlp = sparse.BM25Vectorizer(normalize=True, ngram_range=(3, 5), analyzer="char_wb")
    theirs = retrieve.BM25(key="id", on=ON, documents=towns, count_vectorizer=lenlp, k=10)
    ours = retrieve.BM25("id", ON, towns, NgramVectorizer(weighting="bm25", ngram_range=(3, 5)), 10)
    assert theirs(QUERIES) == ours(QUERIES) and len(ours) == len(towns)
    assert theirs.count_vectorizer.weighting == "bm25" and theirs.fit is True
    texts = [d["title"] + " " + d["article"] for d in towns]
    expected = lenlp.fit_transform(texts)
    queries = in_our_columns(lenlp.transform(QUERIES), ours.count_vectorizer, lenlp)
    scores = queries @ in_our_columns(expected, ours.count_vectorizer, lenlp).T
    for row, hits in zip(scores, ours(QUERIES)):  # Cherche's scores: lenlp's query rows . document rows
        best = np.sort(row[row > 0])[::-1][: len(hits)]
        np.testing.assert_allclose([hit["similarity"] for hit in hits], best, rtol=1e-5)
    ours.add([{"id": "new", "title": "Quimper", "article": "Quimper is in Brittany."}])
    assert ours("quimper brittany", k=1)[0]["id"] == "new"


def test_bm25_refuses_what_cherche_would_misread():
    with pytest.raises(InvalidTypeError, match="pass k=10 by name"):
        retrieve.BM25("id", "title", None, 10)
    with pytest.raises(InvalidInputError, match="tokenizer set bm25s's scoring"):
        retrieve.BM25(key="id", on="title", count_vectorizer=NgramVectorizer(), tokenizer="char")
    with pytest.raises(InvalidInputError, match="fit=False applies to a fitted count_vectorizer"):
        retrieve.BM25(key="id", on="title", fit=False)
    with pytest.raises(TypeError):
        retrieve.BM25("id", "title", None, None, 10, 1024, True, "char")  # bm25s's settings are keywords


@pytest.mark.parametrize(
    "make",
    [
        lambda: retrieve.TfIdf(key="id", on=["title", "article"], k=3),
        lambda: retrieve.TfIdf(key="id", on=["title", "article"], tfidf=sklearn_vectorizer(), k=3),
        lambda: retrieve.BM25(
            key="id", on=["title", "article"], count_vectorizer=NgramVectorizer(weighting="bm25"), k=3
        ),
    ],
    ids=["tfidf", "tfidf-sklearn", "bm25-cherche"],
)
def test_the_contract(make):
    check_component(make)


def _round_trips(search, tmp_path, name):
    loaded = cherche_faiss.load(cherche_faiss.save(search, tmp_path / name))
    assert loaded(QUERIES) == search(QUERIES) and [loaded(q) for q in QUERIES] == search(QUERIES)
    assert repr(loaded) == repr(search)
    assert pickle.loads(pickle.dumps(search))(QUERIES) == search(QUERIES)
    return loaded


def test_saves_and_pickles_round_trip(towns, tmp_path):
    tfidf = retrieve.TfIdf(key="id", on=ON, documents=towns, k=8)
    loaded = _round_trips(tfidf, tmp_path, "tfidf")
    assert isinstance(loaded.tfidf, NgramVectorizer) and np.array_equal(loaded.tfidf._keys, tfidf.tfidf._keys)
    words = NgramVectorizer(analyzer="word", ngram_range=(1, 2), stop_words=["the", "is"])
    _round_trips(retrieve.TfIdf(key="id", on=ON, documents=towns, tfidf=words, k=8), tmp_path, "words")
    bm25 = retrieve.BM25(key="id", on=ON, documents=towns, count_vectorizer=NgramVectorizer(weighting="bm25"), k=8)
    loaded = _round_trips(bm25, tmp_path, "bm25")
    assert loaded.count_vectorizer.average_len == bm25.count_vectorizer.average_len
    vectorizer = tfidf.tfidf
    again = cherche_faiss.load(cherche_faiss.save(vectorizer, tmp_path / "vectorizer"))
    assert (again.transform(QUERIES) != vectorizer.transform(QUERIES)).nnz == 0


def test_a_bm25_pickled_before_cherches_scoring_still_loads(towns):
    bm25 = retrieve.BM25(key="id", on=ON, documents=towns, k=5)
    state = bm25.__getstate__()
    del state["state"]["_vectors"]  # the layout written before count_vectorizer existed
    restored = retrieve.BM25.__new__(retrieve.BM25)
    restored.__setstate__(state)
    assert restored(QUERIES) == bm25(QUERIES) and restored.count_vectorizer is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda v: {"_keys": None, "_alphabet": None, "_terms": ["abc", "abc"]}, "repeat"),
        (lambda v: {"idf": v.idf[:-1]}, "idf"),
        (lambda v: {"idf": v.idf.astype(np.float32)}, "idf"),
        (lambda v: {"average_len": 3.0}, "average length"),
        (lambda v: {"_alphabet": v._alphabet[::-1].copy()}, "alphabet"),
        (lambda v: {"_keys": v._keys[::-1].copy()}, "n-grams"),
        (lambda v: {"_keys": v._keys | np.uint64(1 << 62)}, "n-grams"),
    ],
)
def test_a_damaged_vectorizer_is_refused(towns, edit, message):
    vectorizer = retrieve.TfIdf(key="id", on="title", documents=towns).tfidf
    state = vectorizer.__getstate__()
    state["state"].update(edit(vectorizer))
    with pytest.raises(IncompatibleStateError, match=message):
        NgramVectorizer.__new__(NgramVectorizer).__setstate__(state)


def test_a_damaged_save_is_refused(towns, tmp_path):
    path = cherche_faiss.save(retrieve.TfIdf(key="id", on="title", documents=towns), tmp_path / "t")
    manifest = json.loads((path / "manifest.json").read_text())
    node = next(n for n in manifest["components"] if n["class"] == "cherche_faiss.retrieve.NgramVectorizer")
    node["state"]["average_len"] = 3.0  # a TF-IDF vectorizer has none
    manifest["manifest_sha256"] = safe._canonical_hash(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleStateError, match="average length"):
        cherche_faiss.load(path)


def _overlap(found: list[list], expected: list[list]) -> float:
    """The share of the expected hits found, averaged over the queries (top-k sets)."""
    return float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(found, expected)]))


@pytest.mark.parametrize("family", ["tfidf", "bm25"])
def test_towns_candidates_are_cherches(towns, family):
    """Cherche's TfIdf and BM25 are lenlp's vectors and a dot product: computed here with lenlp
    itself (Cherche need not be installed), their top 30 are ours."""
    texts = [d["title"] + " " + d["article"] for d in towns]
    queries = list(dict.fromkeys(" ".join(d["article"].split()[:5]) for d in towns))
    if family == "tfidf":
        lenlp = sparse.TfidfVectorizer(normalize=True, ngram_range=(3, 7), analyzer="char_wb")
        ours = retrieve.TfIdf(key="id", on=ON, documents=towns, k=30)
    else:
        lenlp = sparse.BM25Vectorizer(normalize=True, ngram_range=(3, 5), analyzer="char_wb")
        vectorizer = NgramVectorizer(weighting="bm25", ngram_range=(3, 5))
        ours = retrieve.BM25(key="id", on=ON, documents=towns, count_vectorizer=vectorizer, k=30)
    scores = (lenlp.fit_transform(texts) @ lenlp.transform(queries).T).toarray().T
    expected = []
    for row in scores:
        found = np.flatnonzero(row > 0)
        expected.append([towns[i]["id"] for i in found[np.argsort(-row[found], kind="stable")][:30]])
    found = [[hit["id"] for hit in hits] for hits in ours(queries)]
    assert _overlap(found, expected) >= 0.99
    assert sum(a == b for a, b in zip(found, expected)) >= 0.95 * len(queries)  # the same order, but near-ties


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("weighting", ["tfidf", "bm25"])
def test_the_compiled_query_analysis_equals_numpys(seed, weighting, monkeypatch):
    generator = random.Random(seed)
    alphabet = "abcdefgh éÉ日😀,.!\t\n"
    corpus = ["".join(generator.choice(alphabet) for _ in range(generator.randint(0, 80))) for _ in range(120)]
    vectorizer = NgramVectorizer(weighting=weighting, ngram_range=(2, 6)).fit(corpus)
    queries = corpus[:30] + ["", " ", "zzzz", "日本語 abc", "x" * 200, "\ud800abc"]
    queries += [
        "".join(generator.choice(alphabet + "xyzΩ") for _ in range(generator.randint(0, 40))) for _ in range(40)
    ]
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numpy")
    python = vectorizer._analyse(queries)
    assert vectorizer._table is None
    monkeypatch.setenv("CHERCHE_FAISS_SPARSE", "numba")
    compiled = vectorizer._analyse(queries)
    assert vectorizer._table is not None  # the compiled path ran
    for (columns, weights), (compiled_columns, compiled_weights) in zip(python, compiled):
        assert compiled_columns.dtype == columns.dtype and compiled_weights.dtype == weights.dtype
        assert compiled_columns.tolist() == columns.tolist() and compiled_weights.tolist() == weights.tolist()
    assert any(len(columns) for columns, _ in compiled)
