"""Read one save as it was when a load began, while other saves replace it.

A save replaces the folder at a path by renaming (``_atomic.py``), then deletes
the previous folder's files, possibly while a load of that path is halfway
through them. A load therefore opens the folder once and reads everything
through it, and opens every file its manifest names before reading any: an
open file stays readable after its name is deleted, so all that the load
reads, verifies and maps belongs to that one save. Libraries that read a file
by name are given ``/proc/self/fd/N``, which names the opened file itself
(Linux). A :class:`~cherche_faiss._core.saved_file.SavedFile` that a mapped
load returns is read from the held file while the load runs (an encoder reads
its settings then), and by its path in the save afterwards, as documented.

A library that reads a folder it laid out itself (bm25s) is given a private
folder of links to the held files. What is still read by name (files beyond
the bound on held descriptors; every file where ``/proc/self/fd`` does not
exist) can vanish, or on those systems come from the next save; and the
previous save can disappear before its files are held. :func:`read_consistently`
then starts the read again on the folder now in place. A damaged save that
nothing replaced fails as it is.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .._core.saved_file import SavedFile
from ..exceptions import CherFaissError, CorruptFileError, IncompatibleStateError, MissingFileError
from . import _atomic

__all__ = ["OpenedSave", "read_consistently"]

T = TypeVar("T")

_DESCRIPTORS = "/proc/self/fd"
#: Files a load holds open at once (a server's descriptors are a shared budget); the rest are read by name.
_MOST_HELD = 256
#: Reads of a path that saves keep replacing: each new attempt reads the folder then in place.
_ATTEMPTS = 8
#: Seconds a load waits for a save that renamed the previous folder aside to put the new one in place.
_WAIT = 5.0


class LoadingFile(SavedFile):
    """A :class:`SavedFile` of a mapped load: read from the file the load holds while the load runs
    (whatever saves do to the folder meanwhile), then, like every ``SavedFile``, by its path in the save."""

    __slots__ = ("_opened", "_name")

    def __init__(self, opened: OpenedSave, name: str, size: int) -> None:
        super().__init__(opened.target / name, size)
        self._opened: OpenedSave | None = opened
        self._name = name

    def read(self) -> bytes:
        if self._opened is not None:
            return self._opened.path(self._name).read_bytes()
        return super().read()

    def loaded(self) -> None:
        """The load is over: read by path from now on."""
        self._opened = None


def _open_folder(target: Path) -> int | None:
    """A descriptor of the folder at ``target``; None where folders cannot be opened (Windows).

    Raises
    ------
    MissingFileError
        Nothing is at ``target`` (once a save that renamed the previous folder aside is done).
    IncompatibleStateError
        ``target`` is a file.
    """
    deadline = time.monotonic() + _WAIT
    while True:
        try:
            descriptor = os.open(target, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            # Between the two renames of a save without renameat2, the path names nothing.
            if not (_atomic.being_replaced(target) and time.monotonic() < deadline):
                raise MissingFileError(
                    f"no save at {target}: nothing is there. Check the path, or save the pipeline first."
                ) from None
            time.sleep(0.002)
        except NotADirectoryError:
            break
        except OSError:
            if not target.is_dir():
                raise
            return None
        else:
            if stat.S_ISDIR(os.fstat(descriptor).st_mode):
                return descriptor
            os.close(descriptor)  # where O_DIRECTORY does not exist, files open too
            break
    raise IncompatibleStateError(
        f"{target} is a file, not a save folder: cherche_faiss.load reads folders written by "
        "cherche_faiss.save. If it is a pickle you trust, load it with cherche_faiss.load_pickle."
    )


class OpenedSave:
    """The save folder at ``target``, opened: see the module's docstring.

    Use it as a context manager: its descriptors and links are closed and
    removed on exit.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self._folder = _open_folder(target)
        self._names: list[str] = []
        self._files: dict[str, int] = {}
        self._links: list[Path] = []
        self._handed_out: list[LoadingFile] = []
        #: Whether every read goes through the opened folder and its held files (``/proc/self/fd``
        #: names them), so that no read can reach another save.
        self.consistent = False
        try:
            if self._folder is None:
                self._identity = _identity(os.stat(target))
            else:
                self._identity = _identity(os.fstat(self._folder))
                try:
                    self.consistent = os.path.samestat(os.stat(self._name_of(self._folder)), os.fstat(self._folder))
                except OSError:  # no /proc: names are read through the path
                    pass
        except BaseException:
            self.close()
            raise
        #: What names resolve against: the opened folder itself, or (elsewhere) the path.
        self.root = Path(self._name_of(self._folder)) if self.consistent and self._folder is not None else target

    @staticmethod
    def _name_of(descriptor: int) -> str:
        return f"{_DESCRIPTORS}/{descriptor}"

    def __enter__(self) -> OpenedSave:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for file in self._handed_out:
            file.loaded()
        self._handed_out.clear()
        for links in self._links:
            shutil.rmtree(links, ignore_errors=True)
        self._links.clear()
        for descriptor in self._files.values():
            os.close(descriptor)
        self._files.clear()
        if self._folder is not None:
            os.close(self._folder)
            self._folder = None

    def hold(self, names: list[str] | dict[str, object]) -> None:
        """Open the regular files among ``names`` now (up to a bound), so that deleting them later is harmless.

        Files that cannot be opened are left to be read by name, where their
        absence or kind is reported.
        """
        if not self.consistent:
            return  # without /proc/self/fd, libraries could not be handed what is held
        self._names = list(names)
        for name in self._names:
            if len(self._files) >= _MOST_HELD:
                return
            path = self.root / name
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue  # links, folders and devices are never opened: verification refuses them
                descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            except OSError:
                continue
            if stat.S_ISREG(os.fstat(descriptor).st_mode):
                self._files[name] = descriptor
            else:  # replaced by something else between the two calls
                os.close(descriptor)

    def status(self, name: str) -> os.stat_result:
        """``os.lstat`` of the file ``name`` of this save (the held file itself when held)."""
        descriptor = self._files.get(name)
        return os.fstat(descriptor) if descriptor is not None else os.lstat(self.root / name)

    def path(self, name: str) -> Path:
        """A path that reads the file ``name`` of this save, for the duration of the load."""
        descriptor = self._files.get(name)
        return Path(self._name_of(descriptor)) if descriptor is not None else self.root / name

    def folder(self, name: str) -> Path:
        """A path that reads the folder ``name`` of this save, for a library that lays out its own files.

        Where its files are held, a private folder of links to them (deleted
        when this object closes): the library reads them by name, and later
        deletions of the save's files do not reach them.
        """
        prefix = name + "/"
        inside = [file for file in self._names if file.startswith(prefix)]
        if not any(file in self._files for file in inside):
            return self.root / name
        try:
            links = Path(tempfile.mkdtemp(prefix="cherche_faiss_load_"))
        except OSError:  # no writable temporary folder: read by name
            return self.root / name
        self._links.append(links)
        try:
            for file in inside:
                link = links / file[len(prefix) :]
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(self.path(file), link)
        except OSError:  # links refused (some file systems): read by name
            return self.root / name
        return links

    def saved_file(self, name: str) -> SavedFile:
        """The file ``name`` as a :class:`SavedFile`, to be read when needed, the load included."""
        if not self.consistent:
            return SavedFile(self.target / name, os.stat(self.target / name).st_size)
        file = LoadingFile(self, name, self.status(name).st_size)
        self._handed_out.append(file)
        return file

    def replaced(self) -> bool:
        """Whether ``target`` no longer names the folder this object opened (a save replaced it)."""
        try:
            return _identity(os.stat(self.target)) != self._identity
        except OSError:
            return True


