"""Which shard owns a document: a hash of its key that every process computes alike.

Python's ``hash()`` of a string is salted per process (``PYTHONHASHSEED``), so
two machines, or two runs, would route the same key to different shards. The
hash here depends on the key's value only:

* ``int`` keys of 64 bits (and ``bool``, NumPy integers and integral floats,
  which equal them as dict keys) go through SplitMix64's finaliser, computed
  for a whole batch at once with NumPy;
* ``str``, ``bytes``, other floats, ``None`` and tuples of these are hashed
  with BLAKE2b (8-byte digest) over a tagged, length-prefixed encoding, so
  that ``"1"``, ``1`` and ``(1,)`` never collide by construction.

A key then belongs to shard ``hash % shards``. The number of shards is fixed
when a sharded retriever is built: changing it would move most keys.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ..exceptions import InvalidTypeError

__all__ = ["key_hash", "shard_of"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MASK = (1 << 64) - 1


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser of uint64 ``values`` (a bijection that spreads every input bit)."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _as_int(key: Any) -> int | None:
    """The int ``key`` equals as a dict key (``True``, ``np.int32(3)``, ``3.0``), else None."""
    if isinstance(key, (bool, int, np.integer)):
        return int(key)
    if isinstance(key, (float, np.floating)) and float(key).is_integer():
        return int(key)
    return None


def _encode(key: Any, where: Any) -> bytes:
    """A tagged byte encoding of a non-int key, the same in every process."""
    number = _as_int(key)
    if number is not None:
        text = str(number).encode()
        return b"i" + struct.pack("<I", len(text)) + text
    if isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
        return b"s" + struct.pack("<I", len(data)) + data
    if isinstance(key, bytes):
        return b"b" + struct.pack("<I", len(key)) + key
    if isinstance(key, (float, np.floating)):
        return b"f" + struct.pack("<d", float(key))  # NaN keys cannot be found again anyway
    if key is None:
        return b"n"
    if isinstance(key, tuple):
        return b"t" + struct.pack("<I", len(key)) + b"".join(_encode(item, where) for item in key)
    raise InvalidTypeError(
        f"key {where!r} is a {type(key).__name__}: a sharded retriever routes documents by a hash of their key "
        "that every process must compute alike, which it can for int, str, bytes, float, None and tuples of "
        "these. Use keys of those types."
    )


def _blake(key: Any) -> int:
    digest = hashlib.blake2b(_encode(key, key), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def key_hash(key: Hashable) -> int:
    """The 64-bit hash of ``key`` that routes it, the same in every process and Python run.

    Examples
    --------
    >>> key_hash("doc-1") == key_hash("doc-1")
    True
    >>> key_hash(3) == key_hash(3.0) == key_hash(np.int64(3))  # equal keys, equal hashes
    True
    """
    number = _as_int(key)
    if number is not None and _INT64_MIN <= number <= _INT64_MAX:
        return int(_mix(np.array([number & _MASK], dtype=np.uint64))[0])
    return _blake(key)


def shard_of(keys: Sequence[Hashable], shards: int) -> np.ndarray:
    """The shard (``0 .. shards - 1``) that owns each key, as an int64 array.

    Parameters
    ----------
    keys
        Document keys.
    shards
        Number of shards.

    Examples
    --------
    >>> shard_of(["a", "b", "a", 7], 4).tolist() == [shard_of([key], 4)[0] for key in ["a", "b", "a", 7]]
    True
    """
    keys = list(keys)
    if not keys:
        return np.zeros(0, dtype=np.int64)
    if set(map(type, keys)) == {int}:
        try:
            values = np.array(keys, dtype=np.int64).view(np.uint64)
        except OverflowError:
            pass
        else:
            return (_mix(values) % np.uint64(shards)).astype(np.int64)
    hashes = np.fromiter((key_hash(key) for key in keys), dtype=np.uint64, count=len(keys))
    return (hashes % np.uint64(shards)).astype(np.int64)
