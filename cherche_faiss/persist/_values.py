"""Attribute values to JSON and files, and back, without pickle.

Plain JSON values are written as they are. Everything else is a one-key
object whose key starts with ``$``:

=================  ==============================================================
``$component``     index of another component in the manifest (shared objects stay shared)
``$tuple``         a tuple (JSON has only lists)
``$dict``          a dict whose keys are not all strings, as ``[key, value]`` pairs
``$float``         ``"nan"``, ``"inf"`` or ``"-inf"`` (not valid JSON numbers)
``$dtype``         a NumPy dtype or scalar type, by name
``$array``         a NumPy array in a ``.npy`` file (never an object array)
``$ragged``        a list of 1-D arrays: their concatenation and the offsets, two ``.npy`` files
``$sparse``        a SciPy sparse matrix in a ``.npz`` file
``$bytes``         raw bytes in a file (model files embedded by an encoder keep their names); a
                   mapped load gives a :class:`~cherche_faiss._core.saved_file.SavedFile` instead
``$ints``          a long list of ints (``None`` allowed) as an int64 ``.npy`` file
``$json``          a long list of plain JSON values in a ``.json`` file
``$jsonl``         a long list of other values (documents ...) in a ``.jsonl`` file, one per line
``$object``        an object of another library the registry knows (``_types.py``)
=================  ==============================================================

A dict with only string keys none of which starts with ``$`` is a JSON object.
Files are named after the component and attribute they hold, so that a save
can be read by eye. Loading never calls ``pickle``: arrays are read with
``allow_pickle=False``, every file is named in the manifest, and every tag is
checked before it is used.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._core.saved_file import SavedFile
from ..exceptions import CorruptFileError, IncompatibleStateError, InvalidTypeError
from . import _json
from ._files import Reader, Writer

__all__ = ["ValueEncoder", "ValueDecoder", "SPILL"]

#: Lists and dicts longer than this go to a file of their own instead of the manifest.
SPILL = 64
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,100}$")


def _part(text: str) -> str:
    """``text`` as a safe piece of a file name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(text)).strip("._") or "x"
    return cleaned[:60]


def _safe_name(key: str) -> bool:
    """Whether ``key`` can name a file as it is (``1_Pooling/config.json``; never ``..``)."""
    return all(_SAFE_PART.match(part) for part in key.split("/"))


