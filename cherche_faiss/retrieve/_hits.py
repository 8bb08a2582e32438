"""Building the hits a search returns: ``{key: ..., "similarity": float}`` dicts."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

__all__ = ["make_hits"]


def make_hits(key: str, keys: Sequence[Hashable], similarities: Sequence[float]) -> list[dict]:
    """One fresh dict per result; ``similarities`` must already be Python floats."""
    return [{key: document_key, "similarity": similarity} for document_key, similarity in zip(keys, similarities)]
