"""FaissIndex: one FAISS index addressed by document keys, with its metric,
normalisation and device.

This module builds the FAISS index (from a factory string, ``"auto"`` or a
ready ``faiss.Index``), trains it, places it on a device and answers what it
holds. The other jobs of :class:`FaissIndex` live beside it, one a module:
``_keys`` (the key <-> id table), ``_updates`` (adding, replacing, removing),
``_stream`` (streamed adds), ``_storage`` (planning, reserving
storage and training as vectors arrive), ``_search`` (searching and search parameters),
``_views`` (reading stored vectors back), ``_persistence`` (pickles and
safe-format saves), ``_raw`` (free functions on a raw ``faiss.Index``),
``_training`` and ``auto`` (training, choosing the index).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from .._core.component import Component
from .._core.device import gpu_number, gpu_resources, resolve_faiss_device
from .._core.validation import check_positive_int
from ..exceptions import InvalidInputError, NotIndexedError
from ._keys import KeyTable
from ._persistence import PersistenceMixin, choice_to_state
from ._raw import (
    check_adoptable,
    faiss_module,
    index_from_factory,
    metric_type,
    read_index_from,
    with_ids,
)
from ._search import SearchMixin
from ._search_params import check_search_params, index_kind
from ._storage import StorageMixin
from ._updates import UpdatesMixin
from ._views import StoredVectorsMixin
from .auto import IndexChoice, choose_index, parse_bytes

__all__ = ["FaissIndex"]

_METRICS = ("ip", "l2")


class FaissIndex(UpdatesMixin, SearchMixin, StorageMixin, StoredVectorsMixin, PersistenceMixin, Component):
    """A FAISS index addressed by document keys.

    Parameters
    ----------
    dimension
        Dimension of the vectors; inferred from the first :meth:`add` when None.
    metric
        ``"ip"`` (inner product; cosine similarity when ``normalize=True``) or
        ``"l2"`` (the reported similarity is then minus the squared distance,
        so that higher is always better).
    factory
        A FAISS factory string (``"Flat"``, ``"HNSW32"``, ``"IVF4096,Flat"``,
        ``"IVF4096,PQ48"``, ``"IVF4096,SQ8"`` ...), a ready, empty ``faiss.Index``,
        or ``"auto"``: the index is then chosen when the first vectors arrive,
        from their number (``expected_size`` when given), their dimension,
        ``memory_budget`` and ``target_recall`` (see
        :func:`cherche_faiss.index.auto.choose_index`); ``repr`` says what was
        chosen and why.
    normalize
        L2-normalise vectors and queries (documents with a zero vector are then
        rejected instead of turning into NaN).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``. A GPU needs the
        faiss-gpu build (``pip install cherche-faiss[gpu]``).
    train_size
        Number of vectors an index that needs training (IVF, PQ, SQ) is trained
        on, sampled from the first vectors added. By default 50 per k-means
        centroid (204,800 for ``IVF4096``) and 65,536 for scalar quantisers;
        at least 39 per centroid (FAISS' minimum), else a clear error. See
        ``cherche_faiss/index/_training.py``.
    search_params
        Default search parameters, e.g. ``{"nprobe": 64}`` for IVF or
        ``{"efSearch": 128}`` for HNSW; :meth:`search` takes them per call too,
        and :meth:`tune` sets them to reach a target recall.
    expected_size
        Number of vectors the index will hold, for ``factory="auto"`` (the
        first batch only is known when documents stream in).
    memory_budget
        Largest index ``"auto"`` may build, as bytes or ``"4GB"``; None: no limit.
    target_recall
        recall@10 against exact search ``"auto"`` must be able to reach.

    Examples
    --------
    >>> import numpy as np
    >>> from cherche_faiss.index import FaissIndex
    >>> index = FaissIndex().add(np.eye(3), keys=["a", "b", "c"])
    >>> similarities, keys = index.search(np.array([1.0, 0.1, 0.0]), k=2)
    >>> keys
    [['a', 'b']]
    >>> [round(s, 3) for s in similarities[0]]
    [0.995, 0.1]
    >>> index.add(np.array([[0.0, 1.0, 1.0]]), keys=["a"])  # re-adding a key replaces it
    FaissIndex(dimension=None, metric='ip', factory='Flat', ..., size=3, on='cpu')
    >>> index.search(np.array([0.0, 1.0, 1.0]), k=1)[1]
    [['a']]
    """

    def __init__(
        self,
        dimension: int | None = None,
        metric: str = "ip",
        factory: Any = "Flat",
        normalize: bool = True,
        device: str = "cpu",
        train_size: int | None = None,
        search_params: dict | None = None,
        expected_size: int | None = None,
        memory_budget: int | str | None = None,
        target_recall: float = 0.95,
    ) -> None:
        self.dimension = check_positive_int(dimension, "dimension")
        if metric not in _METRICS:
            raise InvalidInputError(
                f"metric must be one of {_METRICS}, got {metric!r}. Use 'ip' for inner product "
                "(cosine when normalize=True) or 'l2' for Euclidean distance."
            )
        self.metric = metric
        self.factory = factory
        self.normalize = bool(normalize)
        self.device = device
        self.train_size = check_positive_int(train_size, "train_size")
        self.search_params = check_search_params(search_params)
        self.expected_size = check_positive_int(expected_size, "expected_size")
        parse_bytes(memory_budget)  # validated now, used when "auto" chooses
        self.memory_budget = memory_budget
        if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) or not 0 < target_recall <= 1:
            raise InvalidInputError(f"target_recall must be a number in (0, 1], got {target_recall!r}.")
        self.target_recall = target_recall
        self._choice: IndexChoice | None = None  # what "auto" chose (saved as a dict)
        self._device = resolve_faiss_device(device)
        self._index: Any = None
        self._table = KeyTable()
        self._flat: tuple | None = None  # see _flat_storage: None unknown, () not flat, else (vectors, ids)
        self._rows_by_id: np.ndarray | None = None  # see _row_of_id
        # (id(index), params) -> (index, faiss.SearchParameters): see _faiss_parameters.
        self._parameters_cache: dict[tuple, tuple[Any, Any]] = {}
        self._mapped = False  # memory-mapped from a saved file: read-only (see cherche_faiss.persist.load)
        self._in_place: np.ndarray | None = None  # the pickled bytes FAISS reads in place (see _own_storage)
        self._dimension: int | None = None  # the index's d, read once per index (a SWIG call costs a query time)
        self._defaults: tuple | None = None  # the default search parameters' FAISS object: see _default_parameters
        self._reserved_rows = 0  # vectors the empty flat storage was reserved for: see _reserve_rows
        if not isinstance(factory, str):
            self._adopt(factory)
        elif self.dimension is not None and (factory != "auto" or self.expected_size is not None):
            self._build(self.dimension)

    # -- construction ---------------------------------------------------------------------
    def _adopt(self, index: Any) -> None:
        """Use a ready ``faiss.Index`` given by the user."""
        check_adoptable(index, self.metric, self.dimension)
        self._use_index(with_ids(index))
        self._place()

    def _build(self, dimension: int, size: int | None = None, size_known: bool = True) -> None:
        """Build the FAISS index; ``size`` is the number of vectors ``"auto"`` plans for."""
        factory = self.factory
        if factory == "auto":
            planned = self.expected_size or size or 1
            choice = choose_index(
                planned,
                int(dimension),
                self.memory_budget,
                self.target_recall,
                size_known=size_known or self.expected_size is not None,
            )
            factory = choice.factory
            self._choice = choice
        index = index_from_factory(int(dimension), factory, metric_type(self.metric))
        self._use_index(with_ids(index))
        self._place()

    def _place(self) -> None:
        """Move the freshly built CPU index to ``self._device``."""
        if self._device != "cpu":
            gpu = gpu_number(self._device)
            self._use_index(faiss_module().index_cpu_to_gpu(gpu_resources(gpu), gpu, self._index))

    def _use_index(self, index: Any) -> None:
        """Make ``index`` the FAISS index held (built, adopted, moved or read back)."""
        self._forget_views()
        self._parameters_cache = {}  # parameter objects of the previous index
        self._defaults = None
        self._index = index
        self._in_place = None
        self._dimension = None if index is None else int(index.d)
        self._reserved_rows = 0

    def _own_storage(self) -> None:
        """Give an index read in place from a pickle's bytes memory of its own, before it changes.

        A pickle loads without copying the index (see ``_persistence``): FAISS
        views its vectors, lists and graph in the bytes pickle read. A view
        cannot grow (FAISS aborts when it resizes one), so the first add,
        removal or training reads the bytes again into memory FAISS owns;
        searches never pay for it.
        """
        if self._in_place is not None:
            self._use_index(read_index_from(self._in_place))

    # -- introspection --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, key: Any) -> bool:
        return key in self._table

    def keys(self) -> list[Any]:
        """The keys held, in insertion order."""
        return self._table.keys()

    @property
    def d(self) -> int | None:
        """Dimension of the vectors held (None before the first add)."""
        return None if self._index is None else int(self._index.d)

    @property
    def current_device(self) -> str:
        """The device the index currently lives on (``"cpu"`` or ``"cuda:N"``).

        ``device`` is what was asked for (``"auto"``, ``"cuda"`` ...); this is where it is.
        """
        return self._device

    @property
    def on(self) -> str:
        """Deprecated alias of :attr:`current_device`.

        Retrievers and rankers name their text fields ``on``; an index's
        device under the same name read as the same thing.
        """
        warnings.warn(
            "FaissIndex.on is deprecated and will be removed: use FaissIndex.current_device "
            "(the same value, the device the index lives on).",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._device

    @property
    def faiss_index(self) -> Any:
        """The underlying ``faiss.Index`` (read it, do not add to it directly).

        After a pickle load it reads its vectors in place from the pickle's bytes (which it keeps
        alive) until this FaissIndex first changes; FAISS aborts the process if it is made to grow
        then, so add and remove through the FaissIndex.
        """
        return self._index

    @property
    def factory_used(self) -> str:
        """The factory string built (what ``"auto"`` chose), or the class of an adopted index."""
        if self._choice is not None:
            return self._choice.factory
        if isinstance(self.factory, str):
            return self.factory
        return type(self.factory).__name__

    @property
    def choice(self) -> dict | None:
        """What ``factory="auto"`` chose and why (None before the first add or without "auto")."""
        return choice_to_state(self._choice)

    def _repr_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"size": len(self), "on": self._device}
        if self._choice is not None:
            extra["chosen"] = self._choice.factory
            extra["because"] = self._choice.reason
        if self._index is not None and index_kind(self._index) != "other":
            extra["searching_with"] = self._default_search_params()
        return extra

    # -- internal API, for the library's own modules (tuning, rankers); it may change ------
    def check_indexed(self) -> None:
        """Raise :class:`~cherche_faiss.exceptions.NotIndexedError` when the index holds no vector.

        Internal API, for the library's own modules; it may change.
        """
        if not len(self._table):
            raise NotIndexedError(
                "the index is empty: add vectors with FaissIndex.add(vectors, keys) before searching it."
            )

    def id_of(self, key: Hashable, default: int = -1) -> int:
        """FAISS id of ``key``, ``default`` when it is not in the index (``TypeError`` when unhashable).

        Internal API, for the library's own modules (rankers look up candidates); it may change.
        """
        return self._table.id_of(key, default)

    def held_ids(self) -> np.ndarray:
        """FAISS ids of the keys held, as an int64 array in the order of :meth:`keys`.

        Internal API, for the library's own modules (tuning samples them); it may change.
        """
        return self._table.held_ids()

    def ids_of(self, keys: Iterable[Hashable]) -> np.ndarray:
        """FAISS ids of ``keys`` as an int64 array, -1 for keys not in the index."""
        return self._table.ids_of(keys)

    @property
    def key_space(self) -> KeyTable:
        """The key table: ``key_space.keys_at(ids)`` are the keys of FAISS ids, and its ``version``
        changes with every add and removal.

        Internal API, for the library's own modules (candidates travel between pipeline stages as
        FAISS ids of this table); it may change.
        """
        return self._table

    # -- devices --------------------------------------------------------------------------
    def to(self, device: str) -> FaissIndex:
        """Move the index to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``)."""
        target = resolve_faiss_device(device)
        if target != self._device and self._index is not None:
            cpu_index = self._cpu_index()
            self._use_index(cpu_index)
            self._device = target
            self._place()
            self._mapped = False  # a GPU copy, or the CPU copy of one, is ordinary memory
        self._device = target
        return self

    def _cpu_index(self) -> Any:
        if self._device == "cpu":
            return self._index
        # index_gpu_to_cpu only exists in GPU builds of faiss, which is where we are.
        return faiss_module().index_gpu_to_cpu(self._index)
