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
                   mapped load gives a :class:`~cherche_faiss._saved_file.SavedFile` instead
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
from typing import Any

import numpy as np

from .._core.saved_file import SavedFile
from ..exceptions import CorruptFileError, IncompatibleStateError, InvalidTypeError
from . import _json

__all__ = ["Writer", "Reader", "ValueEncoder", "ValueDecoder", "SPILL"]

#: Lists and dicts longer than this go to a file of their own instead of the manifest.
SPILL = 64
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,100}$")


def _part(text: str) -> str:
    """``text`` as a safe piece of a file name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(text)).strip("._") or "x"
    return cleaned[:60]


class Writer:
    """Hands out unique file names inside the folder being saved and records what was written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: list[str] = []  # relative names, in order
        self._taken: set[str] = set()

    def reserve(self, stem: str, suffix: str = "") -> tuple[str, Path]:
        """A new relative name ``stem + suffix`` (made unique) and its path; parent folders exist."""
        name = stem + suffix
        number = 1
        while name in self._taken or name.lower() in self._taken:
            number += 1
            name = f"{stem}-{number}{suffix}"
        self._taken.update((name, name.lower()))
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return name, path

    def wrote(self, name: str) -> None:
        """Record a file written at ``name`` (or every file under the folder ``name``)."""
        path = self.folder / name
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file():
                    self.written.append(file.relative_to(self.folder).as_posix())
        else:
            self.written.append(name)


class Reader:
    """Gives the decoders the paths of files the manifest names (and that were verified)."""

    def __init__(self, folder: Path, files: set[str], mmap: bool = False) -> None:
        self.folder = folder
        self.files = files
        self.mmap = mmap

    def path(self, name: Any, what: str) -> Path:
        if not isinstance(name, str) or name not in self.files:
            raise CorruptFileError(
                f"{what} refers to {name!r}, which is not a file of this save's manifest: the manifest "
                "was edited or damaged. Save the pipeline again."
            )
        return self.folder / name

    def folder_of(self, name: Any, what: str) -> Path:
        """A folder of files written by another library (bm25s); every file in it is in the manifest."""
        if not isinstance(name, str) or not any(file.startswith(name + "/") for file in self.files):
            raise CorruptFileError(f"{what} refers to the folder {name!r}, which holds no file of this save.")
        return self.folder / name


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
            return {"$tuple": [self.encode(item, f"{where}[{i}]", f"{stem}.{i}", inline) for i, item in enumerate(value)]}
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
            name, path = self.writer.reserve(stem)
            path.write_bytes(bytes(value))
            self.writer.wrote(name)
            return {"$bytes": name}
        if isinstance(value, SavedFile):  # from a mapped load: copied file to file, never read whole
            name, path = self.writer.reserve(stem)
            shutil.copyfile(value.path, path)
            self.writer.wrote(name)
            return {"$bytes": name}
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
        if value and all(isinstance(item, np.ndarray) and item.ndim == 1 for item in value) and len(
            {item.dtype for item in value}
        ) == 1:
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
            name, path = self.writer.reserve(stem, ".json")
            path.write_text(json.dumps(value, ensure_ascii=False, allow_nan=False), encoding="utf-8")
            self.writer.wrote(name)
            return {"$json": name, "n": len(value)}
        name, path = self.writer.reserve(stem, ".jsonl")
        with open(path, "w", encoding="utf-8") as handle:
            for i, item in enumerate(value):
                encoded = self.encode(item, f"{where}[{i}]", stem, inline=True)
                handle.write(json.dumps(encoded, ensure_ascii=False, allow_nan=False))
                handle.write("\n")
        self.writer.wrote(name)
        return {"$jsonl": name, "n": len(value)}

    def _dict(self, value: dict, where: str, stem: str, inline: bool) -> Any:
        plain_keys = all(isinstance(key, str) and not key.startswith("$") for key in value)
        if plain_keys and (len(value) <= SPILL or inline):
            return {
                key: self.encode(item, f"{where}[{key!r}]", f"{stem}/{key}" if _safe_name(key) else f"{stem}.{_part(key)}", inline)
                for key, item in value.items()
            }
        if plain_keys and all(_plain_json(item) for item in value.values()):
            name, path = self.writer.reserve(stem, ".json")
            path.write_text(json.dumps(value, ensure_ascii=False, allow_nan=False), encoding="utf-8")
            self.writer.wrote(name)
            return {"$json": name, "n": len(value)}
        pairs = [[key, item] for key, item in value.items()]
        if len(pairs) <= SPILL or inline:
            return {"$dict": [self.encode(pair, f"{where}[{pair[0]!r}]", stem, inline) for pair in pairs]}
        return {"$dict": self._list([(key, item) for key, item in value.items()], where, stem, inline)}

    # -- arrays -------------------------------------------------------------------------------
    def _array(self, array: np.ndarray, where: str, stem: str) -> str:
        if array.dtype.hasobject or array.dtype.fields is not None:
            raise InvalidTypeError(
                f"cannot save {where}: a NumPy array of dtype {array.dtype} (objects or records need pickle). "
                "Store numbers or fixed-width strings."
            )
        name, path = self.writer.reserve(stem, ".npy")
        np.save(path, array, allow_pickle=False)
        self.writer.wrote(name)
        return name

    def _sparse(self, matrix: Any, where: str, stem: str) -> Any:
        import scipy.sparse as sp

        name, path = self.writer.reserve(stem, ".npz")
        sp.save_npz(path, matrix, compressed=False)
        self.writer.wrote(name)
        return {"$sparse": name}


