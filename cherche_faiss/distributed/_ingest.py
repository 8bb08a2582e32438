"""Adding vectors to a sharded retriever: one trained index for all shards, then each vector to its shard.

The first vectors decide the index every shard starts from
(:func:`shard_index_spec`): ``"auto"`` chooses it for the whole corpus, and an
index that must be trained (IVF, PQ, SQ) is trained **once**, on a sample of
the first vectors as one unsharded index would be; every shard then receives
the same trained, empty index. A sharded IVF searched with ``nprobe=p``
therefore scans, across its shards, exactly the lists one IVF with those
centroids scans with ``nprobe=p``.

:class:`Router` then gives each vector its ordinal (the next number of a
counter kept by the retriever, in the order vectors arrive) and sends it to
the shard that owns its key (:func:`~cherche_faiss.distributed.routing.shard_of`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any

import numpy as np

from .._core.progress import progress
from .._core.validation import as_matrix
from ..exceptions import InvalidInputError
from ..index.auto import choose_index, parse_bytes
from ..index.faiss import FaissIndex
from ._group import ShardGroup
from .routing import shard_of
from .shard import index_spec

__all__ = ["Router", "buffered", "counted", "shard_index_spec", "training_size"]


def _prototype(index: FaissIndex, dimension: int, total: int | None, shards: int) -> tuple[FaissIndex, Any]:
    """An empty FaissIndex built as ``index`` would be for the whole corpus, and its factory for the spec."""
    search_params = dict(index.search_params)
    common: dict[str, Any] = {"metric": index.metric, "normalize": index.normalize, "train_size": index.train_size}
    factory = index.factory
    if not isinstance(factory, str):
        import faiss

        # A faiss.Index given by the user: a copy is trained (theirs stays as it was).
        return FaissIndex(factory=faiss.clone_index(index.faiss_index or factory), **common), None
    if factory == "auto":
        budget = parse_bytes(index.memory_budget)
        planned = index.expected_size or total
        choice = choose_index(
            planned or 1,
            dimension,
            None if budget is None else budget * shards,  # the budget is each shard's
            index.target_recall,
            size_known=planned is not None,
        )
        factory = choice.factory
        search_params = {**choice.search_params, **search_params}
    prototype = FaissIndex(dimension=dimension, factory=factory, search_params=search_params or None, **common)
    return prototype, factory


def training_size(index: FaissIndex, dimension: int, total: int | None, shards: int) -> int:
    """How many of the first vectors to gather before the shards' index can be built (0: none needed)."""
    prototype, _ = _prototype(index, dimension, total, shards)
    if prototype.faiss_index.is_trained:
        return 0
    return prototype.train_size or _default_training_size(prototype)


def _default_training_size(prototype: FaissIndex) -> int:
    from ..index._training import default_training_size

    return default_training_size(prototype.faiss_index)


def shard_index_spec(
    index: FaissIndex, first: np.ndarray, total: int | None, shards: int, show_progress: bool
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The spec every shard builds its empty index from (``shard.index_from_spec``), and the trained
    empty index's bytes (None when the index needs no training).

    Parameters
    ----------
    index
        The template's FaissIndex (its settings; it stays empty).
    first
        The first vectors added, as encoded (the training sample is drawn from them).
    total
        The number of vectors expected, when known (for ``"auto"``).
    shards
        The number of shards.
    show_progress
        Show the training's progress bar.
    """
    dimension = int(first.shape[1])
    prototype, factory = _prototype(index, dimension, total, shards)
    search_params = dict(prototype.search_params)
    if prototype.faiss_index.is_trained:
        spec = index_spec(index, factory, dimension)
        spec["search_params"] = search_params
        return spec, None
    import faiss

    # Trained as one unsharded index trains on its first vectors (normalised, sampled with its seed) ...
    prototype.add(first, keys=list(range(len(first))), show_progress=show_progress)
    trained = faiss.clone_index(prototype.faiss_index)
    trained.reset()  # ... then emptied: the centroids and codebooks stay, the vectors go
    data = faiss.serialize_index(trained)
    spec = index_spec(index, data, dimension)
    spec["search_params"] = search_params
    return spec, data


class Router:
    """Sends batches of ``(vectors, keys)`` to the shards that own the keys (see the module docstring).

    Parameters
    ----------
    group
        The shards.
    first_ordinal
        The ordinal of the next vector (the retriever's counter).
    dimension
        The dimension every vector must have (None: the first batch's).
    normalize
        Whether the index normalises vectors (zero vectors are then refused here, before any shard
        changes).
    """

    def __init__(self, group: ShardGroup, first_ordinal: int, dimension: int | None, normalize: bool) -> None:
        self.group = group
        self.next_ordinal = first_ordinal
        self.dimension = dimension
        self.normalize = normalize

    def check(self, vectors: Any) -> np.ndarray:
        """``vectors`` as a float32 matrix, checked here as the shards' indexes would check them, so that
        a bad batch changes no shard."""
        matrix = as_matrix(vectors, "vectors", self.dimension)  # shape, dimension, NaN and infinite values
        if self.normalize:
            FaissIndex(dimension=matrix.shape[1]).prepare(matrix, "vectors")  # zero vectors cannot be normalised
        self.dimension = matrix.shape[1]
        return matrix

    def send(self, vectors: Any, keys: list[Hashable]) -> None:
        """Give every vector its ordinal and send it to its shard (the last of a repeated key wins)."""
        vectors = self.check(vectors)
        if len(vectors) != len(keys):
            raise InvalidInputError(f"got {len(vectors)} vectors but {len(keys)} keys; pass one key per vector.")
        last = dict(zip(keys, range(len(keys))))
        if len(last) != len(keys):
            rows = np.fromiter(sorted(last.values()), dtype=np.int64)
            vectors, keys = vectors[rows], [keys[row] for row in rows]
        ordinals = np.arange(self.next_ordinal, self.next_ordinal + len(keys), dtype=np.int64)
        self.next_ordinal += len(keys)
        owners = shard_of(keys, self.group.count)
        for shard in np.unique(owners).tolist():
            rows = np.flatnonzero(owners == shard)
            self.group.submit_add(
                shard, np.ascontiguousarray(vectors[rows]), [keys[row] for row in rows], ordinals[rows]
            )


def buffered(
    batches: Iterable[tuple[Any, list[Hashable]]], size: int
) -> tuple[list[tuple[np.ndarray, list[Hashable]]], Iterator[tuple[Any, list[Hashable]]]]:
    """The first batches holding at least ``size`` vectors (all of them when fewer), and the rest."""
    iterator = iter(batches)
    head: list[tuple[np.ndarray, list[Hashable]]] = []
    held = 0
    while held < max(size, 1):
        batch = next(iterator, None)
        if batch is None:
            break
        head.append((np.asarray(batch[0], dtype=np.float32), list(batch[1])))
        held += len(batch[1])
    return head, iterator


def counted(batches: Iterable[tuple[Any, list[Hashable]]], total: int | None, show: bool, what: str) -> Iterator:
    """``batches`` as they are, with a progress bar of the documents that went through."""
    with progress(total, what, show) as bar:
        for vectors, keys in batches:
            yield vectors, keys
            bar.update(len(keys))
