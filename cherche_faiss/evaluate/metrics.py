"""Pure ranking metrics: a ranked list of keys and graded judgments in, a float out.

``relevant`` maps a document key to its relevance grade; grades <= 0 count as
not relevant. nDCG uses linear gains (``gain = grade``), as trec_eval and BEIR do.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .._core.validation import check_positive_int

__all__ = ["precision_at_k", "recall_at_k", "mrr_at_k", "ndcg_at_k", "hit_rate_at_k", "r_precision"]

Ranking = Sequence[Hashable]
# Document key -> grade. Any hashable key: Mapping's key type is invariant, so Hashable would refuse dict[str, float].
Judgments = Mapping[Any, float]


def _relevant(relevant: Judgments) -> set:
    return {key for key, grade in relevant.items() if grade > 0}


def precision_at_k(ranking: Ranking, relevant: Judgments, k: int) -> float:
    """Share of the first ``k`` results that are relevant (a short list still divides by ``k``).

    >>> precision_at_k(["a", "b", "c"], {"a": 1, "c": 2}, k=2)
    0.5
    """
    k = check_positive_int(k, "k", allow_none=False)
    good = _relevant(relevant)
    return sum(1 for key in ranking[:k] if key in good) / k


def recall_at_k(ranking: Ranking, relevant: Judgments, k: int) -> float:
    """Share of the relevant documents found in the first ``k`` results (0 when none is relevant).

    >>> recall_at_k(["a", "b", "c"], {"a": 1, "c": 2, "d": 1}, k=2)
    0.3333333333333333
    """
    k = check_positive_int(k, "k", allow_none=False)
    good = _relevant(relevant)
    return sum(1 for key in ranking[:k] if key in good) / len(good) if good else 0.0


def mrr_at_k(ranking: Ranking, relevant: Judgments, k: int) -> float:
    """Reciprocal rank of the first relevant result within ``k`` (0 if none).

    >>> mrr_at_k(["a", "b", "c"], {"c": 1}, k=10)
    0.3333333333333333
    """
    k = check_positive_int(k, "k", allow_none=False)
    good = _relevant(relevant)
    for rank, key in enumerate(ranking[:k], start=1):
        if key in good:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranking: Ranking, relevant: Judgments, k: int) -> float:
    """Normalised discounted cumulative gain at ``k`` with graded relevance.

    >>> round(ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, k=2), 4)
    0.8597
    """
    k = check_positive_int(k, "k", allow_none=False)
    grades = {key: float(grade) for key, grade in relevant.items() if grade > 0}
    seen: set = set()
    gains = []
    for key in ranking[:k]:
        gains.append(grades.get(key, 0.0) if key not in seen else 0.0)  # a repeated key gains once
        seen.add(key)
    dcg = math.fsum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = math.fsum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def hit_rate_at_k(ranking: Ranking, relevant: Judgments, k: int) -> float:
    """1.0 if any of the first ``k`` results is relevant, else 0.0.

    >>> hit_rate_at_k(["a", "b"], {"b": 1}, k=1)
    0.0
    """
    k = check_positive_int(k, "k", allow_none=False)
    good = _relevant(relevant)
    return 1.0 if any(key in good for key in ranking[:k]) else 0.0


def r_precision(ranking: Ranking, relevant: Judgments) -> float:
    """Precision at R, R being the number of relevant documents (0 when none is relevant).

    >>> r_precision(["a", "x", "b"], {"a": 1, "b": 1})
    0.5
    """
    good = _relevant(relevant)
    return precision_at_k(ranking, relevant, len(good)) if good else 0.0
