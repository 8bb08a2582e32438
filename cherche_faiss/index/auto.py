"""``index="auto"``: pick a FAISS index from the corpus size, the dimension, a
memory budget and a target recall, and say why.

The rules follow the usual FAISS guidelines (the wiki's "Guidelines to choose
an index", which autofaiss automates), kept small enough to read:

1. **Exact** (``Flat``) when the corpus is small (under
   :data:`EXACT_LIMIT` vectors), when the target recall is 1 (nothing
   approximate can promise it), or when the vectors fit and the corpus is too
   small to train lists on. Exact search is then a single matrix product
   over the corpus, quick enough that an approximate index buys little.
2. **Inverted lists** (``IVF{nlist},...``) above that, with ``nlist`` the power
   of two nearest ``4 * sqrt(n)`` (FAISS' rule of thumb, so that a query scans
   about ``nprobe / nlist`` of the corpus), and never more lists than
   ``n / 39`` (FAISS needs 39 training vectors per list). IVF is chosen over
   HNSW because it supports removals and replacements (``remove``, re-adding a
   key), builds faster and is supported on GPUs.
3. **Storage** of the vectors in the lists: raw floats (``Flat``) when they fit
   the memory budget, else 8-bit scalar quantisation (``SQ8``, 4x smaller,
   recall barely changed), else product quantisation (``PQm``, ``m`` bytes a
   vector, the largest ``m`` up to 64 dividing the dimension that fits), which caps
   recall; a target recall above :data:`PQ_RECALL_CEILING` then needs a larger
   budget and is refused with an error saying how much.

The memory budget counts the index only (vectors, ids and lists), not the model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidInputError, InvalidTypeError

__all__ = ["IndexChoice", "choose_index", "parse_bytes", "EXACT_LIMIT", "MIN_POINTS_PER_CENTROID"]

EXACT_LIMIT = 100_000
"""Below this many vectors, ``"auto"`` keeps exact search."""

MIN_POINTS_PER_CENTROID = 39
"""FAISS warns when k-means gets fewer training vectors per centroid than this."""

PQ_RECALL_CEILING = 0.9
"""Product-quantised codes rarely reach a higher recall@10 against exact search."""

_ID_BYTES = 8  # one int64 id per vector
_OVERHEAD = 1.1  # list headers, allocator slack, centroids
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "m": 1e6,
    "mb": 1e6,
    "g": 1e9,
    "gb": 1e9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "t": 1e12,
    "tb": 1e12,
    "tib": 2**40,
}


@dataclass(frozen=True)
class IndexChoice:
    """What ``"auto"`` chose: a FAISS factory string, default search parameters and why.

    Attributes
    ----------
    factory
        The FAISS factory string built, e.g. ``"IVF4096,Flat"``.
    search_params
        Default search parameters (``{"nprobe": 64}`` for IVF), before any tuning.
    reason
        One sentence a user can read in the index's ``repr``.
    estimated_bytes
        Estimated size of the index in memory; None for a choice read back
        from a save or a pickle, which keep the other three only.
    """

    factory: str
    search_params: dict
    reason: str
    estimated_bytes: int | None = None


def parse_bytes(value: Any, name: str = "memory_budget") -> int | None:
    """Bytes from an int or a string such as ``"4GB"``, ``"512 MiB"`` (None stays None).

    >>> parse_bytes("1.5 GB"), parse_bytes("512MiB"), parse_bytes(1000)
    (1500000000, 536870912, 1000)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidTypeError(f"{name} must be a number of bytes or a string like '4GB', got {type(value).__name__}.")
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if match is None or match.group(2).lower() not in _UNITS:
            raise InvalidInputError(
                f"{name}={value!r} is not a size; write it as bytes or with a unit, e.g. '800MB', '4GB', '2GiB'."
            )
        value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive size, got {value!r}.")
    return int(value)


def _nlist_for(n: int) -> int:
    """The power of two nearest ``4 * sqrt(n)``, at most ``n / 39``."""
    target = 4 * math.sqrt(n)
    nlist = 2 ** round(math.log2(target))
    while nlist > 1 and nlist * MIN_POINTS_PER_CENTROID > n:
        nlist //= 2
    return nlist


