"""Ranking metrics and the evaluation of pipelines on judged queries; ``evaluation``, Cherche's."""

from .evaluate import METRICS, evaluate
from .evaluation import evaluation
from .metrics import hit_rate_at_k, mrr_at_k, ndcg_at_k, precision_at_k, r_precision, recall_at_k

__all__ = [
    "evaluate",
    "evaluation",
    "METRICS",
    "precision_at_k",
    "recall_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "hit_rate_at_k",
    "r_precision",
]
