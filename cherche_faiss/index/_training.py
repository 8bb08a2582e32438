"""How many vectors a FAISS index needs to be trained, and training it with a progress bar.

Indexes with inverted lists (IVF) or product quantisation (PQ) learn k-means
centroids before they can hold vectors: ``nlist`` coarse centroids for IVF,
``2**nbits`` (256) per sub-quantiser for PQ. FAISS warns below 39 training
vectors per centroid (:data:`~cherche_faiss.index.auto.MIN_POINTS_PER_CENTROID`)
and subsamples above 256, so:

* the **minimum** is 39 vectors per centroid of the largest k-means (fewer is
  refused with an error: the centroids would be noise);
* the **default sample** is :data:`TRAIN_POINTS_PER_CENTROID` (50) vectors per
  centroid, taken from the first vectors added: 204,800 for ``IVF4096``.
  More rarely helps recall and costs training time linearly; pass
  ``train_size`` to change it.
* Scalar quantisers (``SQ8``) only learn each dimension's range:
  :data:`SQ_TRAIN_SIZE` vectors are plenty.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core.progress import progress
from ..exceptions import InvalidInputError
from ._search_params import ivf_lists
from .auto import MIN_POINTS_PER_CENTROID

__all__ = ["centroids_to_train", "default_training_size", "minimum_training_size", "train_index", "training_sample"]

TRAIN_POINTS_PER_CENTROID = 50
SQ_TRAIN_SIZE = 65_536


def _faiss() -> Any:
    import faiss

    return faiss


def _core(index: Any) -> Any:
    """The index under an ``IndexIDMap``/``IndexIDMap2`` wrapper, downcast."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        index = faiss.downcast_index(index.index)
    return index


def centroids_to_train(index: Any) -> int:
    """Centroids of the largest k-means training runs (0 when it runs none)."""
    faiss = _faiss()
    centroids = ivf_lists(index)
    ivf = faiss.try_extract_index_ivf(index)
    core = faiss.downcast_index(ivf) if ivf is not None else _core(index)
    pq = getattr(core, "pq", None)
    if pq is not None:
        centroids = max(centroids, int(pq.ksub))
    return centroids


def minimum_training_size(index: Any) -> int:
    """Fewest vectors ``index`` may be trained on (1 when it needs no k-means)."""
    return max(1, MIN_POINTS_PER_CENTROID * centroids_to_train(index))


def default_training_size(index: Any) -> int:
    """Vectors sampled to train ``index`` when ``train_size`` is not given."""
    centroids = centroids_to_train(index)
    return TRAIN_POINTS_PER_CENTROID * centroids if centroids else SQ_TRAIN_SIZE


def training_sample(index: Any, matrix: np.ndarray, size: int, description: str) -> np.ndarray:
    """The vectors of ``matrix`` to train ``index`` on: ``size`` of them at most, C-contiguous.

    Parameters
    ----------
    index
        The untrained ``faiss.Index``.
    matrix
        The first vectors added, ``(n, d)`` float32.
    size
        Vectors to train on (``train_size``, else :func:`default_training_size`).
    description
        The index's factory string, for error messages.

    Raises
    ------
    InvalidInputError
        When ``size`` or ``matrix`` has fewer vectors than :func:`minimum_training_size`.
    """
    needed = minimum_training_size(index)
    if size < needed:
        raise InvalidInputError(
            f"train_size={size:,} is too small for index {description!r}: its k-means needs "
            f"at least {needed:,} vectors (39 per centroid, FAISS' minimum). Raise train_size or "
            "choose fewer IVF lists."
        )
    if len(matrix) < needed:
        raise InvalidInputError(
            f"index {description!r} must be trained on at least {needed:,} vectors (39 per "
            f"k-means centroid, FAISS' minimum) but only {len(matrix):,} arrived before training. "
            "Add more documents in the first call, or choose a smaller index: fewer IVF lists "
            "(about 4*sqrt(number of documents), at most documents/39), or 'Flat' below 100,000 "
            "documents (factory='auto' does this)."
        )
    sample = matrix
    if len(matrix) > size:
        rows = np.random.default_rng(0).choice(len(matrix), size, replace=False)
        sample = matrix[np.sort(rows)]
    return np.ascontiguousarray(sample)


def train_index(index: Any, sample: np.ndarray, description: str, show_progress: bool) -> None:
    """Train ``index`` on ``sample``, one progress-bar step per k-means iteration.

    For an IVF index with a flat coarse quantiser the k-means iterations are
    run here one at a time (``faiss.Clustering`` with the index's own
    clustering parameters, which keeps the centroids between calls), so the
    bar moves during the long part; ``index.train`` then sees a trained
    quantiser and only trains the vector codes (PQ, SQ) on the residuals.
    Other indexes train in one step.
    """
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index)
    # A FAISS index (or None without IVF); stepwise below implies an IndexFlat.
    quantizer: Any = None if ivf is None else faiss.downcast_index(ivf.quantizer)
    stepwise = isinstance(quantizer, faiss.IndexFlat) and quantizer.ntotal == 0 and ivf.nlist > 1
    iterations = int(ivf.cp.niter) if stepwise else 0
    with progress(
        iterations + 1, f"training {description} on {len(sample):,} vectors", show_progress, unit="step"
    ) as bar:
        if stepwise:
            clustering = faiss.Clustering(int(ivf.d), int(ivf.nlist), ivf.cp)
            clustering.niter = 1
            for _ in range(iterations):
                clustering.train(sample, quantizer)  # resets the quantizer to the new centroids
                bar.update(1)
            quantizer.is_trained = True
        index.train(sample)
        bar.update(1)
