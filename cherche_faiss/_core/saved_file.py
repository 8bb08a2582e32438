"""Bytes left in a file of a save: what ``cherche_faiss.load(path, mmap=True)`` gives for embedded files.

A memory-mapped load promises that the save's files stay in place, so large
embedded files (an ONNX model, a model's weights) are not read into memory:
a :class:`SavedFile` names the file, and its consumers read it when they need
it, or hand its path to a library that reads files itself (onnxruntime).
Pickling one stores its bytes (a pickle must stand alone); saving it again
copies the file.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SavedFile", "is_file_bytes", "as_bytes"]


class SavedFile:
    """The content of ``path`` (``size`` bytes, already checked against the save's SHA-256)."""

    __slots__ = ("path", "size")

    def __init__(self, path: str | os.PathLike, size: int) -> None:
        self.path = Path(path)
        self.size = int(size)

    def read(self) -> bytes:
        return self.path.read_bytes()

    def __len__(self) -> int:
        return self.size

    def __reduce__(self) -> tuple:
        return bytes, (self.read(),)  # unpickled as the bytes themselves: pickles never point into a save

    def __repr__(self) -> str:
        return f"SavedFile({str(self.path)!r}, size={self.size})"


def is_file_bytes(value: object) -> bool:
    """Whether ``value`` is bytes, or a :class:`SavedFile` standing for them."""
    return isinstance(value, (bytes, SavedFile))


def as_bytes(value: bytes | SavedFile) -> bytes:
    return value.read() if isinstance(value, SavedFile) else value
