"""The retriever base class: query validation, batching, ``k`` handling and ``+``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from .._core.candidates import Candidates, KeyList, same_path
from .._core.component import Component
from .._core.keywords import check_keywords
from .._core.progress import batches
from .._core.tags import RETRIEVER, Tags
from .._core.validation import as_queries, check_component, check_k, check_on, check_positive_int
from ..compose.operators import ComposeMixin
from ..exceptions import NotIndexedError
from ..filters._host import Filterable, check_filter_fields

__all__ = ["ListedKeys", "Retriever"]


class Retriever(Filterable, ComposeMixin, Component):
    """Base of retrievers: ``retriever(q, k=None, batch_size=None, filter=None)``.

    A single query (a string) returns ``list[dict]``; a list of queries returns
    ``list[list[dict]]``; each hit is ``{key: ..., "similarity": float}``,
    best first. ``k`` at call time overrides the ``k`` of the constructor;
    ``None`` for both means every matching document. ``filter`` keeps only
    the documents it allows, before the top ``k`` (see ``docs/filtering.md``);
    a keyword argument the call does not use raises an error.
    """

    #: Keyword arguments a call takes besides ``q``, ``k`` and ``batch_size`` (see ``_core.keywords``).
    _call_keywords: frozenset[str] = frozenset({"filter"})

    #: Whether documents are read from their ``on`` fields (False for ``Embedding``: vectors are given).
    _reads_fields = True
    #: Whether this retriever answers :class:`Candidates` (:meth:`_search_arrays`) rather than hits
    #: (:meth:`_search`): a retriever written for the dict protocol alone keeps working everywhere.
    _arrays = False

    def __cherche_tags__(self) -> Tags:
        return Tags(role=RETRIEVER)

    def __init__(self, key: str, on: Any, k: int | None, batch_size: int, filter_fields: Any = None) -> None:
        if on is None and self._reads_fields:
            check_on(on)  # the message every component gives for a missing or malformed `on`
        self.key, self.on, self.k, self.batch_size = check_component(key, on, k, batch_size)
        self.filter_fields = check_filter_fields(filter_fields)

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
        if kwargs:
            check_keywords(self, kwargs, ("q", "k", "batch_size"))
        if self._answers_candidates():
            candidates, single = self._call_candidates(q, k, batch_size, None, **kwargs)
            hits = candidates.hits(self.key)
            return hits[0] if single else hits
        queries, single = as_queries(q)
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size") or self.batch_size
        self._check_indexed()
        results: list[list[dict]] = []
        options = self._call_options(kwargs)
        allowed = self._allowed_keys(kwargs.get("filter"))
        for batch in batches(queries, batch_size):
            if allowed is None:
                results.extend(self._search(list(batch), k, **options))
                continue
            # Every match, then the allowed ones, then the top k: the filter applies before the top k.
            for found in self._search(list(batch), None, **options):
                keep = allowed([hit[self.key] for hit in found]) if found else []
                results.append([hit for hit, kept in zip(found, keep) if kept][:k])
        return results[0] if single else results

    def _allowed_keys(self, filter: Any) -> Any:  # noqa: A002
        """None without a filter, else ``keys -> bool array`` (a retriever's columns are keyed by key)."""
        if filter is None:
            return None
        return self._keyed_columns().allows(filter)

    def _call_candidates(
        self, q: Any, k: int | None, batch_size: int | None, candidates: Candidates | None, **kwargs: Any
    ) -> tuple[Candidates, bool]:
        """:meth:`__call__` with its checks, answering :class:`Candidates` (and whether ``q`` was one
        query) instead of hits; a retriever ignores ``candidates``. For retrievers whose ``_arrays`` is
        true: pipelines and fusions pass candidates between such stages without building dicts."""
        queries, single = as_queries(q)
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size") or self.batch_size
        self._check_indexed()
        options = self._call_options(kwargs)
        filter = kwargs.get("filter")  # noqa: A001
        if filter is not None:
            return self._filtered_candidates(queries, k, batch_size, filter, options), single
        parts = [self._search_arrays(list(batch), k, **options) for batch in batches(queries, batch_size)]
        return Candidates.concatenate(parts, parts[0].space), single

    def _filtered_candidates(
        self,
        queries: list[str],
        k: int | None,
        batch_size: int,
        filter: Any,
        options: dict[str, Any],  # noqa: A002
    ) -> Candidates:
        """Every match of each query, then the allowed ones, then the top ``k`` (lexical retrievers; dense
        ones filter inside the index search instead)."""
        allowed = self._allowed_keys(filter)
        parts = []
        for batch in batches(queries, batch_size):
            found = self._search_arrays(list(batch), None, **options)
            rows, scores = [], []
            for found_rows, found_scores in zip(found.rows, found.scores):
                keep = allowed(found.space.keys_at(found_rows)) if len(found_rows) else np.zeros(0, dtype=bool)
                rows.append(found_rows[keep][:k])
                scores.append(found_scores[keep][:k])
            parts.append(Candidates(found.space, rows, scores))
        return Candidates.concatenate(parts, parts[0].space)

    def _call_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Options of :meth:`_search` taken from the call's keyword arguments (none by default;
        other keyword arguments are accepted and ignored, as in Cherche's pipelines)."""
        return {}

    def _answers_candidates(self) -> bool:
        """Whether calls go through :meth:`_call_candidates`: ``_arrays`` is set and no subclass
        overrides ``__call__`` or :meth:`_search` (a subclass that does keeps its hits in every call)."""
        return self._arrays and same_path(self, ("_search",))

    def _search(self, queries: list[str], k: int | None, **options: Any) -> list[list[dict]]:
        """Hits of each query of one batch (subclasses implement this, or :meth:`_search_arrays`)."""
        if not self._arrays:
            raise NotImplementedError
        return self._search_arrays(queries, k, **options).hits(self.key)

    def _search_arrays(self, queries: list[str], k: int | None, **options: Any) -> Candidates:
        """:class:`Candidates` of each query of one batch (subclasses whose ``_arrays`` is true)."""
        raise NotImplementedError


class ListedKeys:
    """Mixin of retrievers that number their documents by position in ``self._keys``, a list each
    change replaces (TfIdf, BM25): its key space is that list."""

    _keys: list[Hashable]
    _space: KeyList | None  # derived: excluded from pickles and saves, reset on load

    def _key_list(self) -> KeyList:
        """``self._keys`` as the key space of :class:`Candidates`, made again when the list is replaced."""
        space = self._space
        if space is None or space.keys is not self._keys:
            space = self._space = KeyList(self._keys)
        return space
