"""Behaviour specific to rankers: vectorised scoring, unknown candidates, fields kept."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from cherche_faiss import rank
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import InvalidInputError, UnknownKeyError


def naive_rank(encoder, query, candidates, documents_by_id, k):
    """Cherche's algorithm, one query at a time, for reference."""
    q = encoder.encode([query])[0]
    texts = [documents_by_id[c["id"]]["title"] + " " + documents_by_id[c["id"]]["article"] for c in candidates]
    scores = encoder.encode(texts) @ q
    order = np.argsort(-scores, kind="stable")[:k]
    return [candidates[i]["id"] for i in order], scores[order]


def test_batched_ranking_equals_one_query_at_a_time(documents):
    encoder = HashingEncoder(dimension=64)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=encoder, k=4).add(documents, show_progress=False)
    by_id = {d["id"]: d for d in documents}
    queries = ["wine", "capital city", "aircraft"]
    candidates = [[{"id": i, "similarity": 0.0} for i in order] for order in ([0, 1, 2, 3, 4, 5], [5, 4, 3], [2, 3])]
    ranked = ranker(queries, documents=candidates)
    for query, hits, cands in zip(queries, ranked, candidates):
        expected_ids, expected_scores = naive_rank(encoder, query, cands, by_id, 4)
        assert [hit["id"] for hit in hits] == expected_ids
        np.testing.assert_allclose([hit["similarity"] for hit in hits], expected_scores, rtol=1e-5)


def test_candidate_fields_are_kept_and_inputs_untouched(documents):
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16)).add(
        documents, show_progress=False
    )
    candidates = [{"id": 2, "similarity": 9.0, "extra": "kept"}, {"id": 0, "similarity": 8.0}]
    snapshot = copy.deepcopy(candidates)
    hits = ranker("Bordeaux", documents=candidates)
    assert candidates == snapshot
    assert hits[0] == {"id": 2, "similarity": hits[0]["similarity"], "extra": "kept"}
    assert hits[0]["similarity"] != 9.0


def test_unknown_documents_are_encoded_once_and_kept(documents, counting_encoder):
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=counting_encoder, k=3)
    ranker(["wine", "aircraft"], documents=[documents, documents[:4]])
    document_texts = [t for t in counting_encoder.seen if t not in ("wine", "aircraft")]
    assert len(document_texts) == len(documents) == len(ranker)
    counting_encoder.seen.clear()
    ranker("wine", documents=documents)
    assert counting_encoder.seen == ["wine"]


def test_unknown_candidate_without_fields_is_a_clear_error(documents):
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=16))
    ranker.add(documents[:2], show_progress=False)
    with pytest.raises(UnknownKeyError, match="id=5 is unknown .* no field"):
        ranker("x", documents=[{"id": 0, "similarity": 1.0}, {"id": 5, "similarity": 0.5}])


def test_empty_candidates(documents):
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16)).add(
        documents, show_progress=False
    )
    assert ranker("x", documents=[]) == []
    assert ranker(["x", "y"], documents=[[], documents[:1]])[0] == []


def test_candidates_must_match_queries(documents):
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16)).add(
        documents, show_progress=False
    )
    with pytest.raises(InvalidInputError, match="one list of candidate documents per query"):
        ranker(["a", "b"], documents=[documents])
    with pytest.raises(InvalidInputError, match="key field 'id'"):
        ranker("a", documents=[{"title": "no id"}])


def test_re_adding_a_document_re_encodes_it(documents):
    ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=32), k=1).add(
        documents, show_progress=False
    )
    assert ranker("Lyon", documents=documents)[0]["id"] == 4
    ranker.add([{"id": 4, "title": "Nantes"}], show_progress=False)
    assert ranker("Lyon", documents=documents)[0]["id"] != 4
    assert len(ranker) == len(documents)


def word_overlap(pairs):
    return [len(set(q.lower().split()) & set(d.lower().split())) for q, d in pairs]


class FakeCrossEncoder:
    """Looks like sentence_transformers.CrossEncoder; refuses to be pickled."""

    num_labels = 1
    device = "cuda:0"
    model_card_data = None

    def __getitem__(self, position):
        config = type("Config", (), {"_name_or_path": "/models/my-cross-encoder"})()
        return type("Module", (), {"auto_model": type("Auto", (), {"config": config})()})()

    def predict(self, pairs, batch_size=32, show_progress_bar=None, convert_to_numpy=True):
        return np.asarray(word_overlap(pairs), dtype=np.float32)

    def __reduce__(self):
        raise TypeError("the cross-encoder model reached a pickle")


FakeCrossEncoder.__name__ = "CrossEncoder"
FakeCrossEncoder.__module__ = "sentence_transformers.cross_encoder"


def test_cross_encoder_scores_pairs_in_batches(documents):
    calls = []

    def scorer(pairs):
        calls.append(len(pairs))
        return word_overlap(pairs)

    ranker = rank.CrossEncoder(on=["title", "article"], encoder=scorer, k=2, batch_size=4)
    ranked = ranker(["Bordeaux wine", "capital of France"], documents=[documents, documents])
    assert calls == [4, 4, 4]  # 12 pairs, 4 at a time
    assert ranked[0][0]["id"] == 2 and ranked[1][0]["id"] == 0
    assert ranked[0][0]["similarity"] == 2.0 and type(ranked[0][0]["similarity"]) is float


def test_cross_encoder_reads_added_documents_for_bare_hits(documents):
    ranker = rank.CrossEncoder(on="article", encoder=word_overlap, key="id").add(documents)
    hits = ranker("red wine", documents=[{"id": 2, "similarity": 0.1}, {"id": 0, "similarity": 0.9}])
    assert [hit["id"] for hit in hits] == [2, 0]
    with pytest.raises(UnknownKeyError, match="cross_encoder.add"):
        ranker("red wine", documents=[{"id": 99}])
    with pytest.raises(InvalidInputError, match="key="):
        rank.CrossEncoder(on="article", encoder=word_overlap).add(documents)


def test_cross_encoder_in_a_pipeline(documents):
    from cherche_faiss import retrieve

    search = (
        retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=4)
        + documents
        + rank.CrossEncoder(on=["title", "article"], encoder=word_overlap, k=1)
    )
    assert search("Lyon food")[0]["title"] == "Lyon"


def test_sentence_transformers_cross_encoder_pickles_by_reference():
    import pickle

    from cherche_faiss.encoders import CrossEncoderScorer

    model = FakeCrossEncoder()
    ranker = rank.CrossEncoder(on="title", encoder=model.predict)
    assert isinstance(ranker.encoder, CrossEncoderScorer)
    assert ranker.encoder.num_labels == 1 and ranker.encoder.device == "cuda:0"
    assert ranker("Paris", documents=[{"id": 1, "title": "Lyon"}, {"id": 0, "title": "Paris"}])[0]["id"] == 0
    data = pickle.dumps(ranker)  # the fake model raises if it gets in
    restored = pickle.loads(data)
    assert restored.encoder.model_name_or_path == "/models/my-cross-encoder" and restored.encoder._model is None


def test_scorer_output_is_validated(documents):
    ranker = rank.CrossEncoder(on="title", encoder=lambda pairs: [1.0])
    with pytest.raises(InvalidInputError, match="one number per"):
        ranker("x", documents=documents[:2])