class ValueDecoder:
    """Decode what :class:`ValueEncoder` wrote; every malformed value is a library error."""

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
        body = value[tag]
        decoded = self._tagged(tag, body, value, where, inline)
        if "n" in value and (not isinstance(decoded, (list, dict)) or len(decoded) != value["n"]):
            raise _damaged(where, value)  # the length written beside a file's name
        return decoded

    def _tagged(self, tag: str, body: Any, value: dict, where: str, inline: bool) -> Any:
        if tag == "$tuple" and isinstance(body, list):
            return tuple(self.decode(item, f"{where}[{i}]", inline) for i, item in enumerate(body))
        if tag == "$dict":
            pairs = self.decode(body, where, inline)
            if not isinstance(pairs, list) or not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in pairs):
                raise _damaged(where, value)
            try:
                return {key: item for key, item in pairs}
            except TypeError:  # an unhashable key
                raise _damaged(where, value) from None
        if tag == "$float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "$dtype" and isinstance(body, str):
            try:
                return np.dtype(body).type
            except TypeError:
                raise _damaged(where, value) from None
        if inline:
            raise _damaged(where, value)
        if tag == "$component":
            return self.component(body, where)
        if tag == "$array":
            return self.array(body, where)
        if tag == "$ints":
            ints = self.array(body, where)
            if ints.ndim != 1 or ints.dtype != np.int64:
                raise _damaged(where, value)
            values = ints.tolist()
            if "none" in value:
                missing = self.array(value["none"], where)
                if missing.ndim != 1 or missing.dtype.kind not in "iu" or (missing.size and (missing.min() < 0 or missing.max() >= len(values))):
                    raise _damaged(where, value)
                for i in missing.tolist():
                    values[i] = None
            return values
        if tag == "$ragged" and isinstance(body, dict):
            values = self.array(body.get("values"), where)
            offsets = self.array(body.get("offsets"), where)
            if (
                values.ndim != 1 or offsets.ndim != 1 or offsets.dtype != np.int64 or len(offsets) < 1
                or offsets[0] != 0 or offsets[-1] != len(values) or (np.diff(offsets) < 0).any()
            ):
                raise _damaged(where, value)
            return [values[start:stop] for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        if tag == "$sparse":
            import scipy.sparse as sp

            try:
                return sp.load_npz(self.reader.path(body, where)).tocsr()
            except (ValueError, OSError, KeyError, TypeError) as error:
                raise CorruptFileError(f"{where}: cannot read the sparse matrix {body!r} ({error}).") from None
        if tag == "$bytes":
            path = self.reader.path(body, where)
            if self.reader.mmap:  # the files stay in place: consumers read them when they need them
                return SavedFile(path, path.stat().st_size)
            return path.read_bytes()
        if tag == "$json":
            items = _json.read(self.reader.path(body, where), where)
            if not isinstance(items, (list, dict)) or (isinstance(items, dict) and any(key.startswith("$") for key in items)):
                raise _damaged(where, value)
            if any(isinstance(item, (list, dict)) for item in (items.values() if isinstance(items, dict) else items)):
                raise _damaged(where, value)  # only plain values are written there
            return items
        if tag == "$jsonl":
            path = self.reader.path(body, where)
            items = []
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle):
                    items.append(self.decode(_json.loads(line, f"{body} line {number + 1}"), f"{where}[{number}]", inline=True))
            return items
        if tag == "$object" and isinstance(body, str):
            handler = self.objects(body)
            if handler is None:
                raise IncompatibleStateError(
                    f"{where} holds an object of kind {body!r}, which this version of cherche_faiss does not "
                    "know how to rebuild. Load the save with the version that wrote it."
                )
            return handler.load(value.get("value"), self, where)
        raise _damaged(where, value)

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
