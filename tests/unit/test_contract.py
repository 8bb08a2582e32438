"""One contract, checked on every retriever, ranker and pipeline:
``add`` returns self, a call before ``add`` fails clearly, ``repr`` works,
and two pickle round trips give identical results."""

from __future__ import annotations

import functools
import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest

from cherche_faiss import rank, retrieve
from cherche_faiss._core.tags import tags
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import NotIndexedError, UnknownKeyError

from ..conftest import assert_same_hits

QUERIES = ["paris tower", "wine of bordeaux", "capital"]


def _vectors(documents):
    return HashingEncoder(dimension=32).encode([d["title"] + " " + d["article"] for d in documents])


def _query_vectors():
    return HashingEncoder(dimension=32).encode(QUERIES)


def make_tfidf():
    return retrieve.TfIdf(key="id", on=["title", "article"], k=3)


def make_bm25():
    return retrieve.BM25(key="id", on=["title", "article"], k=3)


def make_bm25_char():
    return retrieve.BM25(key="id", on=["title", "article"], k=3, tokenizer="char")


def make_encoder():
    return retrieve.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32), k=3)


def make_dpr():
    return retrieve.DPR(
        key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32),
        query_encoder=HashingEncoder(dimension=32, ngram_range=(2, 4)), k=3,
    )


def make_embedding_retriever():
    return retrieve.Embedding(key="id", k=3)


def make_rank_encoder():
    return rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32), k=3)


def make_rank_dpr():
    return rank.DPR(
        key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32),
        query_encoder=HashingEncoder(dimension=32, ngram_range=(2, 4)), k=3,
    )


def make_rank_embedding():
    return rank.Embedding(key="id", k=3)


def overlap_scorer(pairs):
    """A deterministic stand-in for a cross-encoder: shared character trigrams."""
    grams = lambda text: {text.lower()[i : i + 3] for i in range(len(text) - 2)}
    return [len(grams(query) & grams(text)) / (1 + len(grams(text))) for query, text in pairs]


def make_cross_encoder():
    return rank.CrossEncoder(key="id", on=["title", "article"], encoder=overlap_scorer, k=3)


def make_pipeline():
    return make_tfidf() + make_rank_encoder()


@functools.lru_cache(maxsize=None)
def _tiny_onnx_export():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from ..onnx_models import make_tiny_export

    return make_tiny_export(Path(tempfile.mkdtemp(prefix="contract_onnx_")) / "export")


def make_onnx_encoder():
    from cherche_faiss.encoders import OnnxEncoder

    return retrieve.Encoder(key="id", on=["title", "article"], encoder=OnnxEncoder(_tiny_onnx_export()), k=3)


def make_rank_onnx_encoder():
    from cherche_faiss.encoders import OnnxEncoder

    encoder = OnnxEncoder(_tiny_onnx_export(), embed_weights=True)
    return rank.Encoder(key="id", on=["title", "article"], encoder=encoder, k=3)


COMPONENTS = {
    "retrieve.TfIdf": make_tfidf,
    "retrieve.BM25": make_bm25,
    "retrieve.BM25[char]": make_bm25_char,
    "retrieve.Encoder": make_encoder,
    "retrieve.DPR": make_dpr,
    "retrieve.Embedding": make_embedding_retriever,
    "rank.Encoder": make_rank_encoder,
    "rank.DPR": make_rank_dpr,
    "rank.Embedding": make_rank_embedding,
    "rank.CrossEncoder": make_cross_encoder,
    "pipeline": make_pipeline,
    "retrieve.Encoder[onnx]": make_onnx_encoder,
    "rank.Encoder[onnx, embedded]": make_rank_onnx_encoder,
}


def add(component, documents):
    if isinstance(component, (retrieve.Embedding, rank.Embedding)):
        return component.add(documents, embeddings_documents=_vectors(documents))
    return component.add(documents)


def query(component, documents):
    """Answer the three queries as a batch and one by one."""
    embedding = isinstance(component, (retrieve.Embedding, rank.Embedding))
    q = _query_vectors() if embedding else QUERIES
    if tags(component).role == "ranker":
        batch = component(q, documents=[documents] * len(QUERIES))
        single = [component(q[i], documents=documents) for i in range(len(QUERIES))]
    else:
        batch = component(q)
        single = [component(q[i]) for i in range(len(QUERIES))]
    return batch, single


@pytest.fixture(params=sorted(COMPONENTS))
def make(request):
    return COMPONENTS[request.param]


def test_add_returns_self(make, documents):
    component = make()
    assert add(component, documents) is component


def test_call_before_add_fails_clearly(make, documents):
    component = make()
    if tags(component).role == "ranker":
        # Rankers have nothing to rank against: candidates must be known or encodable.
        if isinstance(component, rank.Embedding):
            with pytest.raises(UnknownKeyError, match="embeddings first"):
                query(component, documents)
        else:
            batch, _ = query(component, documents)  # encodes (or reads) candidates on the fly
            assert len(batch[0]) == 3
            if not isinstance(component, rank.CrossEncoder):
                assert len(component) == len(documents)
        return
    with pytest.raises(NotIndexedError, match=r"\.add\("):
        query(component, documents)


