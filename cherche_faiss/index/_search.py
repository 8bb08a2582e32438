"""Searching a :class:`~cherche_faiss.index.FaissIndex`, and its search parameters.

Queries against a flat inner-product index on the CPU are answered by
:func:`~cherche_faiss.index._exact.inner_product_top_k` over a zero-copy view
of FAISS' storage; every other index is searched by FAISS, with the search
parameters passed per call (see ``_search_params``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._core.validation import check_positive_int, row_squares
from ._exact import inner_product_top_k
from ._filtered import filtered_search
from ._keys import KeyTable
from ._raw import hnsw_exhaustive_ids
from ._search_params import (
    check_search_params,
    faiss_search_parameters,
    index_kind,
    ivf_lists,
)
from .auto import IndexChoice
from .tuning import TuningResult, tune_search_params

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Self

    from .faiss import FaissIndex

__all__ = ["SearchMixin"]


# Distinct (index, parameters) pairs whose faiss.SearchParameters are kept.
_PARAMETERS_KEPT = 64
_FLOAT32 = np.dtype(np.float32)
_INFINITY = float("inf")
_isfinite = math.isfinite


_SWIG_PTR: list[Any] = []  # faiss.swig_ptr, once faiss is imported (on first use, as everywhere)


def _swig_ptr() -> Any:
    if not _SWIG_PTR:
        import faiss

        _SWIG_PTR.append(faiss.swig_ptr)
    return _SWIG_PTR[0]


class SearchMixin:
    """``search`` and the search parameters of a FaissIndex.

    Mixed into :class:`~cherche_faiss.index.FaissIndex`, whose attributes and
    ``prepare``, ``check_indexed``, ``factory_used`` and ``_flat_storage`` it uses.
    """

    _index: Any
    _table: KeyTable
    _choice: IndexChoice | None
    # (id(index), params) -> (index, faiss.SearchParameters): see _faiss_parameters.
    _parameters_cache: dict[tuple, tuple[Any, Any]]
    # (index, choice, search_params, faiss.SearchParameters) of the defaults: see _default_parameters.
    _defaults: tuple | None
    _dimension: int | None  # the index's d, read once per index (see FaissIndex._use_index)
    metric: str
    normalize: bool
    search_params: dict[str, int]

    if TYPE_CHECKING:  # provided by FaissIndex

        @property
        def factory_used(self) -> str: ...
        def prepare(self, vectors: Any, name: str = "queries") -> np.ndarray: ...
        def check_indexed(self) -> None: ...
        def _flat_storage(self) -> tuple[np.ndarray, np.ndarray] | None: ...

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
        if not search_params:
            found = self._search_one(queries, k)
            if found is not None:
                return found
        return self.search_prepared(self.prepare(queries, "queries"), k, **search_params)

    def _search_one(self, query: Any, k: Any) -> tuple[list[list[float]], list[list[Hashable]]] | None:
        """:meth:`search` of one float32, C-contiguous query with the default parameters, without the
        general checks (see :meth:`_one_query`); None when anything would need them."""
        found = self._one_query(query, k)
        return None if found is None else self._hits(found[0], found[1], self._default_parameters())

    def _one_query(self, query: Any, k: Any) -> tuple[np.ndarray, int] | None:
        """``(matrix, k)`` of one float32, C-contiguous query (``(d,)`` or ``(1, d)``), validated and
        normalised without the general checks, ``k`` clamped; None when anything would need them.

        The cheap tests here admit only input the general path accepts, and the
        query is normalised exactly as :meth:`prepare` does it (the same row
        norm, the same float32 division), so the hits are the same; anything
        else (another dtype or shape, NaN or infinite values, a zero vector, an
        invalid ``k``, an empty index) goes the general way, which raises its
        usual errors.
        """
        if type(query) is not np.ndarray or query.dtype != _FLOAT32 or not query.flags.c_contiguous:
            return None
        if type(k) is not int or k < 1 or self._index is None:
            return None
        if query.ndim == 1:
            query = query[None, :]
        elif query.ndim != 2 or query.shape[0] != 1:
            return None
        held = len(self._table)
        if not held or query.shape[1] != self._dimension:
            return None
        if self.normalize:
            squares = row_squares(query)
            if not 0.0 < squares[0] < _INFINITY:  # NaN, infinite (or overflowing) values, a zero vector
                return None
            query = query / np.sqrt(squares)[:, None]
        elif not _isfinite(float(query[0] @ query[0])):
            return None  # NaN or infinite values (or values whose square overflows): checked the long way
        return query, min(k, held)

    def search_arrays(
        self, queries: Any, k: int, prepared: bool = False, mask: np.ndarray | None = None, **search_params: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` (or, ``prepared``, :meth:`search_prepared`) as arrays: similarities and FAISS
        ids ``(nq, k')``, ``k'`` being ``k`` clamped to the vectors held; a row's ids are -1 past
        the hits found. Map ids to keys with ``key_space.keys_at(ids)``.

        ``mask`` (one bool per FAISS id, ``key_space.next_id`` of them) restricts the hits to the ids
        it allows, planned by :func:`~cherche_faiss.index._filtered.filtered_search`.

        Internal API, for the library's own modules (candidates travel between pipeline stages as
        arrays); it may change.
        """
        if mask is not None:
            matrix = queries if prepared else self.prepare(queries, "queries")
            return self._search_filtered(matrix, k, mask, search_params)
        if not prepared and not search_params:
            found = self._one_query(queries, k)
            if found is not None:
                return self._search_with(found[0], found[1], self._default_parameters())
        matrix = queries if prepared else self.prepare(queries, "queries")
        return self._search_with(matrix, *self._checked_k_and_parameters(k, search_params))

    def _search_filtered(
        self, matrix: np.ndarray, k: int, mask: np.ndarray, search_params: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search_arrays` restricted to the FAISS ids ``mask`` allows."""
        self.check_indexed()
        k = min(check_positive_int(k, "k", allow_none=False), len(self._table))
        params = self._default_search_params()
        params.update(check_search_params(search_params, "search parameters"))
        if self._index is not None:
            faiss_search_parameters(self._index, params, self.factory_used)  # do they apply?
        mask = np.asarray(mask, dtype=bool)
        size = self._table.next_id
        if len(mask) != size:  # ids beyond the mask hold documents the filter's columns never saw
            mask = np.concatenate([mask, np.zeros(size - len(mask), dtype=bool)]) if len(mask) < size else mask[:size]
        return filtered_search(cast("FaissIndex", self), matrix, k, mask, params)

    def search_prepared(
        self, matrix: np.ndarray, k: int, **search_params: int
    ) -> tuple[list[list[float]], list[list[Hashable]]]:
        """:meth:`search` for queries already validated and normalised by :meth:`prepare`
        (callers that check a whole batch once, then search it in chunks)."""
        return self._hits(matrix, *self._checked_k_and_parameters(k, search_params))

    def _checked_k_and_parameters(self, k: int, search_params: dict[str, int]) -> tuple[int, Any]:
        """``k`` checked and clamped to the vectors held, and the FAISS parameters of a call."""
        self.check_indexed()
        k = min(check_positive_int(k, "k", allow_none=False), len(self._table))
        if not search_params:
            return k, self._default_parameters()
        params = self._default_search_params()
        params.update(check_search_params(search_params, "search parameters"))
        return k, self._faiss_parameters(params)

    def _hits(self, matrix: np.ndarray, k: int, parameters: Any) -> tuple[list[list[float]], list[list[Hashable]]]:
        """Similarities and keys of the ``k`` nearest vectors of each row of ``matrix``, as lists."""
        scores, ids = self._search_with(matrix, k, parameters)
        table = self._table
        if len(ids) == 1:
            row = ids[0]
            # FAISS pads missing results with id -1 at the end of the row.
            found = k if row[k - 1] >= 0 else int(np.argmin(row >= 0))
            return [scores[0, :found].tolist()], [table.keys_at(row[:found])]
        # One gather for the whole batch from an int64 column (padding ids read row 0, then are cut off).
        gathered = table.keys_at(np.maximum(ids, 0)) if table.int_column else None
        keys_by_id = table.by_id if gathered is None else []
        similarities, keys = [], []
        for number, (score_row, id_row) in enumerate(zip(scores.tolist(), ids.tolist())):
            found = k if id_row[-1] >= 0 else id_row.index(-1)
            similarities.append(score_row[:found])
            keys.append(gathered[number][:found] if gathered is not None else [keys_by_id[i] for i in id_row[:found]])
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
        return self._search_with(matrix, k, self._faiss_parameters(params))

    def _search_with(self, matrix: np.ndarray, k: int, parameters: Any) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search_ids` with the ``faiss.SearchParameters`` object (or None) already made."""
        flat = self._flat_storage()
        # A memory-mapped FAISS file leaves the vectors at an odd address: NumPy would then
        # skip BLAS (slower than FAISS' own search there), so FAISS searches those.
        if flat is not None and flat[0].flags.aligned:
            vectors, id_map = flat
            scores, rows = inner_product_top_k(vectors, matrix, k)
            return scores, id_map[rows]
        index = self._index
        search_c = getattr(index, "search_c", None)
        if (
            search_c is not None
            and matrix.dtype == _FLOAT32
            and matrix.ndim == 2
            and matrix.shape[1] == self._dimension
            and matrix.flags.c_contiguous
        ):
            # What faiss' own Index.search wrapper does once it has checked its input (checked here).
            n, pointer = len(matrix), _swig_ptr()
            scores = np.empty((n, k), dtype=np.float32)
            ids = np.empty((n, k), dtype=np.int64)
            search_c(n, pointer(matrix), k, pointer(scores), pointer(ids), parameters)
        else:
            scores, ids = index.search(matrix, k, params=parameters)
        return (-scores if self.metric == "l2" else scores), ids

    def exhaustive_ids(self, matrix: np.ndarray, k: int) -> np.ndarray:
        """FAISS ids of the ``k`` nearest stored vectors by exhaustive search (tuning's ground truth).

        Internal API, for the library's own modules (tuning); it may change.
        Every IVF list is scanned, an HNSW index's stored vectors are scanned
        without the graph; other indexes search as usual. ``matrix`` is
        prepared as for :meth:`search_ids`; the result is ``(nq, k)`` int64,
        ``-1`` padded.
        """
        kind = index_kind(self._index)
        if kind == "ivf":
            return self.search_ids(matrix, k, {"nprobe": ivf_lists(self._index)})[1]
        if kind == "hnsw":
            return hnsw_exhaustive_ids(self._index, matrix, k)
        return self.search_ids(matrix, k, {})[1]

    def _faiss_parameters(self, params: dict[str, int]) -> Any:
        """The ``faiss.SearchParameters`` of ``params``, built once per distinct value and index.

        They are never modified after construction, so concurrent searches share them safely.
        """
        if not params:
            return None
        cache = self._parameters_cache
        key = (id(self._index), tuple(sorted(params.items())))
        if key not in cache:
            if len(cache) > _PARAMETERS_KEPT:
                cache.clear()
            # The index is kept beside its parameters so that its id() cannot be reused meanwhile.
            cache[key] = (self._index, faiss_search_parameters(self._index, params, self.factory_used))
        return cache[key][1]

    def _default_parameters(self) -> Any:
        """``_faiss_parameters(_default_search_params())``, remembered while the index, its choice and
        ``search_params`` stay the same (a single query should not rebuild and sort a dict)."""
        known = self._defaults
        if (
            known is not None
            and known[0] is self._index
            and known[1] is self._choice
            and known[2] == self.search_params
        ):
            return known[3]
        parameters = self._faiss_parameters(self._default_search_params())
        self._defaults = (self._index, self._choice, dict(self.search_params), parameters)
        return parameters

    def _default_search_params(self) -> dict[str, int]:
        """What "auto" chose, overridden by ``search_params`` (given, set or tuned)."""
        defaults = dict(self._choice.search_params) if self._choice is not None else {}
        defaults.update(self.search_params)
        return defaults

    def set_search_params(self, **search_params: int) -> Self:
        """Set default search parameters, e.g. ``index.set_search_params(nprobe=64)``; returns ``self``."""
        params = check_search_params(search_params, "search parameters")
        if self._index is not None:
            faiss_search_parameters(self._index, params, self.factory_used)  # do they apply?
        self.search_params = {**self.search_params, **params}
        return self

    # The same parameters as tune_search_params, which it calls (and DenseRetriever.tune, which calls it).
    def tune(
        self,
        target_recall: float = 0.95,
        k: int = 10,
        sample_size: int = 256,
        seed: int = 0,
        show_progress: bool = True,
        queries: Any = None,
    ) -> TuningResult:
        """Set ``nprobe``/``efSearch`` to the cheapest value reaching ``target_recall``.

        See :func:`cherche_faiss.index.tuning.tune_search_params`; returns its
        :class:`~cherche_faiss.index.tuning.TuningResult`.
        """
        return tune_search_params(
            cast("FaissIndex", self),  # SearchMixin is only mixed into FaissIndex
            target_recall,
            k,
            sample_size,
            seed,
            apply=True,
            show_progress=show_progress,
            queries=queries,
        )
