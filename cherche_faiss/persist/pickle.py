"""Pickle helpers that turn pickle's low-level failures into library errors.

Unpickling runs code chosen by whoever wrote the file: load only pickles you
trust. ``pickle.load`` works on every component too (the FAISS bytes inside
carry their own checksum, so a damaged index never reaches FAISS); these
helpers add a checksum of the whole pickle, so that any damaged byte raises
:class:`~cherche_faiss.exceptions.CorruptFileError` before unpickling starts,
and clear errors for truncated or foreign files.

:func:`dump_pickle` appends a 20-byte trailer to the pickle: a magic string,
the length of the pickle and the CRC-32 of its 16 MiB blocks' CRC-32s (see
``_checksum.py``). ``pickle.load`` stops at the end of the pickle and never
reads the trailer, so the file stays an ordinary pickle.
"""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from .._core.checksum import BLOCK, block_crc32
from .._core.component import Component
from ..exceptions import CherFaissError, CorruptFileError, IncompatibleStateError

__all__ = ["dump_pickle", "load_pickle"]

_MAGIC = b"CHFPKL01"
_TRAILER = struct.Struct("<8sQI")  # magic, pickle length, CRC-32 of the block CRC-32s


def _combine(crcs: list[int]) -> int:
    return zlib.crc32(struct.pack(f"<{len(crcs)}I", *crcs))


def _digest(data: Any) -> int:
    return _combine(block_crc32(data))


def _file_digest(descriptor: int, length: int) -> int:
    """:func:`_digest` of the first ``length`` bytes of a file, read block by block on every core."""
    starts = range(0, length, BLOCK) or range(1)

    def crc(start: int) -> int:
        return zlib.crc32(os.pread(descriptor, min(BLOCK, length - start), start))

    with ThreadPoolExecutor(max_workers=max(1, min(len(starts), os.cpu_count() or 1))) as pool:
        return _combine(list(pool.map(crc, starts)))


def dump_pickle(obj: Any, file: str | os.PathLike | IO[bytes]) -> None:
    """Pickle ``obj`` with protocol 5 and a checksum trailer that :func:`load_pickle` verifies."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "w+b") as handle:
            pickle.dump(obj, handle, protocol=5)
            handle.flush()
            length = handle.tell()
            handle.write(_TRAILER.pack(_MAGIC, length, _file_digest(handle.fileno(), length)))
        return
    data = pickle.dumps(obj, protocol=5)
    file.write(data)
    file.write(_TRAILER.pack(_MAGIC, len(data), _digest(data)))


def _trailer(tail: bytes) -> tuple[int, int] | None:
    """``(length, digest)`` from the last bytes of a file, or None for a plain pickle."""
    if len(tail) < _TRAILER.size or tail[-_TRAILER.size : -_TRAILER.size + len(_MAGIC)] != _MAGIC:
        return None
    _, length, digest = _TRAILER.unpack(tail[-_TRAILER.size :])
    return length, digest


def _damaged(name: str) -> CorruptFileError:
    return CorruptFileError(
        f"{name} does not match the checksum dump_pickle wrote after it: the file was truncated "
        "or damaged. Load an intact copy or rebuild the pipeline."
    )


def load_pickle(file: str | os.PathLike | IO[bytes]) -> Any:
    """Load a pickled retriever, ranker or pipeline (from a trusted file only).

    A pickle written by :func:`dump_pickle` is checked whole before it is
    unpickled; one written by ``pickle.dump`` loads too.

    Raises
    ------
    CorruptFileError
        The file is truncated or its bytes are damaged.
    IncompatibleStateError
        The file holds something other than a cherche_faiss component, or a
        state this version cannot read.
    """
    name = str(file) if isinstance(file, (str, os.PathLike)) else getattr(file, "name", "<stream>")
    try:
        if isinstance(file, (str, os.PathLike)):
            with open(file, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                trailer = _trailer(os.pread(handle.fileno(), _TRAILER.size, max(0, size - _TRAILER.size)))
                if trailer is not None:
                    length, digest = trailer
                    # Checked before unpickling, reading the file once more (from the page cache).
                    if length != size - _TRAILER.size or _file_digest(handle.fileno(), length) != digest:
                        raise _damaged(name)
                obj = pickle.load(handle)
        else:
            data = memoryview(file.read())
            trailer = _trailer(bytes(data[-_TRAILER.size :]))
            if trailer is not None:
                length, digest = trailer
                if length != len(data) - _TRAILER.size or _digest(data[:length]) != digest:
                    raise _damaged(name)
                data = data[:length]
            obj = pickle.loads(data)
    except CherFaissError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, OverflowError, MemoryError, UnicodeDecodeError) as error:
        raise CorruptFileError(
            f"{name} is not a complete pickle ({type(error).__name__}: {error}). The file was "
            "truncated or damaged; load an intact copy or rebuild the pipeline."
        ) from None
    except (AttributeError, ImportError, TypeError, KeyError, IndexError, RecursionError) as error:
        raise IncompatibleStateError(
            f"{name} cannot be unpickled here ({type(error).__name__}: {error}). It was written "
            "by other software or an incompatible version of cherche_faiss."
        ) from None
    if not isinstance(obj, Component):
        raise IncompatibleStateError(
            f"{name} holds a {type(obj).__module__}.{type(obj).__name__}, not a cherche_faiss "
            "component. Pickles of other libraries (Cherche's included) cannot be loaded; rebuild "
            "the pipeline with cherche_faiss."
        )
    return obj
