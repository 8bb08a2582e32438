"""SHA-256 digests of saved files, computed and checked on every core.

Each file's entry in the manifest holds its size and SHA-256; a file larger
than one block (64 MiB) also holds the SHA-256 of each block, so that loading
checks its blocks in parallel (``hashlib`` releases the GIL while it hashes)
instead of waiting for one whole-file digest, which runs on a single core. The
whole-file digest stays in the manifest for tools such as ``sha256sum``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import CorruptFileError

if TYPE_CHECKING:
    from ._opened import OpenedSave

__all__ = ["BLOCK_BYTES", "file_entry", "verify_files"]

BLOCK_BYTES = 64 << 20
_READ = 4 << 20  # bytes read at a time: hashing stays in cache, memory stays flat


def _sha256(path: Path, start: int = 0, length: int | None = None) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_READ)  # one buffer, refilled: reading allocates nothing per chunk
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        handle.seek(start)
        left = length
        while left is None or left > 0:
            read = handle.readinto(view if left is None or left >= _READ else view[:left])
            if not read:
                break
            digest.update(view[:read])
            if left is not None:
                left -= read
    return digest.hexdigest()


def _workers(tasks: int) -> int:
    return max(1, min(tasks, os.cpu_count() or 1))


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest entry of ``path``: ``size``, ``sha256`` and, above one block, ``blocks``."""
    size = path.stat().st_size
    entry: dict[str, Any] = {"size": size}
    if size <= BLOCK_BYTES:
        entry["sha256"] = _sha256(path)
        return entry
    starts = range(0, size, BLOCK_BYTES)
    with ThreadPoolExecutor(max_workers=_workers(len(starts) + 1)) as pool:
        whole = pool.submit(_sha256, path)
        entry["blocks"] = list(pool.map(lambda start: _sha256(path, start, BLOCK_BYTES), starts))
        entry["sha256"] = whole.result()
    return entry


def _check_entry(name: str, entry: Any) -> None:
    if (
        not isinstance(entry, Mapping)
        or isinstance(entry.get("size"), bool)
        or not isinstance(entry.get("size"), int)
        or not isinstance(entry.get("sha256"), str)
        or ("blocks" in entry and not isinstance(entry["blocks"], list))
    ):
        raise CorruptFileError(f"the manifest's entry for {name!r} is damaged: {entry!r:.200}.")


def verify_files(opened: OpenedSave, entries: Mapping[str, Any], contents: bool = True) -> None:
    """Check the size and SHA-256 (``contents=False``: the size only) of every file named in
    ``entries`` (names relative to the save ``opened``).

    Raises
    ------
    CorruptFileError
        Naming the first file that is missing, has another size or other bytes.
    """
    root = opened.target  # what messages name; the files are read through ``opened``
    tasks: list[tuple[str, int, int | None, str]] = []
    for name, entry in entries.items():
        _check_entry(name, entry)
        try:
            status = opened.status(name)
        except (FileNotFoundError, NotADirectoryError):
            raise CorruptFileError(
                f"{name} is missing from the save at {root}: the save is incomplete or was edited. "
                "Save the pipeline again, or restore the folder from a backup."
            ) from None
        if not stat.S_ISREG(status.st_mode):
            raise CorruptFileError(
                f"{name} in the save at {root} is not a regular file (a link or a folder): saves only "
                "hold the files they wrote. Save the pipeline again."
            )
        size = status.st_size
        if size != entry["size"]:
            raise CorruptFileError(
                f"{name} in the save at {root} holds {size:,} bytes but {entry['size']:,} were saved: "
                "the file was truncated or replaced. Save the pipeline again, or restore it from a backup."
            )
        if not contents:
            continue
        blocks = entry.get("blocks")
        if blocks and len(blocks) == -(-size // BLOCK_BYTES):
            tasks.extend((name, i * BLOCK_BYTES, BLOCK_BYTES, digest) for i, digest in enumerate(blocks))
        else:
            tasks.append((name, 0, None, entry["sha256"]))
    if not tasks:
        return

    def check(task: tuple[str, int, int | None, str]) -> str | None:
        name, start, length, expected = task
        return None if _sha256(opened.path(name), start, length) == expected else name

    with ThreadPoolExecutor(max_workers=_workers(len(tasks))) as pool:
        for damaged in pool.map(check, tasks):
            if damaged is not None:
                raise CorruptFileError(
                    f"{damaged} in the save at {root} does not match its SHA-256 in the manifest: its "
                    "bytes were altered. Save the pipeline again, or restore the folder from a backup."
                )
