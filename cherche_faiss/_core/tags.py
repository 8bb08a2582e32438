"""What a component can do in a pipeline, declared once (after scikit-learn's estimator tags).

Composition, the server and the contract suite ask :func:`tags` instead of
guessing from class names: a retriever finds candidates for a query on its
own, a ranker orders candidates it is given (``documents=``), a document map
turns keys back into whole documents. Fusions and pipelines answer for their
members (a fusion of rankers is a ranker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Tags", "tags", "RETRIEVER", "RANKER", "DOCUMENTS", "PIPELINE", "QUERY", "READER", "OTHER"]

RETRIEVER = "retriever"
RANKER = "ranker"
DOCUMENTS = "documents"
PIPELINE = "pipeline"
QUERY = "query"
READER = "reader"
OTHER = "other"


@dataclass(frozen=True)
class Tags:
    """The capabilities of one component.

    Attributes
    ----------
    role
        ``"retriever"``, ``"ranker"``, ``"documents"``, ``"pipeline"``, ``"query"``
        (rewrites the queries before the first retriever: ``query.Norvig``),
        ``"reader"`` (reads the final candidates: ``qa.QA``) or ``"other"``
        (a plain callable in a pipeline).
    needs_candidates
        Called as ``model(q, documents=candidates)``: it ranks what it is given.
    """

    role: str = OTHER
    needs_candidates: bool = False


def tags(model: Any) -> Tags:
    """The :class:`Tags` of ``model``; a plain callable has the default ones (a stage that answers ``q``).

    Examples
    --------
    >>> from cherche_faiss import rank, retrieve
    >>> from cherche_faiss.encoders import HashingEncoder
    >>> tags(retrieve.TfIdf(key="id", on="title"))
    Tags(role='retriever', needs_candidates=False)
    >>> tags(rank.Encoder(key="id", on="title", encoder=HashingEncoder()))
    Tags(role='ranker', needs_candidates=True)
    """
    declared = getattr(model, "__cherche_tags__", None)
    return declared() if callable(declared) else Tags()
