"""Slices of a sequence and progress bars (tqdm, or nothing when progress is off)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["batches", "progress"]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def progress(total: int | None, desc: str, show: bool, unit: str = "doc") -> Any:
    """A tqdm bar, or a no-op stand-in when ``show`` is false.

    With ``show=True`` the bar is drawn in terminals and notebooks, and left
    out of redirected logs (tqdm's ``disable=None``).
    """
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
