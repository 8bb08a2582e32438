"""Save and load pipelines as a folder of plain files, without pickle.

A save is a folder::

    search/
      manifest.json                    format and library versions, the component tree, a SHA-256 per file
      000-Pipeline/...                 one folder per component that stores files
      001-TfIdf/_matrix.npz            sparse matrices (scipy, no pickle)
      002-FaissIndex/_index.faiss      FAISS indexes (faiss.write_index: memory-mappable)
      002-FaissIndex/_keys.json        keys, documents (JSON, JSONL), arrays (.npy)
      003-SentenceTransformerEncoder/  a model by name or path, or its files (safetensors) when embedded

Loading reads ``manifest.json``, checks its own hash, the format version and
the SHA-256 of every file before any byte reaches FAISS or NumPy, then builds
each component from the library's allow-list of classes (:data:`ALLOWED`):
an unknown class name is refused, and no code named by the file ever runs.
Each component is built by its constructor from the saved parameters (which
validates them), then given back the rest of its state.

Saves are atomic (see ``_atomic.py``): a save that is interrupted, even by
``SIGKILL``, leaves the previous save in place and loadable.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import json
import os
import platform
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._device import parse_device
from .._state import Component
from .._version import __version__
from ..exceptions import (
    CherFaissError,
    CorruptFileError,
    IncompatibleStateError,
    InconsistentVersionWarning,
    InvalidInputError,
    InvalidTypeError,
    MissingFileError,
    NotIndexedError,
    UnknownKeyError,
)
from . import _atomic
from ._digest import file_entry, verify_files
from ._types import handler_for, handler_named
from ._values import Reader, ValueDecoder, ValueEncoder, Writer

__all__ = ["save", "load", "read_manifest", "ALLOWED", "FORMAT", "FORMAT_VERSION"]

FORMAT = "cherche_faiss.save"
#: Raised when the layout of a save changes; older layouts are upgraded by ``_UPGRADES`` or refused.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_MANIFEST_LIMIT = 256 << 20  # a manifest holds no bulk data: anything larger is not one

#: The classes a save may hold, by public name. Loading builds only these.
ALLOWED = (
    "cherche_faiss.compose.Pipeline",
    "cherche_faiss.compose.DocumentMap",
    "cherche_faiss.compose.Union",
    "cherche_faiss.compose.Intersection",
    "cherche_faiss.compose.Vote",
    "cherche_faiss.retrieve.TfIdf",
    "cherche_faiss.retrieve.BM25",
    "cherche_faiss.retrieve.Encoder",
    "cherche_faiss.retrieve.DPR",
    "cherche_faiss.retrieve.Embedding",
    "cherche_faiss.rank.Encoder",
    "cherche_faiss.rank.DPR",
    "cherche_faiss.rank.Embedding",
    "cherche_faiss.rank.CrossEncoder",
    "cherche_faiss.index.FaissIndex",
    "cherche_faiss.encoders.HashingEncoder",
    "cherche_faiss.encoders.SentenceTransformerEncoder",
    "cherche_faiss.encoders.CrossEncoderScorer",
)

# Upgrades of older format versions: {old version: function(manifest) -> manifest of the next version}.
_UPGRADES: dict[int, Any] = {}


@dataclass(frozen=True)
class LoadContext:
    """Options of a load that components read in ``_load_state``."""

    device: str = "auto"
    mmap: bool = False


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


def _canonical_hash(manifest: dict[str, Any]) -> str:
    body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_save(folder: Path) -> bool:
    """Whether ``folder`` holds a manifest of this format (read from its first bytes only)."""
    try:
        with open(folder / MANIFEST, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return False
    return f'"format": "{FORMAT}"'.encode() in head


def _versions() -> dict[str, str]:
    """Versions of what wrote the files (for people reading the manifest; never checked)."""
    found = {"python": platform.python_version()}
    for module in ("numpy", "faiss", "scipy", "sklearn", "bm25s"):
        imported = sys.modules.get(module)
        version = getattr(imported, "__version__", None)
        if version:
            found[module] = str(version)
    return found


# -- save ---------------------------------------------------------------------------------------
class _Saver:
    """Walks the component tree, writing files and the manifest's node table."""

    def __init__(self, folder: Path) -> None:
        self.writer = Writer(folder)
        self.values = ValueEncoder(self.writer, self.component, handler_for)
        self.nodes: list[dict[str, Any] | None] = []
        self._seen: dict[int, tuple[Any, int]] = {}  # id -> (object kept alive, node index)

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
        self.nodes[number] = node
        return number


