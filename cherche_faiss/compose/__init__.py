"""Composition of retrievers and rankers."""

from .pipeline import DocumentMap, Pipeline

__all__ = ["Pipeline", "DocumentMap"]
