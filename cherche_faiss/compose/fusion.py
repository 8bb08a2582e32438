"""Pure score-fusion functions: several ranked lists of hits in, one out.

They never mutate their inputs and do not depend on the order of the lists
(sums use ``math.fsum``, which is exactly rounded, and ties are broken by best
rank, then by the key's text).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from ..exceptions import InvalidInputError

__all__ = ["reciprocal_rank_fusion", "weighted_score_fusion", "vote_fusion", "normalize_scores", "FUSIONS"]

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


def _weights(rankings: Sequence[Hits], weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise InvalidInputError(f"got {len(weights)} weights for {len(rankings)} rankings; pass one weight per model.")
    return [float(weight) for weight in weights]


def _fuse(
    key: str,
    rankings: Sequence[Hits],
    contributions: Sequence[Sequence[float]],
    require_all: bool,
    primary: Mapping[Hashable, float] | None = None,
) -> list[dict]:
    """Sum per-document contributions and sort; the best-ranked hit gives the fields."""
    parts: dict[Hashable, list[float]] = {}
    best: dict[Hashable, tuple[int, int, Mapping]] = {}  # key -> (rank, list number, hit)
    for number, (hits, values) in enumerate(zip(rankings, contributions)):
        seen: set = set()
        for rank, (hit, value) in enumerate(zip(hits, values)):
            document = hit[key]
            if document in seen:  # a list naming a document twice counts it once
                continue
            seen.add(document)
            parts.setdefault(document, []).append(value)
            if document not in best or (rank, number) < best[document][:2]:
                best[document] = (rank, number, hit)
    fused = {document: math.fsum(values) for document, values in parts.items()}
    if require_all:
        fused = {document: score for document, score in fused.items() if len(parts[document]) == len(rankings)}

    def order(document: Hashable) -> tuple:
        lead = -primary[document] if primary is not None else 0.0
        return (lead, -fused[document], best[document][0], str(document))

    return [
        {
            **best[document][2],
            key: document,
            "similarity": primary[document] if primary is not None else fused[document],
        }
        for document in sorted(fused, key=order)
    ]


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
    if c < 0:
        raise InvalidInputError(f"c must be >= 0, got {c!r}; 60 is the usual value.")
    weight = _weights(rankings, weights)
    contributions = [[w / (c + rank) for rank in range(1, len(hits) + 1)] for hits, w in zip(rankings, weight)]
    return _fuse(key, rankings, contributions, require_all)


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
    weight = _weights(rankings, weights)
    contributions = [
        [w * value for value in normalize_scores([hit["similarity"] for hit in hits], normalization)]
        for hits, w in zip(rankings, weight)
    ]
    return _fuse(key, rankings, contributions, require_all)


def vote_fusion(
    key: str, rankings: Sequence[Hits], c: float = 60.0, weights: Sequence[float] | None = None
) -> list[dict]:
    """Each model votes for the documents it returns; the similarity is the
    (weighted) number of votes, ties broken by reciprocal rank fusion."""
    weight = _weights(rankings, weights)
    votes = _fuse(key, rankings, [[w] * len(hits) for hits, w in zip(rankings, weight)], require_all=False)
    primary = {hit[key]: hit["similarity"] for hit in votes}
    contributions = [[w / (c + rank) for rank in range(1, len(hits) + 1)] for hits, w in zip(rankings, weight)]
    return _fuse(key, rankings, contributions, require_all=False, primary=primary)


FUSIONS = ("rrf", "weighted")
