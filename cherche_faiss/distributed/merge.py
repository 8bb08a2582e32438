"""The exact merge of the shards' top-k lists into the top-k of the whole corpus.

Each shard answers a batch of queries with its own ``k`` best hits as arrays
(:class:`ShardHits`); the corpus' ``k`` best are among them, since a document
in the global top-k is in its shard's top-k. Similarities are compared as the
shards give them: a :class:`~cherche_faiss.index.FaissIndex` reports larger
is better for both metrics (inner product, or minus the squared L2
distance), so one ordering merges both.

Equal similarities are ordered as one unsharded index orders them, by
**ordinal**: the position of the document's last addition among every
addition to the sharded retriever, which is the order of the FAISS ids one
unsharded index would have given them. That index orders ties by id in one of
two directions, which each shard reports with its hits (``descending``):
ascending on its exact inner-product path (BLAS, then a sort by score and row)
and in FAISS' L2 searches; descending in FAISS' inner-product searches (IVF,
HNSW, and flat indexes FAISS searches itself: its heaps break ties by id, and
the inner-product heap pops the smaller id first). A merged list therefore
equals the unsharded one, ties included, but for one case left unspecified on
both sides: when several documents tie at the ``k``-th place, which of them
fill the last places.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ShardHits", "merge_top_k", "empty_hits"]


@dataclass(frozen=True)
class ShardHits:
    """One shard's answer to a batch of ``nq`` queries, best first.

    Attributes
    ----------
    similarities
        ``(nq, width)`` float32; ``-inf`` after a row's last hit.
    ordinals
        ``(nq, width)`` int64, the ordinal of each hit (see the module docstring); ``-1`` after the last hit.
    keys
        One list of keys per query (as long as its hits).
    descending
        Whether equal similarities go by descending ordinal (see the module docstring).
    """

    similarities: np.ndarray
    ordinals: np.ndarray
    keys: list[list[Hashable]]
    descending: bool = False


def empty_hits(nq: int) -> ShardHits:
    """The answer of a shard that holds no document."""
    return ShardHits(np.zeros((nq, 0), dtype=np.float32), np.zeros((nq, 0), dtype=np.int64), [[] for _ in range(nq)])


def merge_top_k(parts: Sequence[ShardHits], k: int | None) -> tuple[list[list[Hashable]], list[list[float]]]:
    """The ``k`` best hits of each query over every shard's answer.

    Parameters
    ----------
    parts
        The answers of the shards to the same queries.
    k
        Hits per query (None: every hit the shards returned).

    Returns
    -------
    keys, similarities
        One list per query, best first; similarities as Python floats.

    Examples
    --------
    >>> import numpy as np
    >>> first = ShardHits(np.array([[0.9, 0.5]], np.float32), np.array([[4, 0]]), [["d", "a"]])
    >>> second = ShardHits(np.array([[0.5, 0.1]], np.float32), np.array([[2, 3]]), [["c", "x"]])
    >>> merge_top_k([first, second], k=3)
    ([['d', 'a', 'c']], [[0.899999976158..., 0.5, 0.5]])
    """
    nq = len(parts[0].keys) if parts else 0
    if not parts or nq == 0:
        return [[] for _ in range(nq)], [[] for _ in range(nq)]
    similarities = np.concatenate([part.similarities for part in parts], axis=1)
    ordinals = np.concatenate([part.ordinals for part in parts], axis=1)
    found = (ordinals >= 0).sum(axis=1)
    ties = -ordinals if parts[0].descending else ordinals
    # Primary key last: better similarity first, then ties in the unsharded index's order; the padding
    # (-inf, -1) sorts last because the padding flag is the primary key.
    order = np.lexsort((ties, -similarities, ordinals < 0), axis=1)
    keys_by_column: list[list[Hashable]] = [[] for _ in range(nq)]
    for part in parts:
        width = part.ordinals.shape[1]
        for row, row_keys in enumerate(part.keys):
            keys_by_column[row].extend(row_keys)
            keys_by_column[row].extend([None] * (width - len(row_keys)))
    merged_keys, merged_similarities = [], []
    for row in range(nq):
        count = int(found[row]) if k is None else min(k, int(found[row]))
        columns = order[row, :count]
        row_keys = keys_by_column[row]
        merged_keys.append([row_keys[column] for column in columns.tolist()])
        merged_similarities.append(similarities[row, columns].tolist())
    return merged_keys, merged_similarities
