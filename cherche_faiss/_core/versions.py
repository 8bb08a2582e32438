"""Versions of the libraries a process has imported, for the records that say what wrote a file."""

from __future__ import annotations

import sys
from collections.abc import Iterable

__all__ = ["imported_versions"]


def imported_versions(modules: Iterable[str]) -> dict[str, str]:
    """The ``__version__`` of each of ``modules`` that is already imported and has one.

    Nothing is imported: what a save or an export records is what produced it,
    and importing a library only to name its version would slow the save down
    (torch) or claim a library the files never touched.

    Parameters
    ----------
    modules
        Top-level module names (``"numpy"``, ``"faiss"`` ...), in the order the result keeps.

    Returns
    -------
    dict
        ``{module: version}``, without the modules that are not imported.

    Examples
    --------
    >>> import json
    >>> imported_versions(["json", "a_module_nobody_imported"]) == {"json": json.__version__}
    True
    """
    found = {}
    for module in modules:
        version = getattr(sys.modules.get(module), "__version__", None)
        if version:
            found[module] = str(version)
    return found
