"""Encoders: wrapping of user callables and sentence-transformers, hashing determinism."""

from __future__ import annotations

import pickle
import pickletools

import numpy as np
import pytest

from cherche_faiss.encoders import CallableEncoder, HashingEncoder, SentenceTransformerEncoder, as_encoder
from cherche_faiss.exceptions import InvalidInputError, InvalidTypeError


def test_hashing_encoder_is_deterministic_and_normalised():
    a = HashingEncoder(dimension=32).encode(["Bordeaux wine", "", "x"])
    b = HashingEncoder(dimension=32).encode(["Bordeaux wine", "", "x"])
    assert a.dtype == np.float32 and a.shape == (3, 32)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    # Fixed values pin the hash: a change of algorithm would silently change every test index.
    assert np.flatnonzero(a[2]).tolist() == np.flatnonzero(HashingEncoder(dimension=32).encode(["x"])[0]).tolist()
    assert not np.array_equal(a, HashingEncoder(dimension=32, seed=1).encode(["Bordeaux wine", "", "x"]))


def test_hashing_encoder_similar_texts_are_closer():
    vectors = HashingEncoder().encode(["the wine of bordeaux", "bordeaux wines", "aircraft in toulouse"])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_callable_encoder_validates_output():
    assert CallableEncoder(lambda texts: [[1.0, 2.0]] * len(texts)).encode(["a"]).dtype == np.float32
    with pytest.raises(InvalidInputError, match="1 embeddings for 2 texts"):
        CallableEncoder(lambda texts: np.ones((1, 3))).encode(["a", "b"])
    with pytest.raises(InvalidInputError, match="NaN"):
        CallableEncoder(lambda texts: np.full((len(texts), 3), np.nan)).encode(["a"])
    with pytest.raises(InvalidTypeError, match="must be callable"):
        CallableEncoder("not callable")


class _Config:
    _name_or_path = "/models/my-minilm"


class _Transformer:
    auto_model = type("AutoModel", (), {"config": _Config()})()


class FakeSentenceTransformer:
    """Looks like sentence_transformers.SentenceTransformer; refuses to be pickled."""

    def __init__(self, device="cuda:0"):
        self.device = device
        self.model_card_data = None
        self.calls = []

    def __getitem__(self, position):
        return _Transformer()

    def encode(
        self, sentences, batch_size=32, show_progress_bar=None, convert_to_numpy=True, normalize_embeddings=False
    ):
        self.calls.append((list(sentences), batch_size))
        return HashingEncoder(dimension=8).encode(sentences)

    def __reduce__(self):
        raise TypeError("the model itself reached a pickle")


FakeSentenceTransformer.__name__ = "SentenceTransformer"
FakeSentenceTransformer.__module__ = "sentence_transformers.model"


def test_bound_encode_of_a_sentence_transformer_is_recognised():
    model = FakeSentenceTransformer(device="cuda")
    encoder = as_encoder(model.encode)
    assert isinstance(encoder, SentenceTransformerEncoder)
    assert encoder.model_name_or_path == "/models/my-minilm" and encoder.device == "cuda:0"
    assert encoder.encode(["a", "b"], batch_size=7).shape == (2, 8)
    assert model.calls == [(["a", "b"], 7)]
    assert isinstance(as_encoder(model), SentenceTransformerEncoder)


def test_gpu_model_pickles_by_reference_without_tensors():
    encoder = as_encoder(FakeSentenceTransformer(device="cuda:0").encode)
    data = pickle.dumps(encoder)  # the fake model raises if it gets in
    assert len(data) < 2000
    modules = {
        arg.split(" ")[0] for op, arg, _ in pickletools.genops(data) if op.name in ("GLOBAL", "STACK_GLOBAL") and arg
    }
    strings = [arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)]
    assert not any("torch" in s or "cuda" == s[:4] and "tensor" in s for s in strings)
    assert not any(m.startswith("torch") for m in modules)
    restored = pickle.loads(data)
    assert restored.model_name_or_path == "/models/my-minilm"
    assert restored._model is None and restored._saved_device == "cuda:0"


def test_sentence_transformer_encoder_validates_arguments():
    with pytest.raises(InvalidInputError, match="model_name_or_path"):
        SentenceTransformerEncoder("")
    with pytest.raises(InvalidInputError, match="unknown device"):
        SentenceTransformerEncoder("some/model", device="gpu")


def test_as_encoder_rejects_what_cannot_encode():
    with pytest.raises(InvalidTypeError, match="encoder must be callable"):
        as_encoder(3.5)
    hashing = HashingEncoder()
    assert as_encoder(hashing) is hashing
