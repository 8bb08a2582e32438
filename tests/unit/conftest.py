"""Fixtures of the index tests."""

from __future__ import annotations

import numpy as np
import pytest

import cherche_faiss.index._storage as storage_module
import cherche_faiss.index.auto as auto_module
from cherche_faiss.index import FaissIndex

from ..helpers import unit_rows


@pytest.fixture
def small_exact_limit(monkeypatch):
    """Make "auto" switch to IVF from 2,000 vectors instead of 100,000."""
    monkeypatch.setattr(auto_module, "EXACT_LIMIT", 2_000)
    monkeypatch.setattr(storage_module, "EXACT_LIMIT", 2_000)


@pytest.fixture
def ivf(rng):
    vectors = unit_rows(rng, 4_000)
    index = FaissIndex(factory="IVF32,Flat").add(vectors, list(range(4_000)))
    queries = unit_rows(np.random.default_rng(1), 50)
    truth = FaissIndex().add(vectors, list(range(4_000))).search(queries, k=10)[1]
    return index, queries, truth
