"""Attribute values to JSON and files, without pickle (read back by :mod:`._decode`).

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
from typing import Any

import numpy as np

from .._core.saved_file import SavedFile
from ..exceptions import InvalidTypeError
from ._files import Writer

__all__ = ["ValueEncoder", "SPILL"]

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
