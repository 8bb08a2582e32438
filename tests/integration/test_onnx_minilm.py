"""The ONNX path with the real offline MiniLM: export, fidelity to torch, saves that answer without torch."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cherche_faiss
from cherche_faiss import data, rank, retrieve
from cherche_faiss.cli import main
from cherche_faiss.encoders import OnnxEncoder, export_onnx
from cherche_faiss.exceptions import IncompatibleStateError, InvalidInputError, MissingDependencyError

from ..helpers import SHARED, run_in_a_fresh_cpu_only_process

pytestmark = pytest.mark.integration

SCIFACT = SHARED / "data" / "scifact"
TOWN_QUERIES = [
    "bordeaux",
    "wine",
    "aerospace industry",
    "football club",
    "metro",
    "paris",
    "rennes brittany",
    "garonne river",
    "toulouse airbus",
    "capital of quebec",
]
LOAD_AND_ANSWER = """
import json, sys
import cherche_faiss
search = cherche_faiss.load(sys.argv[1], backend=sys.argv[2])
hits = search(json.loads(sys.argv[3]))
print(json.dumps({"hits": hits, "imported": sorted(m for m in ("torch", "transformers", "sentence_transformers")
                                                    if m in sys.modules)}))
"""


def _load_in_a_fresh_cpu_only_process(path, backend, queries):
    return run_in_a_fresh_cpu_only_process(LOAD_AND_ANSWER, str(path), backend, json.dumps(queries))


def _cosines(a, b):
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def seed(minilm):
    """Cherche's Save & Load pipeline on towns, with SentenceTransformer(...).encode as in Cherche."""
    documents = data.load_towns()
    search = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=30) + rank.Encoder(
        key="id", on=["title", "article"], encoder=minilm.encode, k=10
    )
    return search.add(documents=documents)


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="../shared/data/scifact is absent (it ships beside the checkout)")
def test_fidelity_on_scifact_queries_and_abstracts(minilm, minilm_onnx):
    qrels = {line.split("\t")[0] for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as handle:
        queries = [q["text"] for q in map(json.loads, handle) if q["_id"] in qrels]
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        abstracts = [d["title"] + " " + d["text"] for d in itertools.islice(map(json.loads, handle), 500)]
    assert len(queries) == 300 and len(abstracts) == 500
    texts = queries + abstracts
    expected = minilm.encode(texts, batch_size=64, convert_to_numpy=True)
    got = OnnxEncoder(minilm_onnx).encode(texts, batch_size=64)
    assert _cosines(got, expected).min() >= 0.9999


def test_seed_pipeline_saved_with_onnx_answers_without_torch(seed, tmp_path):
    expected = seed(TOWN_QUERIES)
    path = cherche_faiss.save(seed, tmp_path / "search", onnx=True)
    answer = _load_in_a_fresh_cpu_only_process(path, "onnx", TOWN_QUERIES)
    assert answer["imported"] == []  # neither torch, transformers nor sentence-transformers
    assert [[hit["id"] for hit in hits] for hits in answer["hits"]] == [
        [hit["id"] for hit in hits] for hits in expected
    ]
    for got, wanted in zip(answer["hits"], expected):
        assert [hit["similarity"] for hit in got] == pytest.approx([hit["similarity"] for hit in wanted], abs=1e-5)
    # "auto" takes the copy where onnxruntime is installed; "torch" the sentence-transformers model.
    assert type(cherche_faiss.load(path).models[1].encoder).__name__ == "OnnxEncoder"
    torch_loaded = cherche_faiss.load(path, backend="torch")
    assert type(torch_loaded.models[1].encoder).__name__ == "SentenceTransformerEncoder"
    assert torch_loaded(TOWN_QUERIES) == expected
    # The document vectors are those computed at build time, not re-encoded by ONNX.
    onnx_loaded = cherche_faiss.load(path, backend="onnx")
    keys = seed.models[1].index.keys()
    np.testing.assert_array_equal(onnx_loaded.models[1].index.reconstruct(keys), seed.models[1].index.reconstruct(keys))
    # Saved again from the ONNX side, it keeps its copy.
    again = cherche_faiss.load(cherche_faiss.save(onnx_loaded, tmp_path / "again"), backend="onnx")
    assert [[hit["id"] for hit in hits] for hits in again(TOWN_QUERIES)] == [
        [hit["id"] for hit in hits] for hits in answer["hits"]
    ]


def test_backend_onnx_needs_a_copy_and_onnxruntime(seed, tmp_path, monkeypatch):
    plain = cherche_faiss.save(seed, tmp_path / "plain")
    with pytest.raises(IncompatibleStateError, match="without an ONNX copy.*onnx=True"):
        cherche_faiss.load(plain, backend="onnx")
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        cherche_faiss.load(plain, backend="tensorrt")
    with_copy = cherche_faiss.save(seed, tmp_path / "copy", onnx=True)
    from cherche_faiss.persist import _onnx_copies

    monkeypatch.setattr(_onnx_copies, "onnx_available", lambda: False)
    with pytest.raises(MissingDependencyError, match=r"cherche-faiss\[onnx\]"):
        cherche_faiss.load(with_copy, backend="onnx")
    fallback = cherche_faiss.load(with_copy)  # auto, without onnxruntime: the torch encoder
    assert type(fallback.models[1].encoder).__name__ == "SentenceTransformerEncoder"


def test_int8_export_is_smaller_and_close(minilm, minilm_onnx, tmp_path):
    folder = export_onnx(minilm, tmp_path / "int8", quantize="int8")
    manifest = json.loads((folder / "cherche_faiss_onnx.json").read_text())
    assert manifest["settings"]["quantize"] == "int8" and manifest["fidelity"]["min_cosine"] >= 0.98
    assert (folder / "model.onnx").stat().st_size < 0.7 * (minilm_onnx / "model.onnx").stat().st_size
    texts = TOWN_QUERIES + [document["article"] for document in data.load_towns()[:40]]
    cosines = _cosines(OnnxEncoder(folder).encode(texts), minilm.encode(texts, convert_to_numpy=True))
    assert cosines.min() >= 0.98 and cosines.mean() >= 0.99


def test_pooling_matches_sentence_transformers_for_every_mode():
    import torch
    from sentence_transformers.models import Pooling

    from cherche_faiss.encoders._pooling import POOLING_MODES, pool

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(3, 7, 5, generator=generator)
    masks = {
        "right": torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1, 1] + [0] * 5]),
        "left": torch.tensor([[1] * 7, [0] * 3 + [1] * 4, [0] * 5 + [1, 1]]),
    }
    for side, mask in masks.items():
        for mode in POOLING_MODES:
            module = Pooling(5, pooling_mode=mode)
            expected = module({"token_embeddings": tokens, "attention_mask": mask})["sentence_embedding"].numpy()
            got = pool(tokens.numpy(), mask.numpy(), [mode])
            np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"{mode}, {side} padding")


