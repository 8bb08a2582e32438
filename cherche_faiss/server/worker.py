"""What the micro-batcher runs in its worker thread: one batch of requests, one pipeline call per ``k`` and filter.

Nothing here touches the event loop or a future: the batcher (:mod:`.batching`)
hands a batch over and sets each request's future from the outcomes it gets back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..exceptions import InvalidFilterError, InvalidInputError

__all__ = ["SearchFunction", "Outcome", "filter_key", "run_batch"]

logger = logging.getLogger(__name__)

#: ``search(q, k)`` with ``q`` a string or a list of strings, answering as a
#: Cherche pipeline does: a list of hits, or one list of hits per query. A
#: request with a filter is searched with ``search(q, k, filter=...)``.
SearchFunction = Callable[..., list]


class Job(Protocol):
    """One request as the worker sees it."""

    q: Any  # as the client sent it: a string or a list of strings
    queries: list[str]
    k: int
    filter: Any  # None, or what the pipeline is given as filter=
    filter_key: str | None  # equal for requests whose filters are the same (canonical JSON)

    @property
    def single(self) -> bool:
        """Whether ``q`` is one string (answered by a list of hits, not a list of lists)."""


def filter_key(filter: Any) -> str | None:  # noqa: A002 - the pipelines' keyword
    """A string equal for two filters only when they are the same filter (None for no filter).

    JSON filters (what the server receives) are keyed by their canonical JSON,
    which tells ``1``, ``1.0`` and ``true`` apart (Python's ``==`` does not).
    Anything else is keyed by its identity: only requests holding the same
    object share a call.

    Examples
    --------
    >>> filter_key({"b": 1, "a": [1, 2]}) == filter_key({"a": [1, 2], "b": 1})
    True
    >>> filter_key({"a": 1}) == filter_key({"a": True}), filter_key(None)
    (False, None)
    """
    if filter is None:
        return None
    try:
        return "json:" + json.dumps(filter, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return f"object:{id(filter)}"


@dataclass
class Outcome:
    """What the worker thread found for one request: hits or an exception."""

    hits: Any = None
    error: BaseException | None = None


def run_batch(search: SearchFunction, batch: Sequence[Job]) -> tuple[list[Outcome], int]:
    """Search every request of ``batch``, one call per ``k`` and filter; returns outcomes (in order) and the
    number of calls.

    Only requests with the same ``k`` and the same filter share a call: a
    filter applies to every query of a call. If a batched call fails, or
    answers with the wrong shape, each of its requests runs alone, so that
    only the bad one fails; a filter the pipeline refuses
    (:class:`~cherche_faiss.exceptions.InvalidFilterError`) fails the whole
    group, whose requests all sent it.
    """
    outcomes: dict[int, Outcome] = {}
    calls = 0
    groups: dict[tuple[int, str | None], list[Job]] = {}
    for request in batch:
        groups.setdefault((request.k, request.filter_key), []).append(request)
    for (k, _), group in groups.items():
        if len(group) == 1:
            outcomes[id(group[0])] = _run_alone(search, group[0])
            calls += 1
            continue
        queries = [query for request in group for query in request.queries]
        calls += 1
        try:
            results = _call(search, queries, k, group[0].filter)
            _check_results(results, len(queries))
        except InvalidFilterError as error:
            for request in group:  # the same filter, whatever the queries: no request would pass alone
                outcomes[id(request)] = Outcome(error=error)
            continue
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


def _call(search: SearchFunction, q: Any, k: int, filter: Any) -> Any:  # noqa: A002 - the pipelines' keyword
    # Without a filter, the call a pipeline that knows nothing of filters takes.
    return search(q, k) if filter is None else search(q, k, filter=filter)


def _run_alone(search: SearchFunction, request: Job) -> Outcome:
    try:
        return Outcome(hits=_call(search, request.q, request.k, request.filter))
    except Exception as error:
        return Outcome(error=error)


def _check_results(results: Any, n: int) -> None:
    if not isinstance(results, list) or len(results) != n or not all(isinstance(hits, list) for hits in results):
        raise InvalidInputError(
            f"the pipeline returned {type(results).__name__} "
            f"{'of length ' + str(len(results)) if isinstance(results, list) else ''} for a list of {n} "
            "queries; a pipeline must return one list of hits per query."
        )
