"""Saves inside a save: the shards of a sharded retriever, each a complete save of its own.

A component whose parts are saved by other processes (the shard actors of a
sharded retriever, each on its own machine) gives the save a
:class:`NestedSaves`: a function that writes one complete save per folder it
is handed. The outer manifest lists each nested ``manifest.json`` with its
SHA-256, and each nested manifest lists its own files, so the outer hash
covers everything while each shard can load (and verify) its folder alone.

Loading gives the component a :class:`NestedSaves` that describes the folders
found (their paths and the SHA-256 of the manifest the outer save names);
:func:`cherche_faiss.persist.safe.load_nested` loads one of them and refuses
a folder whose manifest is not that one (replaced or edited meanwhile).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..exceptions import CorruptFileError, IncompatibleStateError

__all__ = ["NestedSaves", "NestedSavesHandler", "NESTED_MANIFEST"]

NESTED_MANIFEST = "manifest.json"


class NestedSaves:
    """Folders each holding a complete save, inside another save.

    Saving: ``count`` folders, written by ``write(folders)`` (every folder in
    one call, so that they are written in parallel), then ``saved(paths)`` is
    called with their final paths once the outer save is in place. Loading:
    ``folders`` (where the outer save was found), ``readable`` (paths that
    read the folders the load opened) and ``manifests`` (the SHA-256 of each
    nested ``manifest.json`` named by the outer save).
    """

    def __init__(
        self,
        count: int = 0,
        write: Callable[[list[Path]], None] | None = None,
        saved: Callable[[list[Path]], None] | None = None,
        folders: list[Path] | None = None,
        readable: list[Path] | None = None,
        manifests: list[str] | None = None,
    ) -> None:
        self.count = count
        self.write = write
        self.saved = saved
        self.folders = folders or []
        self.readable = readable or []
        self.manifests = manifests or []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class NestedSavesHandler:
    """Writes and finds :class:`NestedSaves` (registered with the other object handlers in ``_types.py``)."""

    name = "cherche_faiss.saves"

    @staticmethod
    def matches(value: Any) -> bool:
        return isinstance(value, NestedSaves)

    def save(self, value: NestedSaves, encoder: Any, where: str, stem: str) -> Any:
        if value.write is None:
            raise IncompatibleStateError(f"cannot save {where}: it describes saved folders but cannot write them.")
        writer = encoder.writer
        names = writer.folders(stem, value.count, value.write, NESTED_MANIFEST, where)
        if value.saved is not None:
            callback = value.saved
            writer.finished.append(lambda target: callback([target / name for name in names]))
        return {"folders": names}

    def load(self, value: Any, decoder: Any, where: str) -> NestedSaves:
        names = value.get("folders") if isinstance(value, dict) else None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise IncompatibleStateError(f"{where}: the description of its saved folders is damaged ({value!r:.200}).")
        reader = decoder.reader
        manifests = []
        for name in names:
            manifest = reader.path(f"{name}/{NESTED_MANIFEST}", where)  # only a folder the outer manifest lists
            try:
                manifests.append(_sha256(manifest))
            except OSError as error:
                raise CorruptFileError(f"{where}: cannot read {name}/{NESTED_MANIFEST} ({error}).") from None
        opened = reader.opened
        return NestedSaves(
            count=len(names),
            folders=[opened.target / name for name in names],
            readable=[opened.root / name for name in names],
            manifests=manifests,
        )
