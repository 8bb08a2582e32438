"""Cherche's batching helpers: items one by one, or in slices, with an optional progress bar."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .._core.validation import check_positive_int

__all__ = ["yield_batch", "yield_batch_single"]


def _bar(items: Any, desc: str, total: int, show: bool) -> Any:
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, position=0)


def yield_batch_single(array: Any, desc: str, tqdm_bar: bool = True) -> Iterator[Any]:
    """Each item of ``array`` in turn (a string is one item), with a progress bar unless ``tqdm_bar=False``.

    Examples
    --------
    >>> from cherche_faiss import utils
    >>> list(utils.yield_batch_single("paris", desc="queries"))
    ['paris']
    >>> list(utils.yield_batch_single(["paris", "lyon"], desc="queries", tqdm_bar=False))
    ['paris', 'lyon']
    """
    if isinstance(array, str):
        yield array
        return
    yield from _bar(array, desc, len(array), tqdm_bar)


def yield_batch(array: Sequence | Any, batch_size: int, desc: str, tqdm_bar: bool = True) -> Iterator[Any]:
    """Consecutive slices of ``array`` of ``batch_size`` items (a string is a batch of one).

    Examples
    --------
    >>> from cherche_faiss import utils
    >>> list(utils.yield_batch(["a", "b", "c"], batch_size=2, desc="texts", tqdm_bar=False))
    [['a', 'b'], ['c']]
    >>> list(utils.yield_batch("a", batch_size=2, desc="texts"))
    [['a']]
    """
    if isinstance(array, str):
        yield [array]
        return
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=False)
    starts = range(0, len(array), batch_size)
    for start in _bar(starts, desc, len(starts), tqdm_bar):
        yield array[start : start + batch_size]
