"""OnnxEncoder on a tiny export: tokenisation, pooling, batching, files, pickles and saves (no torch)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import cherche_faiss  # noqa: E402
from cherche_faiss import rank, retrieve  # noqa: E402
from cherche_faiss.encoders import OnnxEncoder  # noqa: E402
from cherche_faiss.encoders._pooling import pool, read_pooling  # noqa: E402
from cherche_faiss.exceptions import (  # noqa: E402
    CorruptFileError,
    IncompatibleStateError,
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
    MissingFileError,
)

from ..helpers import assert_same_hits  # noqa: E402
from ..onnx_models import make_tiny_export, reference_vectors  # noqa: E402

TEXTS = [
    "Paris",
    "Montreal is the largest city of Quebec, in Canada.",
    "bordeaux red wine",
    "unknown words here",
    "Toulouse builds aircraft: Airbus is based there, " * 4,
]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return make_tiny_export(tmp_path_factory.mktemp("tiny") / "export")


def test_encodes_as_the_reference(export):
    vectors = OnnxEncoder(export).encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 8)
    # The last text is longer than max_seq_length (16 tokens): truncated there, not at the file's 24.
    np.testing.assert_allclose(vectors, reference_vectors(TEXTS), atol=1e-6)


def test_batches_sorted_by_length_give_the_same_vectors(export):
    encoder = OnnxEncoder(export, batch_size=2)
    together = encoder.encode(TEXTS)
    alone = np.vstack([encoder.encode([text]) for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(TEXTS, batch_size=1), together, atol=1e-6)


def test_padding_is_dynamic(export):
    encoder = OnnxEncoder(export)
    encoder.encode(["warm"])
    encoded = encoder._tokenizer.encode_batch(["paris", "bordeaux red wine"])
    assert [len(item.ids) for item in encoded] == [5, 5]  # the longest text's length, not the file's fixed 24


def test_pooling_and_normalisation_follow_the_folder(tmp_path):
    folder = make_tiny_export(tmp_path / "cls", pooling="cls", normalize=False, manifest=False)
    vectors = OnnxEncoder(folder).encode(["paris", "lyon"])
    from ..onnx_models import table

    np.testing.assert_allclose(vectors, np.vstack([table()[2], table()[2]]), atol=1e-6)  # [CLS]'s row
    normalized = OnnxEncoder(folder, normalize_embeddings=True).encode(["paris"])
    assert np.linalg.norm(normalized) == pytest.approx(1.0, abs=1e-6)
    two = make_tiny_export(tmp_path / "two", pooling=["mean", "max"], manifest=False, normalize=False)
    assert OnnxEncoder(two).encode(["paris"]).shape == (1, 16)


def test_pool_modes_by_hand():
    tokens = np.array([[[1.0, 2.0], [3.0, 0.0], [5.0, 4.0], [0.0, 9.0]]], dtype=np.float32)
    right = np.array([[1, 1, 1, 0]])
    left = np.array([[0, 1, 1, 1]])
    assert pool(tokens, right, ["mean"]).tolist() == [[3.0, 2.0]]
    assert pool(tokens, right, ["max"]).tolist() == [[5.0, 4.0]]
    assert pool(tokens, right, ["cls"]).tolist() == [[1.0, 2.0]]
    assert pool(tokens, left, ["cls"]).tolist() == [[3.0, 0.0]]  # the first real token
    assert pool(tokens, right, ["lasttoken"]).tolist() == [[5.0, 4.0]]
    assert pool(tokens, left, ["lasttoken"]).tolist() == [[0.0, 9.0]]
    np.testing.assert_allclose(pool(tokens, right, ["mean_sqrt_len_tokens"]), [[9 / np.sqrt(3), 6 / np.sqrt(3)]])
    # weights 1, 2, 3 from the first real token
    np.testing.assert_allclose(pool(tokens, right, ["weightedmean"]), [[(1 + 6 + 15) / 6, (2 + 0 + 12) / 6]])
    np.testing.assert_allclose(pool(tokens, left, ["weightedmean"]), [[(3 + 10 + 0) / 6, (0 + 8 + 27) / 6]])


def test_read_pooling_both_layouts_and_refusals():
    assert read_pooling({"pooling_mode_max_tokens": True, "pooling_mode_cls_token": True}, "f") == (
        ["cls", "max"],
        True,
    )
    assert read_pooling({"pooling_mode": "lasttoken", "include_prompt": False}, "f") == (["lasttoken"], False)
    for bad in ({"pooling_mode": "attention"}, {"pooling_mode": 3}, {"pooling_mode": []}):
        with pytest.raises(IncompatibleStateError, match="cannot reproduce|reproduce"):
            read_pooling(bad, "f")


def test_folders_it_refuses(tmp_path, export):
    with pytest.raises(MissingFileError, match="not a folder"):
        OnnxEncoder(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingFileError, match="model.onnx"):
        OnnxEncoder(empty)
    dense = make_tiny_export(tmp_path / "dense", manifest=False, extra_modules=("Dense",))
    with pytest.raises(IncompatibleStateError, match="Dense"):
        OnnxEncoder(dense)
    bare = make_tiny_export(tmp_path / "bare", manifest=False)
    (bare / "1_Pooling" / "config.json").unlink()
    (bare / "modules.json").unlink()
    with pytest.raises(IncompatibleStateError, match="no 1_Pooling/config.json"):
        OnnxEncoder(bare)
    with pytest.raises(InvalidInputError, match="needs the folder"):
        OnnxEncoder()
    with pytest.raises(InvalidTypeError):
        OnnxEncoder(export, normalize_embeddings="yes")
    with pytest.raises(InvalidInputError, match="threads"):
        OnnxEncoder(export, threads=0)
    with pytest.raises(InvalidTypeError, match="one string"):
        OnnxEncoder(export).encode("paris")
    with pytest.raises(InvalidInputError, match="no texts"):
        OnnxEncoder(export).encode([])


def test_a_damaged_model_file_is_caught_by_its_checksum(tmp_path):
    folder = make_tiny_export(tmp_path / "damaged")
    raw = bytearray((folder / "model.onnx").read_bytes())
    raw[-10] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match="model.onnx .*SHA-256"):
        OnnxEncoder(folder).encode(["paris"])
    # Without the check, onnxruntime reads bytes that are not a model: still a library error.
    (folder / "model.onnx").write_bytes(b"not an onnx model at all")
    with pytest.raises(CorruptFileError, match="cannot read the ONNX model"):
        OnnxEncoder(folder, verify=False).encode(["paris"])


def test_edited_manifest_is_refused(tmp_path):
    folder = make_tiny_export(tmp_path / "edited")
    manifest = json.loads((folder / "cherche_faiss_onnx.json").read_text())
    manifest["settings"]["padding_side"] = "middle"
    (folder / "cherche_faiss_onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleStateError, match="padding_side"):
        OnnxEncoder(folder)
    manifest["format_version"] = 99
    (folder / "cherche_faiss_onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleStateError, match="format version 99"):
        OnnxEncoder(folder)


def test_threads_and_session_rebuild(export):
    encoder = OnnxEncoder(export, threads=1)
    first = encoder.encode(TEXTS)
    session = encoder.session
    assert encoder.set_threads(1).session is session  # unchanged: kept
    encoder.set_threads(2)
    assert encoder._session is None
    np.testing.assert_array_equal(encoder.encode(TEXTS), first)
    assert encoder.session is not session


def test_unknown_device_and_missing_gpu(export):
    with pytest.raises(InvalidInputError, match="unknown device"):
        OnnxEncoder(export, device="tpu")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        from cherche_faiss.exceptions import DeviceUnavailableError

        with pytest.raises(DeviceUnavailableError, match="onnxruntime-gpu"):
            OnnxEncoder(export, device="cuda").encode(["paris"])


def test_pickles_by_reference_and_embedded(export, tmp_path):
    by_reference = OnnxEncoder(export)
    expected = by_reference.encode(TEXTS)
    data = pickle.dumps(by_reference)
    assert len(data) < 2000  # a path, not the model
    np.testing.assert_array_equal(pickle.loads(data).encode(TEXTS), expected)
    embedded = OnnxEncoder(export, embed_weights=True)
    data = pickle.dumps(embedded)
    assert len(data) > (export / "model.onnx").stat().st_size
    moved = tmp_path / "moved"
    export.rename(moved)  # the folder is gone: the embedded copy still loads
    try:
        restored = pickle.loads(data)
        np.testing.assert_array_equal(restored.encode(TEXTS), expected)
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(restored)).encode(TEXTS), expected)
        with pytest.raises(MissingFileError, match="not a folder"):
            pickle.loads(pickle.dumps(by_reference))
    finally:
        moved.rename(export)


def test_safe_save_by_reference_and_embedded(export, tmp_path, documents):
    for embed in (False, True):
        retriever = retrieve.Encoder(
            key="id", on=["title", "article"], k=3, encoder=OnnxEncoder(export, embed_weights=embed)
        ).add(documents, show_progress=False)
        expected = retriever(["paris", "wine of bordeaux"])
        path = cherche_faiss.save(retriever, tmp_path / f"save-{embed}")
        manifest = json.loads((path / "manifest.json").read_text())
        has_model_file = any(name.endswith("model.onnx") for name in manifest["files"])
        assert has_model_file is embed
        loaded = cherche_faiss.load(path)
        assert type(loaded.encoder).__name__ == "OnnxEncoder"
        assert loaded(["paris", "wine of bordeaux"]) == expected


def test_rankers_and_retrievers_use_it(export, documents):
    encoder = OnnxEncoder(export)
    search = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=4) + rank.Encoder(
        key="id", on=["title", "article"], encoder=encoder, k=2
    )
    search.add(documents)
    hits = search("bordeaux red wine")
    assert hits[0]["id"] == 2 and len(hits) == 2


def test_runs_without_torch(export):
    code = f"""
