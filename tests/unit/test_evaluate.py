"""Metrics, evaluate(), the BEIR loader and the evaluate command."""

from __future__ import annotations

import gzip
import json
import math

import pytest

from cherche_faiss import retrieve
from cherche_faiss.cli import main
from cherche_faiss.data import load_beir
from cherche_faiss.evaluate import (
    evaluate,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    r_precision,
    recall_at_k,
)
from cherche_faiss.exceptions import CorruptFileError, InvalidInputError, MissingFileError

RANKING = ["d3", "d1", "d9", "d2"]
JUDGED = {"d1": 2, "d2": 1, "d5": 1, "d0": 0}


def test_metric_values_by_hand():
    assert precision_at_k(RANKING, JUDGED, 2) == 0.5
    assert precision_at_k(RANKING, JUDGED, 10) == 0.2  # short lists still divide by k
    assert recall_at_k(RANKING, JUDGED, 4) == pytest.approx(2 / 3)
    assert mrr_at_k(RANKING, JUDGED, 10) == 0.5 and mrr_at_k(RANKING, JUDGED, 1) == 0.0
    assert hit_rate_at_k(RANKING, JUDGED, 1) == 0.0 and hit_rate_at_k(RANKING, JUDGED, 2) == 1.0
    assert r_precision(RANKING, JUDGED) == pytest.approx(1 / 3)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKING, JUDGED, 4) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["d1", "d2", "d5"], JUDGED, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["d1", "d1", "d1"], {"d1": 1, "d2": 1}, 3) < 1.0  # repeats gain once
    assert all(type(f(RANKING, JUDGED, 3)) is float for f in (precision_at_k, recall_at_k, ndcg_at_k))


def test_metrics_without_relevant_documents_are_zero():
    for metric in (recall_at_k, mrr_at_k, ndcg_at_k, hit_rate_at_k):
        assert metric(["a"], {"a": 0}, 5) == 0.0
    with pytest.raises(InvalidInputError, match="k must"):
        ndcg_at_k(["a"], {"a": 1}, 0)


def write_beir(folder, corpus, queries, qrels, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    text = "".join(json.dumps(record) + "\n" for record in corpus)
    if gz:
        with gzip.open(folder / "corpus.jsonl.gz", "wt") as handle:
            handle.write(text)
    else:
        (folder / "corpus.jsonl").write_text(text)
    (folder / "queries.jsonl").write_text("".join(json.dumps(record) + "\n" for record in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    )
    return folder


CORPUS = [
    {"_id": "a", "title": "Bordeaux", "text": "Bordeaux makes red wine."},
    {"_id": "b", "title": "Toulouse", "text": "Toulouse builds aircraft."},
    {"_id": "c", "title": "Lyon", "text": "Lyon is famous for food."},
]
QUERIES = [{"_id": "q1", "text": "wine"}, {"_id": "q2", "text": "aircraft"}, {"_id": "q3", "text": "unjudged"}]


def test_load_beir_and_evaluate(tmp_path):
    folder = write_beir(tmp_path / "tiny", CORPUS, QUERIES, [("q1", "a", 1), ("q2", "b", 2), ("q2", "c", 0)], gz=True)
    dataset = load_beir(folder)
    assert [d["id"] for d in dataset.corpus] == ["a", "b", "c"] and set(dataset.queries) == {"q1", "q2"}
    retriever = retrieve.BM25(key="id", on=["title", "text"], documents=dataset.corpus)
    scores = evaluate(retriever, dataset.queries, dataset.qrels, ks=(1, 10), show_progress=False)
    assert scores["ndcg@10"] == 1.0 and scores["recall@1"] == 1.0 and scores["queries"] == 2


def test_queries_without_relevant_judgments_are_counted_not_scored(tmp_path):
    folder = write_beir(tmp_path / "tiny", CORPUS, QUERIES, [("q1", "a", 1), ("q2", "b", 0)])
    dataset = load_beir(folder)
    retriever = retrieve.BM25(key="id", on=["title", "text"], documents=dataset.corpus)
    scores = evaluate(retriever, dataset.queries, dataset.qrels, ks=(10,), show_progress=False)
    assert scores["queries"] == 1 and scores["queries_without_judgments"] == 1 and scores["ndcg@10"] == 1.0


def test_beir_errors(tmp_path):
    with pytest.raises(MissingFileError, match="not a folder"):
        load_beir(tmp_path / "nothing-here")
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(MissingFileError, match="corpus.jsonl"):
        load_beir(tmp_path / "empty-folder")
    folder = write_beir(tmp_path / "b", CORPUS, QUERIES, [("q1", "zz", 1)])
    with pytest.raises(CorruptFileError, match="absent from the corpus"):
        load_beir(folder)
    assert load_beir(folder, unknown_documents="drop").qrels == {"q1": {}}
    (folder / "queries.jsonl").unlink()
    with pytest.raises(MissingFileError, match="queries.jsonl"):
        load_beir(folder)
    empty = write_beir(tmp_path / "c", [], QUERIES, [("q1", "a", 1)])
    with pytest.raises(InvalidInputError, match="empty"):
        load_beir(empty)
    broken = write_beir(tmp_path / "d", CORPUS, QUERIES, [("q1", "a", 1)])
    (broken / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{not json\n')
    with pytest.raises(CorruptFileError, match="line 2"):
        load_beir(broken)


def test_evaluate_rejects_inconsistent_inputs():
    retriever = retrieve.BM25(key="id", on="text", documents=[{"id": "a", "text": "wine"}])
    with pytest.raises(InvalidInputError, match="not in queries"):
        evaluate(retriever, {"q1": "wine"}, {"q9": {"a": 1}}, show_progress=False)
    with pytest.raises(InvalidInputError, match="nothing to evaluate"):
        evaluate(retriever, {"q1": "wine"}, {"q1": {"a": 0}}, show_progress=False)


def test_evaluate_command_prints_a_table(tmp_path, capsys):
    folder = write_beir(tmp_path / "tiny", CORPUS, QUERIES, [("q1", "a", 1), ("q2", "b", 1)])
    assert main(["evaluate", str(folder), "--pipeline", "bm25", "--pipeline", "tfidf", "--ks", "1", "10"]) == 0
    out = capsys.readouterr().out
    assert "| bm25 | 1.0000 |" in out and "| tfidf |" in out and "ndcg@10" in out