def _default_nprobe(nlist: int) -> int:
    # About 1.5% of the lists: recall@10 around 0.95 on sentence embeddings; tune() refines it.
    return max(1, min(nlist, 2 ** round(math.log2(max(1.0, nlist / 64)))))


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def choose_index(
    n: int,
    dimension: int,
    memory_budget: Any = None,
    target_recall: float = 0.95,
    size_known: bool = True,
) -> IndexChoice:
    """Choose a FAISS index for ``n`` vectors of ``dimension`` (see the module docstring).

    Parameters
    ----------
    n
        Number of vectors the index will hold (an estimate is fine).
    dimension
        Dimension of the vectors.
    memory_budget
        Maximum size of the index, in bytes or as ``"4GB"``; None for no limit.
    target_recall
        Recall@10 against exact search the index must be able to reach, in (0, 1].
    size_known
        False when ``n`` is only a lower bound (a stream of unknown length);
        the reason then says so.

    Returns
    -------
    IndexChoice

    Examples
    --------
    >>> choose_index(5_000, 384).factory
    'Flat'
    >>> choice = choose_index(1_000_000, 384)
    >>> choice.factory, choice.search_params
    ('IVF4096,Flat', {'nprobe': 64})
    >>> choose_index(1_000_000, 384, memory_budget="1GB").factory
    'IVF4096,SQ8'
    >>> choose_index(1_000_000, 384, memory_budget="200MB", target_recall=0.8).factory
    'IVF4096,PQ64'
    """
    _check_arguments(n, dimension, target_recall)
    budget = parse_bytes(memory_budget)
    count = f"{n:,}{'' if size_known else '+ (length unknown; pass expected_size)'} vectors of d={dimension}"
    flat_bytes = _index_bytes(n, 4 * dimension)
    nlist = _nlist_for(n)
    exact = _exact_choice(n, nlist, target_recall, flat_bytes, budget, count)
    if exact is not None:
        return exact
    nprobe = _default_nprobe(nlist)
    lists = f"IVF{nlist} (about 4*sqrt(n) lists; supports removal and replacement)"
    if budget is None or flat_bytes <= budget:
        return IndexChoice(
            f"IVF{nlist},Flat",
            {"nprobe": nprobe},
            f"{lists} with raw vectors ({_size(flat_bytes)}) for {count}",
            flat_bytes,
        )
    return _compressed_choice(n, dimension, nlist, nprobe, budget, target_recall, flat_bytes, lists, count)


def _check_arguments(n: int, dimension: int, target_recall: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"the number of vectors must be a positive int, got {n!r}.")
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise InvalidInputError(f"dimension must be a positive int, got {dimension!r}.")
    if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) or not 0 < target_recall <= 1:
        raise InvalidInputError(f"target_recall must be a number in (0, 1], got {target_recall!r}.")


def _index_bytes(n: int, code_bytes: int) -> int:
    """Estimated size of an index of ``n`` vectors of ``code_bytes`` each, with ids and overhead."""
    return int(n * (code_bytes + _ID_BYTES) * _OVERHEAD)


def _exact_choice(
    n: int, nlist: int, target_recall: float, flat_bytes: int, budget: int | None, count: str
) -> IndexChoice | None:
    """Rule 1: ``Flat`` when the target recall is 1, or when the vectors fit and the corpus is small.

    None when an approximate index is to be chosen; an error when recall 1 is
    asked for vectors that do not fit the budget.
    """
    if target_recall >= 1.0:
        if budget is not None and flat_bytes > budget:
            raise InvalidInputError(
                f"target_recall=1 needs exact search, whose index takes {_size(flat_bytes)} for {count}, "
                f"over memory_budget={_size(budget)}. Raise the budget or lower target_recall."
            )
        return IndexChoice("Flat", {}, f"exact search: target_recall=1 for {count}", flat_bytes)
    fits = budget is None or flat_bytes <= budget
    if fits and (n < EXACT_LIMIT or nlist < 16):
        return IndexChoice(
            "Flat", {}, f"exact search: {count} is under {EXACT_LIMIT:,}, where a scan takes milliseconds", flat_bytes
        )
    return None


def _compressed_choice(
    n: int,
    dimension: int,
    nlist: int,
    nprobe: int,
    budget: int,
    target_recall: float,
    flat_bytes: int,
    lists: str,
    count: str,
) -> IndexChoice:
    """Rule 3 when raw vectors exceed the budget: ``SQ8`` codes, else the largest ``PQm`` that fits."""
    sq8_bytes = _index_bytes(n, dimension)
    if sq8_bytes <= budget:
        return IndexChoice(
            f"IVF{nlist},SQ8",
            {"nprobe": nprobe},
            f"{lists} with 8-bit scalar quantisation ({_size(sq8_bytes)}; raw vectors need "
            f"{_size(flat_bytes)} > memory_budget {_size(budget)}) for {count}",
            sq8_bytes,
        )
    per_vector = budget / (n * _OVERHEAD) - _ID_BYTES
    # At most 64 bytes a vector: the largest product quantiser FAISS' GPU indexes take in float32.
    sizes = [m for m in range(min(dimension // 2, 64), 0, -1) if dimension % m == 0 and m <= per_vector]
    if not sizes or sizes[0] < 4:
        raise InvalidInputError(
            f"memory_budget={_size(budget)} leaves {max(per_vector, 0):.1f} bytes per vector for {count}; "
            f"even product quantisation needs at least {_index_bytes(n, 4):,} bytes. "
            "Raise the budget or index fewer vectors."
        )
    if target_recall > PQ_RECALL_CEILING:
        raise InvalidInputError(
            f"memory_budget={_size(budget)} only fits product-quantised codes for {count}, which rarely "
            f"reach recall@10 {target_recall} against exact search (about {PQ_RECALL_CEILING} at best). "
            f"Raise the budget to {_size(sq8_bytes)} (8-bit scalar quantisation) or lower target_recall "
            f"to {PQ_RECALL_CEILING}."
        )
    m = sizes[0]
    pq_bytes = _index_bytes(n, m)
    return IndexChoice(
        f"IVF{nlist},PQ{m}",
        {"nprobe": nprobe},
        f"{lists} with product quantisation, {m} bytes a vector ({_size(pq_bytes)}; 8-bit scalar "
        f"codes need {_size(sq8_bytes)} > memory_budget {_size(budget)}) for {count}",
        pq_bytes,
    )
