"""Updates (remove, replace) on every index type."""

from __future__ import annotations

import pytest

from cherche_faiss.exceptions import (
    InvalidInputError,
    UnknownKeyError,
)
from cherche_faiss.index import FaissIndex

from ..helpers import unit_rows


# -- updates on every index type -------------------------------------------------------
@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "IVF16,SQ8", "SQ8", "IVF16,PQ4", "PQ4"])
def test_remove_and_replace_on_every_index_type(rng, factory):
    vectors = unit_rows(rng, 10_000)
    index = FaissIndex(factory=factory, search_params=None).add(vectors, list(range(10_000)))
    params = {"nprobe": 16} if factory.startswith("IVF") else {}
    index.remove([0, 1, 2])
    assert len(index) == 9_997 and index.faiss_index.ntotal == 9_997
    found = index.search(vectors[:3], k=5, **params)[1]
    assert not {0, 1, 2} & {key for row in found for key in row}
    # Re-adding a key replaces its vector: key 10 now stands where key 20 was.
    index.add(vectors[20], [10])
    assert len(index) == 9_997 and index.faiss_index.ntotal == 9_997
    assert set(index.search(vectors[20], k=2, **params)[1][0]) == {10, 20}
    with pytest.raises(UnknownKeyError):
        index.remove([0])


def test_hnsw_refuses_updates_clearly_and_stays_intact(rng):
    vectors = unit_rows(rng, 100)
    index = FaissIndex(factory="HNSW8").add(vectors, list(range(100)))
    before = index.search(vectors[:5], k=5)
    with pytest.raises(InvalidInputError, match="cannot remove keys.*HNSW"):
        index.remove([3])
    with pytest.raises(InvalidInputError, match="cannot replace existing keys"):
        index.add(vectors[7], [3])
    assert len(index) == 100 and index.faiss_index.ntotal == 100 and index.search(vectors[:5], k=5) == before
    index.add(vectors[7], [1_000])  # new keys are fine
    assert len(index) == 101
