"""One shard of a sharded retriever: a FaissIndex and the ordinal of every vector it holds.

A :class:`Shard` knows nothing of Ray: a shard actor hosts one, and a
sharded retriever loaded in one process holds them all. It answers a batch
of query vectors with arrays (:class:`~cherche_faiss.distributed.merge.ShardHits`),
not dicts, and saves itself with the safe format like any component.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from .._core.component import Component
from ..exceptions import IncompatibleStateError, InvalidInputError
from ..index.faiss import FaissIndex
from .merge import ShardHits, empty_hits

__all__ = ["Shard", "index_from_spec", "index_spec"]


def index_spec(index: FaissIndex, factory: Any, dimension: int) -> dict[str, Any]:
    """What a shard needs to build its empty index like ``index``: its settings, and ``factory``
    (a factory string, or the bytes of a trained, empty ``faiss.Index`` every shard starts from)."""
    return {
        "factory": factory,
        "dimension": int(dimension),
        "metric": index.metric,
        "normalize": index.normalize,
        "device": index.device,
        "train_size": index.train_size,
        "search_params": dict(index.search_params),
    }


def index_from_spec(spec: dict[str, Any]) -> FaissIndex:
    """The empty FaissIndex of a shard, from :func:`index_spec`'s description."""
    factory = spec["factory"]
    common = {
        "metric": spec["metric"],
        "normalize": spec["normalize"],
        "device": spec["device"],
        "search_params": spec["search_params"] or None,
    }
    if isinstance(factory, str):
        return FaissIndex(dimension=spec["dimension"], factory=factory, train_size=spec["train_size"], **common)
    import faiss

    # The trained, empty index every shard copies: the same coarse centroids and codebooks everywhere.
    return FaissIndex(factory=faiss.deserialize_index(np.asarray(factory, dtype=np.uint8)), **common)


def _ties_ascending(index: FaissIndex) -> bool:
    """Whether ``index`` orders equal similarities by ascending id (see :mod:`~cherche_faiss.distributed.merge`):
    its exact inner-product path (flat storage read in place by BLAS) and FAISS' L2 searches do, FAISS'
    inner-product searches do not."""
    if index.metric == "l2":
        return True
    flat = index._flat_storage()  # the same test as its search's: flat, on the CPU, aligned
    return flat is not None and bool(flat[0].flags.aligned)


class Shard(Component):
    """The documents of one shard: their vectors in a FaissIndex, and their ordinals.

    An ordinal is the position of a document's last addition among all the
    additions to the sharded retriever; the merge breaks ties with it (see
    :mod:`cherche_faiss.distributed.merge`).

    Parameters
    ----------
    number
        Which shard this is (``0 .. shards - 1``).
    index
        The FaissIndex holding the shard's vectors (an empty Flat index by default).

    Examples
    --------
    >>> import numpy as np
    >>> shard = Shard(0).add(np.eye(3, dtype=np.float32), ["a", "b", "c"], ordinals=[0, 5, 9])
    >>> hits = shard.search(np.array([[1.0, 0.1, 0.0]], np.float32), k=2)
    >>> hits.keys, hits.ordinals.tolist()
    ([['a', 'b']], [[0, 5]])
    """

    def __init__(self, number: int = 0, index: FaissIndex | None = None) -> None:
        self.number = number
        self.index = FaissIndex() if index is None else index
        self._ordinals = np.zeros(0, dtype=np.int64)  # by FAISS id of self.index

    def __len__(self) -> int:
        return len(self.index)

    def _repr_extra(self) -> dict[str, Any]:
        return {"documents": len(self)}

    def add(self, vectors: Any, keys: Sequence[Hashable], ordinals: Any) -> Shard:
        """Add (or replace) one vector per key, each with its ordinal; returns ``self``.

        ``vectors`` are as the encoder gave them: the index normalises them,
        exactly as one unsharded index would.
        """
        ordinals = np.asarray(ordinals, dtype=np.int64)
        if ordinals.shape != (len(keys),):
            raise InvalidInputError(f"got {len(keys)} keys but {ordinals.size} ordinals; pass one ordinal per key.")
        if len(set(keys)) != len(keys):
            raise InvalidInputError("a shard adds each key once per call; the sharded retriever keeps the last one.")
        self.index.add(vectors, list(keys))
        ids = self.index.ids_of(keys)
        if len(ids):
            needed = int(ids.max()) + 1
            if needed > len(self._ordinals):
                grown = np.full(max(needed, 2 * len(self._ordinals)), -1, dtype=np.int64)
                grown[: len(self._ordinals)] = self._ordinals
                self._ordinals = grown
            self._ordinals[ids] = ordinals
        return self

    def missing(self, keys: Sequence[Hashable]) -> list[Hashable]:
        """The keys of ``keys`` this shard does not hold."""
        return [key for key in keys if key not in self.index]

    def remove(self, keys: Sequence[Hashable]) -> Shard:
        """Remove the vectors of ``keys`` (every one must be held); returns ``self``."""
        self.index.remove(keys)
        return self

    def search(self, matrix: np.ndarray, k: int | None, **search_params: int) -> ShardHits:
        """The ``k`` best hits of each row of ``matrix`` (queries validated and normalised already).

        ``k=None`` returns every document the index finds.
        """
        if len(self.index) == 0:
            return empty_hits(len(matrix))
        similarities, keys = self.index.search_prepared(matrix, k or len(self.index), **search_params)
        width = max((len(row) for row in keys), default=0)
        scores = np.full((len(keys), width), -np.inf, dtype=np.float32)
        ordinals = np.full((len(keys), width), -1, dtype=np.int64)
        flat_keys = [key for row in keys for key in row]
        flat_ordinals = self._ordinals[self.index.ids_of(flat_keys)] if flat_keys else np.zeros(0, np.int64)
        start = 0
        for row, (row_keys, row_scores) in enumerate(zip(keys, similarities)):
            found = len(row_keys)
            scores[row, :found] = row_scores
            ordinals[row, :found] = flat_ordinals[start : start + found]
            start += found
        return ShardHits(scores, ordinals, keys, descending=not _ties_ascending(self.index))

    def _check_loaded(self) -> None:
        if not isinstance(self.index, FaissIndex):
            raise IncompatibleStateError("the saved index of this Shard is not a FaissIndex.")
        ordinals = self._ordinals
        if not isinstance(ordinals, np.ndarray) or ordinals.dtype != np.int64 or ordinals.ndim != 1:
            raise IncompatibleStateError("the saved ordinals of this Shard are not a 1-D int64 array.")
        held = self.index.held_ids()
        if len(held) and (int(held.max()) >= len(ordinals) or (ordinals[held] < 0).any()):
            raise IncompatibleStateError("the saved ordinals of this Shard do not cover every vector it holds.")
