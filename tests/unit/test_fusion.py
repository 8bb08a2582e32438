"""Union, Intersection, Vote and the pure fusion functions."""

from __future__ import annotations

import copy
import itertools
import pickle

import pytest

from cherche_faiss import rank, retrieve
from cherche_faiss.compose import Intersection, Union, Vote
from cherche_faiss.compose.fusion import normalize_scores, reciprocal_rank_fusion, vote_fusion, weighted_score_fusion
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import InvalidInputError

A = [{"id": "x", "similarity": 3.0}, {"id": "y", "similarity": 2.0}, {"id": "z", "similarity": 1.0}]
B = [{"id": "z", "similarity": 0.9}, {"id": "x", "similarity": 0.5}]
C = [{"id": "w", "similarity": 10.0}, {"id": "y", "similarity": 8.0}, {"id": "x", "similarity": 1.0}]


def test_reciprocal_rank_fusion_values():
    fused = reciprocal_rank_fusion("id", [A, B], c=60)
    scores = {hit["id"]: hit["similarity"] for hit in fused}
    assert scores == pytest.approx({"x": 1 / 61 + 1 / 62, "z": 1 / 63 + 1 / 61, "y": 1 / 62})
    assert [hit["id"] for hit in fused] == ["x", "z", "y"]


@pytest.mark.parametrize(
    "fuse",
    [
        lambda r: reciprocal_rank_fusion("id", r),
        lambda r: reciprocal_rank_fusion("id", r, require_all=True),
        lambda r: weighted_score_fusion("id", r),
        lambda r: weighted_score_fusion("id", r, normalization="zscore"),
        lambda r: vote_fusion("id", r),
    ],
)
def test_fusion_does_not_depend_on_model_order_nor_mutate(fuse):
    inputs = [A, B, C]
    snapshot = copy.deepcopy(inputs)
    results = [fuse(list(order)) for order in itertools.permutations(inputs)]
    assert all(result == results[0] for result in results)
    assert inputs == snapshot


def test_weighted_fusion_and_normalisation():
    assert normalize_scores([1.0, 3.0, 2.0], "minmax") == [0.0, 1.0, 0.5]
    assert normalize_scores([2.0, 2.0], "minmax") == [1.0, 1.0]
    assert normalize_scores([1.0, 3.0], "zscore") == [-1.0, 1.0]
    fused = weighted_score_fusion("id", [A, B], weights=[1.0, 3.0])
    scores = {hit["id"]: hit["similarity"] for hit in fused}
    assert scores == pytest.approx({"x": 1.0 + 0.0, "y": 0.5, "z": 0.0 + 3.0})
    with pytest.raises(InvalidInputError, match="normalization"):
        weighted_score_fusion("id", [A], normalization="softmax")
    with pytest.raises(InvalidInputError, match="2 weights for 1"):
        reciprocal_rank_fusion("id", [A], weights=[1, 2])


def test_vote_counts_models():
    fused = vote_fusion("id", [A, B, C])
    assert [(hit["id"], hit["similarity"]) for hit in fused][:1] == [("x", 3.0)]
    assert {hit["id"]: hit["similarity"] for hit in fused} == {"x": 3.0, "y": 2.0, "z": 2.0, "w": 1.0}


@pytest.fixture
def models(documents):
    tfidf = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=4)
    dense = retrieve.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32), k=4)
    dense.add(documents, show_progress=False)
    return tfidf, dense


def test_union_intersection_vote_of_retrievers(models):
    tfidf, dense = models
    queries = ["wine", "capital city"]
    for combine in (lambda a, b: a | b, lambda a, b: a & b, lambda a, b: a * b):
        assert combine(tfidf, dense)(queries) == combine(dense, tfidf)(queries)
    union, both = (tfidf | dense)("capital city"), (tfidf & dense)("capital city")

    def ids(hits):
        return {hit["id"] for hit in hits}

    assert ids(union) == ids(tfidf("capital city")) | ids(dense("capital city"))
    assert ids(both) == ids(tfidf("capital city")) & ids(dense("capital city"))
    assert all(type(hit["similarity"]) is float for hit in union)


def test_operators_flatten_and_keep_options(models):
    tfidf, dense = models
    third = retrieve.TfIdf(key="id", on="title", documents=[{"id": 0, "title": "Paris"}])
    assert len((tfidf | dense | third).models) == 3
    weighted = Union([tfidf, dense], fusion="weighted", weights=[1.0, 2.0])
    assert len((weighted | third).models) == 2  # a configured union is kept whole


def test_fusion_in_pipelines_and_pickles(models, documents):
    tfidf, dense = models
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16), k=2)
    search = (tfidf | dense) + ranker + documents
    search.add(documents)
    hits = search("Bordeaux wine")
    assert len(hits) == 2 and "title" in hits[0]
    assert pickle.loads(pickle.dumps(search))("Bordeaux wine") == hits
    assert len((tfidf | dense)("wine", k=1)) == 1


def test_union_of_rankers_needs_candidates(documents):
    a = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16))
    b = rank.Encoder(key="id", on="article", encoder=HashingEncoder(dimension=16))
    union = a | b
    hits = union("Lyon", documents=documents)
    assert {hit["id"] for hit in hits} == {d["id"] for d in documents}
    with pytest.raises(InvalidInputError, match="documents="):
        union("Lyon")


def test_bad_fusions(models, documents):
    tfidf, dense = models
    other_key = retrieve.TfIdf(key="title", on="title", documents=documents)
    with pytest.raises(InvalidInputError, match="share one key"):
        tfidf | other_key
    with pytest.raises(InvalidInputError, match="fusion must be"):
        Intersection([tfidf, dense], fusion="max")
    with pytest.raises(InvalidInputError, match="at least two"):
        Vote([tfidf])
