"""Extractive question answering at the end of a pipeline (Cherche's ``qa`` module)."""

from .qa import QA
from .reader import ExtractiveReader

__all__ = ["QA", "ExtractiveReader"]
