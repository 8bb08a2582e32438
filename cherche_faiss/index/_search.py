"""Searching a :class:`~cherche_faiss.index.FaissIndex`, and its search parameters.

Queries against a flat inner-product index on the CPU are answered by
:func:`~cherche_faiss.index._exact.inner_product_top_k` over a zero-copy view
of FAISS' storage; every other index is searched by FAISS, with the search
parameters passed per call (see ``_search_params``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._core.validation import check_positive_int
from ._exact import inner_product_top_k
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
    metric: str
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
        return self.search_prepared(self.prepare(queries, "queries"), k, **search_params)

    def search_prepared(
        self, matrix: np.ndarray, k: int, **search_params: int
    ) -> tuple[list[list[float]], list[list[Hashable]]]:
        """:meth:`search` for queries already validated and normalised by :meth:`prepare`
        (callers that check a whole batch once, then search it in chunks)."""
        self.check_indexed()
        k = min(check_positive_int(k, "k", allow_none=False), len(self._table))
        params = self._default_search_params()
        if search_params:
            params.update(check_search_params(search_params, "search parameters"))
        scores, ids = self.search_ids(matrix, k, params)
        keys_by_id = self._table.by_id
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
        # skip BLAS (slower than FAISS' own search there), so FAISS searches those.
        if flat is not None and flat[0].flags.aligned:
            vectors, id_map = flat
            scores, rows = inner_product_top_k(vectors, matrix, k)
            return scores, id_map[rows]
        parameters = self._faiss_parameters(params)
        scores, ids = self._index.search(matrix, k, params=parameters)
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