def test_repr(make, documents):
    component = make()
    text = repr(add(component, documents))
    assert type(component).__name__ in text and "key='id'" in text


def test_results_shape_and_json(make, documents):
    component = add(make(), documents)
    batch, single = query(component, documents)
    if tags(component).role == "retriever" and not isinstance(component, (retrieve.TfIdf, retrieve.BM25)):
        assert_same_hits(single, batch)  # BLAS: matrix-vector vs matrix-matrix products
    else:
        assert batch == single  # rankers and TF-IDF score a query identically alone or in a batch
    assert len(batch) == len(QUERIES)
    for hits in batch:
        assert 0 < len(hits) <= 3
        scores = [hit["similarity"] for hit in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(type(score) is float for score in scores)
        assert all(hit["id"] in {d["id"] for d in documents} for hit in hits)
    json.dumps(batch)


def test_pickle_round_trip_twice(make, documents):
    component = add(make(), documents)
    expected = query(component, documents)
    once = pickle.loads(pickle.dumps(component))
    twice = pickle.loads(pickle.dumps(once, protocol=5))
    assert query(once, documents) == expected
    assert query(twice, documents) == expected
    assert repr(twice) == repr(component)


def test_call_time_k_overrides_constructor_k(make, documents):
    component = add(make(), documents)
    embedding = isinstance(component, (retrieve.Embedding, rank.Embedding))
    q = _query_vectors()[2] if embedding else "capital of Paris, Lyon and Bordeaux"
    kwargs = {"documents": documents} if tags(component).role == "ranker" else {}
    assert len(component(q, k=1, **kwargs)) == 1
    assert len(component(q, **kwargs)) == 3


def test_adding_again_does_not_duplicate(make, documents):
    component = add(make(), documents)
    add(component, documents[:2])
    if tags(component).role != "pipeline":
        assert len(component) == len(documents)
    embedding = isinstance(component, (retrieve.Embedding, rank.Embedding))
    q = _query_vectors()[0] if embedding else "paris tower"
    kwargs = {"documents": documents} if tags(component).role == "ranker" else {}
    keys = [hit["id"] for hit in component(q, k=10, **kwargs)]
    assert len(keys) == len(set(keys))


def test_hits_are_fresh_dicts(make, documents):
    component = add(make(), documents)
    embedding = isinstance(component, (retrieve.Embedding, rank.Embedding))
    q = _query_vectors()[0] if embedding else "paris tower"
    kwargs = {"documents": documents} if tags(component).role == "ranker" else {}
    first = component(q, **kwargs)
    first[0]["similarity"] = -1.0
    assert component(q, **kwargs)[0]["similarity"] != -1.0
    assert all("similarity" not in document for document in documents)


def test_k_must_be_positive(make, documents):
    from cherche_faiss.exceptions import InvalidInputError

    component = add(make(), documents)
    embedding = isinstance(component, (retrieve.Embedding, rank.Embedding))
    q = _query_vectors()[0] if embedding else "paris"
    kwargs = {"documents": documents} if tags(component).role == "ranker" else {}
    with pytest.raises(InvalidInputError, match="k must be a positive integer"):
        component(q, k=0, **kwargs)


def test_vectors_are_in_a_faiss_index(make, documents):
    """Promise 2: dense components keep embeddings in a FaissIndex, not in Python dicts."""
    from cherche_faiss.index import FaissIndex

    component = add(make(), documents)
    stages = getattr(component, "models", [component])
    for stage in stages:
        if isinstance(stage, (retrieve.TfIdf, retrieve.BM25, rank.CrossEncoder)):
            continue
        assert isinstance(stage.index, FaissIndex) and len(stage.index) == len(documents)
        for value in vars(stage).values():
            assert not (isinstance(value, dict) and value and isinstance(next(iter(value.values())), np.ndarray))


def test_safe_save_round_trip_twice(make, documents, tmp_path):
    """cherche_faiss.save / load: identical answers and repr, twice, and the loaded copy keeps learning."""
    import cherche_faiss
    from cherche_faiss.exceptions import InvalidTypeError

    component = add(make(), documents[:4])
    if isinstance(component, rank.CrossEncoder):
        # Its scorer is a plain Python function: the safe format refuses to store code.
        with pytest.raises(InvalidTypeError, match=r"cannot save CrossEncoder\.encoder: it wraps the Python callable"):
            cherche_faiss.save(component, tmp_path / "saved")
        assert not (tmp_path / "saved").exists() and not list(tmp_path.iterdir())
        return
    expected = query(component, documents[:4])
    once = cherche_faiss.load(cherche_faiss.save(component, tmp_path / "once"))
    twice = cherche_faiss.load(cherche_faiss.save(once, tmp_path / "twice"))
    assert query(once, documents[:4]) == expected
    assert query(twice, documents[:4]) == expected
    assert repr(twice) == repr(component)
    # Adding the other documents to the loaded copy gives what adding them to the original gives.
    add(component, documents[4:])
    add(twice, documents[4:])
    assert query(twice, documents) == query(component, documents)
