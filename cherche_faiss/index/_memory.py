"""Hand freed heap memory back to the operating system while an IVF index grows.

An IVF index keeps one ``std::vector`` of codes per inverted list; streaming
vectors in makes thousands of them grow by reallocation. glibc serves those
blocks from its heap once its dynamic ``mmap`` threshold has risen above
their size, and the blocks freed by each reallocation stay resident in the
heap, although nothing uses them. ``malloc_trim(0)`` returns the free pages
to the system (``madvise(MADV_DONTNEED)``), so the build's peak resident
memory stays closer to the index itself (``tests/unit/test_memory.py``
checks that it is lower with the release than without; the benchmark
results give the figures).

This changes no allocator setting: it only releases pages that are already
free. Elsewhere than glibc (macOS, musl) it does nothing. Setting
``MALLOC_MMAP_THRESHOLD_=131072`` in the environment before Python starts
goes further (every large block is then a fresh ``mmap``), at the cost of
slower reallocation; the README documents it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["RELEASE_EVERY", "release_free_heap"]

# Vectors added between two releases: a trim walks the heap's free lists,
# which takes time in proportion to the heap, so it runs after batches, not per vector.
RELEASE_EVERY = 1024


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS; True when the C library could do it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
