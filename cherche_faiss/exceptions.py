"""Errors and warnings raised by cherche_faiss.

Every error derives from :class:`CherFaissError` *and* from the built-in
exception a Python user would expect (``ValueError``, ``TypeError``,
``ImportError`` ...), so ``except ValueError`` keeps working.  Messages follow
one shape: what was wrong (what we got), what was expected, how to fix it.
"""

from __future__ import annotations

__all__ = [
    "CherFaissError",
    "InvalidInputError",
    "InvalidTypeError",
    "NotIndexedError",
    "DimensionMismatchError",
    "UnknownKeyError",
    "MissingDependencyError",
    "DeviceUnavailableError",
    "IncompatibleStateError",
    "CorruptFileError",
    "MissingFileError",
    "InconsistentVersionWarning",
    "DeviceFallbackWarning",
    "RecallNotReachedWarning",
]


class CherFaissError(Exception):
    """Base class of every error raised by cherche_faiss."""


class InvalidInputError(CherFaissError, ValueError):
    """A value given to a public function is out of its domain (``k <= 0``, an empty list ...)."""


class InvalidTypeError(CherFaissError, TypeError):
    """A value given to a public function has the wrong type (a query that is not a string ...)."""


class NotIndexedError(CherFaissError, ValueError):
    """A model was called before any document was added to it."""


class DimensionMismatchError(InvalidInputError):
    """Vectors do not have the dimension of the index they are added to or searched in."""


class UnknownKeyError(CherFaissError, KeyError):
    """A key refers to a document the component has never seen."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(CherFaissError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


class DeviceUnavailableError(CherFaissError, RuntimeError):
    """A device was requested explicitly and cannot be used here."""


class IncompatibleStateError(CherFaissError, ValueError):
    """A pickled or saved state cannot be read by this version of cherche_faiss."""


class CorruptFileError(CherFaissError, ValueError):
    """Saved bytes are truncated, altered or not a cherche_faiss file at all."""


class MissingFileError(CherFaissError, FileNotFoundError):
    """A file a loader needs is not there."""


class InconsistentVersionWarning(UserWarning):
    """A state saved by another version of cherche_faiss was loaded."""


class DeviceFallbackWarning(UserWarning):
    """A state saved on a GPU was loaded on the CPU because no usable GPU is available."""


class RecallNotReachedWarning(UserWarning):
    """Tuning search parameters could not reach the target recall; the best value found is used."""
