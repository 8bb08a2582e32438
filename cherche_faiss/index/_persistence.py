"""Pickling and the safe on-disk format of :class:`~cherche_faiss.index.FaissIndex`.

The two saved layouts (``_state_version`` 1) are plain dicts, converted from
and to what the index holds in memory (a :class:`~cherche_faiss.index._keys.KeyTable`,
an :class:`~cherche_faiss.index.auto.IndexChoice`) here and nowhere else:

* a **pickle** holds the constructor parameters, ``_choice`` (a dict:
  ``factory``, ``reason``, ``search_params``, or None), ``_device``,
  ``_keys`` (the ``id -> key`` sequence, None in holes), ``_ids`` (the
  ``key -> id`` mapping), ``index_bytes`` (the CPU index serialised, a uint8
  array: pickle protocol 5 passes it as one buffer) and, with them,
  ``index_checksum`` (block CRC32s of those bytes, and ``start``: where
  FAISS' bytes begin, after the padding that aligns a flat index's vectors).
  Keys that are all 64-bit ints or all strings are stored packed
  (:class:`~cherche_faiss.index._packed_keys.PackedKeys`, :class:`~cherche_faiss.index._packed_keys.PackedIds`:
  one array, no dict), other keys as a list and a dict, as every pickle
  before them (a checksum without ``start`` starts at 0); both load. The
  index is read back in place (``read_index_in_place``): FAISS keeps its
  vectors in the buffer pickle read, and the index copies them into memory
  of its own before its first change (``_own_storage``);
* a **safe-format save** (:func:`cherche_faiss.persist.save`) holds the
  parameters, ``_choice``, ``_device``, ``_keys``, ``_index`` (the CPU
  ``faiss.Index`` itself, written with ``faiss.write_index`` so that it can
  be memory-mapped on load) and ``_removed`` (the ids of the holes in
  ``_keys``, since a real key may be None too); the ``key -> id`` dict is
  rebuilt from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._core.checksum import ALGORITHM as CHECKSUM
from .._core.checksum import block_crc32
from .._core.device import faiss_load_device, resolve_faiss_device
from ..exceptions import CorruptFileError, IncompatibleStateError
from ._keys import KeyTable
from ._packed_keys import pack, table_from_pickle
from ._raw import read_index_from, read_index_in_place, serialize_aligned
from ._search_params import check_search_params
from .auto import IndexChoice

__all__ = ["PersistenceMixin", "check_choice", "choice_from_state", "choice_to_state"]


def choice_to_state(choice: IndexChoice | None) -> dict[str, Any] | None:
    """The saved form of what ``"auto"`` chose: a dict (its estimated size is not kept)."""
    if choice is None:
        return None
    return {"factory": choice.factory, "reason": choice.reason, "search_params": choice.search_params}


def _damaged(shown: Any) -> IncompatibleStateError:
    return IncompatibleStateError(f"the saved choice of index='auto' is damaged ({shown!r:.200}).")


def choice_from_state(value: Any) -> IndexChoice | None:
    """The :class:`IndexChoice` of a saved ``_choice`` (None, or a dict checked here)."""
    if value is None:
        return None
    if not (
        isinstance(value, dict)
        and isinstance(value.get("factory"), str)
        and isinstance(value.get("reason"), str)
        and isinstance(value.get("search_params"), dict)
    ):
        raise _damaged(value)
    check_search_params(value["search_params"])
    return IndexChoice(value["factory"], value["search_params"], value["reason"])


def check_choice(choice: Any) -> None:
    """Raise :class:`IncompatibleStateError` unless ``choice`` is None or a well-formed IndexChoice."""
    if choice is None:
        return
    if not isinstance(choice, IndexChoice):
        raise _damaged(choice)
    choice_from_state(choice_to_state(choice))  # the checks of a saved one


class PersistenceMixin:
    """``_get_state`` / ``_set_state`` (pickles) and ``_save_state`` / ``_load_state`` (safe format).

    Mixed into :class:`~cherche_faiss.index.FaissIndex`, whose attributes and
    ``_param_names``, ``factory_used``, ``_cpu_index``, ``_use_index`` and
    ``_place`` it uses.
    """

    # Raised when either saved layout (see the module docstring) changes.
    _state_version: ClassVar[int] = 1

    _index: Any
    _table: KeyTable
    _choice: IndexChoice | None
    _device: str
    _mapped: bool
    _in_place: np.ndarray | None
    factory: Any

    if TYPE_CHECKING:  # provided by FaissIndex (and Component)

        @classmethod
        def _param_names(cls) -> list[str]: ...
        @property
        def factory_used(self) -> str: ...
        def _cpu_index(self) -> Any: ...
        def _use_index(self, index: Any) -> None: ...
        def _place(self) -> None: ...

    def _params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    # -- pickles -------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        keys, ids = pack(self._table)
        state = {
            **self._params(),
            "_choice": choice_to_state(self._choice),
            "_device": self._device,
            "_keys": keys,
            "_ids": ids,
        }
        if self._index is None:
            state["index_bytes"] = None
        else:
            data, start = serialize_aligned(self._cpu_index())
            state["index_bytes"] = data
            state["index_checksum"] = {"algorithm": CHECKSUM, "values": block_crc32(data.data), "start": start}
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        data = state.pop("index_bytes")
        checksum = state.pop("index_checksum", None)
        saved_device = state.pop("_device")
        self._table = table_from_pickle(state.pop("_keys"), state.pop("_ids"))
        self._choice = choice_from_state(state.pop("_choice"))
        params = {name: state.pop(name) for name in self._param_names()}
        if state:
            raise IncompatibleStateError(
                f"this pickled FaissIndex holds attributes no version wrote ({list(state)[:5]!r:.200})."
            )
        for name, value in params.items():
            setattr(self, name, value)
        index, in_place = self._read_pickled_index(data, checksum)
        self._attach(index, faiss_load_device(saved_device), in_place=in_place)

    @staticmethod
    def _read_pickled_index(data: Any, checksum: Any) -> tuple[Any, np.ndarray | None]:
        """The CPU ``faiss.Index`` of a pickle's ``index_bytes``, checked against its checksum, and the
        bytes it reads in place (None when it owns its memory)."""
        if data is None:
            return None, None
        data = np.frombuffer(memoryview(data), dtype=np.uint8)
        if not isinstance(checksum, dict) or checksum.get("algorithm") != CHECKSUM:
            raise IncompatibleStateError(
                f"this pickled FaissIndex has no {CHECKSUM} checksum of its index bytes; it was "
                "written by another version. Rebuild the index."
            )
        if block_crc32(data) != checksum["values"]:
            raise CorruptFileError(
                f"the FAISS index bytes inside this pickled FaissIndex ({data.nbytes} bytes) "
                "do not match their checksum: the pickle was truncated or altered. "
                "Load an intact copy or rebuild the index."
            )
        start = checksum.get("start", 0)
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < max(1, data.nbytes):
            raise IncompatibleStateError(f"the start of the index bytes inside this pickled FaissIndex is {start!r}.")
        body = data[start:]
        try:
            index = read_index_in_place(body)
            if index is not None:
                return index, body
            return read_index_from(body), None
        except RuntimeError as error:
            raise CorruptFileError(f"FAISS could not read the index stored in this pickle: {error}") from None

    # -- the safe format -----------------------------------------------------------------
    def _save_state(self) -> dict[str, Any]:
        params = self._params()
        if not isinstance(self.factory, str):
            # A faiss.Index given as factory is the index itself (or wrapped by it): stored once,
            # as the index; the parameter keeps its description.
            params["factory"] = self.factory_used
        keys = self._table.by_id
        return {
            **params,
            "_choice": choice_to_state(self._choice),
            "_device": self._device,
            "_keys": keys,
            "_index": None if self._index is None else self._cpu_index(),
            "_removed": self._table.removed_ids(),
        }

    def _load_state(self, state: dict[str, Any], context: Any = None) -> None:
        state = dict(state)
        index = state.pop("_index", None)
        saved_device = state.pop("_device", "cpu")
        removed = state.pop("_removed", None)
        if not isinstance(saved_device, str):
            raise IncompatibleStateError(f"the saved device of this FaissIndex is {saved_device!r}, not a device name.")
        self._table = KeyTable.from_saved(state.pop("_keys", None), removed)
        if "_choice" in state:  # else what __init__ set: None
            self._choice = choice_from_state(state.pop("_choice"))
        if state:
            raise IncompatibleStateError(
                f"this saved FaissIndex holds attributes no version wrote ({list(state)[:5]!r:.200})."
            )
        device = getattr(context, "device", "auto")
        if device == "auto":
            target = faiss_load_device(saved_device)
        else:
            target = resolve_faiss_device(device)  # asked for explicitly: an unusable GPU is an error
        self._attach(index, target, mapped=bool(getattr(context, "mmap", False)))

    # -- both ----------------------------------------------------------------------------
    def _check_loaded(self) -> None:
        check_choice(self._choice)

    def _attach(self, index: Any, device: str, mapped: bool = False, in_place: np.ndarray | None = None) -> None:
        """Adopt ``index`` (a CPU ``faiss.Index`` or None) read back for the key table,
        then move it to ``device``; ``in_place``: the bytes it reads in place (see ``_own_storage``)."""
        self._use_index(index)
        self._in_place = in_place
        self._device = "cpu"
        self._mapped = False
        if index is None:
            if len(self._table):
                raise CorruptFileError(f"this FaissIndex has {len(self._table)} keys but no FAISS index.")
            return
        if index.ntotal != len(self._table):
            raise CorruptFileError(
                f"the saved FAISS index holds {index.ntotal} vectors but its key table "
                f"{len(self._table)} keys. Rebuild the index."
            )
        self._device = device
        self._place()
        self._mapped = mapped and self._device == "cpu"  # a GPU copy is ordinary memory
