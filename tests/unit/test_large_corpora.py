"""Large-corpus features at small sizes: "auto" index choice, training, streaming adds,
search parameters per call and per retriever, tuning, and updates on every index type."""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest

import cherche_faiss.index._training as training_module
import cherche_faiss.index.auto as auto_module
import cherche_faiss.index.faiss as faiss_module
from cherche_faiss import compose, retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import InvalidInputError, InvalidTypeError, RecallNotReachedWarning, UnknownKeyError
from cherche_faiss.index import FaissIndex, choose_index
from cherche_faiss.index.auto import parse_bytes


def unit_rows(rng, n, d=16):
    rows = rng.standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def recall_at(index, queries, truth, k=10, **params):
    found = index.search(queries, k=k, **params)[1]
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


@pytest.fixture
def small_exact_limit(monkeypatch):
    """Make "auto" switch to IVF from 2,000 vectors instead of 100,000."""
    monkeypatch.setattr(auto_module, "EXACT_LIMIT", 2_000)
    monkeypatch.setattr(faiss_module, "EXACT_LIMIT", 2_000)


# -- "auto" ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "budget", "recall", "factory"),
    [
        (5_000, None, 0.95, "Flat"),
        (1_000_000, None, 0.95, "IVF4096,Flat"),
        (1_000_000, None, 1.0, "Flat"),
        (1_000_000, "1GB", 0.95, "IVF4096,SQ8"),
        (1_000_000, "200MB", 0.8, "IVF4096,PQ64"),
        (1_000_000, "60MB", 0.8, "IVF4096,PQ32"),
        (20_000_000, None, 0.95, "IVF16384,Flat"),
    ],
)
def test_choose_index(n, budget, recall, factory):
    choice = choose_index(n, 384, memory_budget=budget, target_recall=recall)
    assert choice.factory == factory
    assert f"{n:,}" in choice.reason
    assert budget is None or choice.estimated_bytes <= parse_bytes(budget)
    assert ("nprobe" in choice.search_params) == factory.startswith("IVF")


def test_choose_index_refuses_impossible_budgets():
    with pytest.raises(InvalidInputError, match="lower target_recall"):
        choose_index(1_000_000, 384, memory_budget="200MB", target_recall=0.95)  # PQ cannot promise 0.95
    with pytest.raises(InvalidInputError, match="Raise the budget"):
        choose_index(1_000_000, 384, memory_budget="5MB", target_recall=0.5)
    with pytest.raises(InvalidInputError, match="exact search"):
        choose_index(1_000_000, 384, memory_budget="1GB", target_recall=1.0)
    with pytest.raises(InvalidInputError, match="not a size"):
        FaissIndex(factory="auto", memory_budget="lots")
    with pytest.raises(InvalidInputError, match="target_recall"):
        FaissIndex(factory="auto", target_recall=1.5)


def test_auto_keeps_exact_search_for_small_corpora_and_says_why(rng):
    index = FaissIndex(factory="auto").add(unit_rows(rng, 500), list(range(500)))
    assert index.factory_used == "Flat"
    assert "chosen='Flat'" in repr(index)
    assert "because='exact search: 500 vectors of d=16 is under 100,000" in repr(index)


def test_auto_streams_into_ivf_chosen_when_the_size_is_unknown(rng, small_exact_limit):
    vectors = unit_rows(rng, 6_000)
    stream = ((vectors[i : i + 500], list(range(i, i + 500))) for i in range(0, 6_000, 500))
    index = FaissIndex(factory="auto").add_batches(stream, show_progress=False)
    # Chosen once 2,000 vectors had arrived: 4*sqrt(2,000) is about 179, but 39 vectors per list allow 32.
    assert index.factory_used == "IVF32,Flat"
    assert "length unknown; pass expected_size" in repr(index)
    assert len(index) == 6_000 and index.faiss_index.ntotal == 6_000
    assert "searching_with={'nprobe'" in repr(index)


