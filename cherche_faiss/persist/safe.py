"""Save and load pipelines as a folder of plain files, without pickle.

A save is a folder::

    search/
      manifest.json                    format and library versions, the component tree, a SHA-256 per file
      000-Pipeline/...                 one folder per component that stores files
      001-TfIdf/_matrix.npz            sparse matrices (scipy, no pickle)
      002-FaissIndex/_index.faiss      FAISS indexes (faiss.write_index: memory-mappable)
      002-FaissIndex/_keys.json        keys, documents (JSON, JSONL), arrays (.npy)
      003-SentenceTransformerEncoder/  a model by name or path, or its files (safetensors) when embedded
      004-OnnxEncoder/files/model.onnx with save(..., onnx=True): the encoder exported to ONNX, which
                                       load(..., backend="auto" | "onnx") answers queries with, without torch

Loading reads ``manifest.json``, checks its own hash, the format version and
the SHA-256 of every file before any byte reaches FAISS or NumPy, then builds
each component from the library's allow-list of classes (:data:`ALLOWED`):
an unknown class name is refused, and no code named by the file ever runs.
Each component is built by its constructor from the saved parameters (which
validates them), then given back the rest of its state (the walk is in ``_tree.py``).

Saves are atomic (see ``_atomic.py``): a save that is interrupted, even by
``SIGKILL``, leaves the previous save in place and loadable. A load that saves
of the same path race reads the previous save or the new one, each whole, from
the one folder it opened (see ``_opened.py``).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import platform
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .._core.component import Component
from .._core.device import parse_device
from .._core.versions import imported_versions
from .._version import __version__
from ..exceptions import (
    CherFaissError,
    CorruptFileError,
    IncompatibleStateError,
    InconsistentVersionWarning,
    InvalidTypeError,
)
from . import _atomic, _json
from ._digest import file_entry, verify_files
from ._files import Reader
from ._onnx_copies import check_backend, onnx_copies_for
from ._opened import OpenedSave, read_consistently
from ._tree import ALLOWED, LoadContext, Loader, Saver

__all__ = ["save", "load", "load_with", "load_nested", "read_manifest", "ALLOWED", "FORMAT", "FORMAT_VERSION"]

FORMAT = "cherche_faiss.save"
#: Raised when the layout of a save changes; older layouts are upgraded by ``_UPGRADES`` or refused.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_MANIFEST_LIMIT = 256 << 20  # a manifest holds no bulk data: anything larger is not one
# The libraries whose files a save holds, recorded in the manifest when they are imported.
_WRITERS = ("numpy", "faiss", "scipy", "sklearn", "bm25s")

T = TypeVar("T")

# Upgrades of older format versions: {old version: function(manifest) -> manifest of the next version}.
_UPGRADES: dict[int, Any] = {}


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
    return {"python": platform.python_version(), **imported_versions(_WRITERS)}


def save(obj: Any, path: str | os.PathLike, onnx: bool | str = False) -> Path:
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
    onnx
        ``True``: also export every sentence-transformers encoder of ``obj``
        to ONNX (needs torch, which built it) and store the export in the save,
        so that :func:`load` answers queries with onnxruntime, without torch
        (see its ``backend``); ``"int8"``: the same with int8 weights (opt-in:
        faster on CPUs with int8 instructions, vectors close to the model's
        but not equal to them). The document vectors are saved as computed;
        only queries go through the copy. Cross-encoders have no ONNX copy.

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
    [{'id': 1, 'similarity': 0.258...}]
    """
    if not isinstance(obj, Component):
        raise InvalidTypeError(
            f"cherche_faiss.save stores the library's components, got a {type(obj).__name__}. Pass a "
            "retriever, a ranker or a pipeline."
        )
    copies = onnx_copies_for(onnx)
    target = Path(os.path.abspath(os.fspath(path)))
    savers: list[Saver] = []

    def fill(folder: Path) -> None:
        saver = Saver(folder, onnx=copies)
        savers[:] = [saver]
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
    for callback in savers[0].writer.finished:  # parts saved by other processes learn where they are now
        callback(target)
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
    return read_save(Path(os.path.abspath(os.fspath(path))), lambda opened, manifest: manifest)


def read_save(target: Path, read: Callable[[OpenedSave, dict[str, Any]], T]) -> T:
    """``read(opened, manifest)`` on the save at ``target``, whose manifest is checked first.

    Everything is read from the one folder opened (``_opened.py``): a save that
    replaces ``target`` meanwhile makes the read start again on the new folder,
    never fail nor mix the two.
    """
    return read_consistently(target, lambda opened: read(opened, _manifest_of(opened)), _is_save)


