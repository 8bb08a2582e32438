"""Candidates travel between pipeline stages as arrays (cherche_faiss._core.candidates), with the hits
of the dict path: the same keys, similarities, order and errors, dicts built only for the final k."""

from __future__ import annotations

import numpy as np
import pytest

import cherche_faiss.compose.combine as combine_module
import cherche_faiss.compose.pipeline as pipeline_module
import cherche_faiss.rank.base as rank_base
from cherche_faiss import rank, retrieve
from cherche_faiss._core import candidates as candidates_module
from cherche_faiss._core.candidates import Candidates, KeyList, translate
from cherche_faiss.compose import Intersection, Union
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import InvalidInputError, UnknownKeyError
from cherche_faiss.index import FaissIndex

ENCODER = HashingEncoder(dimension=32)
QUERIES = ["paris", "wine bordeaux", "lyon food city", "zzz unknown", "the city of montreal"]


def corpus(key_kind: str) -> list[dict]:
    texts = [
        ("Paris", "Paris is the capital of France, with the Eiffel tower."),
        ("Bordeaux", "Bordeaux is a city of wine on the Garonne."),
        ("Lyon", "Lyon is known for its food and its old city."),
        ("Montreal", "Montreal is the largest city of Quebec in Canada."),
        ("Toulouse", "Toulouse, the pink city, builds planes."),
        ("Nantes", "Nantes lies on the Loire, near the ocean."),
        ("Wine", "Wine from Bordeaux and from the Rhone valley near Lyon."),
        ("Empty", ""),
    ]
    keys = {
        "int": list(range(10, 10 + len(texts))),
        "str": [f"doc-{i}" for i in range(len(texts))],
        "tuple": [("t", i) for i in range(len(texts))],
    }[key_kind]
    return [{"id": key, "title": title, "article": article} for key, (title, article) in zip(keys, texts)]


def pipelines(documents: list[dict]) -> dict[str, object]:
    """Pipelines of every shape whose stages answer candidates, built fresh."""
    on = ["title", "article"]

    def tfidf(k=None):
        return retrieve.TfIdf(key="id", on=on, documents=documents, k=k)

    def bm25(k=None):
        return retrieve.BM25(key="id", on=on, documents=documents, k=k)

    def dense(k=4):
        return retrieve.Encoder(key="id", on=on, encoder=ENCODER, k=k).add(documents, show_progress=False)

    def ranker(k=None, on_=on):
        return rank.Encoder(key="id", on=on_, encoder=ENCODER, k=k).add(documents, show_progress=False)

    def dpr(k=3):
        encoder = HashingEncoder(dimension=32, seed=7)
        return rank.DPR(key="id", on="title", encoder=encoder, query_encoder=ENCODER, k=k).add(
            documents, show_progress=False
        )

    return {
        "tfidf": tfidf(k=5),
        "tfidf+ranker": tfidf(k=6) + ranker(k=3),
        "bm25+ranker+dpr": bm25() + ranker(k=5) + dpr(),
        "dense+ranker+documents": dense() + ranker() + documents,
        "tfidf+documents+ranker": tfidf(k=4) + documents + ranker(k=2),
        "union": tfidf(k=3) | bm25(k=3) | dense(k=2),
        "intersection": tfidf() & bm25(),
        "vote": tfidf(k=4) * dense(k=4),
        "weighted": Union([tfidf(k=4), bm25(k=4)], fusion="weighted", normalization="zscore", k=3),
        "union+ranker": (tfidf(k=3) | bm25(k=3)) + ranker(k=4),
        "ranker fusion": tfidf() + (ranker(k=3) | dpr(k=3)),
        "intersection of rankers": bm25() + Intersection([ranker(k=4), dpr(k=4)]),
        "vote of pipelines": (tfidf(k=4) + ranker(k=3)) * (bm25(k=4) + dpr(k=3)),
        "pipeline in a fusion+documents": ((tfidf(k=4) + ranker(k=2)) | dense(k=2)) + documents,
    }