def test_auto_uses_expected_size(rng, small_exact_limit):
    vectors = unit_rows(rng, 3_000)
    index = FaissIndex(factory="auto", expected_size=3_000).add(vectors, list(range(3_000)))
    assert index.factory_used.startswith("IVF") and "3,000 vectors of d=16" in index.choice["reason"]
    assert "length unknown" not in index.choice["reason"]
    restored = pickle.loads(pickle.dumps(index))
    assert restored.choice == index.choice and restored.search(vectors[:3], k=5) == index.search(vectors[:3], k=5)


# -- training ----------------------------------------------------------------------------
def test_training_uses_a_sample_of_the_first_vectors_and_reports_progress(rng, monkeypatch):
    seen = {}
    real_train = training_module.train_index

    def recording_train(index, sample, description, show_progress):
        seen["sample"] = len(sample)
        seen["consumed"] = consumed[0]
        real_train(index, sample, description, show_progress)

    monkeypatch.setattr(faiss_module, "train_index", recording_train)
    consumed = [0]
    vectors = unit_rows(rng, 3_000)

    def stream():
        for start in range(0, 3_000, 100):
            consumed[0] += 100
            yield vectors[start : start + 100], list(range(start, start + 100))

    index = FaissIndex(factory="IVF8,Flat").add_batches(stream(), show_progress=False)
    # Default sample: 50 vectors per centroid, trained as soon as they had arrived.
    assert seen == {"sample": 400, "consumed": 400}
    assert len(index) == 3_000


def test_training_progress_bar_counts_k_means_iterations(rng, monkeypatch):
    bars = []

    class RecordingBar:
        def __init__(self, total, desc, show, unit="doc"):
            self.total, self.desc, self.updates = total, desc, 0
            bars.append(self)

        def update(self, n=1):
            self.updates += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(training_module, "progress", RecordingBar)
    FaissIndex(factory="IVF8,Flat").add(unit_rows(rng, 500), list(range(500)), show_progress=True)
    (bar,) = bars
    assert bar.total == 11 == bar.updates  # 10 k-means iterations, then the codes
    assert "IVF8,Flat" in bar.desc and "400 vectors" in bar.desc


