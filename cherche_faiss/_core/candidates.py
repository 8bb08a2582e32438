"""Candidates as arrays: how hits travel between the stages of a pipeline.

A retriever finds, for each query, documents and scores; a ranker re-scores
them; a fusion merges several such lists. Handing those between stages as
lists of ``{key: ..., "similarity": ...}`` dicts costs a dict per candidate
and a key lookup per candidate in every ranker. Inside a pipeline they travel
as :class:`Candidates` instead: per query, an int64 array of **rows** into a
:class:`KeySpace` (the retriever's own numbering of its documents) and an
array of scores, best first. Dicts are built once, for the final ``k`` hits
(:meth:`Candidates.hits`).

A ranker needs its own FAISS ids for the candidates: :func:`translate` maps
rows of any key space to them through a per-(space, ranker) array that is
filled on demand and reused across calls while neither side changes, so that
steady traffic looks no key up at all.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["Candidates", "KeyList", "KeySpace", "answers_candidates", "same_path", "translate"]


class KeySpace(Protocol):
    """A numbering of documents: row ``i`` is a key. ``version`` changes whenever a row's key may have."""

    version: int

    def keys_at(self, rows: np.ndarray) -> list[Any]:
        """The keys of ``rows`` (an int64 array), as a list."""
        ...


class KeyList:
    """An immutable list of keys as a :class:`KeySpace` (TfIdf and BM25 number their documents so).

    Its owner makes a new one whenever its keys change, so ``version`` is always 0.
    """

    __slots__ = ("__weakref__", "keys")
    version = 0

    def __init__(self, keys: Sequence[Hashable]) -> None:
        self.keys = keys

    def keys_at(self, rows: np.ndarray) -> list[Any]:
        keys = self.keys
        return [keys[row] for row in rows.tolist()]

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Candidates:
    """Each query's documents (``rows`` of ``space``) and ``scores``, best first.

    Attributes
    ----------
    space
        The :class:`KeySpace` the rows refer to.
    rows
        One int64 array per query.
    scores
        One float array per query, as long as its rows (float32 or float64: the
        hits report ``float(score)``).
    """

    space: KeySpace
    rows: list[np.ndarray]
    scores: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.rows)

    def hits(self, key: str, k: int | None = None) -> list[list[dict]]:
        """``[{key: ..., "similarity": float}, ...]`` per query, the first ``k`` of each (all: None)."""
        keys_at = self.space.keys_at
        results = []
        for rows, scores in zip(self.rows, self.scores):
            if k is not None:
                rows, scores = rows[:k], scores[:k]
            results.append([{key: found, "similarity": score} for found, score in zip(keys_at(rows), scores.tolist())])
        return results

    def head(self, k: int | None) -> Candidates:
        """The first ``k`` candidates of each query (all: None)."""
        if k is None:
            return self
        return Candidates(self.space, [rows[:k] for rows in self.rows], [scores[:k] for scores in self.scores])

    def slice(self, start: int, stop: int) -> Candidates:
        """Queries ``start:stop``."""
        return Candidates(self.space, self.rows[start:stop], self.scores[start:stop])

    @staticmethod
    def concatenate(parts: Sequence[Candidates], space: KeySpace) -> Candidates:
        """The queries of ``parts`` (all of ``space``) one after another."""
        return Candidates(
            space,
            [rows for part in parts for rows in part.rows],
            [scores for part in parts for scores in part.scores],
        )


# target (the object whose ids rows are translated to) -> {id(space): _Translation}
_TRANSLATIONS: weakref.WeakKeyDictionary[Any, dict[int, _Translation]] = weakref.WeakKeyDictionary()
# Key spaces remembered per target: a pipeline has a few; fusions make one per call (not worth keeping).
_SPACES_KEPT = 8
_NOT_LOOKED_UP = -2


@dataclass
class _Translation:
    space: KeySpace
    space_version: int
    target_space: Any
    target_version: int
    ids: np.ndarray  # target id of each row, -1: not held by the target, -2: not looked up yet


def translate(space: KeySpace, rows: np.ndarray, target: Any, target_space: Any, ids_of: Any) -> np.ndarray:
    """The ids ``target`` gives the keys of ``rows`` of ``space`` (-1 for keys it does not hold).

    Parameters
    ----------
    space
        The key space of the rows.
    rows
        int64 array.
    target
        The object the ids belong to (a FaissIndex), weakly referenced as the cache's owner.
    target_space
        Its key table: the cached ids are dropped when it is replaced or its ``version`` changes.
    ids_of
        ``keys -> int64 ids`` of the target (-1 for keys not held).

    Each row's id is looked up once and remembered while neither ``space`` nor
    ``target_space`` changes.
    """
    if not len(rows):
        return np.empty(0, dtype=np.int64)
    translations = _TRANSLATIONS.setdefault(target, {})
    entry = translations.get(id(space))
    if (
        entry is None
        or entry.space is not space
        or entry.space_version != space.version
        or entry.target_space is not target_space
        or entry.target_version != target_space.version
    ):
        if entry is None and len(translations) >= _SPACES_KEPT:
            translations.pop(next(iter(translations)))
        size = int(rows.max()) + 1
        entry = _Translation(
            space,
            space.version,
            target_space,
            target_space.version,
            np.full(size, _NOT_LOOKED_UP, dtype=np.int64),
        )
        translations[id(space)] = entry
    if int(rows.max()) >= len(entry.ids):  # a longer space than seen so far (same version: rows appended)
        grown = np.full(int(rows.max()) + 1, _NOT_LOOKED_UP, dtype=np.int64)
        grown[: len(entry.ids)] = entry.ids
        entry.ids = grown
    ids = entry.ids[rows]
    missing = ids == _NOT_LOOKED_UP
    if missing.any():
        wanted = np.unique(rows[missing])
        entry.ids[wanted] = ids_of(space.keys_at(wanted))
        ids = entry.ids[rows]
    return ids


def answers_candidates(model: Any) -> bool:
    """Whether a pipeline or fusion may call ``model._call_candidates(q, k, batch_size, candidates)``
    instead of ``model(...)``: the model says so (``_answers_candidates``), else it does not."""
    check = getattr(model, "_answers_candidates", None)
    return bool(check()) if callable(check) else False


def same_path(model: Any, hooks: Sequence[str] = ()) -> bool:
    """Whether the class that gives ``model`` its ``_call_candidates`` also gives it its ``__call__`` and
    ``hooks``: a subclass that overrides one of those (to change its hits) is then called as it wrote it,
    never bypassed by the candidates path."""
    cls = type(model)
    owner = next((klass for klass in cls.__mro__ if "_call_candidates" in vars(klass)), None)
    return owner is not None and all(getattr(cls, name) is getattr(owner, name) for name in ("__call__", *hooks))
