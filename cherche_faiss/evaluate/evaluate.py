"""Evaluate a retriever, ranker or pipeline on judged queries."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from .._core.progress import batches, progress
from .._core.validation import check_positive_int
from ..exceptions import InvalidInputError
from .metrics import Judgments, hit_rate_at_k, mrr_at_k, ndcg_at_k, precision_at_k, r_precision, recall_at_k

__all__ = ["evaluate", "METRICS"]

METRICS: dict[str, Callable] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "mrr": mrr_at_k,
    "hit_rate": hit_rate_at_k,
}


def evaluate(
    search: Callable,
    queries: Mapping[Any, str],  # any hashable ids (Mapping's key type is invariant)
    qrels: Mapping[Any, Judgments],
    ks: tuple[int, ...] = (1, 10, 100),
    key: str | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Mean of each metric over the judged queries.

    Parameters
    ----------
    search
        A retriever, ranker pipeline or any callable taking a list of query
        strings and returning one list of hits per query.
    queries
        Query id -> text.
    qrels
        Query id -> {document key -> relevance grade}; the queries evaluated
        are those of ``qrels``. Queries without any relevant judgment are left
        out (they would score 0 whatever the system does) and counted.
    ks
        Cut-offs; the search is asked for ``max(ks)`` hits.
    key
        The hits' key field (default: ``search.key``).

    Returns
    -------
    dict
        ``"ndcg@10"``, ``"recall@100"``, ... ``"r_precision"`` as floats, plus
        ``"queries"`` (evaluated) and ``"queries_without_judgments"``.
    """
    ks = tuple(check_positive_int(k, "ks", allow_none=False) for k in ks)
    if not ks:
        raise InvalidInputError("ks must name at least one cut-off, e.g. ks=(10,).")
    key = key or getattr(search, "key", None)
    if not isinstance(key, str):
        raise InvalidInputError("cannot tell the hits' key field: pass key='id' (the documents' id field).")
    unknown = [query_id for query_id in qrels if query_id not in queries]
    if unknown:
        raise InvalidInputError(
            f"qrels judge {len(unknown)} queries that are not in queries, e.g. {unknown[:3]}. "
            "Load queries and qrels from the same dataset."
        )
    judged = [query_id for query_id, judgments in qrels.items() if any(grade > 0 for grade in judgments.values())]
    if not judged:
        raise InvalidInputError("no query has a relevant judgment in qrels: there is nothing to evaluate.")
    top = max(ks)
    rankings: dict[Hashable, list] = {}
    bar = progress(len(judged), "evaluating", show_progress, unit="query")
    for batch in batches(judged, batch_size):
        results = search([queries[query_id] for query_id in batch], k=top)
        for query_id, hits in zip(batch, results):
            rankings[query_id] = [hit[key] for hit in hits]
        bar.update(len(batch))
    bar.close()
    scores: dict[str, Any] = {}
    for name, metric in METRICS.items():
        for k in ks:
            values = [metric(rankings[q], qrels[q], k) for q in judged]
            scores[f"{name}@{k}"] = sum(values) / len(values)
    scores["r_precision"] = sum(r_precision(rankings[q], qrels[q]) for q in judged) / len(judged)
    scores["queries"] = len(judged)
    scores["queries_without_judgments"] = len(qrels) - len(judged)
    return scores
