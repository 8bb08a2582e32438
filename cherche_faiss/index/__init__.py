"""FAISS indexes addressed by document keys."""

from .faiss import FaissIndex

__all__ = ["FaissIndex"]
