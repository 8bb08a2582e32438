"""Query rewriters (Cherche's ``query`` module): they go at the head of a pipeline,
``query.Norvig(...) + retriever + ranker``, and every later stage searches their output."""

from .base import Query
from .norvig import Norvig
from .prf import PRF

__all__ = ["Query", "Norvig", "PRF"]
