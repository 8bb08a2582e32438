"""A mask over FAISS ids as the ``faiss.IDSelector`` that fits it, and search parameters carrying it.

* the allowed ids form one run ``[lo, hi)``: ``IDSelectorRange`` (two numbers);
* few ids allowed (at most one in :data:`BATCH_FRACTION` of the ids):
  ``IDSelectorBatch`` (a hash set with a Bloom filter in front: its memory
  follows the allowed ids, not the whole id space);
* otherwise ``IDSelectorBitmap``: one bit per id, a test per candidate.

Search parameters are always built with ``bounded_queue`` left at its default
(True): FAISS' HNSW search with ``bounded_queue=False`` ignores the selector
and returns excluded ids (faiss issue 5504, fix not released in 1.15), so
this module never sets it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._raw import faiss_module

__all__ = ["BATCH_FRACTION", "Selector", "make_selector", "selector_parameters"]

#: Below one allowed id in this many, a batch (hash set) beats a bitmap of every id.
BATCH_FRACTION = 64


class Selector:
    """A FAISS selector and the arrays it reads (kept alive as long as it is: FAISS does not copy a bitmap)."""

    __slots__ = ("kind", "selector", "_keep")

    def __init__(self, kind: str, selector: Any, keep: Any = None) -> None:
        self.kind, self.selector, self._keep = kind, selector, keep


def make_selector(mask: np.ndarray, count: int) -> Selector:
    """The selector of ``mask`` (bool per FAISS id), of which ``count`` are True (at least one).

    The allowed ids are listed (``np.flatnonzero``, a pass over the whole
    mask that costs milliseconds at a million ids) only for the batch
    selector, which needs them; the range and the bitmap are read off the mask.
    """
    faiss = faiss_module()
    first = int(np.argmax(mask))
    last = len(mask) - 1 - int(np.argmax(mask[::-1]))
    if last - first + 1 == count:
        return Selector("range", faiss.IDSelectorRange(first, last + 1))
    if count * BATCH_FRACTION <= len(mask):
        ids = np.ascontiguousarray(np.flatnonzero(mask), dtype=np.int64)
        return Selector("batch", faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids)), ids)
    bits = np.packbits(mask, bitorder="little")  # FAISS reads bit (id & 7) of byte id >> 3
    # FAISS takes the bitmap's length in bytes (an id whose byte lies beyond it is not a member).
    return Selector("bitmap", faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits)


def selector_parameters(kind: str, selector: Selector, params: dict[str, int]) -> Any:
    """``faiss.SearchParameters`` of the index ``kind`` ("ivf", "hnsw", "other") with ``selector`` and ``params``."""
    faiss = faiss_module()
    if kind == "ivf":
        parameters = faiss.SearchParametersIVF()
        if "nprobe" in params:
            parameters.nprobe = int(params["nprobe"])
    elif kind == "hnsw":
        parameters = faiss.SearchParametersHNSW()  # bounded_queue stays True: see the module's docstring
        if "efSearch" in params:
            parameters.efSearch = int(params["efSearch"])
    else:
        parameters = faiss.SearchParameters()
    parameters.sel = selector.selector
    return parameters