def _plain_json(value: Any) -> bool:
    """Whether ``value`` is a JSON scalar that reads back as itself."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if type(value) is int:
        return True
    return type(value) is float and math.isfinite(value)


class ValueEncoder:
    """Encode attribute values; components go through ``component`` (the manifest's node table).

    Parameters
    ----------
    writer
        Where files go.
    component
        ``component(obj, where) -> int``: the node index of a library component.
    objects
        ``objects(value) -> handler or None``: handlers of other libraries' objects (``_types.py``).
    """

    def __init__(self, writer: Writer, component: Callable[[Any, str], int], objects: Callable[[Any], Any]) -> None:
        self.writer = writer
        self.component = component
        self.objects = objects

    # -- the dispatch -------------------------------------------------------------------------
    def encode(self, value: Any, where: str, stem: str, inline: bool = False) -> Any:
        """JSON for ``value``; ``where`` names it in errors, ``stem`` names its files.

        ``inline``: inside a list written to a file, where only JSON-like values may appear.
        """
        from .._core.component import Component

        if _plain_json(value):
            return value
        if isinstance(value, float):  # nan, inf, or a float subclass
            return {"$float": repr(float(value))} if not math.isfinite(value) else float(value)
        if isinstance(value, np.generic) and not isinstance(value, np.void):
            return self.encode(value.item(), where, stem, inline)
        if isinstance(value, (np.dtype, type)) and _is_dtype(value):
            return {"$dtype": np.dtype(value).name}
        if isinstance(value, tuple):
            return {
                "$tuple": [self.encode(item, f"{where}[{i}]", f"{stem}.{i}", inline) for i, item in enumerate(value)]
            }
        if isinstance(value, list):
            return self._list(value, where, stem, inline)
        if isinstance(value, dict):
            return self._dict(value, where, stem, inline)
        if inline:
            raise InvalidTypeError(
                f"cannot save {where}: a {type(value).__name__} inside a list of values. The safe format "
                "stores documents and keys made of str, int, float, bool, None, lists, tuples and dicts. "
                "Convert it, or save a trusted pickle with cherche_faiss.persist.dump_pickle instead."
            )
        if isinstance(value, Component):
            return {"$component": self.component(value, where)}
        if isinstance(value, np.ndarray):
            return {"$array": self._array(value, where, stem)}
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {"$bytes": self.writer.file(stem, lambda path: path.write_bytes(bytes(value)))}
        if isinstance(value, SavedFile):  # from a mapped load: copied file to file, never read whole
            return {"$bytes": self.writer.file(stem, lambda path: shutil.copyfile(value.path, path))}
        if _is_sparse(value):
            return self._sparse(value, where, stem)
        handler = self.objects(value)
        if handler is not None:
            return {"$object": handler.name, "value": handler.save(value, self, where, stem)}
        raise InvalidTypeError(
            f"cannot save {where}: a {type(value).__module__}.{type(value).__qualname__} is not something the "
            "safe format can rebuild without running code (it stores the library's components, arrays, "
            "FAISS indexes, scikit-learn TF-IDF vectorizers, bm25s models and JSON values; plain Python "
            "callables such as a lambda encoder are not among them). Use a library encoder "
            "(SentenceTransformerEncoder, HashingEncoder), or save a trusted pickle with "
            "cherche_faiss.persist.dump_pickle instead."
        )

    # -- containers ---------------------------------------------------------------------------
    def _list(self, value: list, where: str, stem: str, inline: bool) -> Any:
        if len(value) <= SPILL or inline:
            return [self.encode(item, f"{where}[{i}]", f"{stem}.{i}", inline) for i, item in enumerate(value)]
        if all(item is None or type(item) is int for item in value) and any(item is not None for item in value):
            ints = [0 if item is None else item for item in value]
            if all(-(2**63) <= item < 2**63 for item in ints):
                missing = [i for i, item in enumerate(value) if item is None]
                encoded = {"$ints": self._array(np.asarray(ints, dtype=np.int64), where, stem), "n": len(value)}
                if missing:
                    encoded["none"] = self._array(np.asarray(missing, dtype=np.int64), where, stem + ".none")
                return encoded
        if (
            value
            and all(isinstance(item, np.ndarray) and item.ndim == 1 for item in value)
            and len({item.dtype for item in value}) == 1
        ):
            offsets = np.zeros(len(value) + 1, dtype=np.int64)
            np.cumsum([len(item) for item in value], out=offsets[1:])
            return {
                "$ragged": {
                    "values": self._array(np.concatenate(value), where, stem + ".values"),
                    "offsets": self._array(offsets, where, stem + ".offsets"),
                },
                "n": len(value),
            }
        if all(_plain_json(item) for item in value):
            return self._json_file(value, stem)

        def write_lines(path: Path) -> None:
            with open(path, "w", encoding="utf-8") as handle:
                for i, item in enumerate(value):
                    encoded = self.encode(item, f"{where}[{i}]", stem, inline=True)
                    handle.write(json.dumps(encoded, ensure_ascii=False, allow_nan=False))
                    handle.write("\n")

        return {"$jsonl": self.writer.file(stem, write_lines, ".jsonl"), "n": len(value)}

    def _dict(self, value: dict, where: str, stem: str, inline: bool) -> Any:
        plain_keys = all(isinstance(key, str) and not key.startswith("$") for key in value)
        if plain_keys and (len(value) <= SPILL or inline):
            return {
                key: self.encode(
                    item, f"{where}[{key!r}]", f"{stem}/{key}" if _safe_name(key) else f"{stem}.{_part(key)}", inline
                )
                for key, item in value.items()
            }
        if plain_keys and all(_plain_json(item) for item in value.values()):
            return self._json_file(value, stem)
        pairs = [[key, item] for key, item in value.items()]
        if len(pairs) <= SPILL or inline:
            return {"$dict": [self.encode(pair, f"{where}[{pair[0]!r}]", stem, inline) for pair in pairs]}
        return {"$dict": self._list([(key, item) for key, item in value.items()], where, stem, inline)}

    def _json_file(self, value: list | dict, stem: str) -> dict[str, Any]:
        """A long list or dict of plain JSON values, in a ``.json`` file of its own."""
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        return {
            "$json": self.writer.file(stem, lambda path: path.write_text(text, encoding="utf-8"), ".json"),
            "n": len(value),
        }

    # -- arrays -------------------------------------------------------------------------------
    def _array(self, array: np.ndarray, where: str, stem: str) -> str:
        if array.dtype.hasobject or array.dtype.fields is not None:
            raise InvalidTypeError(
                f"cannot save {where}: a NumPy array of dtype {array.dtype} (objects or records need pickle). "
                "Store numbers or fixed-width strings."
            )
        return self.writer.file(stem, lambda path: np.save(path, array, allow_pickle=False), ".npy")

    def _sparse(self, matrix: Any, where: str, stem: str) -> Any:
        import scipy.sparse as sp

        return {"$sparse": self.writer.file(stem, lambda path: sp.save_npz(path, matrix, compressed=False), ".npz")}


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


def _is_dtype(value: Any) -> bool:
    if isinstance(value, np.dtype):
        return True
    return isinstance(value, type) and issubclass(value, np.generic)


def _is_sparse(value: Any) -> bool:
    module = type(value).__module__
    if not module.startswith("scipy.sparse"):
        return False
    import scipy.sparse as sp

    return sp.issparse(value)


def _damaged(where: str, value: Any) -> IncompatibleStateError:
    return IncompatibleStateError(
        f"{where} holds {json.dumps(value)[:200]}, which is not a value this version of cherche_faiss "
        "writes: the manifest was edited or written by another version. Save the pipeline again."
    )
