"""Pure score-fusion functions: several ranked lists of hits in, one out.

They never mutate their inputs and do not depend on the order of the lists
(sums use ``math.fsum``, which is exactly rounded, and ties are broken by best
rank, then by the key's text).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidInputError

__all__ = [
    "FUSIONS",
    "Fused",
    "as_hits",
    "fuse_reciprocal_ranks",
    "fuse_votes",
    "fuse_weighted_scores",
    "normalize_scores",
    "reciprocal_rank_fusion",
    "vote_fusion",
    "weighted_score_fusion",
]

Hits = Sequence[Mapping[str, Any]]


def normalize_scores(scores: Sequence[float], method: str | None) -> list[float]:
    """Bring one list's similarities to a common scale.

    ``"minmax"`` maps them to [0, 1] (all equal: 1), ``"zscore"`` to zero mean
    and unit variance (all equal: 0), ``None`` keeps them.
    """
    scores = list(scores)
    if method is None or not scores:
        return scores
    if method == "minmax":
        low, high = min(scores), max(scores)
        return [1.0 if high == low else (score - low) / (high - low) for score in scores]
    if method == "zscore":
        mean = math.fsum(scores) / len(scores)
        deviation = math.sqrt(math.fsum((score - mean) ** 2 for score in scores) / len(scores))
        return [0.0 if deviation == 0 else (score - mean) / deviation for score in scores]
    raise InvalidInputError(f"normalization must be 'minmax', 'zscore' or None, got {method!r}.")


def _weights(count: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise InvalidInputError(f"got {len(weights)} weights for {count} rankings; pass one weight per model.")
    return [float(weight) for weight in weights]


@dataclass
class Fused:
    """What a fusion found for one query: ``documents`` (keys) best first, their fused ``scores``,
    and for each the ``(list number, rank)`` of its best-ranked appearance (whose hit gives the fields)."""

    documents: list[Hashable]
    scores: list[float]
    sources: list[tuple[int, int]]


def _fuse(
    rankings: Sequence[Sequence[Hashable]],
    contributions: Sequence[Sequence[float]],
    require_all: bool,
    primary: Mapping[Hashable, float] | None = None,
) -> Fused:
    """Sum per-document contributions and sort (``rankings``: each model's keys, best first)."""
    parts: dict[Hashable, list[float]] = {}
    best: dict[Hashable, tuple[int, int]] = {}  # key -> (rank, list number)
    for number, (documents, values) in enumerate(zip(rankings, contributions)):
        seen: set = set()
        for rank, (document, value) in enumerate(zip(documents, values)):
            if document in seen:  # a list naming a document twice counts it once
                continue
            seen.add(document)
            parts.setdefault(document, []).append(value)
            if document not in best or (rank, number) < best[document]:
                best[document] = (rank, number)
    fused = {document: math.fsum(values) for document, values in parts.items()}
    if require_all:
        fused = {document: score for document, score in fused.items() if len(parts[document]) == len(rankings)}

    def order(document: Hashable) -> tuple:
        lead = -primary[document] if primary is not None else 0.0
        return (lead, -fused[document], best[document][0], str(document))

    documents = sorted(fused, key=order)
    scores = [primary[document] if primary is not None else fused[document] for document in documents]
    return Fused(documents, scores, [best[document][::-1] for document in documents])


def as_hits(key: str, rankings: Sequence[Hits], fused: Fused) -> list[dict]:
    """The fused hits: each the fields of its best-ranked hit, with the key and the fused similarity."""
    return [
        {**rankings[number][rank], key: document, "similarity": score}
        for document, score, (number, rank) in zip(fused.documents, fused.scores, fused.sources)
    ]


def _keys_of(key: str, rankings: Sequence[Hits]) -> list[list[Hashable]]:
    return [[hit[key] for hit in hits] for hits in rankings]


def fuse_reciprocal_ranks(
    rankings: Sequence[Sequence[Hashable]],
    c: float = 60.0,
    weights: Sequence[float] | None = None,
    require_all: bool = False,
) -> Fused:
    """:func:`reciprocal_rank_fusion` of rankings given as keys, best first."""
    if c < 0:
        raise InvalidInputError(f"c must be >= 0, got {c!r}; 60 is the usual value.")
    weight = _weights(len(rankings), weights)
    contributions = [[w / (c + rank) for rank in range(1, len(ranked) + 1)] for ranked, w in zip(rankings, weight)]
    return _fuse(rankings, contributions, require_all)


def fuse_weighted_scores(
    rankings: Sequence[Sequence[Hashable]],
    similarities: Sequence[Sequence[float]],
    weights: Sequence[float] | None = None,
    normalization: str | None = "minmax",
    require_all: bool = False,
) -> Fused:
    """:func:`weighted_score_fusion` of rankings given as keys and their similarities, best first."""
    weight = _weights(len(rankings), weights)
    contributions = [
        [w * value for value in normalize_scores(values, normalization)] for values, w in zip(similarities, weight)
    ]
    return _fuse(rankings, contributions, require_all)


def fuse_votes(
    rankings: Sequence[Sequence[Hashable]], c: float = 60.0, weights: Sequence[float] | None = None
) -> Fused:
    """:func:`vote_fusion` of rankings given as keys, best first."""
    weight = _weights(len(rankings), weights)
    votes = _fuse(rankings, [[w] * len(ranked) for ranked, w in zip(rankings, weight)], require_all=False)
    primary = dict(zip(votes.documents, votes.scores))
    contributions = [[w / (c + rank) for rank in range(1, len(ranked) + 1)] for ranked, w in zip(rankings, weight)]
    return _fuse(rankings, contributions, require_all=False, primary=primary)


def reciprocal_rank_fusion(
    key: str,
    rankings: Sequence[Hits],
    c: float = 60.0,
    weights: Sequence[float] | None = None,
    require_all: bool = False,
) -> list[dict]:
    """Reciprocal rank fusion: ``score(d) = sum_i w_i / (c + rank_i(d))``, ranks from 1.

    Only ranks matter, so models whose similarities live on different scales
    (BM25 and cosine, say) combine without tuning. ``require_all`` keeps only
    documents found by every model (an intersection).

    Examples
    --------
    >>> a = [{"id": 1, "similarity": 9.0}, {"id": 2, "similarity": 5.0}]
    >>> b = [{"id": 2, "similarity": 0.9}, {"id": 3, "similarity": 0.8}]
    >>> [(hit["id"], round(hit["similarity"], 4)) for hit in reciprocal_rank_fusion("id", [a, b])]
    [(2, 0.0325), (1, 0.0164), (3, 0.0161)]
    """
    return as_hits(key, rankings, fuse_reciprocal_ranks(_keys_of(key, rankings), c, weights, require_all))


def weighted_score_fusion(
    key: str,
    rankings: Sequence[Hits],
    weights: Sequence[float] | None = None,
    normalization: str | None = "minmax",
    require_all: bool = False,
) -> list[dict]:
    """Weighted sum of normalised similarities; a model that misses a document adds 0.

    Examples
    --------
    >>> a = [{"id": 1, "similarity": 10.0}, {"id": 2, "similarity": 0.0}]
    >>> b = [{"id": 2, "similarity": 0.9}, {"id": 1, "similarity": 0.7}]
    >>> [(hit["id"], round(hit["similarity"], 3)) for hit in weighted_score_fusion("id", [a, b], weights=[1, 2])]
    [(2, 2.0), (1, 1.0)]
    """
    similarities = [[hit["similarity"] for hit in hits] for hits in rankings]
    fused = fuse_weighted_scores(_keys_of(key, rankings), similarities, weights, normalization, require_all)
    return as_hits(key, rankings, fused)


def vote_fusion(
    key: str, rankings: Sequence[Hits], c: float = 60.0, weights: Sequence[float] | None = None
) -> list[dict]:
    """Each model votes for the documents it returns; the similarity is the
    (weighted) number of votes, ties broken by reciprocal rank fusion."""
    return as_hits(key, rankings, fuse_votes(_keys_of(key, rankings), c, weights))


FUSIONS = ("rrf", "weighted")