def test_stepwise_training_matches_faiss_training(rng):
    import faiss

    vectors = unit_rows(rng, 2_000)
    ours = FaissIndex(factory="IVF16,Flat", train_size=2_000).add(vectors, list(range(2_000)))
    theirs = faiss.index_factory(16, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    theirs.train(vectors)
    np.testing.assert_allclose(
        ours.faiss_index.quantizer.reconstruct_n(0, 16), theirs.quantizer.reconstruct_n(0, 16), atol=1e-6
    )


@pytest.mark.parametrize(("factory", "needed"), [("IVF64,Flat", 2_496), ("PQ4", 9_984), ("IVF16,PQ4", 9_984)])
def test_too_few_training_vectors_is_a_clear_error(rng, factory, needed):
    index = FaissIndex(factory=factory)
    with pytest.raises(InvalidInputError, match=f"at least {needed:,} vectors"):
        index.add(unit_rows(rng, 1_000), list(range(1_000)))
    assert len(index) == 0
    with pytest.raises(InvalidInputError, match="train_size=100 is too small"):
        FaissIndex(factory=factory, train_size=100).add(unit_rows(rng, 10_000), list(range(10_000)))


def test_a_stream_too_short_to_train_is_a_clear_error(rng):
    stream = ((unit_rows(rng, 50), list(range(i * 50, i * 50 + 50))) for i in range(4))
    with pytest.raises(InvalidInputError, match="at least 1,248 vectors .* only 200 arrived"):
        FaissIndex(factory="IVF32,Flat").add_batches(stream, show_progress=False)


# -- streaming ---------------------------------------------------------------------------
def test_streaming_add_never_holds_every_embedding(rng):
    """A generator of 8,000 documents: Python-side memory holds the key table (about 1 MB)
    and one batch (512 kB of vectors), far below the 16 MB of all embeddings."""
    retriever = retrieve.Encoder(key="id", on="text", encoder=HashingEncoder(dimension=512), batch_size=256)
    documents = ({"id": i, "text": f"document number {i} about topic {i % 97}"} for i in range(8_000))
    retrieve.Encoder(key="id", on="text", encoder=HashingEncoder()).add([{"id": 0, "text": "warm"}], show_progress=False)  # imports
    tracemalloc.start()
    try:
        retriever.add(documents, show_progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(retriever) == 8_000
    assert peak < 5_000_000, f"peak {peak:,} bytes: embeddings were accumulated"
    assert retriever("topic 5", k=1)[0]["id"] % 97 == 5


def test_streaming_add_equals_adding_a_list(documents, encoder):
    from_list = retrieve.Encoder(key="id", on=["title", "article"], encoder=encoder, batch_size=2)
    from_list.add(documents, show_progress=False)
    streamed = retrieve.Encoder(key="id", on=["title", "article"], encoder=encoder, batch_size=2)
    streamed.add((document for document in documents), show_progress=False)
    assert streamed("wine", k=3) == from_list("wine", k=3)


def test_a_bad_document_in_a_stream_names_its_position(encoder):
    retriever = retrieve.Encoder(key="id", on="text", encoder=encoder, batch_size=4)
    stream = ({"id": i, "text": "t"} if i != 6 else {"text": "no id"} for i in range(10))
    with pytest.raises(InvalidInputError, match=r"documents\[6\]"):
        retriever.add(stream, show_progress=False)
    assert len(retriever) == 4  # the first batch was added: a stream is not atomic (documented)
    with pytest.raises(InvalidTypeError, match="iterable"):
        retriever.add(42, show_progress=False)


def test_pipeline_reads_a_generator_once_for_every_model(documents, encoder):
    tfidf = retrieve.TfIdf(key="id", on=["title", "article"])
    dense = retrieve.Encoder(key="id", on=["title", "article"], encoder=encoder)
    union = tfidf | dense
    union.add(document for document in documents)
    assert len(tfidf) == len(dense) == len(documents)


# -- search parameters ------------------------------------------------------------------
@pytest.fixture
def ivf(rng):
    vectors = unit_rows(rng, 4_000)
    index = FaissIndex(factory="IVF32,Flat").add(vectors, list(range(4_000)))
    queries = unit_rows(np.random.default_rng(1), 50)
    truth = FaissIndex().add(vectors, list(range(4_000))).search(queries, k=10)[1]
    return index, queries, truth


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


# -- updates on every index type -------------------------------------------------------
@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "IVF16,SQ8", "SQ8", "IVF16,PQ4", "PQ4"])
def test_remove_and_replace_on_every_index_type(rng, factory):
    vectors = unit_rows(rng, 10_000)
    index = FaissIndex(factory=factory, search_params=None).add(vectors, list(range(10_000)))
    params = {"nprobe": 16} if factory.startswith("IVF") else {}
    index.remove([0, 1, 2])
    assert len(index) == 9_997 and index.faiss_index.ntotal == 9_997
    found = index.search(vectors[:3], k=5, **params)[1]
    assert not {0, 1, 2} & {key for row in found for key in row}
    # Re-adding a key replaces its vector: key 10 now stands where key 20 was.
    index.add(vectors[20], [10])
    assert len(index) == 9_997 and index.faiss_index.ntotal == 9_997
    assert set(index.search(vectors[20], k=2, **params)[1][0]) == {10, 20}
    with pytest.raises(UnknownKeyError):
        index.remove([0])


def test_hnsw_refuses_updates_clearly_and_stays_intact(rng):
    vectors = unit_rows(rng, 100)
    index = FaissIndex(factory="HNSW8").add(vectors, list(range(100)))
    before = index.search(vectors[:5], k=5)
    with pytest.raises(InvalidInputError, match="cannot remove keys.*HNSW"):
        index.remove([3])
    with pytest.raises(InvalidInputError, match="cannot replace existing keys"):
        index.add(vectors[7], [3])
    assert len(index) == 100 and index.faiss_index.ntotal == 100 and index.search(vectors[:5], k=5) == before
    index.add(vectors[7], [1_000])  # new keys are fine
    assert len(index) == 101


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
