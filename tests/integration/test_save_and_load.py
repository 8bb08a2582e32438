"""Cherche's Save & Load example with the real offline MiniLM, reloaded in a
fresh process that sees no GPU."""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cherche_faiss import data, rank, retrieve
from cherche_faiss.encoders import SentenceTransformerEncoder
from cherche_faiss.exceptions import DeviceFallbackWarning, MissingDependencyError

pytestmark = pytest.mark.integration

LOAD_AND_ANSWER = """
import json, pickle, sys, warnings
warnings.simplefilter("error")  # a CPU pickle must load on a CPU machine without any warning
with open(sys.argv[1], "rb") as handle:
    search = pickle.load(handle)
print(json.dumps([search(q) for q in json.loads(sys.argv[2])]))
"""


def cpu_only_env():
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def towns():
    return data.load_towns()


@pytest.fixture(scope="module")
def search(minilm, towns):
    # Cherche's example, unchanged but for the import and the model path.
    documents = towns
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=30)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=minilm.encode, k=10)
    search = retriever + ranker
    search.add(documents=documents)
    return search


def test_save_and_load_in_a_fresh_cpu_only_process(search, tmp_path):
    queries = ["bordeaux", "aerospace industry", "football club"]
    before = [search(q) for q in queries]
    assert len(before[0]) == 10 and set(before[0][0]) == {"id", "similarity"}
    path = tmp_path / "search.pkl"
    with open(path, "wb") as handle:
        pickle.dump(search, handle)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_ANSWER, str(path), json.dumps(queries)],
        capture_output=True,
        text=True,
        env=cpu_only_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == before


def test_pickle_holds_no_model_and_no_torch(search):
    data_bytes = pickle.dumps(search)
    assert len(data_bytes) < 5_000_000  # Cherche pickles the whole model: about 93 MB
    globals_ = [arg for op, arg, _ in pickletools.genops(data_bytes) if op.name in ("GLOBAL", "STACK_GLOBAL")]
    strings = [arg for op, arg, _ in pickletools.genops(data_bytes) if isinstance(arg, str)]
    assert not any(
        s.startswith(("torch", "sentence_transformers", "transformers")) for s in strings + [g or "" for g in globals_]
    )


def test_semantic_ranking_is_sensible(search, towns):
    titles = {d["id"]: d["title"] for d in towns}
    assert "Toulouse" in [titles[hit["id"]] for hit in search("aircraft manufacturer")[:3]]
    assert all(titles[hit["id"]] == "Bordeaux" for hit in search("bordeaux")[:3])


def test_model_saved_for_cuda_loads_on_cpu_with_a_warning(minilm):
    encoder = SentenceTransformerEncoder.from_model(minilm)
    expected = encoder.encode(["Bordeaux wine"])
    state = encoder.__getstate__()
    state["state"]["saved_device"] = "cuda:0"  # as if dumped on a GPU machine
    restored = SentenceTransformerEncoder.__new__(SentenceTransformerEncoder)
    restored.__setstate__(state)
    with pytest.warns(DeviceFallbackWarning, match="cuda:0"):
        vectors = restored.encode(["Bordeaux wine"])
    assert str(restored.model.device) == "cpu"
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)


def test_embedded_weights_load_where_the_model_is_gone(tmp_path, towns):
    folder = tmp_path / "model-copy"
    shutil.copytree(data.minilm_path(), folder)
    retriever = retrieve.Encoder(
        key="id",
        on=["title", "article"],
        k=5,
        encoder=SentenceTransformerEncoder(folder, device="cpu", embed_weights=True),
    ).add(towns[:40], show_progress=False)
    expected = retriever("wine")
    path = tmp_path / "retriever.pkl"
    path.write_bytes(pickle.dumps(retriever))
    shutil.rmtree(folder)  # the reference is now dangling: only the embedded weights remain
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_ANSWER, str(path), json.dumps(["wine"])],
        capture_output=True,
        text=True,
        env=cpu_only_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [expected]


def test_reference_pickle_needs_the_model_folder(tmp_path, towns):
    folder = tmp_path / "model-copy"
    shutil.copytree(data.minilm_path(), folder)
    encoder = SentenceTransformerEncoder(folder, device="cpu")
    data_bytes = pickle.dumps(encoder)
    assert len(data_bytes) < 2_000
    shutil.rmtree(folder)
    restored = pickle.loads(data_bytes)
    with pytest.raises(MissingDependencyError, match="embed_weights=True"):
        restored.encode(["wine"])


def test_demo_command_runs_the_main_job():
    import io

    from cherche_faiss.cli import main
    from cherche_faiss.cli.demo import run_demo

    out = io.StringIO()
    assert run_demo(queries=["bordeaux", "metro"], out=out) == 0
    text = out.getvalue()
    assert "answers identical to the original pipeline: True" in text
    assert "pickle size" in text and "load in fresh process" in text
    safe_line = next(
        line for line in text.splitlines() if line.startswith("safe format (cherche_faiss.save, no pickle)")
    )
    assert safe_line.endswith("answers identical: True")
    assert text.rstrip().endswith("torch imported: False; same hits (similarities within 1e-5): True")
    with pytest.raises(SystemExit):
        main(["--version"])


def test_real_cross_encoder_ranks_and_pickles(towns):
    """No cross-encoder model is packaged: MiniLM with a fresh (untrained) one-label head
    exercises the real CrossEncoder code path; its scores mean nothing."""
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from cherche_faiss.encoders import CrossEncoderScorer

    model = STCrossEncoder(data.minilm_path(), num_labels=1, device="cpu")
    by_reference = rank.CrossEncoder(on=["title", "article"], encoder=model.predict, k=3)
    assert isinstance(by_reference.encoder, CrossEncoderScorer) and by_reference.encoder.num_labels == 1
    assert len(pickle.dumps(by_reference)) < 2_000
    # The untrained head exists only in memory: embed the weights to carry it.
    embedded = rank.CrossEncoder(
        on=["title", "article"], encoder=CrossEncoderScorer.from_model(model, embed_weights=True), k=3
    )
    candidates = towns[:12]
    hits = embedded(["wine", "metro"], documents=[candidates, candidates])
    assert [len(h) for h in hits] == [3, 3] and all(type(hit["similarity"]) is float for hit in hits[0])
    restored = pickle.loads(pickle.dumps(embedded))
    again = restored(["wine", "metro"], documents=[candidates, candidates])
    assert [[h["id"] for h in q] for q in again] == [[h["id"] for h in q] for q in hits]
    for before, after in zip(hits, again):
        np.testing.assert_allclose(
            [h["similarity"] for h in after], [h["similarity"] for h in before], rtol=1e-4, atol=1e-5
        )
