"""FaissIndex: one FAISS index, the table mapping document keys to FAISS ids,
the metric, the normalisation and the device, pickled as plain CPU bytes."""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from .._core.progress import progress
from .._core.checksum import ALGORITHM as CHECKSUM
from .._core.checksum import block_crc32
from .._core.device import faiss_load_device, gpu_number, gpu_resources, resolve_faiss_device
from .._core.component import Component
from .._core.validation import as_matrix, check_positive_int
from ..exceptions import (
    CorruptFileError,
    DimensionMismatchError,
    IncompatibleStateError,
    InvalidInputError,
    InvalidTypeError,
    NotIndexedError,
    UnknownKeyError,
)
from ._exact import inner_product_top_k
from ._memory import RELEASE_EVERY, release_free_heap
from ._search_params import check_search_params, faiss_search_parameters, index_kind, ivf_lists
from ._training import default_training_size, minimum_training_size, train_index
from .auto import EXACT_LIMIT, IndexChoice, choose_index, parse_bytes

__all__ = ["FaissIndex"]

_METRICS = ("ip", "l2")


def _faiss() -> Any:
    import faiss  # imported lazily: `import cherche_faiss` must stay cheap

    return faiss


def _read_index_from(data: np.ndarray) -> Any:
    """Read a serialised index straight from ``data``.

    ``faiss.deserialize_index`` first copies the bytes into a zero-filled
    vector of its own, then reads the index from there; a callback reader
    hands FAISS slices of ``data`` instead, which loads as fast as
    ``faiss.read_index`` from a file.
    """
    faiss = _faiss()
    view = memoryview(data).cast("B")
    position = 0

    def read(n: int) -> bytes:
        nonlocal position
        chunk = view[position : position + n]
        position += n
        return chunk.tobytes()

    return faiss.read_index(faiss.PyCallbackIOReader(read, 1 << 22))


def _choice_to_state(choice: IndexChoice | None) -> dict[str, Any] | None:
    """The saved form of what ``"auto"`` chose: a dict (its estimated size is not kept)."""
    if choice is None:
        return None
    return {"factory": choice.factory, "reason": choice.reason, "search_params": choice.search_params}


def _check_choice(choice: IndexChoice | None, shown: Any = None) -> None:
    """Raise :class:`IncompatibleStateError` unless ``choice`` is None or a well-formed IndexChoice."""
    if choice is None:
        return
    if not (
        isinstance(choice, IndexChoice) and isinstance(choice.factory, str)
        and isinstance(choice.reason, str) and isinstance(choice.search_params, dict)
    ):
        raise IncompatibleStateError(
            f"the saved choice of index='auto' is damaged ({choice if shown is None else shown!r:.200})."
        )
    check_search_params(choice.search_params)


