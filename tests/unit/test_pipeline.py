"""Pipelines: order, k, document mapping, shared components, no mutation."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from cherche_faiss import Pipeline, rank, retrieve
from cherche_faiss.compose import DocumentMap
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import InvalidInputError, UnknownKeyError


class RecordingRanker(rank.Encoder):
    """A ranker that appends its name to a shared log when called."""

    def __init__(self, name: str, log: list, k=None):
        super().__init__(key="id", on="title", encoder=HashingEncoder(dimension=16), k=k)
        self.name, self.log = name, log

    def __call__(self, q, documents, k=None, batch_size=None, **kwargs):
        self.log.append(self.name)
        return super().__call__(q, documents, k=k, batch_size=batch_size)


def tfidf(documents, k=None):
    return retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=k)


def test_ranker_plus_ranker_runs_left_to_right(documents):
    log: list[str] = []
    first, second = RecordingRanker("first", log), RecordingRanker("second", log)
    (tfidf(documents) + first + second).add(documents)("paris")
    assert log == ["first", "second"]
    log.clear()
    (first + second)("paris", documents=documents)
    assert log == ["first", "second"]


def test_retriever_plus_pipeline_and_pipeline_plus_ranker(documents):
    log: list[str] = []
    a, b, c = (RecordingRanker(name, log) for name in "abc")
    search = tfidf(documents) + (a + b)
    search = (search + c).add(documents)
    assert [type(stage).__name__ for stage in search.models] == [
        "TfIdf",
        "RecordingRanker",
        "RecordingRanker",
        "RecordingRanker",
    ]
    search("wine")
    assert log == ["a", "b", "c"]


def test_each_stage_keeps_its_k_and_call_k_limits_the_output(documents):
    retriever = tfidf(documents, k=4)
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16), k=3)
    search = retriever + ranker
    search.add(documents)
    assert len(search("the capital")) == 3
    assert len(search("the capital", k=2)) == 2
    assert len(search("the capital", k=50)) == 3  # the ranker still keeps 3
    assert [len(hits) for hits in search(["the capital", "wine"], k=1)] == [1, 1]


def test_documents_are_mapped_back(documents):
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16), k=2)
    search = tfidf(documents) + ranker + documents
    search.add(documents)
    hits = search("Bordeaux wine")
    assert hits[0]["id"] == 2 and hits[0]["title"] == "Bordeaux" and "article" in hits[0]
    assert isinstance(hits[0]["similarity"], float)
    json.dumps(search(["paris", "lyon"]))


def test_mapping_follows_added_documents(documents):
    search = tfidf(documents[:3]) + documents[:3]
    new = {"id": 9, "title": "Nantes", "article": "Nantes lies on the Loire."}
    search.add(documents[3:] + [new])
    # The vocabulary is fitted on the first documents: search the new one by its own text.
    assert search("Nantes Nantes lies on the Loire.")[0]["title"] == "Nantes"


def test_mapping_refuses_unknown_keys(documents):
    search = tfidf(documents) + documents[:1]
    with pytest.raises(UnknownKeyError, match="pipeline.add"):
        search("Lyon food")


def test_add_reaches_each_shared_component_once(documents, counting_encoder):
    ranker = rank.Encoder(key="id", on="title", encoder=counting_encoder)
    search = tfidf(documents) + ranker + ranker
    search.add(documents)
    assert len(counting_encoder.seen) == len(documents)


def test_hits_and_documents_are_never_mutated(documents):
    snapshot = copy.deepcopy(documents)
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16), k=3)
    search = tfidf(documents) + ranker + documents
    search.add(documents)
    first = search("paris")
    first[0]["title"] = "changed"
    assert documents == snapshot
    assert search("paris")[0]["title"] != "changed"


def test_pipeline_pickles_with_shared_components(documents):
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16))
    search = tfidf(documents) + ranker + ranker + documents
    search.add(documents)
    restored = pickle.loads(pickle.dumps(search))
    assert restored.models[1] is restored.models[2]
    assert restored(["paris", "wine"]) == search(["paris", "wine"])


def test_cherche_style_construction(documents):
    retriever = tfidf(documents, k=2)
    search = Pipeline([retriever, {d["id"]: d for d in documents}])
    assert isinstance(search.models[1], DocumentMap)
    assert search("Lyon")[0]["title"] == "Lyon"


def test_bad_pipelines(documents):
    with pytest.raises(InvalidInputError, match="non-empty list"):
        Pipeline([])
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16))
    with pytest.raises(InvalidInputError, match="can only start a pipeline"):
        ranker + tfidf(documents)
    with pytest.raises(InvalidInputError, match="documents="):
        (ranker + ranker)("paris")


def test_a_pipeline_cannot_start_with_a_document_mapping(documents):
    from cherche_faiss.compose import DocumentMap, Pipeline
    from cherche_faiss.exceptions import InvalidInputError

    with pytest.raises(InvalidInputError, match="cannot start with a document mapping"):
        Pipeline([DocumentMap(key="id", documents=documents)])
