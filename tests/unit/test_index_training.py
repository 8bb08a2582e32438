"""Training approximate indexes: a sample of the first vectors, progress, clear minimums."""

from __future__ import annotations

import numpy as np
import pytest

import cherche_faiss.index._storage as storage_module
import cherche_faiss.index._training as training_module
from cherche_faiss.exceptions import (
    InvalidInputError,
)
from cherche_faiss.index import FaissIndex

from ..helpers import unit_rows


# -- training ----------------------------------------------------------------------------
def test_training_uses_a_sample_of_the_first_vectors_and_reports_progress(rng, monkeypatch):
    seen = {}
    real_train = training_module.train_index

    def recording_train(index, sample, description, show_progress):
        seen["sample"] = len(sample)
        seen["consumed"] = consumed[0]
        real_train(index, sample, description, show_progress)

    monkeypatch.setattr(storage_module, "train_index", recording_train)
    consumed = [0]
    vectors = unit_rows(rng, 3_000)

    def stream():
        for start in range(0, 3_000, 100):
            consumed[0] += 100
            yield vectors[start : start + 100], list(range(start, start + 100))

    index = FaissIndex(factory="IVF8,Flat").add_batches(stream(), show_progress=False)
    # Default sample: 50 vectors per centroid, trained as soon as they had arrived.
    assert seen == {"sample": 400, "consumed": 400}
    assert len(index) == 3_000


def test_training_progress_bar_counts_k_means_iterations(rng, monkeypatch):
    bars = []

    class RecordingBar:
        def __init__(self, total, desc, show, unit="doc"):
            self.total, self.desc, self.updates = total, desc, 0
            bars.append(self)

        def update(self, n=1):
            self.updates += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(training_module, "progress", RecordingBar)
    FaissIndex(factory="IVF8,Flat").add(unit_rows(rng, 500), list(range(500)), show_progress=True)
    (bar,) = bars
    assert bar.total == 11 == bar.updates  # 10 k-means iterations, then the codes
    assert "IVF8,Flat" in bar.desc and "400 vectors" in bar.desc


def test_stepwise_training_matches_faiss_training(rng):
    import faiss

    vectors = unit_rows(rng, 2_000)
    ours = FaissIndex(factory="IVF16,Flat", train_size=2_000).add(vectors, list(range(2_000)))
    theirs = faiss.index_factory(16, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    theirs.train(vectors)
    np.testing.assert_allclose(
        ours.faiss_index.quantizer.reconstruct_n(0, 16), theirs.quantizer.reconstruct_n(0, 16), atol=1e-6
    )


@pytest.mark.parametrize(("factory", "needed"), [("IVF64,Flat", 2_496), ("PQ4", 9_984), ("IVF16,PQ4", 9_984)])
def test_too_few_training_vectors_is_a_clear_error(rng, factory, needed):
    index = FaissIndex(factory=factory)
    with pytest.raises(InvalidInputError, match=f"at least {needed:,} vectors"):
        index.add(unit_rows(rng, 1_000), list(range(1_000)))
    assert len(index) == 0
    with pytest.raises(InvalidInputError, match="train_size=100 is too small"):
        FaissIndex(factory=factory, train_size=100).add(unit_rows(rng, 10_000), list(range(10_000)))


def test_a_stream_too_short_to_train_is_a_clear_error(rng):
    stream = ((unit_rows(rng, 50), list(range(i * 50, i * 50 + 50))) for i in range(4))
    with pytest.raises(InvalidInputError, match="at least 1,248 vectors .* only 200 arrived"):
        FaissIndex(factory="IVF32,Flat").add_batches(stream, show_progress=False)
