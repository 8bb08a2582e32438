"""Ranking metrics and the evaluation of pipelines on judged queries."""

from .evaluate import METRICS, evaluate
from .metrics import hit_rate_at_k, mrr_at_k, ndcg_at_k, precision_at_k, r_precision, recall_at_k

__all__ = [
    "evaluate",
    "METRICS",
    "precision_at_k",
    "recall_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "hit_rate_at_k",
    "r_precision",
]
