"""A pipeline stage that keeps the first ``k`` hits of each query."""

from __future__ import annotations

from typing import Any

from .._core.component import Component
from .._core.keywords import check_keywords
from .._core.tags import OTHER, Tags
from .._core.validation import check_positive_int
from ..compose.operators import ComposeMixin

__all__ = ["TopK"]


class TopK(ComposeMixin, Component):
    """Keep the first ``k`` hits of each query (``retriever + ranker + utils.TopK(k=2)``).

    Parameters
    ----------
    k
        Number of hits kept.

    Examples
    --------
    >>> from cherche_faiss import retrieve, utils
    >>> documents = [{"id": 0, "title": "Paris France"}, {"id": 1, "title": "Paris Texas"}]
    >>> search = retrieve.TfIdf(key="id", on="title", documents=documents) + utils.TopK(k=1)
    >>> [hit["id"] for hit in search("paris france")]
    [0]
    >>> utils.TopK(k=1)(documents=[[{"id": 0}, {"id": 1}], []])
    [[{'id': 0}], []]
    """

    def __cherche_tags__(self) -> Tags:
        return Tags(role=OTHER, needs_candidates=True)

    def __init__(self, k: int) -> None:
        self.k = check_positive_int(k, "k", allow_none=False)

    #: Keyword arguments a call takes besides ``q`` and ``documents``: ``batch_size``, which a pipeline
    #: passes every stage (see ``_core.keywords``).
    _call_keywords: frozenset[str] = frozenset({"batch_size"})

    def __call__(self, q: Any = None, documents: Any = None, **kwargs: Any) -> list:
        """The first ``k`` of ``documents`` (one list of hits, or one per query).

        Called as Cherche calls it, ``top_k(documents=hits)`` (or ``top_k(hits)``),
        or by a pipeline, ``top_k(q, documents=hits)``.
        """
        if kwargs:
            check_keywords(self, kwargs, ("q", "documents"))
        if documents is None:  # top_k(hits): Cherche's first parameter is the documents
            documents = q
        if not documents:
            return [] if documents is None else list(documents)
        if isinstance(documents[0], list):
            return [hits[: self.k] for hits in documents]
        return list(documents[: self.k])
