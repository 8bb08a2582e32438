"""The component walk of the safe format: components to manifest nodes and files, and back.

:class:`Saver` turns a component tree into the manifest's node table (each
component once, shared objects shared), writing its arrays and indexes as
files; :class:`Loader` builds the tree again from that table, only from the
classes of :data:`ALLOWED`, each through its constructor.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..exceptions import (
    CherFaissError,
    IncompatibleStateError,
    InvalidInputError,
    InvalidTypeError,
    NotIndexedError,
    UnknownKeyError,
)
from ._decode import ValueDecoder
from ._files import Reader, Writer
from ._onnx_copies import OnnxCopies, chosen_node
from ._types import handler_for, handler_named
from ._values import ValueEncoder

__all__ = ["ALLOWED", "LoadContext", "Saver", "Loader"]

#: The classes a save may hold, by public name. Loading builds only these.
ALLOWED = (
    "cherche_faiss.compose.Pipeline",
    "cherche_faiss.compose.DocumentMap",
    "cherche_faiss.compose.Union",
    "cherche_faiss.compose.Intersection",
    "cherche_faiss.compose.Vote",
    "cherche_faiss.retrieve.TfIdf",
    "cherche_faiss.retrieve.BM25",
    "cherche_faiss.retrieve.NgramVectorizer",
    "cherche_faiss.retrieve.Encoder",
    "cherche_faiss.retrieve.DPR",
    "cherche_faiss.retrieve.Embedding",
    "cherche_faiss.retrieve.Lunr",
    "cherche_faiss.retrieve.Flash",
    "cherche_faiss.retrieve.Fuzz",
    "cherche_faiss.query.Norvig",
    "cherche_faiss.query.PRF",
    "cherche_faiss.qa.QA",
    "cherche_faiss.utils.TopK",
    "cherche_faiss.rank.Encoder",
    "cherche_faiss.rank.DPR",
    "cherche_faiss.rank.Embedding",
    "cherche_faiss.rank.CrossEncoder",
    "cherche_faiss.index.FaissIndex",
    "cherche_faiss.index.Faiss",
    "cherche_faiss.encoders.HashingEncoder",
    "cherche_faiss.encoders.SentenceTransformerEncoder",
    "cherche_faiss.encoders.CrossEncoderScorer",
    "cherche_faiss.encoders.OnnxEncoder",
    "cherche_faiss.distributed.ShardedRetriever",
    "cherche_faiss.distributed.Shard",
)


@dataclass(frozen=True)
class LoadContext:
    """Options of a load that components read in ``_load_state``."""

    device: str = "auto"
    mmap: bool = False
    backend: str = "auto"
    verified: bool = False  # every file of the save matched its SHA-256 before anything was built
    #: Where sharded components put their shards: None, in this process; cherche_faiss.distributed.load
    #: passes where to start shard actors.
    placement: Any = None


def _class_named(name: str) -> type:
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _public_name(obj: Any) -> str | None:
    """The allow-list name of ``obj``'s class (exactly that class, not a subclass), or None."""
    kind = type(obj)
    for name in ALLOWED:
        module, _, attribute = name.rpartition(".")
        if kind.__name__ == attribute and kind.__module__.startswith(module) and _class_named(name) is kind:
            return name
    return None


# -- save ---------------------------------------------------------------------------------------
class Saver:
    """Walks the component tree, writing files and the manifest's node table."""

    def __init__(self, folder: Path, onnx: OnnxCopies | None = None) -> None:
        self.writer = Writer(folder)
        self.values = ValueEncoder(self.writer, self.component, handler_for)
        self.nodes: list[dict[str, Any] | None] = []
        self._seen: dict[int, tuple[Any, int]] = {}  # id -> (object kept alive, node index)
        self._onnx = onnx

    def component(self, obj: Any, where: str) -> int:
        if id(obj) in self._seen:
            return self._seen[id(obj)][1]
        name = _public_name(obj)
        if name is None and type(obj).__name__ in ("CallableEncoder", "CallableScorer"):
            raise InvalidTypeError(
                f"cannot save {where}: it wraps the Python callable {obj.function!r}, and the safe format "
                "never stores code (loading it would have to run that code). Pass a library encoder "
                "(SentenceTransformer(...).encode, SentenceTransformerEncoder, CrossEncoder(...).predict, "
                "HashingEncoder), or save a trusted pickle with cherche_faiss.persist.dump_pickle instead."
            )
        if name is None:
            raise InvalidTypeError(
                f"cannot save {where}: {type(obj).__module__}.{type(obj).__qualname__} is not one of the "
                "library's components the safe format rebuilds (its loader builds only the classes of "
                "cherche_faiss.persist.safe.ALLOWED, never a class named by the file). Save a trusted "
                "pickle with cherche_faiss.persist.dump_pickle instead."
            )
        number = len(self.nodes)
        self._seen[id(obj)] = (obj, number)
        self.nodes.append(None)
        parameters = set(type(obj)._param_names())
        stem = f"{number:03d}-{type(obj).__name__}"
        node: dict[str, Any] = {"class": name, "state_version": type(obj)._state_version, "params": {}, "state": {}}
        for attribute, value in obj._save_state().items():
            section = "params" if attribute in parameters else "state"
            node[section][attribute] = self.values.encode(value, f"{where}.{attribute}", f"{stem}/{attribute}")
        copy = self._onnx.copy_of(obj) if self._onnx is not None else None
        if copy is not None:
            node["onnx"] = self.component(copy, f"{where} (ONNX copy)")
        self.nodes[number] = node
        return number


