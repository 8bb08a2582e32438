"""Retrievers: find candidate documents for a query (Cherche's ``retrieve`` module)."""

from .base import Retriever
from .embedding import Embedding
from .encoder import DPR, Encoder
from .tfidf import TfIdf

__all__ = ["Retriever", "TfIdf", "Encoder", "DPR", "Embedding"]
