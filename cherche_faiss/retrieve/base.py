"""The retriever base class: query validation, batching, ``k`` handling and ``+``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._core.component import Component
from .._core.progress import batches
from .._core.tags import RETRIEVER, Tags
from .._core.validation import as_queries, check_component, check_k, check_on, check_positive_int
from ..compose.operators import ComposeMixin
from ..exceptions import NotIndexedError

__all__ = ["Retriever"]


class Retriever(ComposeMixin, Component):
    """Base of retrievers: ``retriever(q, k=None, batch_size=None)``.

    A single query (a string) returns ``list[dict]``; a list of queries returns
    ``list[list[dict]]``; each hit is ``{key: ..., "similarity": float}``,
    best first. ``k`` at call time overrides the ``k`` of the constructor;
    ``None`` for both means every matching document.
    """

    #: Whether documents are read from their ``on`` fields (False for ``Embedding``: vectors are given).
    _reads_fields = True

    def __cherche_tags__(self) -> Tags:
        return Tags(role=RETRIEVER)

    def __init__(self, key: str, on: Any, k: int | None, batch_size: int) -> None:
        if on is None and self._reads_fields:
            check_on(on)  # the message every component gives for a missing or malformed `on`
        self.key, self.on, self.k, self.batch_size = check_component(key, on, k, batch_size)

    def __len__(self) -> int:
        raise NotImplementedError

    def _repr_extra(self) -> dict[str, Any]:
        return {"documents": len(self)}

    def _check_indexed(self) -> None:
        if len(self) == 0:
            raise NotIndexedError(
                f"{type(self).__name__} holds no document yet: call .add(documents) (or pass "
                "documents= to the constructor) before searching."
            )

    def add(self, documents: list[Mapping], **kwargs: Any) -> Retriever:
        raise NotImplementedError

    def __call__(self, q: Any, k: int | None = None, batch_size: int | None = None, **kwargs: Any) -> list:
        queries, single = as_queries(q)
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size") or self.batch_size
        self._check_indexed()
        results: list[list[dict]] = []
        options = self._call_options(kwargs)
        for batch in batches(queries, batch_size):
            results.extend(self._search(list(batch), k, **options))
        return results[0] if single else results

    def _call_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Options of :meth:`_search` taken from the call's keyword arguments (none by default;
        other keyword arguments are accepted and ignored, as in Cherche's pipelines)."""
        return {}

    def _search(self, queries: list[str], k: int | None) -> list[list[dict]]:
        """Hits of each query of one batch (subclasses implement this)."""
        raise NotImplementedError
