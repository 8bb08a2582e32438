"""Where the values of a save go as files, and where a load finds them.

:class:`Writer` names each file a save writes (unique, readable names after
the component and attribute) and records it for the manifest's file table;
:class:`Reader` hands the decoders only files that table names, which the load
has verified, read from the folder the load opened (``_opened.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core.saved_file import SavedFile
from ..exceptions import CorruptFileError

if TYPE_CHECKING:
    from ._opened import OpenedSave

__all__ = ["Writer", "Reader"]


class Writer:
    """Hands out unique file names inside the folder being saved and records what was written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: list[str] = []  # relative names, in order
        self._taken: set[str] = set()
        #: Called with the save's final path once it is in place (nested saves record where they went).
        self.finished: list[Callable[[Path], None]] = []

    def file(self, stem: str, write: Callable[[Path], Any], suffix: str = "") -> str:
        """Write a new file (or a folder of files) with ``write(path)``; its relative name.

        The name is ``stem + suffix``, numbered when taken, and every file
        written there is recorded for the manifest.
        """
        name, path = self._reserve(stem, suffix)
        write(path)
        self._wrote(name)
        return name

    def folders(
        self, stem: str, count: int, write: Callable[[list[Path]], Any], manifest: str, where: str
    ) -> list[str]:
        """``count`` new folders ``stem/000``, ``stem/001`` ..., written together by ``write(paths)``,
        each a complete save of its own; their relative names.

        Only each folder's ``manifest`` is recorded: it lists and hashes the
        folder's other files, which its own load verifies.
        """
        reserved = [self._reserve(f"{stem}/{number:03d}", "") for number in range(count)]
        write([path for _, path in reserved])
        for name, path in reserved:
            if not (path / manifest).is_file():
                raise CorruptFileError(
                    f"cannot save {where}: part {name} was written elsewhere but {path / manifest} is not there. "
                    "Every process that writes a part must see the save's path: save to a folder every machine "
                    "shares (a network file system)."
                )
            self.written.append(f"{name}/{manifest}")
        return [name for name, _ in reserved]

    def _reserve(self, stem: str, suffix: str) -> tuple[str, Path]:
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

    def _wrote(self, name: str) -> None:
        """Record a file written at ``name`` (or every file under the folder ``name``)."""
        path = self.folder / name
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file():
                    self.written.append(file.relative_to(self.folder).as_posix())
        else:
            self.written.append(name)


class Reader:
    """Gives the decoders the files the manifest names (and that were verified), read through ``opened``."""

    def __init__(self, opened: OpenedSave, files: set[str], mmap: bool = False) -> None:
        self.opened = opened
        self.files = files
        self.mmap = mmap

    def path(self, name: Any, what: str) -> Path:
        """A path that reads the file ``name`` while the load runs."""
        return self.opened.path(self._known(name, what))

    def saved_file(self, name: Any, what: str) -> SavedFile:
        """The file ``name`` for reading after the load (``mmap=True``: embedded files stay on disk)."""
        return self.opened.saved_file(self._known(name, what))

    def folder_of(self, name: Any, what: str) -> Path:
        """A folder of files written by another library (bm25s); every file in it is in the manifest."""
        if not isinstance(name, str) or not any(file.startswith(name + "/") for file in self.files):
            raise CorruptFileError(f"{what} refers to the folder {name!r}, which holds no file of this save.")
        return self.opened.folder(name)

    def _known(self, name: Any, what: str) -> str:
        if not isinstance(name, str) or name not in self.files:
            raise CorruptFileError(
                f"{what} refers to {name!r}, which is not a file of this save's manifest: the manifest "
                "was edited or damaged. Save the pipeline again."
            )
        return name
