"""Batching and progress bars shared by the components."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

__all__ = ["batches", "progress", "encode_in_batches"]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def progress(total: int, desc: str, show: bool, unit: str = "doc") -> Any:
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

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def encode_in_batches(encoder: Any, texts: list[str], batch_size: int, desc: str, show_progress: bool) -> np.ndarray:
    """Encode ``texts`` batch by batch into one float32 matrix, with a progress bar."""
    parts = []
    with progress(len(texts), desc, show_progress) as bar:
        for batch in batches(texts, batch_size):
            parts.append(encoder.encode(list(batch), batch_size=batch_size))
            bar.update(len(batch))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]