def test_models_it_cannot_export(minilm, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense

    with_dense = SentenceTransformer(modules=[minilm[0], minilm[1], Dense(384, 32)], device="cpu")
    with pytest.raises(InvalidInputError, match="Dense"):
        export_onnx(with_dense, tmp_path / "dense")
    assert not (tmp_path / "dense").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not an ONNX export"):
        export_onnx(minilm, tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_export_and_build_commands(minilm_onnx, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export-onnx", data.minilm_path(), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["fidelity"]["min_cosine"] >= 0.9999 and printed["settings"]["max_seq_length"] == 256
    # Re-exporting replaces the earlier export in place.
    assert main(["export-onnx", data.minilm_path(), "--out", str(out)]) == 0
    corpus = tmp_path / "towns.jsonl"
    corpus.write_text("".join(json.dumps(document) + "\n" for document in data.load_towns()))
    build = (
        "import json, sys\nfrom cherche_faiss.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules}))\n"
    )
    save = tmp_path / "save"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            build,
            "build",
            str(corpus),
            "--out",
            str(save),
            "--model",
            str(out),
            "--onnx",
            "--embed-weights",
            "--no-progress",
            "-k",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 0, "torch": False}  # built without torch
    answer = _load_in_a_fresh_cpu_only_process(save, "onnx", ["wine of bordeaux"])
    assert answer["hits"][0][0]["title"] == "Bordeaux" and answer["imported"] == []
