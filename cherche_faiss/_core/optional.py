"""Optional dependencies, imported when first needed, with an error that says how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..exceptions import MissingDependencyError

__all__ = ["require"]

# module -> (what pip installs, the extra of cherche-faiss that brings it; None: a core dependency
# that only a broken install lacks)
_PACKAGES = {
    "lunr": ("lunr", None),
    "flashtext": ("flashtext", None),
    "rapidfuzz": ("rapidfuzz", None),
    "transformers": ("transformers", "qa"),
    "torch": ("torch", "qa"),
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature`` (e.g. ``"retrieve.Lunr"``), or raise MissingDependencyError.

    Examples
    --------
    >>> require("json", "this example").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package, extra = _PACKAGES.get(module.split(".")[0], (module.split(".")[0], None))
        how = (
            f"`pip install cherche-faiss[{extra}]` (or `pip install {package}`)"
            if extra
            else f"`pip install {package}`"
        )
        raise MissingDependencyError(
            f"{feature} needs {package}, which is not installed ({error}). Install it with {how}."
        ) from None
