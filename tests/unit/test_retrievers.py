"""Behaviour specific to each retriever."""

from __future__ import annotations

import numpy as np
import pytest

import cherche_faiss
from cherche_faiss import retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import InvalidInputError, InvalidTypeError, NotIndexedError
from cherche_faiss.retrieve.tfidf import sklearn_vectorizer


def ids(hits):
    return [hit["id"] for hit in hits]


def test_tfidf_finds_character_ngrams(documents):
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents)
    assert ids(retriever("bordeau"))[0] == 2  # a partial word still matches, as in Cherche
    assert retriever("zzzzqqq") == []  # nothing shares an n-gram: no hit rather than noise


def test_tfidf_k_none_returns_every_match_sorted(documents):
    retriever = retrieve.TfIdf(key="id", on="article", documents=documents)
    hits = retriever("the capital")
    assert len(hits) > 3
    scores = [hit["similarity"] for hit in hits]
    assert scores == sorted(scores, reverse=True) and all(score > 0 for score in scores)


def test_tfidf_scores_are_cosine_similarities(documents):
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents)
    text = documents[3]["title"] + " " + documents[3]["article"]
    top = retriever(text)[0]
    assert top["id"] == 3 and top["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_tfidf_add_after_construction_and_upsert(documents):
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents[:3])
    retriever.add(documents[3:])
    assert len(retriever) == 6 and ids(retriever("airbus aircraft"))[0] == 3
    # The vocabulary stays the one fitted first (as in Cherche): reuse words it knows.
    retriever.add([{"id": 3, "title": "Toulouse", "article": "The Eiffel tower is in Quebec."}])
    assert len(retriever) == 6
    assert 3 not in ids(retriever("airbus aircraft", k=1))
    top = retriever("Toulouse The Eiffel tower is in Quebec.")[0]
    assert top["id"] == 3 and top["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_tfidf_fit_false_needs_a_fitted_vectorizer(documents):
    from sklearn.feature_extraction.text import TfidfVectorizer

    with pytest.raises(NotIndexedError, match="not fitted"):
        retrieve.TfIdf(key="id", on="title", documents=documents, tfidf=TfidfVectorizer(), fit=False)
    fitted = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)).fit(["paris bordeaux lyon"])
    retriever = retrieve.TfIdf(key="id", on="title", documents=documents, tfidf=fitted, fit=False)
    assert ids(retriever("lyon"))[0] == 4


def test_tfidf_batches_give_the_same_results(documents):
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=3)
    queries = ["paris", "wine", "canada", "metro", "silk"]
    assert retriever(queries, batch_size=2) == retriever(queries) == [retriever(q) for q in queries]


def test_encoder_retriever_matches_brute_force(documents):
    encoder = HashingEncoder(dimension=64)
    retriever = retrieve.Encoder(key="id", on=["title", "article"], encoder=encoder, k=None)
    retriever.add(documents, batch_size=2, show_progress=False)
    vectors = encoder.encode([d["title"] + " " + d["article"] for d in documents])
    query = encoder.encode(["wine and rivers"])[0]
    expected = np.argsort(-(vectors @ query), kind="stable")
    hits = retriever("wine and rivers")
    assert ids(hits) == [documents[i]["id"] for i in expected]
    np.testing.assert_allclose([h["similarity"] for h in hits], (vectors @ query)[expected], rtol=1e-5, atol=1e-6)


def test_encoder_retriever_accepts_a_plain_callable(documents):
    encoder = HashingEncoder(dimension=16)
    retriever = retrieve.Encoder(key="id", on="title", encoder=lambda texts: encoder.encode(texts), k=2)
    retriever.add(documents, show_progress=False)
    assert ids(retriever("Lyon"))[0] == 4


def test_encoder_retriever_on_an_approximate_index(documents):
    retriever = retrieve.Encoder(
        key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32), index="HNSW8", k=2
    )
    retriever.add(documents, show_progress=False)
    assert ids(retriever("Lyon Lyon is known for its food and its silk history."))[0] == 4
    with pytest.raises(InvalidInputError, match="cannot replace existing keys"):
        retriever.add(documents[:1], show_progress=False)
    assert len(retriever) == len(documents)


def test_dpr_uses_the_query_encoder_for_queries(documents, counting_encoder):
    document_encoder = HashingEncoder(dimension=64)
    retriever = retrieve.DPR(key="id", on="title", encoder=document_encoder, query_encoder=counting_encoder, k=1)
    retriever.add(documents, show_progress=False)
    assert counting_encoder.seen == []
    retriever("Paris")
    assert counting_encoder.seen == ["Paris"]


def test_embedding_retriever_single_and_batch(documents, rng):
    vectors = rng.standard_normal((len(documents), 8)).astype(np.float32)
    retriever = retrieve.Embedding(key="id", k=2).add(documents, embeddings_documents=vectors)
    assert ids(retriever(vectors[3]))[0] == 3
    assert ids(retriever(vectors[3:4]))[0] == 3  # one row is one query, as in Cherche
    batch = retriever(vectors[:3])
    assert [ids(hits)[0] for hits in batch] == [0, 1, 2]
    with pytest.raises(InvalidInputError, match="embeddings_documents"):
        retriever.add(documents)


@pytest.mark.parametrize(
    ("q", "error", "message"),
    [
        ([], InvalidInputError, "empty list"),
        (["paris", 3], InvalidTypeError, r"q\[1\] must be a string"),
        (42, InvalidTypeError, "string or a list of strings"),
    ],
)
def test_bad_queries(documents, q, error, message):
    retriever = retrieve.TfIdf(key="id", on="title", documents=documents)
    with pytest.raises(error, match=message):
        retriever(q)


