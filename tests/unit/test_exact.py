"""The BLAS exact search used for flat inner-product indexes on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

import cherche_faiss.index._exact as exact
from cherche_faiss.index import FaissIndex


def brute_force(vectors, queries, k):
    scores = queries @ vectors.T
    rows = np.array([sorted(range(len(vectors)), key=lambda r: (-s[r], r))[:k] for s in scores])
    return np.take_along_axis(scores, rows, axis=1), rows


@pytest.mark.parametrize("n_queries", [1, 3, 40])
@pytest.mark.parametrize("k", [1, 5, 300, 1000])
@pytest.mark.parametrize("chunk_cells", [1 << 24, 2048])
def test_matches_brute_force(rng, monkeypatch, n_queries, k, chunk_cells):
    monkeypatch.setattr(exact, "_CHUNK_CELLS", chunk_cells)  # 2048 cells: many database chunks
    vectors = rng.standard_normal((700, 12)).astype(np.float32)
    queries = rng.standard_normal((n_queries, 12)).astype(np.float32)
    scores, rows = exact.inner_product_top_k(vectors, queries, k)
    expected_scores, expected_rows = brute_force(vectors, queries, min(k, 700))
    assert rows.shape == (n_queries, min(k, 700))
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)


def test_ties_are_deterministic_and_ordered_by_row(monkeypatch):
    monkeypatch.setattr(exact, "_CHUNK_CELLS", 1)
    vectors = np.ones((3000, 4), dtype=np.float32)
    first = exact.inner_product_top_k(vectors, np.ones((2, 4), dtype=np.float32), 5)
    second = exact.inner_product_top_k(vectors, np.ones((2, 4), dtype=np.float32), 5)
    np.testing.assert_array_equal(first[1], second[1])
    assert all(list(row) == sorted(row) for row in first[1].tolist())
    assert len(set(first[1][0].tolist())) == 5


def test_flat_index_uses_blas_and_stays_correct_after_updates(rng):
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    index = FaissIndex().add(vectors, [f"k{i}" for i in range(300)])
    index.remove([f"k{i}" for i in range(0, 300, 3)])
    index.add(vectors[:5] * -1, ["k1", "k2", "new0", "new1", "new2"])
    assert index._flat_storage() is not None  # the BLAS path is the one being tested
    normed = index.reconstruct(index.keys())
    keys = index.keys()
    queries = rng.standard_normal((4, 8)).astype(np.float32)
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarities, found = index.search(queries, k=7)
    reference = unit_queries @ normed.T
    for row in range(4):
        best = sorted(range(len(keys)), key=lambda c: (-reference[row, c], c))[:7]
        assert found[row] == [keys[c] for c in best]
    np.testing.assert_allclose(index.reconstruct(["k1"])[0], -vectors[0] / np.linalg.norm(vectors[0]), rtol=1e-6)
