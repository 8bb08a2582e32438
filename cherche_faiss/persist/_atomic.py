"""Write a folder so that readers see the old one or the new one, never a mix.

The new save is written into a temporary folder beside the target
(``.NAME.saving-PID-XXXX``), every file and the folder itself flushed to disk
(``fsync``), then put in place with one rename. When a save already exists,
the two folders are swapped in one step with Linux's
``renameat2(RENAME_EXCHANGE)`` and the old one is deleted afterwards. Where
that call does not exist (other systems, some file systems), the old save is
first renamed to ``.NAME.previous-PID-XXXX``; a process killed between the two
renames leaves that backup, which :func:`recover` puts back in place before the
next load or save, and a load that finds nothing at the path meanwhile waits
for the second rename (:func:`being_replaced`). A process killed at any point therefore leaves the previous
save loadable, and leftovers of a killed save are removed by the next one.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..exceptions import InvalidInputError

__all__ = ["write_folder", "recover", "being_replaced", "fsync_file", "reached"]

_SAVING = "saving"
_PREVIOUS = "previous"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
#: Seconds a check waits for another save of the same path to finish renaming folders.
_WAIT = 5.0


def reached(stage: str) -> None:
    """Called at each stage of a save; tests replace it to kill the process there."""


def fsync_file(path: Path) -> None:
    """Flush ``path``'s bytes to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(path: Path) -> None:
    """Flush a folder's entries (the names in it) to disk; a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@functools.lru_cache(maxsize=1)
def _renameat2() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(first: Path, second: Path) -> bool:
    """Swap two folders atomically; False where the system or file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(code, f"cannot swap {first} and {second}: {os.strerror(code)}")


def _siblings(target: Path, kind: str) -> list[Path]:
    prefix = f".{target.name}.{kind}-"
    try:
        return sorted(path for path in target.parent.iterdir() if path.name.startswith(prefix))
    except FileNotFoundError:
        return []


def _owner_alive(path: Path) -> bool:
    """Whether the process that made ``path`` (``.NAME.kind-PID-XXXX``) still runs."""
    try:
        pid = int(path.name.rsplit("-", 2)[-2])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def being_replaced(target: Path) -> bool:
    """Whether a running save has renamed the save at ``target`` aside to put its own there."""
    return any(_owner_alive(backup) for backup in _siblings(target, _PREVIOUS))


def recover(target: Path, is_save: Callable[[Path], bool]) -> None:
    """Put back a previous save that a killed process left renamed aside, and delete leftovers.

    Nothing is deleted that could be the only copy of a save: a backup is
    removed only once ``target`` holds a save.
    """
    for backup in _siblings(target, _PREVIOUS):
        if _owner_alive(backup):
            continue
        if not target.exists() and is_save(backup):
            try:
                os.rename(backup, target)
                _fsync_folder(target.parent)
            except OSError:  # a read-only folder: the load that follows says nothing is there
                pass
        elif target.exists() and is_save(target):
            shutil.rmtree(backup, ignore_errors=True)
    for temporary in _siblings(target, _SAVING):
        if not _owner_alive(temporary):
            shutil.rmtree(temporary, ignore_errors=True)


def _foreign(target: Path, is_save: Callable[[Path], bool]) -> bool:
    """Whether ``target`` holds something a save must not replace: neither a save nor an empty folder.

    Without ``renameat2`` another save of the path can rename the folder away
    between the checks: while one is doing so, a "foreign" verdict is checked again.
    """
    deadline = time.monotonic() + _WAIT
    while True:
        try:
            if not target.exists() or (target.is_dir() and (is_save(target) or not any(target.iterdir()))):
                return False
            if not being_replaced(target) or time.monotonic() > deadline:
                return True
        except FileNotFoundError:  # renamed aside by another save between two checks: look again
            pass
        time.sleep(0.002)


def write_folder(target: Path, fill: Callable[[Path], None], is_save: Callable[[Path], bool]) -> None:
    """Write a new folder at ``target`` with ``fill(folder)``, replacing a previous save atomically.

    Raises
    ------
    InvalidInputError
        ``target`` exists and is not a save (an unrelated folder or a file):
        it is never replaced.
    """
    target = Path(os.path.abspath(target))
    if _foreign(target, is_save):
        what = "folder" if target.is_dir() else "file"
        raise InvalidInputError(
            f"{target} is a {what} that is not a cherche_faiss save; refusing to replace it. Save to "
            "a new path, or delete it first if it holds nothing you need."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target, is_save)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_SAVING}-{os.getpid()}-", dir=target.parent))
    try:
        fill(folder)
        reached("written")
        _fsync_folder(folder)
        reached("flushed")
        if target.exists() and _exchange(folder, target):
            reached("exchanged")
            _fsync_folder(target.parent)
            shutil.rmtree(folder)  # it holds the previous save now
        else:
            _move_in(folder, target)
        reached("replaced")
        _fsync_folder(target.parent)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _move_in(folder: Path, target: Path) -> None:
    """Put ``folder`` at ``target`` without ``renameat2``: the save there is renamed aside first,
    then deleted.

    Another save of the same path may put its folder at ``target`` between the
    two renames; that one is renamed aside in turn, so that the last save to
    arrive is the one in place, as with the exchange.
    """
    backups: list[Path] = []
    try:
        while True:
            backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_PREVIOUS}-{os.getpid()}-", dir=target.parent))
            os.rmdir(backup)  # a unique name for the rename below
            try:
                os.rename(target, backup)
            except FileNotFoundError:
                pass  # the first save of this path, or another save moved the previous one aside
            else:
                backups.append(backup)
                reached("moved aside")
            try:
                os.rename(folder, target)
                break
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
    except BaseException:
        if backups and not target.exists():
            os.rename(backups.pop(), target)  # the previous save goes straight back
        for backup in backups:  # saves that the one at target replaced
            shutil.rmtree(backup, ignore_errors=True)
        raise
    _fsync_folder(target.parent)
    for backup in backups:
        shutil.rmtree(backup)