def _choice_from_state(value: Any) -> IndexChoice | None:
    """The :class:`IndexChoice` of a saved ``_choice`` dict, checked (see :func:`_check_choice`)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise IncompatibleStateError(f"the saved choice of index='auto' is damaged ({value!r:.200}).")
    choice = IndexChoice(value.get("factory"), value.get("search_params"), value.get("reason"))
    _check_choice(choice, shown=value)
    return choice


def _drain(pending: list[np.ndarray], rows: int | None = None) -> np.ndarray:
    """The first ``rows`` rows (all when None) of the arrays in ``pending``, as one array.

    Arrays are copied into the result one by one and dropped from ``pending``
    as soon as they are copied (the rows beyond ``rows`` stay there), so that
    the buffered vectors exist twice only one batch at a time, never whole.
    """
    total = sum(len(part) for part in pending)
    rows = total if rows is None else min(rows, total)
    out = np.empty((rows, pending[0].shape[1]), dtype=np.float32)
    filled = 0
    while filled < rows:
        part = pending.pop(0)
        taken = min(len(part), rows - filled)
        out[filled : filled + taken] = part[:taken]
        filled += taken
        if taken < len(part):
            pending.insert(0, part[taken:])
        del part
    return out


class FaissIndex(Component):
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
        self._keys: list[Any] = []  # FAISS id -> key; removed ids hold None
        self._ids: dict[Hashable, int] = {}
        self._flat: tuple | None = None  # see _flat_storage: None unknown, () not flat, else (vectors, ids)
        self._rows_by_id: np.ndarray | None = None  # see _row_of_id
        # (id(index), params) -> (index, faiss.SearchParameters): see _faiss_parameters.
        self._parameters_cache: dict[tuple, tuple[Any, Any]] = {}
        self._mapped = False  # memory-mapped from a saved file: read-only (see cherche_faiss.persist.load)
        if not isinstance(factory, str):
            self._adopt(factory)
        elif self.dimension is not None and (factory != "auto" or self.expected_size is not None):
            self._build(self.dimension)

    # -- construction ---------------------------------------------------------------------
    def _metric_type(self) -> int:
        faiss = _faiss()
        return faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2

    def _adopt(self, index: Any) -> None:
        """Use a ready ``faiss.Index`` given by the user."""
        faiss = _faiss()
        if not isinstance(index, faiss.Index):
            raise InvalidTypeError(
                f"factory must be a FAISS factory string or a faiss.Index, got "
                f"{type(index).__name__}. Pass e.g. 'Flat', 'HNSW32', 'IVF1024,Flat' or "
                "faiss.IndexFlatIP(d)."
            )
        if index.ntotal != 0:
            raise InvalidInputError(
                f"the faiss.Index given holds {index.ntotal} vectors without keys. Pass an empty "
                "index and add vectors through FaissIndex.add so that each one has a key."
            )
        if index.metric_type != self._metric_type():
            raise InvalidInputError(
                f"the faiss.Index given uses metric_type {index.metric_type} but metric="
                f"{self.metric!r}. Pass metric='ip' for METRIC_INNER_PRODUCT (0) or 'l2' for "
                "METRIC_L2 (1)."
            )
        if self.dimension is not None and index.d != self.dimension:
            raise DimensionMismatchError(
                f"the faiss.Index given has dimension {index.d} but dimension={self.dimension}."
            )
        self._use_index(self._with_ids(index))
        self._place()

    def _build(self, dimension: int, size: int | None = None, size_known: bool = True) -> None:
        """Build the FAISS index; ``size`` is the number of vectors ``"auto"`` plans for."""
        faiss = _faiss()
        factory = self.factory
        if factory == "auto":
            planned = self.expected_size or size or 1
            choice = choose_index(
                planned, int(dimension), self.memory_budget, self.target_recall,
                size_known=size_known or self.expected_size is not None,
            )
            factory = choice.factory
            self._choice = choice
        try:
            index = faiss.index_factory(int(dimension), factory, self._metric_type())
        except RuntimeError as error:
            raise InvalidInputError(
                f"FAISS cannot build an index from factory string {factory!r} "
                f"(dimension {dimension}): {str(error).strip().splitlines()[-1]}. See "
                "https://github.com/facebookresearch/faiss/wiki/The-index-factory for valid strings."
            ) from None
        self._use_index(self._with_ids(index))
        self._place()

    @staticmethod
    def _with_ids(index: Any) -> Any:
        """Make ``index`` accept our int64 ids: IVF indexes do natively, others get an IDMap2."""
        faiss = _faiss()
        if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            return index
        if faiss.try_extract_index_ivf(index) is not None:
            return index
        return faiss.IndexIDMap2(index)

    def _place(self) -> None:
        """Move the freshly built CPU index to ``self._device``."""
        if self._device != "cpu":
            faiss = _faiss()
            gpu = gpu_number(self._device)
            self._use_index(faiss.index_cpu_to_gpu(gpu_resources(gpu), gpu, self._index))

    def _use_index(self, index: Any) -> None:
        """Make ``index`` the FAISS index held (built, adopted, moved or read back)."""
        self._forget_views()
        self._parameters_cache = {}  # parameter objects of the previous index
        self._index = index

    def _forget_views(self) -> None:
        """Drop the zero-copy view of FAISS' flat storage and the row table built from its id map.

        FAISS keeps the vectors in a ``std::vector`` that it may reallocate
        (or free) on every add, removal, reservation, or when the index object
        is replaced; a NumPy view taken before would then point at memory FAISS
        no longer owns, and reading it gives garbage or crashes. So every such
        change calls this first, and :meth:`_flat_storage` takes a fresh view
        on the next read.
        """
        self._flat = None
        self._rows_by_id = None

    # -- introspection --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: Any) -> bool:
        try:
            return key in self._ids
        except TypeError:  # unhashable
            return False

    def keys(self) -> list[Any]:
        """The keys held, in insertion order."""
        return list(self._ids)

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
        """The underlying ``faiss.Index`` (read it, do not add to it directly)."""
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
        return _choice_to_state(self._choice)

    def _default_search_params(self) -> dict[str, int]:
        defaults = dict(self._choice.search_params) if self._choice is not None else {}
        defaults.update(self.search_params)
        return defaults

    def _repr_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"size": len(self), "on": self._device}
        if self._choice is not None:
            extra["chosen"] = self._choice.factory
            extra["because"] = self._choice.reason
        if self._index is not None and index_kind(self._index) != "other":
            extra["searching_with"] = self._default_search_params()
        return extra

    # -- vectors --------------------------------------------------------------------------
    def prepare(self, vectors: Any, name: str = "queries") -> np.ndarray:
        """Validate ``vectors`` (shape, dimension, finite values) and normalise them as the index does."""
        matrix = as_matrix(vectors, name, self.d if self._index is not None else self.dimension)
        if self.normalize:
            norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))[:, None]
            if not norms.all():  # checked cheaply; the rows are found only to say which
                zero = np.flatnonzero(norms[:, 0] == 0)
                raise InvalidInputError(
                    f"{name} rows {zero[:5].tolist()} are zero vectors, which cannot be normalised "
                    "(cosine similarity is undefined for them). Remove those rows, check the "
                    "encoder's output for empty texts, or use normalize=False."
                )
            matrix = matrix / norms
        return matrix

    def add(self, vectors: Any, keys: Sequence[Hashable], show_progress: bool = False) -> "FaissIndex":
        """Add (or replace) one vector per key.

        A key already in the index has its vector replaced; when ``keys``
        repeats a key, its last vector wins. The index is left unchanged when
        anything is wrong with the input. An index that needs training is
        trained on a sample of these vectors (see ``train_size``).

        Parameters
        ----------
        vectors
            Array of shape ``(n, d)`` (or ``(d,)`` for one vector).
        keys
            ``n`` hashable keys.
        show_progress
            Show a progress bar while the index trains.

        Returns
        -------
        FaissIndex
            ``self``, so that calls chain.
        """
        matrix = self.prepare(vectors, "vectors")
        keys = self._check_keys(keys, len(matrix))
        return self._add_prepared(matrix, keys, show_progress)

    def add_batches(
        self,
        batches: Iterable[tuple[Any, Sequence[Hashable]]],
        total: int | None = None,
        show_progress: bool = True,
        description: str = "adding vectors",
    ) -> "FaissIndex":
        """Add ``(vectors, keys)`` batches from any iterable, e.g. a generator that encodes documents.

        Batches go into the index as they arrive, so memory holds the index
        and one batch, except at the start of an index that needs training:
        the first vectors are kept until there are enough to train it
        (``train_size``), then trained on and added. With ``factory="auto"``
        the index is chosen from ``expected_size``, else ``total``, else the
        vectors seen when the stream ends or :data:`~cherche_faiss.index.auto.EXACT_LIMIT`
        vectors have arrived (whichever comes first; ``repr`` then says the
        size was unknown).

        Unlike :meth:`add`, a stream is not atomic: when a batch is invalid,
        the batches before it stay added.

        Parameters
        ----------
        batches
            Iterable of ``(vectors, keys)`` pairs.
        total
            Number of vectors expected, for the progress bar and ``"auto"``.
        show_progress
            Progress bar with rate and ETA (ETA needs ``total``).
        description
            Label of the progress bar.

        Returns
        -------
        FaissIndex
            ``self``.
        """
        total = check_positive_int(total, "total")
        self._check_writable()
        pending: list[np.ndarray] = []
        pending_keys: list[Hashable] = []
        since_release = 0
        with progress(total, description, show_progress, unit="vec") as bar:
            for number, (vectors, keys) in enumerate(batches):
                matrix = self.prepare(vectors, f"vectors of batch {number}")
                keys = self._check_keys(keys, len(matrix))
                if self._index is not None and self._index.is_trained and not pending:
                    self._add_prepared(matrix, keys, show_progress)
                    bar.update(len(keys))
                    since_release += len(keys)
                    if since_release >= RELEASE_EVERY and self._grows_by_reallocation():
                        release_free_heap()  # see _memory: the lists' old blocks stay resident otherwise
                        since_release = 0
                    continue
                pending.append(matrix)
                pending_keys.extend(keys)
                buffered = len(pending_keys)
                if self._index is None:
                    if self.factory == "auto" and self.expected_size is None and total is None:
                        if buffered < EXACT_LIMIT:
                            continue  # choose once the stream ends or is known to be large
                        self._build(matrix.shape[1], buffered, size_known=False)
                    else:
                        self._build(matrix.shape[1], total)
                    if total is not None:
                        self._reserve(total)
                if not self._index.is_trained:
                    size = self._training_size()
                    if buffered < size:
                        continue
                    # Exactly the training sample first: FAISS trains on it as it is (no sampled copy).
                    self._add_prepared(_drain(pending, size), pending_keys[:size], show_progress)
                    bar.update(size)
                    pending_keys = pending_keys[size:]
                if pending_keys:
                    self._add_prepared(_drain(pending), pending_keys, show_progress)
                    bar.update(len(pending_keys))
                pending, pending_keys = [], []
            if pending_keys:
                self._add_prepared(_drain(pending), pending_keys, show_progress)
                bar.update(len(pending_keys))
        return self

    def _grows_by_reallocation(self) -> bool:
        """Whether adding reallocates many small blocks: an IVF index's inverted lists, on the CPU."""
        return self._device == "cpu" and index_kind(self._index) == "ivf"

    def _reserve(self, total: int) -> None:
        """Allocate flat storage for ``total`` vectors up front (flat and HNSW indexes on the CPU).

        FAISS grows that storage as a ``std::vector``: each reallocation copies
        it, so streaming a million vectors in batches would briefly need twice
        the index in memory. Resizing up and back down keeps the capacity.
        """
        if self._device != "cpu" or len(self._keys):
            return
        faiss = _faiss()
        core = faiss.downcast_index(self._index)
        if isinstance(core, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            core = faiss.downcast_index(core.index)
        if isinstance(core, faiss.IndexHNSW):
            core = faiss.downcast_index(core.storage)
        if isinstance(core, faiss.IndexFlatCodes) and core.ntotal == 0:
            self._forget_views()
            core.codes.resize(int(total) * int(core.code_size))
            core.codes.resize(0)

    def _check_writable(self) -> None:
        if self._mapped:
            raise InvalidInputError(
                "this index was loaded with mmap=True: its vectors are read from the saved files, "
                "which are never modified in place, so it cannot add or remove vectors. Load it "
                "with cherche_faiss.load(path, mmap=False) to change it, then save it again."
            )

    def _add_prepared(self, matrix: np.ndarray, keys: list[Hashable], show_progress: bool = False) -> "FaissIndex":
        if not keys:
            return self
        self._check_writable()
        # The last occurrence of a repeated key wins, as in a dict.
        last = {key: row for row, key in enumerate(keys)}
        if len(last) != len(keys):
            rows = np.fromiter(sorted(last.values()), dtype=np.int64)
            matrix, keys = matrix[rows], [keys[row] for row in rows]
        if self._index is None:
            self._build(matrix.shape[1], len(keys))
        self._train_if_needed(matrix, show_progress)
        replaced = [self._ids[key] for key in keys if key in self._ids]
        if replaced:
            self._remove_ids(np.asarray(replaced, dtype=np.int64), replacing=True)
        start = len(self._keys)
        ids = np.arange(start, start + len(keys), dtype=np.int64)
        self._forget_views()
        self._index.add_with_ids(matrix, ids)
        self._keys.extend(keys)
        self._ids.update(zip(keys, range(start, start + len(keys))))
        return self

    @staticmethod
    def _check_keys(keys: Any, n: int) -> list[Hashable]:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise InvalidTypeError(
                f"keys must be a list with one key per vector, got {type(keys).__name__}."
            )
        keys = list(keys)
        if len(keys) != n:
            raise InvalidInputError(
                f"got {n} vectors but {len(keys)} keys; pass exactly one key per vector."
            )
        for key in keys:
            if not isinstance(key, Hashable):
                raise InvalidTypeError(
                    f"key {key!r} ({type(key).__name__}) is not hashable; use int, str or tuple keys."
                )
        return keys

    def _training_size(self) -> int:
        """Vectors the index is trained on (``train_size``, else the documented default)."""
        return self.train_size or default_training_size(self._index)

    def _train_if_needed(self, matrix: np.ndarray, show_progress: bool = False) -> None:
        if self._index.is_trained:
            return
        needed = minimum_training_size(self._index)
        size = self._training_size()
        if size < needed:
            raise InvalidInputError(
                f"train_size={size:,} is too small for index {self.factory_used!r}: its k-means needs "
                f"at least {needed:,} vectors (39 per centroid, FAISS' minimum). Raise train_size or "
                "choose fewer IVF lists."
            )
        if len(matrix) < needed:
            raise InvalidInputError(
                f"index {self.factory_used!r} must be trained on at least {needed:,} vectors (39 per "
                f"k-means centroid, FAISS' minimum) but only {len(matrix):,} arrived before training. "
                "Add more documents in the first call, or choose a smaller index: fewer IVF lists "
                "(about 4*sqrt(number of documents), at most documents/39), or 'Flat' below 100,000 "
                "documents (factory='auto' does this)."
            )
        sample = matrix
        if len(matrix) > size:
            rows = np.random.default_rng(0).choice(len(matrix), size, replace=False)
            sample = matrix[np.sort(rows)]
        try:
            train_index(self._index, np.ascontiguousarray(sample), self.factory_used, show_progress)
        except RuntimeError as error:
            raise InvalidInputError(
                f"FAISS could not train index {self.factory_used!r} on {len(sample)} vectors: "
                f"{str(error).strip().splitlines()[-1]}. Add more vectors in the first call or "
                "choose a smaller index."
            ) from None

    def _remove_ids(self, ids: np.ndarray, replacing: bool = False) -> None:
        self._check_writable()
        faiss = _faiss()
        self._forget_views()
        try:
            removed = self._index.remove_ids(faiss.IDSelectorBatch(ids))
        except RuntimeError:
            action = "replace existing keys" if replacing else "remove keys"
            raise InvalidInputError(
                f"index {self.factory_used!r} cannot {action}: FAISS does not support removal for it "
                "(HNSW indexes, for instance). Use a Flat or IVF index, or rebuild the index "
                "with the new documents."
            ) from None
        if removed != len(ids):
            raise IncompatibleStateError(
                f"FAISS removed {removed} vectors instead of {len(ids)}; the key table and the "
                "index disagree. Rebuild the index."
            )
        for id_ in ids.tolist():
            key = self._keys[id_]
            del self._ids[key]
            self._keys[id_] = None

    def remove(self, keys: Iterable[Hashable]) -> "FaissIndex":
        """Remove the vectors of ``keys``; every key must be present."""
        keys = list(keys)
        missing = [key for key in keys if key not in self]
        if missing:
            raise UnknownKeyError(
                f"cannot remove {len(missing)} key(s) the index does not hold, e.g. {missing[:5]}. "
                "Remove only keys that were added (see FaissIndex.keys())."
            )
        if keys:
            self._remove_ids(np.fromiter({self._ids[key] for key in keys}, dtype=np.int64))
        return self

    def search(self, queries: Any, k: int, **search_params: int) -> tuple[list[list[float]], list[list[Hashable]]]:
        """The ``k`` most similar keys of each query.

        Parameters
        ----------
        queries
            Array ``(nq, d)``, or ``(d,)`` for one query.
        k
            Number of neighbours; clamped to the number of vectors held.
        **search_params
            ``nprobe=`` (IVF) or ``efSearch=`` (HNSW) for this call only,
            over the index's defaults (``search_params``); exhaustive indexes
            accept and ignore them.

        Returns
        -------
        similarities, keys
            Two lists with one list per query, best first, as Python floats and
            keys. A query gets fewer than ``k`` results when the index holds
            fewer vectors or an approximate index finds fewer.
        """
        return self.search_prepared(self.prepare(queries, "queries"), k, **search_params)

    def search_prepared(
        self, matrix: np.ndarray, k: int, **search_params: int
    ) -> tuple[list[list[float]], list[list[Hashable]]]:
        """:meth:`search` for queries already validated and normalised by :meth:`prepare`
        (callers that check a whole batch once, then search it in chunks)."""
        self.check_indexed()
        k = min(check_positive_int(k, "k", allow_none=False), len(self._ids))
        params = self._default_search_params()
        if search_params:
            params.update(check_search_params(search_params, "search parameters"))
        scores, ids = self.search_ids(matrix, k, params)
        keys_by_id = self._keys
        similarities, keys = [], []
        for score_row, id_row in zip(scores.tolist(), ids.tolist()):
            # FAISS pads missing results with id -1 at the end of the row.
            found = len(id_row) if id_row[-1] >= 0 else id_row.index(-1)
            similarities.append(score_row[:found])
            keys.append([keys_by_id[i] for i in id_row[:found]])
        return similarities, keys

    def search_ids(self, matrix: np.ndarray, k: int, params: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """Similarities and FAISS ids (``-1`` padded) of the ``k`` nearest vectors.

        Internal API, for the library's own modules (tuning); it may change.

        Parameters
        ----------
        matrix
            Queries already checked and normalised by :meth:`prepare`.
        k
            Number of neighbours, at most ``len(self)``.
        params
            Search parameters, used as given (not merged with the defaults).

        Returns
        -------
        similarities, ids
            ``(nq, k)`` float32 and int64 arrays, best first.
        """
        flat = self._flat_storage()
        # A memory-mapped FAISS file leaves the vectors at an odd address: NumPy would then
        # skip BLAS (10x slower than FAISS' own search there), so FAISS searches those.
        if flat is not None and flat[0].flags.aligned:
            vectors, id_map = flat
            scores, rows = inner_product_top_k(vectors, matrix, k)
            return scores, id_map[rows]
        parameters = self._faiss_parameters(params)
        scores, ids = self._index.search(matrix, k, params=parameters)
        return (-scores if self.metric == "l2" else scores), ids

    def _faiss_parameters(self, params: dict[str, int]) -> Any:
        """The ``faiss.SearchParameters`` of ``params``, built once per distinct value and index.

        They are never modified after construction, so concurrent searches share them safely.
        """
        if not params:
            return None
        cache = self._parameters_cache
        key = (id(self._index), tuple(sorted(params.items())))
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = (self._index, faiss_search_parameters(self._index, params, self.factory_used))
        return cache[key][1]

    def exhaustive_ids(self, matrix: np.ndarray, k: int) -> np.ndarray:
        """FAISS ids of the ``k`` nearest stored vectors by exhaustive search (tuning's ground truth).

        Internal API, for the library's own modules (tuning); it may change.
        Every IVF list is scanned, an HNSW index's stored vectors are scanned
        without the graph; other indexes search as usual. ``matrix`` is
        prepared as for :meth:`search_ids`; the result is ``(nq, k)`` int64,
        ``-1`` padded.
        """
        faiss = _faiss()
        kind = index_kind(self._index)
        if kind == "ivf":
            return self.search_ids(matrix, k, {"nprobe": ivf_lists(self._index)})[1]
        if kind == "hnsw":
            core = faiss.downcast_index(self._index.index)
            storage = faiss.downcast_index(core.storage)
            _, positions = storage.search(matrix, k)
            id_map = faiss.vector_to_array(self._index.id_map)
            return np.where(positions >= 0, id_map[np.maximum(positions, 0)], -1)
        return self.search_ids(matrix, k, {})[1]

    def set_search_params(self, **search_params: int) -> "FaissIndex":
        """Set default search parameters, e.g. ``index.set_search_params(nprobe=64)``; returns ``self``."""
        params = check_search_params(search_params, "search parameters")
        if self._index is not None:
            faiss_search_parameters(self._index, params, self.factory_used)  # do they apply?
        self.search_params = {**self.search_params, **params}
        return self

    def tune(
        self,
        target_recall: float = 0.95,
        k: int = 10,
        sample_size: int = 256,
        seed: int = 0,
        show_progress: bool = True,
        queries: Any = None,
    ) -> Any:
        """Set ``nprobe``/``efSearch`` to the cheapest value reaching ``target_recall``.

        See :func:`cherche_faiss.index.tuning.tune_search_params`; returns its
        :class:`~cherche_faiss.index.tuning.TuningResult`.
        """
        from .tuning import tune_search_params

        return tune_search_params(
            self, target_recall, k, sample_size, seed, apply=True, show_progress=show_progress, queries=queries
        )

    def id_of(self, key: Hashable, default: int = -1) -> int:
        """FAISS id of ``key``, ``default`` when it is not in the index (``TypeError`` when unhashable).

        Internal API, for the library's own modules (rankers look up candidates); it may change.
        """
        return self._ids.get(key, default)

    def held_ids(self) -> np.ndarray:
        """FAISS ids of the keys held, as an int64 array in the order of :meth:`keys`.

        Internal API, for the library's own modules (tuning samples them); it may change.
        """
        return np.fromiter(self._ids.values(), dtype=np.int64, count=len(self._ids))

    def ids_of(self, keys: Iterable[Hashable]) -> np.ndarray:
        """FAISS ids of ``keys`` as an int64 array, -1 for keys not in the index."""
        get = self._ids.get
        return np.fromiter((get(key, -1) for key in keys), dtype=np.int64)

    def reconstruct(self, keys: Sequence[Hashable]) -> np.ndarray:
        """The stored (normalised) vectors of ``keys``, as a ``(n, d)`` float32 array."""
        self.check_indexed()
        ids = self.ids_of(keys)
        if (ids < 0).any():
            missing = [key for key, id_ in zip(keys, ids.tolist()) if id_ < 0][:5]
            raise UnknownKeyError(f"keys {missing} are not in the index; add their vectors first.")
        return self.reconstruct_ids(ids)

    def reconstruct_ids(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of FAISS ids (from :meth:`ids_of`; all must be present)."""
        source, rows = self.vector_rows(ids)
        return source[rows]

    def vector_rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(source, rows)`` with ``source[rows]`` the vectors of ``ids``.

        For a flat index on the CPU ``source`` is a zero-copy view of FAISS'
        storage, so callers can read a few rows at a time instead of copying
        all of them; otherwise the vectors are reconstructed.
        """
        if len(ids) == 0:
            return np.empty((0, self.d or 0), dtype=np.float32), np.empty(0, dtype=np.int64)
        flat = self._flat_storage()
        if flat is not None:
            vectors, id_map = flat
            return vectors, self._row_of_id(id_map)[ids]
        return self._reconstruct_batch(ids), np.arange(len(ids))

    def _row_of_id(self, id_map: np.ndarray) -> np.ndarray:
        """Row of each FAISS id in flat storage (-1 for removed ids), cached with the view."""
        if self._rows_by_id is None:
            rows = np.full(len(self._keys), -1, dtype=np.int64)
            rows[id_map] = np.arange(len(id_map))
            self._rows_by_id = rows
        return self._rows_by_id

    def _reconstruct_batch(self, ids: np.ndarray) -> np.ndarray:
        faiss = _faiss()
        ivf = faiss.try_extract_index_ivf(self._index)
        if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
            # Custom ids need the hashtable flavour of the direct map.
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return self._index.reconstruct_batch(ids)

    def _flat_storage(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(vectors, ids)`` of a flat inner-product index on the CPU, else None.

        ``vectors`` is a zero-copy view of FAISS' storage, so exact searches run as
        BLAS matrix products (see ``_exact``). The view is dropped on every change
        of the index, before FAISS may reallocate that storage (see :meth:`_forget_views`).
        """
        if self._flat is not None:
            return self._flat or None  # () once the index was found not to be flat
        if self._device != "cpu" or self.metric != "ip" or self._index is None:
            return None
        faiss = _faiss()
        if not isinstance(self._index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            self._flat = ()
            return None
        inner = faiss.downcast_index(self._index.index)  # a SWIG call: worth not repeating per query
        if not isinstance(inner, faiss.IndexFlat) or inner.metric_type != faiss.METRIC_INNER_PRODUCT:
            self._flat = ()
            return None
        n, d = int(inner.ntotal), int(inner.d)
        if n == 0:
            return None
        vectors = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
        self._flat = (vectors, faiss.vector_to_array(self._index.id_map))
        return self._flat

    def check_indexed(self) -> None:
        """Raise :class:`~cherche_faiss.exceptions.NotIndexedError` when the index holds no vector.

        Internal API, for the library's own modules; it may change.
        """
        if not self._ids:
            raise NotIndexedError(
                "the index is empty: add vectors with FaissIndex.add(vectors, keys) before "
                "searching it."
            )

    # -- devices --------------------------------------------------------------------------
    def to(self, device: str) -> "FaissIndex":
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
        return _faiss().index_gpu_to_cpu(self._index)

    # -- pickling and saving ----------------------------------------------------------------
    _state_version = 1
    # Rebuilt, not stored: views of FAISS' memory, caches, and the key -> id dict (from _keys).
    _TRANSIENT = ("_index", "_flat", "_rows_by_id", "_parameters_cache", "_mapped")

    def _get_state(self) -> dict[str, Any]:
        state = {name: value for name, value in self.__dict__.items() if name not in self._TRANSIENT}
        state["_choice"] = _choice_to_state(self._choice)
        if self._index is None:
            state["index_bytes"] = None
        else:
            data = _faiss().serialize_index(self._cpu_index())
            state["index_bytes"] = data  # a uint8 array: pickle protocol 5 passes it out of band
            state["index_checksum"] = {"algorithm": CHECKSUM, "values": block_crc32(data)}
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        data = state.pop("index_bytes")
        checksum = state.pop("index_checksum", None)
        saved_device = state.pop("_device")
        self.__dict__.update(state)
        self._choice = _choice_from_state(self._choice)
        index = None
        if data is not None:
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
            try:
                index = _read_index_from(data)
            except RuntimeError as error:
                raise CorruptFileError(
                    f"FAISS could not read the index stored in this pickle: {error}"
                ) from None
        self._attach(index, faiss_load_device(saved_device))

    def _save_state(self) -> dict[str, Any]:
        """The attributes, with the FAISS index itself (on the CPU), for ``cherche_faiss.save``:
        it is written with ``faiss.write_index`` so that it can be memory-mapped on load."""
        state = {name: value for name, value in self.__dict__.items() if name not in self._TRANSIENT + ("_ids",)}
        state["_choice"] = _choice_to_state(self._choice)
        if not isinstance(self.factory, str):
            # A faiss.Index given as factory is the index itself (or wrapped by it): stored once,
            # as the index; the parameter keeps its description.
            state["factory"] = self.factory_used
        state["_index"] = None if self._index is None else self._cpu_index()
        # Removed ids hold None in _keys, and so may a real key: the removed ones are listed.
        holes = [id_ for id_, key in enumerate(self._keys) if key is None and self._ids.get(None) != id_]
        state["_removed"] = np.asarray(holes, dtype=np.int64)
        return state

    def _load_state(self, state: dict[str, Any], context: Any = None) -> None:
        state = dict(state)
        index = state.pop("_index", None)
        saved_device = state.pop("_device", "cpu")
        removed = state.pop("_removed", None)
        if not isinstance(saved_device, str):
            raise IncompatibleStateError(f"the saved device of this FaissIndex is {saved_device!r}, not a device name.")
        self.__dict__.update(state)
        self._choice = _choice_from_state(self._choice)
        self._ids = self._key_table(self.__dict__.get("_keys"), removed)
        device = getattr(context, "device", "auto")
        if device == "auto":
            target = faiss_load_device(saved_device)
        else:
            target = resolve_faiss_device(device)  # asked for explicitly: an unusable GPU is an error
        self._attach(index, target, mapped=bool(getattr(context, "mmap", False)))

    def _check_loaded(self) -> None:
        _check_choice(self._choice)

    @staticmethod
    def _key_table(keys: Any, removed: Any) -> dict[Hashable, int]:
        """The key -> id dict of a saved id -> key list whose ``removed`` ids are holes."""
        if not isinstance(keys, list):
            raise IncompatibleStateError(f"the key table of this FaissIndex is a {type(keys).__name__}, not a list.")
        holes = set(np.asarray(removed if removed is not None else [], dtype=np.int64).tolist())
        try:
            table = {key: id_ for id_, key in enumerate(keys) if id_ not in holes}
        except TypeError:
            raise IncompatibleStateError("the key table of this FaissIndex holds unhashable keys.") from None
        if len(table) != len(keys) - len(holes):
            raise IncompatibleStateError("the key table of this FaissIndex holds the same key twice.")
        return table

    def _attach(self, index: Any, device: str, mapped: bool = False) -> None:
        """Adopt ``index`` (a CPU ``faiss.Index`` or None) read back for the key table ``self._keys``,
        then move it to ``device``."""
        self._use_index(index)
        self._device = "cpu"
        self._mapped = False
        if index is None:
            if self._ids:
                raise CorruptFileError(f"this FaissIndex has {len(self._ids)} keys but no FAISS index.")
            return
        if index.ntotal != len(self._ids):
            raise CorruptFileError(
                f"the saved FAISS index holds {index.ntotal} vectors but its key table "
                f"{len(self._ids)} keys. Rebuild the index."
            )
        self._device = device
        self._place()
        self._mapped = mapped and self._device == "cpu"  # a GPU copy is ordinary memory
