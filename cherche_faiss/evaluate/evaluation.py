"""Cherche's ``evaluate.evaluation``: precision, recall and F1 at small cut-offs, as percentages.

For new code :func:`cherche_faiss.evaluate.evaluate` (nDCG, recall, MRR ... as
floats, on BEIR-style qrels) is the richer tool; this function keeps Cherche's
inputs, definitions and output so that Cherche programs and their reported
figures carry over.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from .._core.validation import check_positive_int
from ..exceptions import InvalidInputError

__all__ = ["evaluation"]


class _Mean:
    """A running mean (of 0/1 hits, or of per-query ratios)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else 0.0


def evaluation(
    search: Callable,
    query_answers: Sequence[tuple[str, Sequence[Mapping]]],
    hits_k: Iterable[int] = range(1, 6, 1),
    batch_size: int | None = None,
    k: int | None = None,
) -> dict[str, str]:
    """Precision@k, Recall@k, F1@k and R-Precision of ``search`` on ``query_answers``, as in Cherche.

    Parameters
    ----------
    search
        A retriever or pipeline (its ``key`` names the documents' id field),
        called once with every query: ``search(q=[...], batch_size=batch_size, k=k)``.
    query_answers
        ``(query, relevant documents)`` pairs; each relevant document is a dict
        holding the key field.
    hits_k
        Cut-offs (0 is skipped).
    batch_size, k
        Passed to ``search``.

    Returns
    -------
    dict
        ``{"Precision@1": "63.06%", ..., "Recall@1": ..., "F1@1": ..., "R-Precision": ...}``,
        each a percentage with two decimals. As in Cherche, Precision@k is the
        share of relevant hits among all the hits in the first k of every query
        (a query with fewer hits weighs less), Recall@k the mean over queries,
        F1@k the harmonic mean of those two means, and R-Precision the mean
        share of relevant hits among each query's first R (R: its number of
        relevant documents).

    Examples
    --------
    >>> from cherche_faiss import evaluate, retrieve
    >>> documents = [{"id": 0, "title": "Paris"}, {"id": 1, "title": "Lyon"}, {"id": 2, "title": "Pau"}]
    >>> search = retrieve.TfIdf(key="id", on="title", documents=documents)
    >>> scores = evaluate.evaluation(search, [("paris", [documents[0]]), ("lyon", [documents[1]])], hits_k=[1, 2])
    >>> scores["Precision@1"], scores["Recall@2"], scores["R-Precision"]
    ('100.00%', '100.00%', '100.00%')
    >>> list(scores)
    ['Precision@1', 'Precision@2', 'Recall@1', 'Recall@2', 'F1@1', 'F1@2', 'R-Precision']
    """
    key = getattr(search, "key", None)
    if not isinstance(key, str):
        raise InvalidInputError("search has no key field: pass a retriever or pipeline built with key=...")
    cutoffs = [check_positive_int(cut, "hits_k", allow_none=False) for cut in hits_k if cut != 0]
    pairs = list(query_answers)
    if not pairs:
        raise InvalidInputError("query_answers is empty: pass (query, relevant documents) pairs.")
    answers = search(q=[query for query, _ in pairs], batch_size=batch_size, k=k)
    precision = {cut: _Mean() for cut in cutoffs}
    recall = {cut: _Mean() for cut in cutoffs}
    r_precision = _Mean()
    for (_, golds), hits in zip(pairs, answers):
        relevant: set[Hashable] = {gold[key] for gold in golds}
        found = [hit[key] in relevant for hit in hits]
        for cut in cutoffs:
            for is_relevant in found[:cut]:
                precision[cut].add(float(is_relevant))
            recall[cut].add(sum(found[:cut]) / len(relevant) if relevant else 0.0)
        r_precision.add(sum(found[: len(relevant)]) / len(relevant) if relevant else 0.0)
    scores: dict[str, Any] = {f"Precision@{cut}": precision[cut].value for cut in cutoffs}
    scores.update({f"Recall@{cut}": recall[cut].value for cut in cutoffs})
    for cut in cutoffs:
        p, r = precision[cut].value, recall[cut].value
        scores[f"F1@{cut}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    scores["R-Precision"] = r_precision.value
    return {name: f"{value:.2%}" for name, value in scores.items()}
