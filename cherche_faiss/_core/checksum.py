"""Fast checksums of large buffers (index bytes inside pickles).

CRC-32 of each 16 MiB block, blocks hashed on every core (zlib releases the
GIL): several times faster than SHA-256, so that checking a pickle costs little
beside unpickling it. It detects truncation and accidental damage; it is no
defence against a forger, and neither is anything else inside a pickle, which
runs code when loaded.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor

__all__ = ["ALGORITHM", "BLOCK", "block_crc32"]

ALGORITHM = "crc32/16MiB"
BLOCK = 1 << 24  # bytes per checksummed block


def block_crc32(data: memoryview | bytes) -> list[int]:
    """CRC-32 of each 16 MiB block of ``data``, in order."""
    view = memoryview(data).cast("B")
    blocks = [view[start : start + BLOCK] for start in range(0, len(view), BLOCK)] or [view]
    if len(blocks) == 1:
        return [zlib.crc32(blocks[0])]
    with ThreadPoolExecutor(max_workers=min(len(blocks), os.cpu_count() or 1)) as pool:
        return list(pool.map(zlib.crc32, blocks))
