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
    "InvalidFilterError",
    "NotIndexedError",
    "DimensionMismatchError",
    "UnknownKeyError",
    "MissingDependencyError",
    "DeviceUnavailableError",
    "IncompatibleStateError",
    "CorruptFileError",
    "MissingFileError",
    "ServerClosedError",
    "ServerOverloadedError",
    "ShardUnavailableError",
    "InconsistentVersionWarning",
    "DeviceFallbackWarning",
    "RecallNotReachedWarning",
    "PartialResultsWarning",
]


class CherFaissError(Exception):
    """Base class of every error raised by cherche_faiss."""


class InvalidInputError(CherFaissError, ValueError):
    """A value given to a public function is out of its domain (``k <= 0``, an empty list ...)."""


class InvalidTypeError(CherFaissError, TypeError):
    """A value given to a public function has the wrong type (a query that is not a string ...)."""


class InvalidFilterError(InvalidInputError):
    """A ``filter=`` is malformed (an unknown operator, a wrong operand type, an empty ``$in`` ...) or does
    not apply to the documents (an unknown field, a comparison between incompatible types, a model
    without filterable fields).

    Parameters
    ----------
    message
        What was wrong, what was expected, how to fix it.
    path
        Where in the filter: ``filter["year"]["$gt"]`` (``filter`` for the whole of it).
    """

    def __init__(self, message: str, path: str = "filter") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple:  # keep the path when pickled (e.g. across processes)
        return type(self), (str(self), self.path)


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


class ServerClosedError(CherFaissError, RuntimeError):
    """The server's batcher is closed (the server is shutting down): no more searches."""


class ServerOverloadedError(CherFaissError, RuntimeError):
    """The server's queue is full: the request was refused, not queued; retry later.

    Parameters
    ----------
    message
        What was refused and why.
    retry_after
        Suggested wait before retrying, in whole seconds (at least 1): what an
        HTTP server sends as ``Retry-After``.
    pending, max_pending
        Queries waiting when the request was refused, and the bound.
    """

    def __init__(self, message: str, retry_after: int = 1, pending: int = 0, max_pending: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.pending = pending
        self.max_pending = max_pending

    def __reduce__(self) -> tuple:  # keep the hint when pickled (e.g. across processes)
        return type(self), (str(self), self.retry_after, self.pending, self.max_pending)


class ShardUnavailableError(CherFaissError, RuntimeError):
    """Shards of a sharded retriever could not answer (lost without a save to restart from, or past the
    call's time bound); the message names them.

    Parameters
    ----------
    message
        Which shards, where they lived, and why.
    shards
        The numbers of the shards that did not answer.
    """

    def __init__(self, message: str, shards: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.shards = tuple(shards)

    def __reduce__(self) -> tuple:  # keeps the shard numbers across processes (Ray re-raises it remotely)
        return type(self), (str(self), self.shards)


class InconsistentVersionWarning(UserWarning):
    """A state saved by another version of cherche_faiss was loaded."""


class DeviceFallbackWarning(UserWarning):
    """A state saved on a GPU was loaded on the CPU because no usable GPU is available."""


class RecallNotReachedWarning(UserWarning):
    """Tuning search parameters could not reach the target recall; the best value found is used."""


class PartialResultsWarning(UserWarning):
    """A sharded retriever answered from some of its shards only (``on_shard_failure="partial"``)."""
