"""What the micro-batcher runs in its worker thread: one batch of requests, one pipeline call per ``k``.

Nothing here touches the event loop or a future: the batcher (:mod:`.batching`)
hands a batch over and sets each request's future from the outcomes it gets back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..exceptions import InvalidInputError

__all__ = ["SearchFunction", "Outcome", "run_batch"]

logger = logging.getLogger(__name__)

#: ``search(q, k)`` with ``q`` a string or a list of strings, answering as a
#: Cherche pipeline does: a list of hits, or one list of hits per query.
SearchFunction = Callable[[Any, int], list]


class Job(Protocol):
    """One request as the worker sees it."""

    q: Any  # as the client sent it: a string or a list of strings
    queries: list[str]
    k: int

    @property
    def single(self) -> bool:
        """Whether ``q`` is one string (answered by a list of hits, not a list of lists)."""


@dataclass
class Outcome:
    """What the worker thread found for one request: hits or an exception."""

    hits: Any = None
    error: BaseException | None = None


def run_batch(search: SearchFunction, batch: Sequence[Job]) -> tuple[list[Outcome], int]:
    """Search every request of ``batch``, one call per ``k``; returns outcomes (in order) and the number of calls.

    If a batched call fails, or answers with the wrong shape, each of its
    requests runs alone, so that only the bad one fails.
    """
    outcomes: dict[int, Outcome] = {}
    calls = 0
    groups: dict[int, list[Job]] = {}
    for request in batch:
        groups.setdefault(request.k, []).append(request)
    for k, group in groups.items():
        if len(group) == 1:
            outcomes[id(group[0])] = _run_alone(search, group[0])
            calls += 1
            continue
        queries = [query for request in group for query in request.queries]
        calls += 1
        try:
            results = search(queries, k)
            _check_results(results, len(queries))
        except Exception as error:
            # Isolate the culprit: run each request alone, so only the bad one fails.
            logger.debug("a batch of %d requests failed (%r); running them one by one", len(group), error)
            for request in group:
                outcomes[id(request)] = _run_alone(search, request)
                calls += 1
            continue
        start = 0
        for request in group:
            hits = results[start : start + len(request.queries)]
            start += len(request.queries)
            outcomes[id(request)] = Outcome(hits=hits[0] if request.single else hits)
    return [outcomes[id(request)] for request in batch], calls


def _run_alone(search: SearchFunction, request: Job) -> Outcome:
    try:
        return Outcome(hits=search(request.q, request.k))
    except Exception as error:
        return Outcome(error=error)


def _check_results(results: Any, n: int) -> None:
    if not isinstance(results, list) or len(results) != n or not all(isinstance(hits, list) for hits in results):
        raise InvalidInputError(
            f"the pipeline returned {type(results).__name__} "
            f"{'of length ' + str(len(results)) if isinstance(results, list) else ''} for a list of {n} "
            "queries; a pipeline must return one list of hits per query."
        )
