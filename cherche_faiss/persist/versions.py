"""Which cherche_faiss version wrote a save or a pickle, read without loading it.

``cherche-faiss serve`` reports it in ``GET /info`` beside the version serving.
Nothing of the file is run or built: a pickle's first opcodes are parsed (never
executed) up to the version stamp every component's pickle starts with
(:data:`~cherche_faiss._core.component.VERSION_KEY`), and a save folder's
manifest is read as JSON.
"""

from __future__ import annotations

import os
import pickletools
from pathlib import Path

from .._core.component import VERSION_KEY
from . import _json
from .safe import MANIFEST

__all__ = ["saved_version"]

# The version stamp of the outermost component comes first in its pickle: never read further.
_MAX_OPCODES = 10_000


def saved_version(path: str | os.PathLike) -> str | None:
    """The cherche_faiss version that wrote ``path``, read without loading it; None if unknown.

    For a pickle, the version stamp of the outermost component is read from
    the first opcodes (``pickletools`` only parses them: nothing is executed).
    For a folder, the version its manifest records, when it has one.

    Parameters
    ----------
    path
        A pickle file, or a folder written by :func:`cherche_faiss.persist.save`.

    Returns
    -------
    str or None
        The version, or None for a file or folder that does not say (not
        written by cherche_faiss, damaged, unreadable).

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
            for position, (_, argument, _) in enumerate(pickletools.genops(handle)):
                if position > _MAX_OPCODES:
                    return None
                if not isinstance(argument, str):
                    continue
                if found_key:
                    return argument
                found_key = argument == VERSION_KEY
    except (OSError, ValueError, EOFError):
        return None
    return None


def _manifest_version(folder: Path) -> str | None:
    """The version a save's manifest records (read as JSON only: its checks run when it loads)."""
    try:
        content = _json.parse((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    version = content.get("cherche_faiss_version") if isinstance(content, dict) else None
    return version if isinstance(version, str) else None
