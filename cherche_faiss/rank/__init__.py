"""Rankers: re-order candidate documents for a query (Cherche's ``rank`` module)."""

from .base import Ranker
from .cross_encoder import CrossEncoder
from .embedding import Embedding
from .encoder import DPR, Encoder

__all__ = ["Ranker", "Encoder", "DPR", "Embedding", "CrossEncoder"]