def _identity(status: os.stat_result) -> tuple[int, int]:
    # While the folder is held open its inode cannot be reused, so (device, inode) names it alone.
    return status.st_dev, status.st_ino


def read_consistently(target: Path, read: Callable[[OpenedSave], T], is_save: Callable[[Path], bool]) -> T:
    """``read(opened)`` on the save at ``target``, from the start again when a save replaced it meanwhile.

    Parameters
    ----------
    target
        The save folder (absolute).
    read
        Reads what it needs through its :class:`OpenedSave`; raises library errors.
    is_save
        Whether a folder holds a save (for putting back one a killed save left aside).

    Raises
    ------
    CherFaissError
        What ``read`` raised on a folder still in place (the save itself is
        damaged), or on the last attempt.
    """
    for attempt in range(1, _ATTEMPTS + 1):
        _atomic.recover(target, is_save)
        with OpenedSave(target) as opened:
            try:
                result = read(opened)
            except CherFaissError:
                if attempt == _ATTEMPTS or not opened.replaced():
                    raise
                continue  # what failed may have been the previous save disappearing
            if opened.consistent or not opened.replaced():
                return result
    raise CorruptFileError(
        f"the save at {target} was replaced {_ATTEMPTS} times while it was read, each time before the "
        "read was complete. Load it again once the saves to that path are done."
    )
