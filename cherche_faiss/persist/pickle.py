"""Pickle helpers that turn pickle's low-level failures into library errors.

Unpickling runs code chosen by whoever wrote the file: load only pickles you
trust. ``pickle.load`` works on every component too; these helpers add clear
errors for truncated, damaged or foreign files.
"""

from __future__ import annotations

import os
import pickle
from typing import IO, Any

from .._state import Component
from ..exceptions import CherFaissError, CorruptFileError, IncompatibleStateError

__all__ = ["dump_pickle", "load_pickle"]


def dump_pickle(obj: Any, file: str | os.PathLike | IO[bytes]) -> None:
    """Pickle ``obj`` with protocol 5 (large index buffers are written without extra copies)."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as handle:
            pickle.dump(obj, handle, protocol=5)
    else:
        pickle.dump(obj, file, protocol=5)


def load_pickle(file: str | os.PathLike | IO[bytes]) -> Any:
    """Load a pickled retriever, ranker or pipeline (from a trusted file only).

    Raises
    ------
    CorruptFileError
        The file is truncated or its bytes are damaged.
    IncompatibleStateError
        The file holds something other than a cherche_faiss component, or a
        state this version cannot read.
    """
    name = str(file) if isinstance(file, (str, os.PathLike)) else getattr(file, "name", "<stream>")
    try:
        if isinstance(file, (str, os.PathLike)):
            with open(file, "rb") as handle:
                obj = pickle.load(handle)
        else:
            obj = pickle.load(file)
    except CherFaissError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, OverflowError, MemoryError, UnicodeDecodeError) as error:
        raise CorruptFileError(
            f"{name} is not a complete pickle ({type(error).__name__}: {error}). The file was "
            "truncated or damaged; load an intact copy or rebuild the pipeline."
        ) from None
    except (AttributeError, ImportError, TypeError, KeyError, IndexError) as error:
        raise IncompatibleStateError(
            f"{name} cannot be unpickled here ({type(error).__name__}: {error}). It was written "
            "by other software or an incompatible version of cherche_faiss."
        ) from None
    if not isinstance(obj, Component):
        raise IncompatibleStateError(
            f"{name} holds a {type(obj).__module__}.{type(obj).__name__}, not a cherche_faiss "
            "component. Pickles of other libraries (Cherche's included) cannot be loaded; rebuild "
            "the pipeline with cherche_faiss."
        )
    return obj
