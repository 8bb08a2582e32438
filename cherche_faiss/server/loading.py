"""Loading what ``cherche-faiss serve`` serves: the safe folder format, or a trusted pickle.

:func:`saved_version` (the version that wrote a file, for ``GET /info``) is persistence logic: it
lives in :mod:`cherche_faiss.persist.versions` and is re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._core.device import parse_device
from ..exceptions import InvalidInputError, InvalidTypeError, MissingFileError
from ..persist.versions import saved_version

__all__ = ["load_served", "saved_version"]


def load_served(
    path: str | os.PathLike,
    allow_pickle: bool = False,
    mmap: bool = False,
    device: str = "auto",
    backend: str = "auto",
    ray_address: str | None = None,
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
    ray_address
        Where the shards of sharded retrievers go (folder format only): None
        loads them into this process; a Ray address (``"auto"``,
        ``"host:6379"``, ``"ray://host:10001"``, or ``"local"`` for a new local
        cluster) starts one actor per shard there, each loading its own folder
        (see :func:`cherche_faiss.distributed.load`), so that one endpoint
        serves a corpus spread over many machines.

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
        if ray_address is not None:
            from ..distributed import load as load_sharded

            address = None if ray_address == "local" else ray_address
            return load_sharded(path, address=address, mmap=mmap, verify=True, device=device, backend=backend)
        from ..persist import load

        return load(path, device=device, mmap=mmap, verify=True, backend=backend)
    if ray_address is not None:
        raise InvalidInputError(
            f"ray_address applies to the saved folder format; {path} is a pickle. Save the pipeline with "
            "cherche_faiss.save(pipeline, folder) and serve the folder."
        )
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
