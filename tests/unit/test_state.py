"""Versioned states, pickle errors, and the cheap import."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import warnings

import pytest

import cherche_faiss
from cherche_faiss import load_pickle, retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import CorruptFileError, IncompatibleStateError, InconsistentVersionWarning


@pytest.fixture
def retriever(documents):
    return retrieve.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16), k=2).add(
        documents, show_progress=False
    )


def test_state_is_stamped_with_versions(retriever):
    state = retriever.__getstate__()
    assert state["_cherche_faiss_version"] == cherche_faiss.__version__
    assert state["_class"] == "cherche_faiss.retrieve.encoder.Encoder" and state["_state_version"] == 1


def test_other_library_version_warns(retriever):
    state = retriever.__getstate__()
    state["_cherche_faiss_version"] = "0.0.1"
    fresh = retrieve.Encoder.__new__(retrieve.Encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with pytest.warns(InconsistentVersionWarning, match="0.0.1"):
            fresh.__setstate__(state)
    assert fresh("Paris") == retriever("Paris")


def test_unreadable_states_raise(retriever):
    fresh = retrieve.Encoder.__new__(retrieve.Encoder)
    with pytest.raises(IncompatibleStateError, match="version stamp"):
        fresh.__setstate__({"key": "id"})
    state = retriever.__getstate__()
    state["_state_version"] = 99
    with pytest.raises(IncompatibleStateError, match="layout version 99"):
        fresh.__setstate__(state)
    index_state = retriever.index.__getstate__()
    del index_state["state"]["_ids"]
    with pytest.raises(IncompatibleStateError, match="expected content"):
        type(retriever.index).__new__(type(retriever.index)).__setstate__(index_state)


def test_load_pickle_round_trip(tmp_path, retriever):
    path = tmp_path / "r.pkl"
    cherche_faiss.persist.dump_pickle(retriever, path)
    assert load_pickle(path)("Paris") == retriever("Paris")


def test_truncated_pickle_raises_corrupt_file_error(tmp_path, retriever):
    data = pickle.dumps(retriever)
    for cut in (10, len(data) // 2, len(data) - 1):
        with pytest.raises(CorruptFileError, match="truncated"):
            load_pickle(io.BytesIO(data[:cut]))


def test_foreign_pickle_is_refused(tmp_path):
    with pytest.raises(IncompatibleStateError, match="not a cherche_faiss component"):
        load_pickle(io.BytesIO(pickle.dumps({"a": 1})))
    with pytest.raises(CorruptFileError):
        load_pickle(io.BytesIO(b"this is not a pickle at all"))


def test_import_is_cheap():
    code = (
        "import sys, cherche_faiss\n"
        "heavy = ('faiss', 'torch', 'sentence_transformers', 'sklearn', 'scipy', 'ray', 'lenlp')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_dump_pickle_checks_every_byte_before_unpickling(tmp_path, retriever):
    path = tmp_path / "r.pkl"
    cherche_faiss.persist.dump_pickle(retriever, path)
    assert pickle.loads(path.read_bytes())("Paris") == retriever("Paris")  # still a plain pickle
    raw = bytearray(path.read_bytes())
    for position in (40, len(raw) // 2, len(raw) - 30):  # early, in the middle, near the end
        damaged = bytearray(raw)
        damaged[position] ^= 0x04
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptFileError, match="does not match the checksum dump_pickle wrote"):
            load_pickle(path)
        with pytest.raises(CorruptFileError, match="does not match the checksum"):
            load_pickle(io.BytesIO(bytes(damaged)))


def test_damaged_sparse_matrix_in_a_plain_pickle_is_refused(documents):
    """scipy does not check a CSR matrix it unpickles: an index out of range would crash its C code."""
    tfidf = retrieve.TfIdf(key="id", on="title", documents=documents)
    state = tfidf.__getstate__()
    state["state"]["_matrix"].indices[0] = 10**6
    with pytest.raises(IncompatibleStateError, match="document matrix of this TfIdf is damaged"):
        retrieve.TfIdf.__new__(retrieve.TfIdf).__setstate__(state)


def test_damaged_bm25_scores_in_a_plain_pickle_are_refused(documents):
    bm25 = retrieve.BM25(key="id", on="article", documents=documents)
    state = bm25.__getstate__()
    state["state"]["_model"].scores["indices"][0] = 999
    with pytest.raises(IncompatibleStateError, match="bm25s score matrix of this BM25 is damaged"):
        retrieve.BM25.__new__(retrieve.BM25).__setstate__(state)