def save(obj: Any, path: str | os.PathLike) -> Path:
    """Save a retriever, ranker or pipeline to the folder ``path``, atomically, without pickle.

    Parameters
    ----------
    obj
        Any component of the library: a retriever, ranker, pipeline (``+``,
        ``|``, ``&``, ``*``, ``+ documents``), a :class:`~cherche_faiss.index.FaissIndex`
        or an encoder. Plain Python callables (a lambda encoder, a custom
        tokenizer) cannot be rebuilt without running code: they are refused
        with an error that says which attribute holds one.
    path
        The folder to write. An existing save there is replaced only once the
        new one is complete; any other existing folder or file is refused.

    Returns
    -------
    Path
        The absolute path of the save.

    Examples
    --------
    >>> import tempfile, os
    >>> import cherche_faiss
    >>> from cherche_faiss import retrieve
    >>> documents = [{"id": 0, "title": "Paris"}, {"id": 1, "title": "Bordeaux wine"}]
    >>> retriever = retrieve.TfIdf(key="id", on="title", documents=documents)
    >>> folder = os.path.join(tempfile.mkdtemp(), "search")
    >>> _ = cherche_faiss.save(retriever, folder)
    >>> cherche_faiss.load(folder)("wine")
    [{'id': 1, 'similarity': 0.5}]
    """
    if not isinstance(obj, Component):
        raise InvalidTypeError(
            f"cherche_faiss.save stores the library's components, got a {type(obj).__name__}. Pass a "
            "retriever, a ranker or a pipeline."
        )
    target = Path(os.path.abspath(os.fspath(path)))

    def fill(folder: Path) -> None:
        saver = _Saver(folder)
        root = saver.component(obj, type(obj).__name__)
        files = {}
        for name in saver.writer.written:
            _atomic.fsync_file(folder / name)
            files[name] = file_entry(folder / name)
        manifest: dict[str, Any] = {
            "format": FORMAT,  # first, so that _is_save finds it in the first bytes
            "format_version": FORMAT_VERSION,
            "cherche_faiss_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
            "root": root,
            "components": saver.nodes,
            "files": files,
        }
        manifest["manifest_sha256"] = _canonical_hash(manifest)
        text = json.dumps(manifest, ensure_ascii=False, indent=1, allow_nan=False)
        (folder / MANIFEST).write_text(text + "\n", encoding="utf-8")
        _atomic.fsync_file(folder / MANIFEST)

    _atomic.write_folder(target, fill, _is_save)
    return target


# -- load ---------------------------------------------------------------------------------------
def _safe_file_name(name: Any) -> bool:
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the save at ``path``, after checking its own hash and its version.

    Raises
    ------
    MissingFileError
        Nothing is at ``path``.
    IncompatibleStateError
        ``path`` is not a save of this format, or one a newer version wrote.
    CorruptFileError
        The manifest is damaged.
    """
    target = Path(os.path.abspath(os.fspath(path)))
    _atomic.recover(target, _is_save)
    if not target.exists():
        raise MissingFileError(f"no save at {target}: nothing is there. Check the path, or save the pipeline first.")
    if not target.is_dir():
        raise IncompatibleStateError(
            f"{target} is a file, not a save folder: cherche_faiss.load reads folders written by "
            "cherche_faiss.save. If it is a pickle you trust, load it with cherche_faiss.load_pickle."
        )
    manifest_path = target / MANIFEST
    if not manifest_path.is_file():
        raise CorruptFileError(
            f"{target} has no {MANIFEST}: it is not a cherche_faiss save, or the save is incomplete. "
            "Save the pipeline again."
        )
    if manifest_path.stat().st_size > _MANIFEST_LIMIT:
        raise CorruptFileError(f"{manifest_path} is larger than any manifest ({_MANIFEST_LIMIT >> 20} MiB).")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CorruptFileError(
            f"{manifest_path} is not valid JSON ({error}): the file was truncated or damaged. "
            "Save the pipeline again, or restore the folder from a backup."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IncompatibleStateError(
            f"{manifest_path} is not the manifest of a cherche_faiss save (no \"format\": \"{FORMAT}\")."
        )
    if manifest.get("manifest_sha256") != _canonical_hash(manifest):
        raise CorruptFileError(
            f"{manifest_path} does not match its own SHA-256: it was altered or damaged. Save the "
            "pipeline again, or restore the folder from a backup."
        )
    return _upgrade(manifest, manifest_path)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _upgrade(manifest: dict[str, Any], where: Path) -> dict[str, Any]:
    version = manifest.get("format_version")
    saved_by = manifest.get("cherche_faiss_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise IncompatibleStateError(f"{where} has no valid format_version ({version!r}).")
    if version > FORMAT_VERSION:
        raise IncompatibleStateError(
            f"{where} has format version {version} (written by cherche_faiss {saved_by}), but cherche_faiss "
            f"{__version__} reads format version {FORMAT_VERSION} and older. Upgrade cherche_faiss to load it."
        )
    while version < FORMAT_VERSION:
        upgrade = _UPGRADES.get(version)
        if upgrade is None:
            raise IncompatibleStateError(
                f"{where} has format version {version} (written by cherche_faiss {saved_by}), which cherche_faiss "
                f"{__version__} cannot upgrade to version {FORMAT_VERSION}. Load it with the version that wrote "
                "it and rebuild the pipeline."
            )
        manifest = upgrade(manifest)
        version = manifest["format_version"]
    if saved_by != __version__:
        warnings.warn(
            f"the save at {where.parent} was written by cherche_faiss {saved_by} and is loaded by {__version__}; "
            "results may differ. Save it again with this version to silence the warning.",
            InconsistentVersionWarning,
            stacklevel=3,
        )
    return manifest


class _Loader:
    """Builds components from the manifest's node table, each once, refusing cycles."""

    # Errors of the library's own validation while a component is rebuilt: the saved state is to blame.
    _VALIDATION_ERRORS = (InvalidInputError, InvalidTypeError, UnknownKeyError, NotIndexedError)
    # Errors Python raises when a state has the wrong shape (a list where a dict was saved ...).
    _STATE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError, OverflowError,
                     RecursionError)

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
        self._building.add(number)
        try:
            self._built[number] = self._build(number, where)
        finally:
            self._building.discard(number)
        return self._built[number]

    def _build(self, number: int, where: str) -> Any:
        node = self.nodes[number]
        if not isinstance(node, dict) or not isinstance(node.get("params"), dict) or not isinstance(node.get("state"), dict):
            raise IncompatibleStateError(f"component {number} of the manifest ({where}) is damaged.")
        name = node.get("class")
        if name not in ALLOWED:
            raise IncompatibleStateError(
                f"{where} is saved as class {name!r}, which is not in cherche_faiss's allow-list of classes "
                f"a save may hold ({', '.join(item.rpartition('.')[2] for item in ALLOWED)}). The manifest "
                "was edited or written by another version; it is refused."
            )
        cls = _class_named(name)
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