import sys, json
from cherche_faiss.encoders import OnnxEncoder
vectors = OnnxEncoder({str(export)!r}).encode(["paris", "lyon"])
print(json.dumps({{"shape": list(vectors.shape), "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules, "st": "sentence_transformers" in sys.modules}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout) == {"shape": [2, 8], "torch": False, "transformers": False, "st": False}


def test_missing_onnxruntime_names_the_extra(export, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(MissingDependencyError, match=r"cherche-faiss\[onnx\]"):
        OnnxEncoder(export).encode(["paris"])


def test_export_arguments_are_checked_before_any_work(tmp_path, monkeypatch):
    from cherche_faiss.encoders import export_onnx

    with pytest.raises(InvalidInputError, match="quantize must be None or 'int8'"):
        export_onnx("any-model", tmp_path / "out", quantize="int4")
    with pytest.raises(InvalidInputError, match="opset"):
        export_onnx("any-model", tmp_path / "out", opset=7)
    import builtins

    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.startswith("onnxruntime.quantization"):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(MissingDependencyError, match=r"int8.*cherche-faiss\[export\]"):
        export_onnx("any-model", tmp_path / "out", quantize="int8")
    assert not (tmp_path / "out").exists()


def test_a_mapped_load_leaves_embedded_files_in_the_save(export, tmp_path, documents):
    from cherche_faiss._core.saved_file import SavedFile

    retriever = retrieve.Encoder(
        key="id", on=["title", "article"], k=3, encoder=OnnxEncoder(export, embed_weights=True)
    ).add(documents, show_progress=False)
    expected = retriever(["paris", "wine of bordeaux"])
    path = cherche_faiss.save(retriever, tmp_path / "save")
    mapped = cherche_faiss.load(path, mmap=True)
    model = mapped.encoder.files["model.onnx"]
    assert isinstance(model, SavedFile) and model.path.is_relative_to(path)  # not read into memory
    assert_same_hits(mapped(["paris", "wine of bordeaux"]), expected)  # a mapped index searches through FAISS
    # Saved again (file copied) and pickled (bytes), it no longer depends on the first save.
    again = cherche_faiss.save(mapped, tmp_path / "again")
    pickled = pickle.dumps(mapped)
    import shutil

    shutil.rmtree(path)
    assert_same_hits(cherche_faiss.load(again)(["paris", "wine of bordeaux"]), expected)
    restored = pickle.loads(pickled)
    assert isinstance(restored.encoder.files["model.onnx"], bytes)
    assert_same_hits(restored(["paris", "wine of bordeaux"]), expected)


def test_embedded_files_a_verified_load_checked_are_not_hashed_again(export, tmp_path, documents, monkeypatch):
    from cherche_faiss.encoders import _onnx_files

    retriever = retrieve.Encoder(
        key="id", on=["title", "article"], k=3, encoder=OnnxEncoder(export, embed_weights=True)
    ).add(documents, show_progress=False)
    path = cherche_faiss.save(retriever, tmp_path / "save")
    checks = []
    real = _onnx_files.ModelFiles.verify
    monkeypatch.setattr(_onnx_files.ModelFiles, "verify", lambda self: checks.append(1) or real(self))
    cherche_faiss.load(path)("paris")  # the save's own SHA-256s covered the embedded model
    assert checks == []
    cherche_faiss.load(path, verify=False)("paris")  # sizes only: the encoder checks its files itself
    cherche_faiss.load(path, mmap=True)("paris")  # read later, by path: checked when read
    assert checks == [1, 1]
