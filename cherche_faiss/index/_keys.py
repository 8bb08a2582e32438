"""The key table of a :class:`~cherche_faiss.index.FaissIndex`: document keys <-> FAISS ids.

FAISS addresses vectors by int64 ids; documents are addressed by any hashable
key. Ids are handed out in order (``0, 1, 2 ...``) and never reused, so the
table is a list indexed by id (``id -> key``) beside a dict (``key -> id``).
A removed id leaves a hole in the list: it holds None there, and so may a
real key (``None`` is hashable), which is why the saved form lists the holes
explicitly (see :meth:`KeyTable.removed_ids`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from ..exceptions import IncompatibleStateError, InvalidInputError, InvalidTypeError

__all__ = ["KeyTable", "check_keys"]


def check_keys(keys: Any, n: int) -> list[Hashable]:
    """``keys`` as a list of ``n`` hashable keys, one per vector, else a clear error."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise InvalidTypeError(f"keys must be a list with one key per vector, got {type(keys).__name__}.")
    keys = list(keys)
    if len(keys) != n:
        raise InvalidInputError(f"got {n} vectors but {len(keys)} keys; pass exactly one key per vector.")
    for key in keys:
        if not isinstance(key, Hashable):
            raise InvalidTypeError(f"key {key!r} ({type(key).__name__}) is not hashable; use int, str or tuple keys.")
    return keys


class KeyTable:
    """Document keys and the FAISS ids their vectors were added under.

    Parameters
    ----------
    keys
        ``id -> key`` list; removed ids hold None. Taken as is, not copied.
    ids
        ``key -> id`` dict of the keys held, in insertion order. Taken as is.

    Examples
    --------
    >>> table = KeyTable()
    >>> table.append(["a", "b", "c"]).tolist()
    [0, 1, 2]
    >>> table.forget([1])
    >>> table.keys(), table.id_of("c"), table.id_of("b"), table.removed_ids().tolist()
    (['a', 'c'], 2, -1, [1])
    """

    __slots__ = ("_by_id", "_ids")

    def __init__(self, keys: list[Any] | None = None, ids: dict[Hashable, int] | None = None) -> None:
        self._by_id: list[Any] = [] if keys is None else keys
        self._ids: dict[Hashable, int] = {} if ids is None else ids

    # -- reading -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: Any) -> bool:
        try:
            return key in self._ids
        except TypeError:  # unhashable: never held
            return False

    def keys(self) -> list[Any]:
        """The keys held, in insertion order (a replaced key counts as inserted again)."""
        return list(self._ids)

    def id_of(self, key: Hashable, default: int = -1) -> int:
        """FAISS id of ``key``, ``default`` when it is not held (``TypeError`` when unhashable)."""
        return self._ids.get(key, default)

    def ids_of(self, keys: Iterable[Hashable]) -> np.ndarray:
        """FAISS ids of ``keys`` as an int64 array, -1 for keys not held."""
        get = self._ids.get
        return np.fromiter((get(key, -1) for key in keys), dtype=np.int64)

    def held_ids(self) -> np.ndarray:
        """The ids of the keys held, as an int64 array in the order of :meth:`keys`."""
        return np.fromiter(self._ids.values(), dtype=np.int64, count=len(self._ids))

    @property
    def by_id(self) -> list[Any]:
        """The ``id -> key`` list itself (holes hold None), for fast lookups: do not modify it."""
        return self._by_id

    @property
    def next_id(self) -> int:
        """The id the next key added gets (ids are never reused)."""
        return len(self._by_id)

    def removed_ids(self) -> np.ndarray:
        """The ids of removed vectors (holes of the list), as an int64 array.

        A hole holds None, and so may a real key: the id of a held ``None`` key is no hole.
        """
        none_id = self._ids.get(None)
        holes = [id_ for id_, key in enumerate(self._by_id) if key is None and id_ != none_id]
        return np.asarray(holes, dtype=np.int64)

    # -- changing ------------------------------------------------------------------------
    def append(self, keys: list[Hashable]) -> np.ndarray:
        """Give ``keys`` (distinct, none of them held) the next ids; returns those ids."""
        start = len(self._by_id)
        self._by_id.extend(keys)
        self._ids.update(zip(keys, range(start, start + len(keys))))
        return np.arange(start, start + len(keys), dtype=np.int64)

    def forget(self, ids: Iterable[int]) -> None:
        """Remove the keys of ``ids`` (all held); their ids become holes."""
        for id_ in ids:
            del self._ids[self._by_id[id_]]
            self._by_id[id_] = None

    # -- saved forms ---------------------------------------------------------------------
    def state(self) -> tuple[list[Any], dict[Hashable, int]]:
        """``(keys, ids)``: the list and the dict themselves, as a pickle stores them."""
        return self._by_id, self._ids

    @classmethod
    def from_pickled(cls, keys: Any, ids: Any) -> KeyTable:
        """The table of a pickle, which stores both the list and the dict (nothing to rebuild)."""
        if not isinstance(keys, list) or not isinstance(ids, dict):
            raise IncompatibleStateError(
                f"the key table of this FaissIndex is a {type(keys).__name__} and a {type(ids).__name__}, "
                "not a list and a dict."
            )
        return cls(keys, ids)

    @classmethod
    def from_saved(cls, keys: Any, removed: Any) -> KeyTable:
        """The table of a safe-format save: the ``id -> key`` list and the ids of its holes.

        The ``key -> id`` dict is rebuilt, checking that the keys are hashable and distinct.
        """
        if not isinstance(keys, list):
            raise IncompatibleStateError(f"the key table of this FaissIndex is a {type(keys).__name__}, not a list.")
        holes = set(np.asarray(removed if removed is not None else [], dtype=np.int64).tolist())
        try:
            ids = {key: id_ for id_, key in enumerate(keys) if id_ not in holes}
        except TypeError:
            raise IncompatibleStateError("the key table of this FaissIndex holds unhashable keys.") from None
        if len(ids) != len(keys) - len(holes):
            raise IncompatibleStateError("the key table of this FaissIndex holds the same key twice.")
        return cls(keys, ids)