def _manifest_of(opened: OpenedSave) -> dict[str, Any]:
    manifest_path, shown = opened.path(MANIFEST), opened.target / MANIFEST
    try:
        if not manifest_path.is_file():
            raise CorruptFileError(
                f"{opened.target} has no {MANIFEST}: it is not a cherche_faiss save, or the save is incomplete. "
                "Save the pipeline again."
            )
        if manifest_path.stat().st_size > _MANIFEST_LIMIT:
            raise CorruptFileError(f"{shown} is larger than any manifest ({_MANIFEST_LIMIT >> 20} MiB).")
        manifest = _json.parse(manifest_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CorruptFileError(
            f"{shown} is not valid JSON ({error}): the file was truncated or damaged. "
            "Save the pipeline again, or restore the folder from a backup."
        ) from None
    except OSError as error:
        raise CorruptFileError(f"cannot read {shown}: {type(error).__name__}: {error}.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IncompatibleStateError(f'{shown} is not the manifest of a cherche_faiss save (no "format": "{FORMAT}").')
    if manifest.get("manifest_sha256") != _canonical_hash(manifest):
        raise CorruptFileError(
            f"{shown} does not match its own SHA-256: it was altered or damaged. Save the "
            "pipeline again, or restore the folder from a backup."
        )
    return _upgrade(manifest, shown)


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


def load(
    path: str | os.PathLike, device: str = "auto", mmap: bool = False, verify: bool = True, backend: str = "auto"
) -> Any:
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
        files instead of reading them: the load reads almost nothing and resident
        memory grows only as searches touch pages. A mapped index is
        read-only (``add`` and ``remove`` raise); the files must stay in place
        (a later save to the same path never changes them in place, and what
        is mapped stays valid when that save deletes the previous folder).
    verify
        Check the SHA-256 of every file before reading it (every byte is read
        once more, on every core). ``False`` skips that, checking sizes only:
        for files you trust, when load time matters more.
    backend
        Which encoder answers queries where the save holds an ONNX copy of a
        sentence-transformers encoder (``save(..., onnx=True)``): ``"auto"``
        the copy when onnxruntime is installed, else the sentence-transformers
        model; ``"onnx"`` always the copy (torch is never imported; an error
        if an encoder has no copy or onnxruntime is missing); ``"torch"``
        always sentence-transformers.

    Raises
    ------
    MissingFileError
        Nothing is at ``path``.
    CorruptFileError
        A file is missing, truncated or altered (the message names it).
    IncompatibleStateError
        Not a save, a save of a newer format, a class outside the allow-list,
        or a state that does not fit its class.

    Notes
    -----
    Saves of the same path may run meanwhile, in this process or others: the
    load returns the pipeline of the save it started on, or of one that
    replaced it, whole; it never mixes two saves nor fails because of them.
    """
    device = parse_device(device)
    backend = check_backend(backend)
    if not isinstance(mmap, bool) or not isinstance(verify, bool):
        raise InvalidTypeError(f"mmap and verify must be True or False, got mmap={mmap!r}, verify={verify!r}.")
    return load_with(path, LoadContext(device=device, mmap=mmap, backend=backend, verified=verify))


def load_with(path: str | os.PathLike, context: LoadContext) -> Any:
    """:func:`load` with its options checked already, as a :class:`~._tree.LoadContext`
    (``context.verified``: check every file's SHA-256); for the library's own loaders
    (:func:`cherche_faiss.distributed.load` sets ``placement``)."""
    target = Path(os.path.abspath(os.fspath(path)))
    return read_save(target, functools.partial(_build, context=context, verify=context.verified))


def load_nested(path: Path, manifest_sha256: str, context: LoadContext) -> Any:
    """The save in ``path``, a folder inside another save whose manifest names ``path``'s manifest by its
    SHA-256 (see ``_nested.py``); a folder holding another manifest is refused.

    Raises
    ------
    CorruptFileError
        ``path``'s manifest is not the one the outer save names: the folder was
        replaced (a newer save of the same path) or edited since the outer save
        was read.
    """

    def read(opened: OpenedSave, manifest: dict[str, Any]) -> Any:
        found = hashlib.sha256(opened.path(MANIFEST).read_bytes()).hexdigest()
        if found != manifest_sha256:
            raise CorruptFileError(
                f"{path} is not the part its parent save names (its {MANIFEST} has SHA-256 {found[:12]}..., the "
                f"parent names {manifest_sha256[:12]}...): it was replaced by another save of the same path, or "
                "edited. Load the parent save again."
            )
        return _build(opened, manifest, context=context, verify=context.verified)

    return read_save(Path(path), read)


def _build(opened: OpenedSave, manifest: dict[str, Any], context: LoadContext, verify: bool) -> Any:
    """What the save ``opened`` holds, its files checked (``verify``: their SHA-256 too) first."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(_safe_file_name(name) for name in files):
        raise IncompatibleStateError(
            f"the file table of {opened.target / MANIFEST} is damaged or names files outside the save folder."
        )
    try:
        opened.hold(files)
        verify_files(opened, files, contents=verify)
        loader = Loader(manifest, Reader(opened, set(files), mmap=context.mmap), context)
        return loader.component(manifest.get("root"), "the saved object")
    except CherFaissError:
        raise
    except (OSError, MemoryError) as error:
        raise CorruptFileError(f"cannot read the save at {opened.target}: {type(error).__name__}: {error}.") from error