def load(path: str | os.PathLike, device: str = "auto", mmap: bool = False, verify: bool = True) -> Any:
    """Load what :func:`save` wrote at ``path``, without unpickling anything.

    Parameters
    ----------
    path
        The save folder.
    device
        ``"auto"``: every index goes back to the GPU it was saved on when that
        GPU is usable here, else to the CPU with a
        :class:`~cherche_faiss.exceptions.DeviceFallbackWarning` (the
        ``CHERCHE_FAISS_DEVICE`` variable applies as for pickles); ``"cpu"``:
        everything on the CPU; ``"cuda"`` / ``"cuda:N"``: indexes and models on
        that GPU (an error where it is not usable).
    mmap
        Map FAISS indexes (flat, IVF, HNSW, PQ, SQ) and large arrays from the
        files instead of reading them: the load takes milliseconds and resident
        memory grows only as searches touch pages. A mapped index is
        read-only (``add`` and ``remove`` raise); the files must stay in place
        (a later save to the same path never changes them in place).
    verify
        Check the SHA-256 of every file before reading it (about 1.5 GB/s on
        two cores). ``False`` skips that, checking sizes only: for files you
        trust, when load time matters more.

    Raises
    ------
    MissingFileError
        Nothing is at ``path``.
    CorruptFileError
        A file is missing, truncated or altered (the message names it).
    IncompatibleStateError
        Not a save, a save of a newer format, a class outside the allow-list,
        or a state that does not fit its class.
    """
    device = parse_device(device)
    if not isinstance(mmap, bool) or not isinstance(verify, bool):
        raise InvalidTypeError(f"mmap and verify must be True or False, got mmap={mmap!r}, verify={verify!r}.")
    target = Path(os.path.abspath(os.fspath(path)))
    manifest = read_manifest(target)
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(_safe_file_name(name) for name in files):
        raise IncompatibleStateError(
            f"the file table of {target / MANIFEST} is damaged or names files outside the save folder."
        )
    if verify:
        verify_files(target, files)
    else:
        verify_files(target, files, contents=False)
    loader = _Loader(manifest, Reader(target, set(files), mmap=mmap), LoadContext(device=device, mmap=mmap))
    try:
        return loader.component(manifest.get("root"), "the saved object")
    except CherFaissError:
        raise
    except (OSError, MemoryError) as error:
        raise CorruptFileError(f"cannot read the save at {target}: {type(error).__name__}: {error}.") from error