class Loader:
    """Builds components from the manifest's node table, each once, refusing cycles."""

    # Errors of the library's own validation while a component is rebuilt: the saved state is to blame.
    _VALIDATION_ERRORS = (InvalidInputError, InvalidTypeError, UnknownKeyError, NotIndexedError)
    # Errors Python raises when a state has the wrong shape (a list where a dict was saved ...).
    _STATE_ERRORS = (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        IndexError,
        RuntimeError,
        OverflowError,
        RecursionError,
    )

    def __init__(self, manifest: dict[str, Any], reader: Reader, context: LoadContext) -> None:
        nodes = manifest.get("components")
        if not isinstance(nodes, list) or not nodes:
            raise IncompatibleStateError("the manifest's component table is missing or empty.")
        self.nodes = nodes
        self.context = context
        self.values = ValueDecoder(reader, self.component, handler_named)
        self._built: dict[int, Any] = {}
        self._building: set[int] = set()

    def component(self, number: Any, where: str) -> Any:
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < len(self.nodes):
            raise IncompatibleStateError(f"{where} refers to component {number!r}, which the manifest does not hold.")
        if number in self._built:
            return self._built[number]
        if number in self._building:
            raise IncompatibleStateError(f"{where} refers to component {number}, which contains it: a cycle.")
        chosen = chosen_node(self.nodes, number, self.context.backend, where)
        if chosen != number:
            self._built[number] = self.component(chosen, where)
            return self._built[number]
        self._building.add(number)
        try:
            self._built[number] = self._build(number, where)
        finally:
            self._building.discard(number)
        return self._built[number]

    def _build(self, number: int, where: str) -> Any:
        node = self.nodes[number]
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("params"), dict)
            or not isinstance(node.get("state"), dict)
        ):
            raise IncompatibleStateError(f"component {number} of the manifest ({where}) is damaged.")
        name = node.get("class")
        if name not in ALLOWED:
            raise IncompatibleStateError(
                f"{where} is saved as class {name!r}, which is not in cherche_faiss's allow-list of classes "
                f"a save may hold ({', '.join(item.rpartition('.')[2] for item in ALLOWED)}). The manifest "
                "was edited or written by another version; it is refused."
            )
        # The class the manifest names (a Component subclass of ALLOWED), called with its saved parameters.
        cls: Any = _class_named(name)
        if node.get("state_version") != cls._state_version:
            raise IncompatibleStateError(
                f"{where}: {name} was saved with state layout {node.get('state_version')!r}, but cherche_faiss "
                f"{__version__} reads layout {cls._state_version}. Load it with the version that wrote it."
            )
        unknown = sorted(set(node["params"]) - set(cls._param_names()))
        if unknown:
            raise IncompatibleStateError(f"{where}: {name} has no constructor parameter(s) {unknown}.")
        params = {key: self.values.decode(value, f"{where}.{key}") for key, value in node["params"].items()}
        state = {key: self.values.decode(value, f"{where}.{key}") for key, value in node["state"].items()}
        try:
            device = params.get("device")
            if isinstance(device, str):
                params["device"] = "cpu"  # placed by the load policy below, never by the constructor
            obj = cls(**params)
            if isinstance(device, str):
                obj.device = device
            obj._load_state(state, self.context)
            obj._check_loaded()
        except CherFaissError as error:
            if not isinstance(error, self._VALIDATION_ERRORS):
                raise  # damaged files, unusable devices, missing dependencies: said as they are
            raise self._incompatible(where, name, error) from error
        except self._STATE_ERRORS as error:
            raise self._incompatible(where, name, error) from error
        return obj

    @staticmethod
    def _incompatible(where: str, name: str, error: Exception) -> IncompatibleStateError:
        return IncompatibleStateError(
            f"cannot rebuild {where} ({name}) from its saved state: {type(error).__name__}: {error} The "
            "save was edited or written by an incompatible version; save the pipeline again."
        )