def test_bad_documents(documents):
    retriever = retrieve.TfIdf(key="id", on=["title", "article"])
    with pytest.raises(InvalidInputError, match="no key field 'id'"):
        retriever.add([{"title": "x", "article": "y"}])
    with cherche_faiss.config_context(strict_fields=True):  # a missing `on` field is an error only when strict
        with pytest.raises(InvalidInputError, match="no field 'article'"):
            retriever.add([{"id": 1, "title": "x"}])
    with pytest.raises(InvalidTypeError, match="list of dicts"):
        retriever.add({"id": 1, "title": "x", "article": "y"})
    assert len(retriever) == 0
    encoder_retriever = retrieve.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=8))
    encoder_retriever.add(documents, show_progress=False)
    with cherche_faiss.config_context(strict_fields=True):
        with pytest.raises(InvalidInputError, match="no field 'title'"):
            encoder_retriever.add([{"id": 99}], show_progress=False)
    assert len(encoder_retriever) == len(documents)


def test_bad_constructor_arguments():
    with pytest.raises(InvalidInputError, match="k must be a positive integer"):
        retrieve.TfIdf(key="id", on="title", k=-1)
    with pytest.raises(InvalidInputError, match="on must be"):
        retrieve.TfIdf(key="id", on=[])
    with pytest.raises(InvalidTypeError, match="encoder must be callable"):
        retrieve.Encoder(key="id", on="title", encoder=42)
    with pytest.raises(InvalidInputError, match=r"ngram_range must be \(min, max\)"):
        retrieve.BM25(key="id", on="title", tokenizer="char", ngram_range=(3,))
    with pytest.raises(InvalidInputError, match="method must be one of"):
        retrieve.BM25(key="id", on="title", method="okapi")
    with pytest.raises(InvalidInputError, match="k1 must be a non-negative number"):
        retrieve.BM25(key="id", on="title", k1=float("nan"))


def test_tfidf_top_k_matches_a_sort(rng):
    from cherche_faiss.retrieve.tfidf import top_k_dense

    scores = rng.random((30, 200)).astype(np.float32)
    scores[scores < 0.7] = 0
    scores[:, 5] = scores[:, 6]  # ties, broken by column number
    scores[3] = 0  # a query that matches nothing
    for k in (1, 7, 200, None):
        rows, values = top_k_dense(scores, k)
        rows, values = [found.tolist() for found in rows], [found.tolist() for found in values]
        assert rows[3] == [] and values[3] == []
        for row in range(30):
            expected = [
                c for c in sorted(range(200), key=lambda c: (-scores[row, c], c))[: k or 200] if scores[row, c] > 0
            ]
            assert rows[row] == expected


def test_tfidf_scores_equal_scikit_learn_cosine(documents):
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents)
    matrix = retriever.tfidf.transform([d["title"] + " " + d["article"] for d in documents])
    for query in ["Bordeaux wine", "capital", "zz"]:
        expected = (retriever.tfidf.transform([query]) @ matrix.T).toarray()[0]
        hits = retriever(query)
        assert [hit["id"] for hit in hits] == [
            i for i in sorted(range(6), key=lambda i: (-expected[i], i)) if expected[i] > 0
        ]
        np.testing.assert_allclose(
            [hit["similarity"] for hit in hits], sorted(expected[expected > 0], reverse=True), rtol=1e-5
        )


@pytest.mark.parametrize("setting", ["cherche", "sklearn"])
def test_tfidf_direct_query_rows_equal_the_vectorizers_transform(documents, setting):
    vectorizer = sklearn_vectorizer() if setting == "sklearn" else None
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, tfidf=vectorizer)
    queries = ["Bordeaux wine", "zzz", "", "the capital of France, Paris!"]
    if setting == "sklearn":
        assert retriever._fast_transform() is not None  # the direct path is the one under test
    for query in queries:
        columns, weights = retriever._query_terms(query)
        direct = np.zeros(retriever._matrix.shape[1])
        direct[columns] = weights
        expected = retriever.tfidf.transform([query]).toarray()[0]
        np.testing.assert_allclose(direct, expected, rtol=1e-6, atol=1e-7)
        assert (direct != 0).sum() == (expected != 0).sum()


def test_tfidf_both_scoring_paths_agree(documents, monkeypatch):
    import cherche_faiss.retrieve.tfidf as tfidf_module

    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents)
    queries = ["Bordeaux wine", "the capital of France", "zz"]
    numpy_path = retriever(queries)
    monkeypatch.setattr(tfidf_module, "_BINCOUNT_POSTINGS", -1)  # every query through scipy
    scipy_path = retriever(queries)
    assert [[h["id"] for h in q] for q in scipy_path] == [[h["id"] for h in q] for q in numpy_path]
    for a, b in zip(scipy_path, numpy_path):
        np.testing.assert_allclose([h["similarity"] for h in a], [h["similarity"] for h in b], rtol=1e-5)


def test_components_that_read_fields_refuse_on_none():
    from cherche_faiss import rank
    from cherche_faiss.exceptions import InvalidInputError

    makers = [
        lambda: retrieve.TfIdf(key="id", on=None),
        lambda: retrieve.BM25(key="id", on=None),
        lambda: retrieve.Encoder(key="id", on=None, encoder=HashingEncoder()),
        lambda: rank.Encoder(key="id", on=None, encoder=HashingEncoder()),
    ]
    for make in makers:  # before, each failed at its first add with a bare TypeError
        with pytest.raises(InvalidInputError, match="on must be a field name"):
            make()
    assert retrieve.Embedding(key="id").on is None and rank.Embedding(key="id").on is None
