"""filter= on every component: columns kept in step, saves and pickles, bad input, strict keywords."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import cherche_faiss
from cherche_faiss import rank, retrieve, utils
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import InvalidFilterError, InvalidInputError, InvalidTypeError
from cherche_faiss.filters._columns import FieldColumns

DOCUMENTS = [
    {
        "id": i,
        "title": f"paris town {i}",
        "year": 2000 + i % 25,
        "lang": ["en", "fr", "de"][i % 3],
        "open": i % 2 == 0,
        **({"score": i / 10} if i % 5 else {}),
    }
    for i in range(60)
]


def lexical():
    return [
        retrieve.TfIdf(key="id", on="title", documents=DOCUMENTS),
        retrieve.BM25(key="id", on="title", documents=DOCUMENTS),
        retrieve.Lunr(key="id", on="title", documents=DOCUMENTS),
        retrieve.Fuzz(key="id", on="title").add(DOCUMENTS),
    ]


def dense(index=None):
    return retrieve.Encoder(key="id", on="title", encoder=HashingEncoder(), index=index).add(
        DOCUMENTS, show_progress=False
    )


def allowed(filter):  # noqa: A002 - the documents a simple {"field": value, ...} filter allows
    return {d["id"] for d in DOCUMENTS if all(d.get(name) == value for name, value in filter.items())}


@pytest.mark.parametrize("model", [*lexical(), dense()], ids=lambda model: type(model).__name__)
def test_every_retriever_applies_the_filter_before_its_top_k(model):
    unfiltered = model("paris town", k=None)
    expected = [hit for hit in unfiltered if hit["id"] in allowed({"lang": "fr", "open": True})][:4]
    found = model("paris town", k=4, filter={"lang": "fr", "open": True})
    assert [hit["id"] for hit in found] == [hit["id"] for hit in expected]
    assert len(found) == 4  # a post-filter of the unfiltered top 4 would hold about 1
    batch = model(["paris town", "town 7"], k=3, filter=[7, 8, 9])
    assert all({hit["id"] for hit in hits} <= {7, 8, 9} for hits in batch) and len(batch) == 2
    assert model("paris town", k=3, filter={"year": 1900}) == []


def test_dense_upserts_and_removals_keep_the_columns_in_step():
    model = dense()
    assert {hit["id"] for hit in model("paris", k=None, filter={"year": 2030})} == set()
    model.add([{**DOCUMENTS[3], "year": 2030}, {**DOCUMENTS[4], "year": 2030}], show_progress=False)
    assert {hit["id"] for hit in model("paris", k=None, filter={"year": 2030})} == {3, 4}
    assert 3 not in {hit["id"] for hit in model("paris", k=None, filter={"year": 2003})}  # the old value is gone
    model.index.remove([4])
    assert {hit["id"] for hit in model("paris", k=None, filter={"year": 2030})} == {3}
    assert 4 not in {hit["id"] for hit in model("paris", k=None, filter={"$not": {"year": 2030}})}


@pytest.mark.parametrize("model", lexical(), ids=lambda model: type(model).__name__)
def test_lexical_upserts_keep_the_columns_in_step(model):
    model.add([{**DOCUMENTS[5], "lang": "xx"}])
    assert [hit["id"] for hit in model("paris town", k=None, filter={"lang": "xx"})] == [5]
    assert 5 not in {hit["id"] for hit in model("paris town", k=None, filter={"lang": "fr"})}


@pytest.mark.parametrize(
    "model",
    [*lexical(), dense("IVF1,Flat"), retrieve.Flash(key="id", on="title").add(DOCUMENTS)],
    ids=lambda model: type(model).__name__,
)
def test_saves_and_pickles_keep_filters_working(model, tmp_path):
    filter = {"$or": [{"year": {"$gte": 2020}}, {"score": {"$exists": False}}], "lang": {"$ne": "de"}}  # noqa: A001
    expected = model("paris town 3", k=5, filter=filter)
    assert pickle.loads(pickle.dumps(model))("paris town 3", k=5, filter=filter) == expected
    cherche_faiss.save(model, tmp_path / "saved")
    loaded = cherche_faiss.load(tmp_path / "saved")
    assert loaded("paris town 3", k=5, filter=filter) == expected
    assert loaded.filter_nbytes == model.filter_nbytes > 0


def test_declared_filter_fields_are_the_only_ones():
    model = retrieve.TfIdf(key="id", on="title", documents=DOCUMENTS, filter_fields=["year"])
    assert model.filter_fields == ("year",)
    assert {hit["id"] for hit in model("paris", k=None, filter={"year": 2001})} == allowed({"year": 2001})
    with pytest.raises(InvalidFilterError, match="unknown filter field 'lang'.*'year'.*filter_fields"):
        model("paris", filter={"lang": "en"})
    with pytest.raises(InvalidInputError, match="filter field 'year' holds list"):
        model.add([{"id": 99, "title": "x", "year": [1, 2]}])
    with pytest.raises(InvalidTypeError, match="filter_fields"):
        retrieve.TfIdf(key="id", on="title", filter_fields=[3])


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ({"nope": 1}, r'filter\["nope"\]: unknown filter field'),
        ({"year": {"$near": 1}}, "unknown operator '\\$near'"),
        ({"lang": {"$gt": 3}}, "compares field 'lang' with number 3, but 'lang' holds string"),
        ({"year": {"$gt": "2000"}}, "holds number"),
        ({"year": {"$in": []}}, r'filter\["year"\]\["\$in"\] is empty'),
        ({"open": {"$gt": 1}}, "holds bool"),
    ],
)
def test_bad_filters_raise_clear_errors(filter, message):  # noqa: A002
    for model in [lexical()[0], dense("HNSW16")]:
        with pytest.raises(InvalidFilterError, match=message):
            model("paris", filter=filter)


def test_a_model_without_filterable_fields_refuses_field_filters_but_takes_keys():
    model = retrieve.TfIdf(key="id", on="title", documents=[{"id": i, "title": f"town {i}"} for i in range(5)])
    with pytest.raises(InvalidFilterError, match="no filterable field"):
        model("town", filter={"year": 2000})
    assert {hit["id"] for hit in model("town", k=None, filter=[1, 2])} == {1, 2}


def test_misspelt_keywords_raise_on_every_kind_of_call():
    retriever, ranker = lexical()[0], rank.Encoder(key="id", on="title", encoder=HashingEncoder())
    ranker.add(DOCUMENTS, show_progress=False)
    calls = [
        lambda: retriever("paris", filtre={"year": 2000}),
        lambda: dense("HNSW16")("paris", nprobes=3),
        lambda: ranker("paris", documents=[{"id": 1}], filtre={}),
        lambda: (retriever + ranker)("paris", filtre={}),
        lambda: (retriever | dense())("paris", filtre={}),
        lambda: utils.TopK(k=1)(documents=[], filtre=1),
    ]
    for call in calls:
        with pytest.raises(InvalidTypeError, match="'filtre'|'nprobes'"):
            call()
    with pytest.raises(InvalidTypeError, match="Did you mean 'filter'"):
        retriever("paris", filtre={})


def test_keywords_pass_through_to_the_stages_that_take_them():
    ivf = retrieve.Encoder(key="id", on="title", encoder=HashingEncoder(), index="IVF1,Flat")
    ivf.add(DOCUMENTS, show_progress=False)
    pipeline = lexical()[0] + rank.Encoder(key="id", on="title", encoder=HashingEncoder()) + DOCUMENTS
    pipeline.add(DOCUMENTS)
    assert pipeline("paris town", k=3, filter={"lang": "de"})[0]["lang"] == "de"
    fusion = lexical()[0] | ivf
    hits = fusion("paris town", nprobe=4, filter={"open": False})  # nprobe reaches the IVF index only
    assert hits and all(not DOCUMENTS[hit["id"]]["open"] for hit in hits)
    found = (ivf + DOCUMENTS)("paris", k=2, nprobe=4, filter={"year": 2003, "lang": "en"})
    assert [hit["id"] for hit in found] == [3] and found[0]["title"] == "paris town 3"


def test_pipelines_filter_at_the_stage_that_selects_candidates_only():
    retriever = lexical()[0]
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(), filter_fields=["year"])
    ranker.add(DOCUMENTS, show_progress=False)
    # The ranker knows no 'lang': it never gets the filter, the retriever applies it.
    hits = (retriever + ranker)("paris town", filter={"lang": "en"})
    assert hits and {hit["id"] for hit in hits} <= allowed({"lang": "en"})
    with pytest.raises(InvalidFilterError, match="unknown filter field 'lang'"):
        ranker("paris", documents=[{"id": 1}], filter={"lang": "en"})  # called alone it selects, so it filters


@pytest.mark.parametrize("ranker_kind", ["encoder", "embedding", "cross"])
def test_rankers_drop_excluded_candidates(ranker_kind):
    if ranker_kind == "encoder":
        ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder()).add(DOCUMENTS, show_progress=False)
        query = "paris town"
    elif ranker_kind == "embedding":
        vectors = np.random.default_rng(0).standard_normal((len(DOCUMENTS), 4))
        ranker = rank.Embedding(key="id").add(DOCUMENTS, embeddings_documents=vectors)
        query = np.ones(4)
    else:
        ranker = rank.CrossEncoder(on="title", encoder=lambda pairs: [len(text) for _, text in pairs], key="id")
        ranker.add(DOCUMENTS)
        query = "paris town"
    candidates = [{"id": i} for i in range(20)]
    ranked = ranker(query, documents=candidates, k=5, filter={"lang": "en"})
    unfiltered = ranker(query, documents=candidates)
    assert [hit["id"] for hit in ranked] == [hit["id"] for hit in unfiltered if hit["id"] % 3 == 0][:5]


def test_sharded_retrievers_refuse_filters_clearly():
    from cherche_faiss.distributed import ShardedRetriever

    sharded = ShardedRetriever(retrieve.Embedding(key="id"), shards=2)
    with pytest.raises(InvalidInputError, match="ShardedRetriever does not support filter="):
        sharded(np.ones(4), filter={"year": 2000})


def test_columns_memory_is_measurable_and_typed():
    columns = FieldColumns()
    columns.write(np.arange(3), [{"a": 1, "b": "x", "c": True}, {"a": 2.5, "b": "y"}, {"b": "x", "d": None}])
    assert columns.columns["a"].numbers.dtype == np.float64 and columns.columns["b"].categories == ["x", "y"]
    assert columns.columns["b"].codes[:3].tolist() == [0, 1, 0] and columns.columns["c"].bools[:3].tolist() == [
        1,
        -1,
        -1,
    ]
    assert "d" not in columns.columns  # never held a value
    assert columns.nbytes > 0 and len(columns) == 3


def test_a_dense_subclass_writing_its_own_hits_still_filters():
    class Custom(retrieve.Encoder):
        def _search(self, queries, k, **options):
            return [[{"id": key, "similarity": 1.0} for key in self.index.keys()][:k] for _ in queries]

    model = Custom(key="id", on="title", encoder=HashingEncoder()).add(DOCUMENTS, show_progress=False)
    assert [hit["id"] for hit in model("paris", k=3, filter={"lang": "de"})] == [2, 5, 8]
    assert [hit["id"] for hit in model("paris", k=3, filter={"lang": "en"})] == [0, 3, 6]  # columns kept