@pytest.mark.parametrize("key_kind", ["int", "str", "tuple"])
def test_every_pipeline_gives_the_hits_of_the_dict_path(key_kind, monkeypatch):
    documents = corpus(key_kind)
    arrays = {
        name: [model(QUERIES), model(QUERIES[1]), model(QUERIES, k=2, batch_size=2)]
        for name, model in pipelines(documents).items()
    }
    with monkeypatch.context() as patch:
        patch.setattr(pipeline_module, "answers_candidates", lambda model: False)
        patch.setattr(combine_module, "answers_candidates", lambda model: False)
        patch.setattr(retrieve.Retriever, "_answers_candidates", lambda self: False)
        dicts = {
            name: [model(QUERIES), model(QUERIES[1]), model(QUERIES, k=2, batch_size=2)]
            for name, model in pipelines(documents).items()
        }
    for name in arrays:
        assert arrays[name] == dicts[name], name
        for answer_arrays, answer_dicts in zip(arrays[name], dicts[name]):
            flat_arrays = answer_arrays if isinstance(answer_arrays[0], dict) else sum(answer_arrays, [])
            flat_dicts = answer_dicts if isinstance(answer_dicts[0], dict) else sum(answer_dicts, [])
            # the same Python types (floats, keys), not only equal values
            assert [tuple(map(type, hit.values())) for hit in flat_arrays] == [
                tuple(map(type, hit.values())) for hit in flat_dicts
            ], name
    assert any(arrays["tfidf+ranker"][0]) and any(arrays["union+ranker"][0])  # the cases do find hits


def test_embedding_components_with_vector_queries(rng):
    vectors = rng.standard_normal((12, 8)).astype(np.float32)
    documents = [{"id": f"v{i}"} for i in range(12)]
    retriever = retrieve.Embedding(key="id", k=6).add(documents, embeddings_documents=vectors, show_progress=False)
    ranker = rank.Embedding(key="id", k=3).add(documents, embeddings_documents=vectors[:, ::-1].copy())
    search = retriever + ranker + documents
    queries = rng.standard_normal((4, 8)).astype(np.float32)
    arrays = [search(queries), search(queries[0]), search(queries[:1]), search(queries, batch_size=3, k=2)]
    expected = []
    for query in (queries, queries[0], queries[:1]):
        hits = retriever(query)
        expected.append(ranker(query, documents=hits))
    assert arrays[0] == [[{**hit} for hit in hits] for hits in expected[0]]
    assert arrays[1] == expected[1] and arrays[2] == expected[2]
    assert arrays[3] == [hits[:2] for hits in expected[0]]


def test_the_array_path_is_taken_and_builds_dicts_for_the_final_k_only(monkeypatch):
    documents = corpus("int")
    search = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=6) + rank.Encoder(
        key="id", on=["title", "article"], encoder=ENCODER
    ).add(documents, show_progress=False)
    built = []
    original = Candidates.hits

    def spy(self, key, k=None):
        built.append(k)
        return original(self, key, k)

    monkeypatch.setattr(Candidates, "hits", spy)
    monkeypatch.setattr(rank_base, "rank_candidates", lambda *args: pytest.fail("the dict path ran"))
    hits = search(QUERIES, k=2)
    assert built == [2] and all(len(found) <= 2 for found in hits)


def test_errors_are_those_of_the_dict_path():
    documents = corpus("str")
    tfidf = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents)
    known = documents[:3]
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=ENCODER).add(known, show_progress=False)
    with pytest.raises(UnknownKeyError, match="unknown to this Encoder ranker and has no field"):
        (tfidf + ranker)("city")
    other_key = rank.Encoder(key="_id", on="title", encoder=ENCODER)
    with pytest.raises(InvalidInputError, match="is not a dict with the key field '_id'"):
        (tfidf + other_key)("city")
    mapping = tfidf + documents[:2]
    with pytest.raises(UnknownKeyError, match="has no document in this pipeline's document mapping"):
        mapping("city")
    vectors = retrieve.Embedding(key="id").add(documents, embeddings_documents=np.eye(8), show_progress=False)
    embedding = rank.Embedding(key="id").add(known, embeddings_documents=np.eye(3, 8))
    with pytest.raises(UnknownKeyError, match="Add their embeddings first with ranker.add"):
        (vectors + embedding)(np.ones(8, dtype=np.float32))


