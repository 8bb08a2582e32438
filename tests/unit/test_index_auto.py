"""index="auto": the index chosen from size, dimension, memory budget and recall, and why."""

from __future__ import annotations

import pickle

import pytest

from cherche_faiss.exceptions import (
    InvalidInputError,
)
from cherche_faiss.index import FaissIndex, choose_index
from cherche_faiss.index.auto import parse_bytes

from ..helpers import unit_rows


# -- "auto" ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "budget", "recall", "factory"),
    [
        (5_000, None, 0.95, "Flat"),
        (1_000_000, None, 0.95, "IVF4096,Flat"),
        (1_000_000, None, 1.0, "Flat"),
        (1_000_000, "1GB", 0.95, "IVF4096,SQ8"),
        (1_000_000, "200MB", 0.8, "IVF4096,PQ64"),
        (1_000_000, "60MB", 0.8, "IVF4096,PQ32"),
        (20_000_000, None, 0.95, "IVF16384,Flat"),
    ],
)
def test_choose_index(n, budget, recall, factory):
    choice = choose_index(n, 384, memory_budget=budget, target_recall=recall)
    assert choice.factory == factory
    assert f"{n:,}" in choice.reason
    assert budget is None or choice.estimated_bytes <= parse_bytes(budget)
    assert ("nprobe" in choice.search_params) == factory.startswith("IVF")


def test_choose_index_refuses_impossible_budgets():
    with pytest.raises(InvalidInputError, match="lower target_recall"):
        choose_index(1_000_000, 384, memory_budget="200MB", target_recall=0.95)  # PQ cannot promise 0.95
    with pytest.raises(InvalidInputError, match="Raise the budget"):
        choose_index(1_000_000, 384, memory_budget="5MB", target_recall=0.5)
    with pytest.raises(InvalidInputError, match="exact search"):
        choose_index(1_000_000, 384, memory_budget="1GB", target_recall=1.0)
    with pytest.raises(InvalidInputError, match="not a size"):
        FaissIndex(factory="auto", memory_budget="lots")
    with pytest.raises(InvalidInputError, match="target_recall"):
        FaissIndex(factory="auto", target_recall=1.5)


def test_auto_keeps_exact_search_for_small_corpora_and_says_why(rng):
    index = FaissIndex(factory="auto").add(unit_rows(rng, 500), list(range(500)))
    assert index.factory_used == "Flat"
    assert "chosen='Flat'" in repr(index)
    assert "because='exact search: 500 vectors of d=16 is under 100,000" in repr(index)


def test_auto_streams_into_ivf_chosen_when_the_size_is_unknown(rng, small_exact_limit):
    vectors = unit_rows(rng, 6_000)
    stream = ((vectors[i : i + 500], list(range(i, i + 500))) for i in range(0, 6_000, 500))
    index = FaissIndex(factory="auto").add_batches(stream, show_progress=False)
    # Chosen once 2,000 vectors had arrived: 4*sqrt(2,000) is about 179, but 39 vectors per list allow 32.
    assert index.factory_used == "IVF32,Flat"
    assert "length unknown; pass expected_size" in repr(index)
    assert len(index) == 6_000 and index.faiss_index.ntotal == 6_000
    assert "searching_with={'nprobe'" in repr(index)


def test_auto_uses_expected_size(rng, small_exact_limit):
    vectors = unit_rows(rng, 3_000)
    index = FaissIndex(factory="auto", expected_size=3_000).add(vectors, list(range(3_000)))
    assert index.factory_used.startswith("IVF") and "3,000 vectors of d=16" in index.choice["reason"]
    assert "length unknown" not in index.choice["reason"]
    restored = pickle.loads(pickle.dumps(index))
    assert restored.choice == index.choice and restored.search(vectors[:3], k=5) == index.search(vectors[:3], k=5)
