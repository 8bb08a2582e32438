"""Values written by :class:`~cherche_faiss.persist._values.ValueEncoder`, read back.

Every tag of the table in :mod:`._values` has a method here; a malformed value
(an edited or damaged manifest) is always a library error, never a crash
further down: arrays are read with ``allow_pickle=False``, every file must be
one the manifest names, and each tag checks its body before using it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .._core.saved_file import SavedFile
from ..exceptions import CorruptFileError, IncompatibleStateError
from . import _json
from ._files import Reader

__all__ = ["ValueDecoder"]


class ValueDecoder:
    """Decode what :class:`ValueEncoder` wrote; every malformed value is a library error.

    Each tag is read by its own method (``_TAGS``); a method raises on a body of
    the wrong shape, and an unknown tag is refused.
    """

    def __init__(self, reader: Reader, component: Callable[[Any, str], Any], objects: Callable[[str], Any]) -> None:
        self.reader = reader
        self.component = component
        self.objects = objects

    def decode(self, value: Any, where: str, inline: bool = False) -> Any:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value
        if isinstance(value, list):
            return [self.decode(item, f"{where}[{i}]", inline) for i, item in enumerate(value)]
        if not isinstance(value, dict):
            raise _damaged(where, value)
        tags = [key for key in value if isinstance(key, str) and key.startswith("$")]
        if not tags:
            return {key: self.decode(item, f"{where}[{key!r}]", inline) for key, item in value.items()}
        tag = tags[0]
        read = self._TAGS.get(tag)
        if read is None or (inline and tag not in self._INLINE):
            raise _damaged(where, value)  # an unknown tag, or a line of a file naming a file or component
        decoded = read(self, value[tag], value, where, inline)
        if "n" in value and (not isinstance(decoded, (list, dict)) or len(decoded) != value["n"]):
            raise _damaged(where, value)  # the length written beside a file's name
        return decoded

    # -- tags that may appear anywhere, lines of files included ------------------------------------
    def _as_tuple(self, body: Any, value: dict, where: str, inline: bool) -> tuple:
        if not isinstance(body, list):
            raise _damaged(where, value)
        return tuple(self.decode(item, f"{where}[{i}]", inline) for i, item in enumerate(body))

    def _as_dict(self, body: Any, value: dict, where: str, inline: bool) -> dict:
        pairs = self.decode(body, where, inline)
        if not isinstance(pairs, list) or not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in pairs):
            raise _damaged(where, value)
        try:
            return {key: item for key, item in pairs}
        except TypeError:  # an unhashable key
            raise _damaged(where, value) from None

    def _as_float(self, body: Any, value: dict, where: str, inline: bool) -> float:
        if body not in ("nan", "inf", "-inf"):
            raise _damaged(where, value)
        return float(body)

    def _as_dtype(self, body: Any, value: dict, where: str, inline: bool) -> type:
        if isinstance(body, str):
            try:
                return np.dtype(body).type
            except TypeError:  # a name NumPy does not know
                pass
        raise _damaged(where, value)

    # -- tags that name components and files (never inside a file) ---------------------------------
    def _as_component(self, body: Any, value: dict, where: str, inline: bool) -> Any:
        return self.component(body, where)

    def _as_array(self, body: Any, value: dict, where: str, inline: bool) -> np.ndarray:
        return self.array(body, where)

    def _as_ints(self, body: Any, value: dict, where: str, inline: bool) -> list:
        ints = self.array(body, where)
        if ints.ndim != 1 or ints.dtype != np.int64:
            raise _damaged(where, value)
        values = ints.tolist()
        if "none" in value:
            missing = self.array(value["none"], where)
            if (
                missing.ndim != 1
                or missing.dtype.kind not in "iu"
                or (missing.size and (missing.min() < 0 or missing.max() >= len(values)))
            ):
                raise _damaged(where, value)
            for i in missing.tolist():
                values[i] = None
        return values

    def _as_ragged(self, body: Any, value: dict, where: str, inline: bool) -> list:
        if not isinstance(body, dict):
            raise _damaged(where, value)
        values = self.array(body.get("values"), where)
        offsets = self.array(body.get("offsets"), where)
        if (
            values.ndim != 1
            or offsets.ndim != 1
            or offsets.dtype != np.int64
            or len(offsets) < 1
            or offsets[0] != 0
            or offsets[-1] != len(values)
            or (np.diff(offsets) < 0).any()
        ):
            raise _damaged(where, value)
        return [values[start:stop] for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist())]

    def _as_sparse(self, body: Any, value: dict, where: str, inline: bool) -> Any:
        import scipy.sparse as sp

        try:
            return sp.load_npz(self.reader.path(body, where)).tocsr()
        except (ValueError, OSError, KeyError, TypeError) as error:
            raise CorruptFileError(f"{where}: cannot read the sparse matrix {body!r} ({error}).") from None

    def _as_bytes(self, body: Any, value: dict, where: str, inline: bool) -> bytes | SavedFile:
        if self.reader.mmap:  # left on disk: consumers read them when they need them
            return self.reader.saved_file(body, where)
        return self.reader.path(body, where).read_bytes()

    def _as_json(self, body: Any, value: dict, where: str, inline: bool) -> list | dict:
        items = _json.read(self.reader.path(body, where), where, body)
        if not isinstance(items, (list, dict)) or (
            isinstance(items, dict) and any(key.startswith("$") for key in items)
        ):
            raise _damaged(where, value)
        if any(isinstance(item, (list, dict)) for item in (items.values() if isinstance(items, dict) else items)):
            raise _damaged(where, value)  # only plain values are written there
        return items

    def _as_jsonl(self, body: Any, value: dict, where: str, inline: bool) -> list:
        with open(self.reader.path(body, where), encoding="utf-8") as handle:
            return [
                self.decode(_json.loads(line, f"{body} line {number + 1}"), f"{where}[{number}]", inline=True)
                for number, line in enumerate(handle)
            ]

    def _as_object(self, body: Any, value: dict, where: str, inline: bool) -> Any:
        if not isinstance(body, str):
            raise _damaged(where, value)
        handler = self.objects(body)
        if handler is None:
            raise IncompatibleStateError(
                f"{where} holds an object of kind {body!r}, which this version of cherche_faiss does not "
                "know how to rebuild. Load the save with the version that wrote it."
            )
        return handler.load(value.get("value"), self, where)

    #: The method that reads each tag, and the tags a line of a ``.jsonl`` file may hold.
    _TAGS: ClassVar[dict[str, Callable[..., Any]]] = {
        "$tuple": _as_tuple,
        "$dict": _as_dict,
        "$float": _as_float,
        "$dtype": _as_dtype,
        "$component": _as_component,
        "$array": _as_array,
        "$ints": _as_ints,
        "$ragged": _as_ragged,
        "$sparse": _as_sparse,
        "$bytes": _as_bytes,
        "$json": _as_json,
        "$jsonl": _as_jsonl,
        "$object": _as_object,
    }
    _INLINE: ClassVar[frozenset[str]] = frozenset({"$tuple", "$dict", "$float", "$dtype"})

    def array(self, name: Any, where: str) -> np.ndarray:
        path = self.reader.path(name, where)
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if self.reader.mmap else None)
        except (ValueError, OSError, EOFError) as error:
            raise CorruptFileError(f"{where}: {name} is not a readable NumPy array ({error}).") from None


def _damaged(where: str, value: Any) -> IncompatibleStateError:
    return IncompatibleStateError(
        f"{where} holds {json.dumps(value)[:200]}, which is not a value this version of cherche_faiss "
        "writes: the manifest was edited or written by another version. Save the pipeline again."
    )
