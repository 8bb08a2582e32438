"""Retrievers: find candidate documents for a query (Cherche's ``retrieve`` module)."""

from .base import Retriever
from .bm25 import BM25
from .embedding import Embedding
from .encoder import DPR, Encoder
from .flash import Flash
from .fuzz import Fuzz
from .lunr import Lunr
from .tfidf import TfIdf
from .vectorizer import NgramVectorizer

__all__ = ["Retriever", "BM25", "TfIdf", "Encoder", "DPR", "Embedding", "Lunr", "Flash", "Fuzz", "NgramVectorizer"]
