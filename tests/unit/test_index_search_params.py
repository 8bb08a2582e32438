"""Search parameters (nprobe, efSearch) per call, per index and per retriever, and tuning them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cherche_faiss import retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import (
    InvalidInputError,
    RecallNotReachedWarning,
)
from cherche_faiss.index import FaissIndex

from ..helpers import recall_at, unit_rows


# -- search parameters ------------------------------------------------------------------
def test_nprobe_per_call_and_per_index_without_rebuilding(ivf):
    index, queries, truth = ivf
    low, high = recall_at(index, queries, truth, nprobe=1), recall_at(index, queries, truth, nprobe=32)
    assert low < 0.7 and high == 1.0
    faiss_object = index.faiss_index
    index.set_search_params(nprobe=32)
    assert recall_at(index, queries, truth) == 1.0 and index.faiss_index is faiss_object
    assert recall_at(index, queries, truth, nprobe=1) == low  # a call overrides the default
    assert index.faiss_index.nprobe == 1  # FAISS' own setting is never touched


def test_search_parameters_are_validated(ivf, rng):
    index, queries, _ = ivf
    with pytest.raises(InvalidInputError, match="unknown search parameter 'nprobes'"):
        index.search(queries, k=3, nprobes=4)
    with pytest.raises(InvalidInputError, match="efSearch.*do not apply"):
        index.search(queries, k=3, efSearch=64)
    with pytest.raises(InvalidInputError, match="positive int"):
        index.search(queries, k=3, nprobe=0)
    flat = FaissIndex().add(unit_rows(rng, 10), list(range(10)))
    assert flat.search(queries, k=3, nprobe=4) == flat.search(queries, k=3)  # exhaustive: nothing to set


def test_hnsw_ef_search(rng):
    vectors = unit_rows(rng, 3_000)
    index = FaissIndex(factory="HNSW4").add(vectors, list(range(3_000)))
    queries = unit_rows(np.random.default_rng(1), 50)
    truth = FaissIndex().add(vectors, list(range(3_000))).search(queries, k=10)[1]
    assert recall_at(index, queries, truth, efSearch=10) < recall_at(index, queries, truth, efSearch=400)
    with pytest.raises(InvalidInputError, match="nprobe.*do not apply"):
        index.search(queries, k=3, nprobe=4)


def test_tune_reaches_the_target_recall_on_held_out_queries(ivf):
    index, queries, truth = ivf
    result = index.tune(target_recall=0.95, sample_size=200, show_progress=False)
    assert result.reached and result.recall >= 0.95 and index.search_params == result.params
    nprobe = result.params["nprobe"]
    assert 1 < nprobe < 32 and [t["params"]["nprobe"] for t in result.trials][-1] == nprobe
    assert recall_at(index, queries, truth) >= 0.9  # held-out queries, close to the target


def test_tune_hnsw_and_flat(rng):
    vectors = unit_rows(rng, 2_000)
    hnsw = FaissIndex(factory="HNSW8").add(vectors, list(range(2_000)))
    result = hnsw.tune(target_recall=0.9, show_progress=False)
    assert result.reached and "efSearch" in hnsw.search_params
    flat = FaissIndex().add(vectors, list(range(2_000)))
    assert flat.tune(show_progress=False).params == {}
    weak = FaissIndex(factory="HNSW2").add(vectors, list(range(2_000)))
    with pytest.warns(RecallNotReachedWarning, match="efSearch"):
        weak.tune(target_recall=1.0, show_progress=False)


def test_retriever_search_params_per_retriever_and_per_call(rng):
    vectors = unit_rows(rng, 4_000)
    documents = [{"id": i} for i in range(4_000)]
    retriever = retrieve.Embedding(key="id", index="IVF32,Flat", search_params={"nprobe": 32}, k=10)
    retriever.add(documents, embeddings_documents=vectors, show_progress=False)
    exact = retrieve.Embedding(key="id", k=10).add(documents, embeddings_documents=vectors)
    queries = unit_rows(np.random.default_rng(3), 20)

    def ids(hits):
        return [[hit["id"] for hit in row] for row in hits]

    assert ids(retriever(queries)) == ids(exact(queries))  # nprobe=32 probes every list: exact
    assert ids(retriever(queries, nprobe=1)) != ids(exact(queries))  # per call, without rebuilding
    result = retriever.tune(target_recall=0.99, show_progress=False)
    assert retriever.search_params == result.params == retriever.index.search_params
    restored = pickle.loads(pickle.dumps(retriever))
    assert restored.search_params == result.params and restored(queries) == retriever(queries)


def test_encoder_retriever_with_auto_index_end_to_end(small_exact_limit):
    documents = [{"id": i, "text": f"text {i} topic {i % 50}"} for i in range(3_000)]
    retriever = retrieve.Encoder(key="id", on="text", encoder=HashingEncoder(dimension=32), index="auto", k=5)
    retriever.add(iter(documents), show_progress=False)
    assert retriever.index.factory_used.startswith("IVF")
    retriever.tune(target_recall=0.95, show_progress=False)
    hits = retriever("topic 7", nprobe=retriever.index.search_params["nprobe"])
    assert len(hits) == 5 and all(hit["id"] % 50 == 7 for hit in hits)


def test_tune_on_validation_queries(ivf, rng):
    index, queries, truth = ivf
    validation = unit_rows(np.random.default_rng(7), 100)
    result = index.tune(target_recall=0.95, queries=validation, show_progress=False)
    assert result.reached and result.sample_size == 100
    assert recall_at(index, queries, truth) >= 0.9
    with pytest.raises(InvalidInputError, match="dimension"):
        index.tune(queries=unit_rows(rng, 5, d=8), show_progress=False)


def test_retriever_tunes_on_query_texts(small_exact_limit):
    documents = [{"id": i, "text": f"text {i} topic {i % 50}"} for i in range(3_000)]
    retriever = retrieve.Encoder(key="id", on="text", encoder=HashingEncoder(dimension=32), index="IVF32,Flat")
    retriever.add(documents, show_progress=False)
    result = retriever.tune(target_recall=0.99, queries=[f"topic {t}" for t in range(40)], show_progress=False)
    assert result.sample_size == 40 and result.recall >= 0.99 and retriever.search_params == result.params


def test_search_parameter_objects_are_reused_and_not_pickled(ivf):
    index, queries, _ = ivf
    index.search(queries, k=3, nprobe=4)
    first = index._faiss_parameters({"nprobe": 4})
    index.search(queries, k=3, nprobe=4)
    assert index._faiss_parameters({"nprobe": 4}) is first and first.nprobe == 4
    assert "_parameters_cache" not in index.__getstate__()["state"]
