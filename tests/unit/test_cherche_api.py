"""The rest of Cherche's API: utils, index.Faiss, evaluate.evaluation, data.arxiv_tags; documents
missing `on` fields (and the strict_fields setting); a CrossEncoder without key."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import cherche_faiss
from cherche_faiss import data, evaluate, index, qa, query, rank, retrieve, utils
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import InvalidInputError, InvalidTypeError, MissingDependencyError, UnknownKeyError

DOCUMENTS = [
    {"id": 0, "title": "Paris", "article": "The Eiffel tower is in Paris."},
    {"id": 1, "title": "Bordeaux", "article": "Bordeaux wine comes from the Garonne valley."},
    {"id": 2, "title": "Toulouse", "article": "Toulouse builds aircraft."},
]


def ids(hits):
    return [hit["id"] for hit in hits]


# -- utils -------------------------------------------------------------------------------------------
def test_top_k_in_a_pipeline_and_alone():
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=DOCUMENTS)
    search = retriever + utils.TopK(k=1) + DOCUMENTS
    assert len(retriever("paris bordeaux toulouse")) == 3
    assert [hit["title"] for hit in search("bordeaux wine")] == ["Bordeaux"]
    assert [len(hits) for hits in search(["paris", "bordeaux toulouse"])] == [1, 1]
    top = utils.TopK(k=2)
    hits = [{"id": 0}, {"id": 1}, {"id": 2}]
    assert top(documents=hits) == top(hits) == hits[:2]
    assert top(documents=[hits, hits[:1]]) == [hits[:2], hits[:1]] and top(documents=[]) == []
    with pytest.raises(InvalidInputError, match="k must be a positive integer"):
        utils.TopK(k=0)


def test_yield_batch_helpers():
    assert list(utils.yield_batch(list(range(5)), batch_size=2, desc="x", tqdm_bar=False)) == [[0, 1], [2, 3], [4]]
    assert list(utils.yield_batch(np.arange(4), batch_size=3, desc="x", tqdm_bar=False))[1].tolist() == [3]
    assert list(utils.yield_batch_single(["a", "b"], desc="x")) == ["a", "b"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch deprecates eager quantization
def test_quantize_replaces_linear_layers():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    engine = "qnnpack" if "qnnpack" in torch.backends.quantized.supported_engines else "x86"
    quantized = utils.quantize(model, engine=engine)
    assert "quantized" in type(quantized[0]).__module__ and isinstance(model[0], torch.nn.Linear)
    inputs = torch.randn(3, 8)
    assert torch.allclose(quantized(inputs), model(inputs), atol=0.1)
    with pytest.raises(InvalidInputError, match="not supported by this torch build"):
        utils.quantize(model, engine="no-such-engine")


# -- index.Faiss -------------------------------------------------------------------------------------
def test_faiss_index_matches_cherche_similarities_and_upserts():
    vectors = np.eye(3, dtype=np.float32)
    faiss_index = index.Faiss(key="id").add(documents=DOCUMENTS, embeddings=vectors)
    hits = faiss_index(embeddings=np.array([[1.0, 0.0, 0.0]]))
    assert ids(hits[0]) == [0, 1, 2]
    assert hits[0][0]["similarity"] == pytest.approx(1.0) and hits[0][1]["similarity"] == pytest.approx(1 / 3)
    faiss_index.add(documents=[{"id": 0}], embeddings=np.array([[0.0, 1.0, 1.0]]))  # replaces key 0
    assert len(faiss_index) == 3 and ids(faiss_index(np.array([[0.0, 1.0, 1.0]]), k=1)[0]) == [0]
    with pytest.raises(InvalidInputError, match="2 embeddings for 3 documents"):
        faiss_index.add(DOCUMENTS, vectors[:2])


def test_faiss_index_keeps_the_metric_of_a_given_index(tmp_path):
    import faiss

    faiss_index = index.Faiss(key="id", index=faiss.IndexFlatIP(3)).add(DOCUMENTS, np.eye(3))
    hits = faiss_index(np.array([[0.6, 0.8, 0.0]]), k=2)[0]
    assert ids(hits) == [1, 0] and hits[0]["similarity"] == pytest.approx(0.8)  # the inner product itself
    loaded = cherche_faiss.load(cherche_faiss.save(faiss_index, tmp_path / "faiss"))
    assert loaded(np.array([[0.6, 0.8, 0.0]]), k=2) == faiss_index(np.array([[0.6, 0.8, 0.0]]), k=2)


# -- evaluate.evaluation -----------------------------------------------------------------------------
def test_evaluation_follows_cherche_definitions():
    def search(q, batch_size=None, k=None):
        return [[{"id": 0}, {"id": 1}], [{"id": 2}]][: len(q)]

    search.key = "id"  # type: ignore[attr-defined]
    scores = evaluate.evaluation(search, [("a", [{"id": 1}]), ("b", [{"id": 2}, {"id": 3}])], hits_k=[1, 2])
    # Precision@2 counts hits: 2 relevant of (2 + 1); Recall@2 averages queries: (1 + 1/2) / 2;
    # R-Precision: 0 of the first hit, 1 of the first two: (0 + 1/2) / 2.
    assert scores == {
        "Precision@1": "50.00%",
        "Precision@2": "66.67%",
        "Recall@1": "25.00%",
        "Recall@2": "75.00%",
        "F1@1": "33.33%",
        "F1@2": "70.59%",
        "R-Precision": "25.00%",
    }
    with pytest.raises(InvalidInputError, match="no key field"):
        evaluate.evaluation(lambda q, **kw: [], [("a", [])])


def test_arxiv_tags_comes_from_an_installed_cherche(monkeypatch):
    for name in [name for name in sys.modules if name.startswith("cherche.")]:  # imported by other tests
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cherche", None)  # what an uninstalled package looks like to import
    with pytest.raises(MissingDependencyError, match="pip install cherche==2.2.1"):
        data.arxiv_tags()


def test_arxiv_tags_with_cherche():
    pytest.importorskip("cherche")
    documents, query_answers = data.arxiv_tags(arxiv_summary=False)
    assert documents and all("uri" in document for document in documents)
    assert all(isinstance(text, str) and all("uri" in tag for tag in tags) for text, tags in query_answers)


# -- documents missing `on` fields ---------------------------------------------------------------------
PARTIAL = [
    {"id": 0, "title": "Paris", "article": "The Eiffel tower."},
    {"id": 1, "title": "Bordeaux"},  # no article
    {"id": 2, "article": "Toulouse builds aircraft."},  # no title
    {"id": 3, "title": None, "url": "https://example.org"},  # no text at all: indexed, never matched by text
]


def lenient_components():
    encoder = HashingEncoder(dimension=32)
    on = ["title", "article"]
    return {
        "TfIdf": retrieve.TfIdf(key="id", on=on),
        "BM25": retrieve.BM25(key="id", on=on),
        "Lunr": retrieve.Lunr(key="id", on=on),
        "Flash": retrieve.Flash(key="id", on=on),
        "Fuzz": retrieve.Fuzz(key="id", on=on),
        "rank.DPR": rank.DPR(key="id", on=on, encoder=encoder, query_encoder=encoder),
        "rank.Encoder": rank.Encoder(key="id", on=on, encoder=encoder),
        "CrossEncoder": rank.CrossEncoder(key="id", on=on, encoder=lambda pairs: [len(t) for _, t in pairs]),
        "Norvig": query.Norvig(on=on),
    }


@pytest.mark.parametrize("name", sorted(lenient_components()))
def test_missing_on_fields_read_as_empty_unless_strict(name):
    component = lenient_components()[name]
    with cherche_faiss.config_context(strict_fields=True):
        with pytest.raises(InvalidInputError, match="has no field 'article'"):
            component.add(PARTIAL)
    component.add(PARTIAL)
    if name in ("TfIdf", "BM25", "Lunr"):
        assert ids(component("aircraft")) == [2]
        assert 3 not in ids(component("paris bordeaux toulouse aircraft eiffel https example org"))
    if name in ("rank.DPR", "rank.Encoder"):
        assert len(component) == 4  # the empty text is not a zero vector for a real model; HashingEncoder's is kept
    if name == "Norvig":
        assert component("aircraftt") == "aircraft"


def test_rankers_read_candidates_missing_fields_but_refuse_bare_unknown_hits():
    encoder = HashingEncoder(dimension=32)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=encoder)
    hits = ranker("aircraft", documents=PARTIAL)  # unknown candidates holding text are encoded
    assert sorted(ids(hits)) == [0, 1, 2, 3] and len(ranker) == 4
    with pytest.raises(UnknownKeyError, match="id=9 is unknown"):
        ranker("x", documents=[{"id": 9, "similarity": 1.0}])
    cross = rank.CrossEncoder(key="id", on=["title", "article"], encoder=lambda pairs: [len(t) for _, t in pairs])
    assert ids(cross("x", documents=PARTIAL)) == [2, 0, 1, 3]
    with cherche_faiss.config_context(strict_fields=True), pytest.raises(UnknownKeyError, match="none of the fields"):
        cross("x", documents=PARTIAL)


def test_qa_and_prf_read_missing_fields_as_empty():
    prf = query.PRF(on=["title", "article"], documents=PARTIAL, nb_docs=1, nb_terms_per_doc=2)
    assert prf("aircraft") == "aircraft builds"
    with cherche_faiss.config_context(strict_fields=True), pytest.raises(InvalidInputError, match="no field"):
        query.PRF(on=["title", "article"], documents=PARTIAL)
    reader = qa.QA(on=["title", "article"], model=lambda inputs: {"score": 1.0, "start": 0, "end": 1, "answer": "B"})
    assert reader("what?", documents=[PARTIAL[1]])[0]["answer"] == "B"


def test_config_is_checked_and_scoped():
    assert cherche_faiss.get_config() == {"strict_fields": False}
    with cherche_faiss.config_context(strict_fields=True):
        assert cherche_faiss.get_config() == {"strict_fields": True}
        with cherche_faiss.config_context(strict_fields=False):
            assert cherche_faiss.get_config()["strict_fields"] is False
        assert cherche_faiss.get_config()["strict_fields"] is True
    assert cherche_faiss.get_config()["strict_fields"] is False
    try:
        cherche_faiss.set_config(strict_fields=True)
        with pytest.raises(InvalidInputError, match="no field"):
            retrieve.TfIdf(key="id", on=["title", "article"], documents=PARTIAL)
    finally:
        cherche_faiss.set_config(strict_fields=False)
    with pytest.raises(InvalidTypeError, match="True or False"):
        cherche_faiss.set_config(strict_fields="yes")
    with pytest.raises(InvalidInputError, match="unknown setting"):
        with cherche_faiss.config_context(strict=True):
            pass


# -- rank.CrossEncoder without key ---------------------------------------------------------------------
def overlap(pairs):
    return [len(set(q.lower().split()) & set(t.lower().split())) for q, t in pairs]


def test_cross_encoder_without_key_takes_the_key_of_its_pipeline_or_fusion():
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=DOCUMENTS)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32))
    cross = rank.CrossEncoder(on=["title", "article"], encoder=overlap)  # Cherche's signature: no key
    fused = ranker | cross
    assert cross.key == "id" and fused.key == "id"
    search = (retriever + DOCUMENTS + fused).add(DOCUMENTS)
    assert ids(search("bordeaux wine"))[0] == 1
    keyless = rank.CrossEncoder(on="title", encoder=overlap)
    (retriever + keyless).add(DOCUMENTS)  # add needs the key: it comes from the pipeline
    assert keyless.key == "id" and len(keyless) == 3
    both = rank.CrossEncoder(on="title", encoder=overlap) | rank.CrossEncoder(on="article", encoder=overlap)
    assert both.key is None
    (retriever + DOCUMENTS + both).add(DOCUMENTS)
    assert both.key == "id" and all(model.key == "id" for model in both.models)


def test_a_fusion_of_different_explicit_keys_still_raises():
    by_id = rank.CrossEncoder(key="id", on="title", encoder=overlap)
    by_url = rank.Encoder(key="url", on="title", encoder=HashingEncoder(dimension=8))
    with pytest.raises(InvalidInputError, match="share one key field"):
        by_id | by_url
    adopted = rank.CrossEncoder(on="title", encoder=overlap)
    adopted | by_id  # noqa: B018 - takes "id"
    with pytest.raises(InvalidInputError, match="share one key field"):
        adopted | by_url
    with pytest.raises(InvalidInputError, match="has none"):
        retrieve.TfIdf(key="id", on="title") | utils.TopK(k=1)


def test_importing_the_library_imports_no_optional_dependency():
    code = (
        "import sys, cherche_faiss\n"
        "print(','.join(m for m in ('lunr', 'flashtext', 'rapidfuzz', 'transformers', 'sklearn', 'cherche') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