def test_a_ranker_learns_unknown_candidates_that_carry_their_fields():
    documents = corpus("int")
    retriever = retrieve.BM25(key="id", on=["title", "article"], documents=documents)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=ENCODER)
    # The documents mapped first: the ranker gets whole documents and encodes the ones it lacks.
    answers = (retriever + documents + ranker)("city wine")
    assert answers and len(ranker) == len(answers)


def test_results_follow_later_adds_on_both_sides():
    documents = corpus("int")
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents[:4])
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=ENCODER).add(documents[:4], show_progress=False)
    search = retriever + ranker
    before = search("city")
    replaced = [{**documents[1], "article": "Bordeaux city city city"}]
    search.add(replaced + documents[4:])
    after = search("city")
    reference = ranker("city", documents=retriever("city"))
    assert after == reference and after != before
    assert {hit["id"] for hit in after} >= {documents[1]["id"]}


def test_translate_looks_each_key_up_once_and_follows_versions():
    index = FaissIndex().add(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
    space = KeyList(["x", "c", "a", "zz", "d"])
    looked_up = []

    def ids_of(keys):
        looked_up.append(list(keys))
        return index.ids_of(keys)

    rows = np.array([1, 2, 2, 3, 1], dtype=np.int64)
    assert translate(space, rows, index, index.key_space, ids_of).tolist() == [2, 0, 0, -1, 2]
    assert translate(space, np.array([4, 1]), index, index.key_space, ids_of).tolist() == [3, 2]
    assert looked_up == [["c", "a", "zz"], ["d"]]  # each row once, only rows not seen before
    index.add(np.ones((1, 4), dtype=np.float32), ["zz"])  # the table changed: looked up again
    assert translate(space, rows, index, index.key_space, ids_of).tolist() == [2, 0, 0, 4, 2]
    other = KeyList(["c"])  # another space: its own rows
    assert translate(other, np.array([0]), index, index.key_space, ids_of).tolist() == [2]
    assert translate(space, np.empty(0, dtype=np.int64), index, index.key_space, ids_of).tolist() == []


def test_translations_kept_per_target_are_bounded():
    index = FaissIndex().add(np.eye(2, dtype=np.float32), ["a", "b"])
    for _ in range(3 * candidates_module._SPACES_KEPT):
        translate(KeyList(["a", "b"]), np.array([0, 1]), index, index.key_space, index.ids_of)
    assert len(candidates_module._TRANSLATIONS[index]) <= candidates_module._SPACES_KEPT


def test_candidates_hits_head_and_slices():
    found = Candidates(
        KeyList(["a", "b", "c"]),
        [np.array([2, 0]), np.array([], dtype=np.int64)],
        [np.array([0.5, 0.25], dtype=np.float32), np.array([], dtype=np.float32)],
    )
    assert found.hits("id") == [[{"id": "c", "similarity": 0.5}, {"id": "a", "similarity": 0.25}], []]
    assert found.hits("id", 1) == [[{"id": "c", "similarity": 0.5}], []]
    assert found.head(1).rows[0].tolist() == [2] and len(found.slice(1, 2)) == 1
    assert found.hits("id")[0][0] is not found.hits("id")[0][0]  # fresh dicts every time


def test_a_subclass_that_overrides_the_dict_hooks_is_called_as_written(monkeypatch):
    documents = corpus("int")

    class Reversed(retrieve.TfIdf):
        def _search(self, queries, k, **options):
            return [list(reversed(hits)) for hits in super()._search(queries, k, **options)]

    retriever = Reversed(key="id", on=["title", "article"], documents=documents, k=3)
    plain = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=3)
    ranker = rank.Encoder(key="id", on="title", encoder=ENCODER).add(documents, show_progress=False)
    assert retriever("city") == list(reversed(plain("city")))
    assert (retriever + documents)("city") == [
        {**next(d for d in documents if d["id"] == hit["id"]), **hit} for hit in reversed(plain("city"))
    ]
    assert (retriever | plain)("city") is not None and (retriever + ranker)("city")
