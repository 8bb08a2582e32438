"""Loading what ``cherche-faiss serve`` serves: the safe folder format, or a trusted pickle."""

from __future__ import annotations

import json
import os
import pickletools
from pathlib import Path
from typing import Any

from .._core.device import parse_device
from ..exceptions import InvalidInputError, InvalidTypeError, MissingFileError

__all__ = ["load_served", "saved_version"]

_VERSION_KEY = "_cherche_faiss_version"
# The version stamp of the outermost component comes first in its pickle: never read further.
_MAX_OPCODES = 10_000


def load_served(
    path: str | os.PathLike, allow_pickle: bool = False, mmap: bool = False, device: str = "auto",
    backend: str = "auto",
) -> Any:
    """Load a saved pipeline to serve it.

    Parameters
    ----------
    path
        A folder written by ``cherche_faiss.save(pipeline, folder)`` (the safe
        format: no code runs while loading), or a pickle file when
        ``allow_pickle`` is True.
    allow_pickle
        Accept a pickle file. Unpickling runs code chosen by whoever wrote the
        file: only for files you trust.
    mmap
        Map the folder's vectors from disk instead of reading them into memory
        (folder format only).
    device
        Where the folder's indexes go: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        A pickle follows its own load policy (``CHERCHE_FAISS_DEVICE``).
    backend
        Which encoder answers queries where a folder holds ONNX copies
        (``"auto"``, ``"onnx"``, ``"torch"``; see :func:`cherche_faiss.persist.load`).
        A pickle holds its encoders as they were.

    Returns
    -------
    object
        The pipeline (or retriever) saved there.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    InvalidInputError
        ``path`` is a pickle file and ``allow_pickle`` is False, or an option
        does not apply to a pickle.
    CorruptFileError, IncompatibleStateError
        ``path`` is a folder that does not hold an intact save (see :func:`cherche_faiss.persist.load`).

    Examples
    --------
    >>> import pickle, tempfile
    >>> from cherche_faiss import retrieve
    >>> retriever = retrieve.TfIdf(key="id", on="title", documents=[{"id": 0, "title": "Paris"}])
    >>> path = tempfile.mkdtemp() + "/search.pkl"
    >>> with open(path, "wb") as handle:
    ...     pickle.dump(retriever, handle)
    >>> load_served(path)
    Traceback (most recent call last):
    ...
    cherche_faiss.exceptions.InvalidInputError: ... is a pickle file, ... Pass --allow-pickle ...
    >>> load_served(path, allow_pickle=True)("paris")
    [{'id': 0, 'similarity': 1.0}]
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a file or folder path, got {type(path).__name__}.")
    if not isinstance(allow_pickle, bool) or not isinstance(mmap, bool):
        raise InvalidTypeError(f"allow_pickle and mmap must be True or False, got {allow_pickle!r} and {mmap!r}.")
    device = parse_device(device)
    path = Path(path)
    if not path.exists():
        raise MissingFileError(
            f"{path} does not exist. Pass the folder written by cherche_faiss.save(pipeline, folder), "
            "or a pickle file of a pipeline you trust with --allow-pickle (allow_pickle=True)."
        )
    if path.is_dir():
        from ..persist import load

        return load(path, device=device, mmap=mmap, verify=True, backend=backend)
    if not allow_pickle:
        raise InvalidInputError(
            f"{path} is a pickle file, and unpickling runs whatever code its author put in it. "
            "Pass --allow-pickle (allow_pickle=True) if you trust this file, or save the pipeline "
            "with cherche_faiss.save(pipeline, folder) and serve the folder."
        )
    if mmap:
        raise InvalidInputError(
            f"mmap applies to the saved folder format; {path} is a pickle, which is read whole. "
            "Drop --mmap, or save the pipeline with cherche_faiss.save(pipeline, folder)."
        )
    if backend != "auto":
        raise InvalidInputError(
            f"backend={backend!r} applies to the saved folder format; {path} is a pickle, whose encoders are "
            "those it was pickled with. Save the pipeline with cherche_faiss.save(pipeline, folder, onnx=True) "
            "and serve the folder."
        )
    if device != "auto":
        raise InvalidInputError(
            f"device={device!r} applies to the saved folder format; a pickle's indexes and models "
            f"follow the load policy instead: set CHERCHE_FAISS_DEVICE={device} before loading {path}."
        )
    from ..persist import load_pickle

    return load_pickle(path)


def saved_version(path: str | os.PathLike) -> str | None:
    """The cherche_faiss version that wrote ``path``, read without loading it; None if unknown.

    For a pickle, the version stamp of the outermost component is read from
    the first opcodes (``pickletools`` only parses them: nothing is executed).
    For a folder, the version its manifest records, when it has one.

    Examples
    --------
    >>> import pickle, tempfile
    >>> from cherche_faiss import __version__, retrieve
    >>> retriever = retrieve.TfIdf(key="id", on="title", documents=[{"id": 0, "title": "Paris"}])
    >>> path = tempfile.mkdtemp() + "/search.pkl"
    >>> with open(path, "wb") as handle:
    ...     pickle.dump(retriever, handle)
    >>> saved_version(path) == __version__
    True
    """
    path = Path(path)
    if path.is_dir():
        return _manifest_version(path)
    try:
        with open(path, "rb") as handle:
            found_key = False
            for position, (opcode, argument, _) in enumerate(pickletools.genops(handle)):
                if position > _MAX_OPCODES:
                    return None
                if not isinstance(argument, str):
                    continue
                if found_key:
                    return argument
                found_key = argument == _VERSION_KEY
    except (OSError, ValueError, EOFError):
        return None
    return None


def _manifest_version(folder: Path) -> str | None:
    """The version a save's manifest records (read as JSON only: its checks run when it loads)."""
    try:
        content = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = content.get("cherche_faiss_version") if isinstance(content, dict) else None
    return version if isinstance(version, str) else None
