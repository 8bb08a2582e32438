"""Quality regression on SciFact (../shared/data/scifact): fast checks for CI.

The full evaluation (every pipeline, 300 queries, MiniLM over 5,183 abstracts)
is `cherche-faiss evaluate`, whose table is in docs/quality.md."""

from __future__ import annotations

import random

import pytest

from cherche_faiss import retrieve
from cherche_faiss.data import load_beir
from cherche_faiss.encoders import SentenceTransformerEncoder
from cherche_faiss.evaluate import evaluate
from cherche_faiss.retrieve.tfidf import sklearn_vectorizer

from ..helpers import SHARED

SCIFACT = SHARED / "data" / "scifact"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SCIFACT.is_dir(), reason="../shared/data/scifact is absent (a user's clone)"),
]


@pytest.fixture(scope="module")
def scifact():
    return load_beir(SCIFACT)


def test_bm25_on_the_whole_test_split(scifact):
    retriever = retrieve.BM25(key="id", on=["title", "text"], documents=scifact.corpus)
    scores = evaluate(retriever, scifact.queries, scifact.qrels, ks=(10,), show_progress=False)
    assert scores["queries"] == 300
    assert scores["ndcg@10"] >= 0.68  # measured 0.6863; Cherche 2.2.1's BM25: 0.6815


@pytest.mark.parametrize(
    "make, floor",
    [
        # Cherche's TF-IDF, the default (measured 0.6213; Cherche 2.2.1: 0.6213).
        (lambda documents: retrieve.TfIdf(key="id", on=["title", "text"], documents=documents), 0.615),
        # scikit-learn's char_wb n-grams, the default before (measured 0.5948).
        (
            lambda documents: retrieve.TfIdf(
                key="id", on=["title", "text"], documents=documents, tfidf=sklearn_vectorizer()
            ),
            0.59,
        ),
        # Cherche's BM25 (measured 0.6815; Cherche 2.2.1: 0.6815).
        (
            lambda documents: retrieve.BM25(
                key="id",
                on=["title", "text"],
                documents=documents,
                count_vectorizer=retrieve.NgramVectorizer(weighting="bm25", ngram_range=(3, 5)),
            ),
            0.675,
        ),
    ],
    ids=["tfidf", "tfidf-sklearn", "bm25-cherche"],
)
def test_the_other_sparse_settings_on_the_whole_test_split(scifact, make, floor):
    scores = evaluate(make(scifact.corpus), scifact.queries, scifact.qrels, ks=(10,), show_progress=False)
    assert scores["queries"] == 300
    assert scores["ndcg@10"] >= floor, scores


def test_minilm_encoder_and_hybrid_on_a_slice(scifact, minilm):
    """60 queries against their relevant abstracts plus 540 others: small enough for CI."""
    rng = random.Random(0)
    query_ids = sorted(scifact.qrels)[:60]
    relevant = {doc for q in query_ids for doc in scifact.qrels[q]}
    others = [d for d in scifact.corpus if d["id"] not in relevant]
    documents = [d for d in scifact.corpus if d["id"] in relevant] + rng.sample(others, 600 - len(relevant))
    queries = {q: scifact.queries[q] for q in query_ids}
    qrels = {q: scifact.qrels[q] for q in query_ids}
    encoder = SentenceTransformerEncoder.from_model(minilm)
    dense = retrieve.Encoder(key="id", on=["title", "text"], encoder=encoder, k=100).add(documents, show_progress=False)
    bm25 = retrieve.BM25(key="id", on=["title", "text"], documents=documents, k=100)
    score = {
        name: evaluate(model, queries, qrels, ks=(10,), show_progress=False)["ndcg@10"]
        for name, model in {"dense": dense, "bm25": bm25, "hybrid": bm25 | dense}.items()
    }
    # Measured on this slice: dense 0.8357, bm25 0.7984, hybrid 0.8407.
    assert score["dense"] >= 0.82 and score["bm25"] >= 0.78, score
    # The fusion must not fall back to either side alone (either alone scores at most 0.836).
    assert score["hybrid"] > max(score["dense"], score["bm25"]), score
