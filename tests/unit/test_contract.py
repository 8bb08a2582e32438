"""One contract, checked on every retriever, ranker and pipeline the library ships:
the checks of :mod:`cherche_faiss.contract` (which users run on their own components)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest

from cherche_faiss import query, rank, retrieve, utils
from cherche_faiss.contract import CHECKS, DOCUMENTS, Case, ContractViolation, check_component
from cherche_faiss.encoders import HashingEncoder


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
        key="id",
        on=["title", "article"],
        encoder=HashingEncoder(dimension=32),
        query_encoder=HashingEncoder(dimension=32, ngram_range=(2, 4)),
        k=3,
    )


def make_embedding_retriever():
    return retrieve.Embedding(key="id", k=3)


def make_rank_encoder():
    return rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32), k=3)


def make_rank_dpr():
    return rank.DPR(
        key="id",
        on=["title", "article"],
        encoder=HashingEncoder(dimension=32),
        query_encoder=HashingEncoder(dimension=32, ngram_range=(2, 4)),
        k=3,
    )


def make_rank_embedding():
    return rank.Embedding(key="id", k=3)


def overlap_scorer(pairs):
    """A deterministic stand-in for a cross-encoder: shared character trigrams."""

    def grams(text):
        return {text.lower()[i : i + 3] for i in range(len(text) - 2)}

    return [len(grams(query) & grams(text)) / (1 + len(grams(text))) for query, text in pairs]


def make_cross_encoder():
    return rank.CrossEncoder(key="id", on=["title", "article"], encoder=overlap_scorer, k=3)


def make_pipeline():
    return make_tfidf() + make_rank_encoder()


def make_lunr():
    return retrieve.Lunr(key="id", on=["title", "article"], k=3)


def make_flash():
    return retrieve.Flash(key="id", on=["title", "article"], k=3)


def make_fuzz():
    return retrieve.Fuzz(key="id", on=["title", "article"], k=3)


def make_norvig_pipeline():
    return query.Norvig(on=["title", "article"]) + make_tfidf() + make_rank_encoder()


def make_prf_pipeline():
    # PRF learns from the documents it is built with, as in Cherche (it has no add).
    return query.PRF(on=["title", "article"], documents=DOCUMENTS, nb_docs=2, nb_terms_per_doc=1) + make_bm25()


def make_top_k_pipeline():
    return make_fuzz() + utils.TopK(k=2) + make_rank_encoder()


def make_cross_encoder_without_key():
    # Cherche's signature: no key; the pipeline gives it its own.
    return make_tfidf() + rank.CrossEncoder(on=["title", "article"], encoder=overlap_scorer, k=3)


#: Flash matches whole fields (keywords): documents whose "article" is a list of tags.
FLASH_DOCUMENTS = [
    {"id": 0, "title": "Paris", "article": ["eiffel tower", "capital", "france", "paris"]},
    {"id": 1, "title": "Montreal", "article": ["quebec", "canada"]},
    {"id": 2, "title": "Bordeaux", "article": ["wine", "garonne"]},
    {"id": 3, "title": "Toulouse", "article": ["aircraft", "airbus"]},
    {"id": 4, "title": "Lyon", "article": ["food", "silk"]},
    {"id": 5, "title": "Rennes", "article": ["capital", "brittany", "metro"]},
]


@functools.cache
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
    "retrieve.Lunr": make_lunr,
    "retrieve.Flash": make_flash,
    "retrieve.Fuzz": make_fuzz,
    "pipeline[query.Norvig]": make_norvig_pipeline,
    "pipeline[query.PRF]": make_prf_pipeline,
    "pipeline[utils.TopK]": make_top_k_pipeline,
    "pipeline[rank.CrossEncoder without key]": make_cross_encoder_without_key,
}


def _case(name):
    make = COMPONENTS[name]
    embedding = name in ("retrieve.Embedding", "rank.Embedding")
    if name == "retrieve.Flash":
        return Case(make, documents=FLASH_DOCUMENTS, queries=["paris and its eiffel tower", "wine", "capital"])
    if name == "pipeline[utils.TopK]":
        return Case(make, k=2)
    return Case(make, vectors=HashingEncoder(dimension=32).encode if embedding else None)


@pytest.fixture(params=sorted(COMPONENTS))
def case(request):
    return _case(request.param)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_contract(case, check):
    CHECKS[check](case)


def test_check_component_runs_every_check_and_names_the_broken_one():
    check_component(make_tfidf)

    class ForgetfulTfIdf(retrieve.TfIdf):
        def add(self, documents, **kwargs):  # breaks the first promise: add returns the component
            super().add(documents, **kwargs)

    with pytest.raises(ContractViolation, match="add_returns_self: ForgetfulTfIdf.add must return the component"):
        check_component(lambda: ForgetfulTfIdf(key="id", on=["title", "article"], k=3))

    class SharedHits(retrieve.TfIdf):
        def _search(self, queries, k):
            hits = super()._search(queries, k)
            self.__dict__.setdefault("_given", hits)
            return self.__dict__["_given"][: len(queries)]  # hands out the same dicts again

    with pytest.raises(ContractViolation, match="answers|fresh_hits"):
        check_component(lambda: SharedHits(key="id", on=["title", "article"], k=3))
