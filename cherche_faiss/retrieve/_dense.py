"""What the dense retrievers share: a FaissIndex of document vectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core.candidates import Candidates
from .._core.progress import batches
from ..index._raw import faiss_module
from ..index._search_params import SEARCH_PARAMETERS, check_search_params
from ..index.dense import DenseVectors
from ..index.faiss import FaissIndex
from .base import Retriever

__all__ = ["DenseRetriever", "make_index"]


def make_index(index: Any, normalize: bool, device: str, search_params: dict | None = None) -> FaissIndex:
    """A FaissIndex from what users pass as ``index``: None, a factory string
    (``"auto"`` included), a ``faiss.Index`` (its metric kept) or a FaissIndex (used as it is)."""
    if isinstance(index, FaissIndex):
        return index.set_search_params(**search_params) if search_params else index
    return FaissIndex(
        metric=metric_of(index),
        factory="Flat" if index is None else index,
        normalize=normalize,
        device=device,
        search_params=search_params,
    )


def metric_of(index: Any) -> str:
    """The metric of what users pass as ``index``: a ``faiss.Index``'s own (Cherche's examples pass
    ``faiss.IndexFlatL2(d)``), else the inner product."""
    if index is None or isinstance(index, str):
        return "ip"
    faiss = faiss_module()
    return "l2" if isinstance(index, faiss.Index) and index.metric_type == faiss.METRIC_L2 else "ip"


class DenseRetriever(DenseVectors, Retriever):
    """A retriever whose document vectors live in ``self.index`` (a FaissIndex).

    Search parameters of approximate indexes are set per retriever
    (``search_params={"nprobe": 64}``, :meth:`set_search_params`, :meth:`tune`)
    or per call (``retriever(q, nprobe=128)``), without rebuilding.
    """

    _arrays = True
    _call_keywords = frozenset({"filter", *SEARCH_PARAMETERS})

    def __init__(
        self,
        key: str,
        on: Any,
        normalize: bool,
        k: int | None,
        batch_size: int,
        index: Any,
        device: str,
        search_params: dict | None = None,
        filter_fields: Any = None,
    ) -> None:
        super().__init__(key=key, on=on, k=k, batch_size=batch_size, filter_fields=filter_fields)
        self.normalize = bool(normalize)
        self.device = device
        self.search_params = check_search_params(search_params)
        self.index = make_index(index, self.normalize, device, self.search_params)

    def _call_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return check_search_params({name: kwargs[name] for name in SEARCH_PARAMETERS if name in kwargs})

    def set_search_params(self, **search_params: int) -> DenseRetriever:
        """Default ``nprobe``/``efSearch`` of this retriever's index; returns ``self``."""
        self.index.set_search_params(**search_params)
        self.search_params = {**self.search_params, **check_search_params(search_params)}
        return self

    # The same parameters as FaissIndex.tune and tune_search_params on purpose: this one also takes query
    # texts, encodes them, and keeps the result as the retriever's search_params.
    def tune(
        self,
        target_recall: float = 0.95,
        k: int = 10,
        sample_size: int = 256,
        seed: int = 0,
        show_progress: bool = True,
        queries: Any = None,
    ) -> Any:
        """Tune the index's ``nprobe``/``efSearch`` to ``target_recall`` on a sample of the
        documents' own vectors, or on sample ``queries`` (texts, encoded with the query
        encoder; see :func:`cherche_faiss.index.tuning.tune_search_params`)."""
        if queries is not None and hasattr(self, "query_encoder"):
            texts = [queries] if isinstance(queries, str) else list(queries)
            queries = self.query_encoder.encode(texts, batch_size=self.batch_size)
        result = self.index.tune(
            target_recall=target_recall,
            k=k,
            sample_size=sample_size,
            seed=seed,
            show_progress=show_progress,
            queries=queries,
        )
        self.search_params = dict(result.params)
        return result

    def _allowed_keys(self, filter: Any) -> Any:  # noqa: A002
        """For a subclass that overrides ``_search``: ``keys -> bool array`` from the columns over FAISS ids."""
        if filter is None:
            return None
        mask = self._filter_mask(filter)

        def allowed(keys: Any) -> np.ndarray:
            ids = self.index.ids_of(keys)
            return (ids >= 0) & mask[np.maximum(ids, 0)] if len(mask) else np.zeros(len(ids), dtype=bool)

        return allowed

    def _filtered_candidates(
        self,
        queries: list[str],
        k: int | None,
        batch_size: int,
        filter: Any,
        options: dict[str, Any],  # noqa: A002
    ) -> Candidates:
        """The hits among the documents ``filter`` allows, filtered inside the index's search (see
        :mod:`cherche_faiss.index._filtered`)."""
        mask = self._filter_mask(filter)
        parts = [self._search_arrays(list(batch), k, mask=mask, **options) for batch in batches(queries, batch_size)]
        return Candidates.concatenate(parts, parts[0].space)

    def _candidates_for(
        self,
        vectors: np.ndarray,
        k: int | None,
        prepared: bool = False,
        mask: np.ndarray | None = None,
        **search_params: int,
    ) -> Candidates:
        """The FAISS ids (of ``self.index.key_space``) and similarities of each query's hits (only ids
        ``mask`` allows, when given)."""
        similarities, ids = self.index.search_arrays(
            vectors, k or len(self.index), prepared=prepared, mask=mask, **search_params
        )
        rows, scores = [], []
        for id_row, score_row in zip(ids, similarities):
            # FAISS pads missing results with id -1 at the end of the row.
            found = len(id_row) if id_row[-1] >= 0 else int(np.argmin(id_row >= 0))
            rows.append(id_row[:found])
            scores.append(score_row[:found])
        return Candidates(self.index.key_space, rows, scores)
