"""What ``POST /search`` does once its body is valid: queue the search, wait for it, answer.

Kept apart from :mod:`.app` (the application and its routes). A library error
is a 400, a filter the pipeline refuses a 422, an overloaded or closing server
a 503, and a bug a 500 whose details stay in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from ..exceptions import (
    CherFaissError,
    InvalidFilterError,
    ServerClosedError,
    ServerOverloadedError,
    ShardUnavailableError,
)
from .service import SearchService

__all__ = ["search_endpoint", "filter_error", "too_deep_error"]

logger = logging.getLogger("cherche_faiss.server")


def _error(service: SearchService, status: int, detail: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    service.responses[status] += 1
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def search_endpoint(service: SearchService, request: Any, body: Any) -> Any:
    """``POST /search``: queue the request, wait for its batch, answer its hits (or the error's status)."""
    from fastapi.responses import Response

    try:
        if service.state == "idle":
            await service.start()  # served without the lifespan (e.g. mounted in another app)
        if body.filter is not None and not service.takes_filter:
            return filter_error(
                service,
                "filter",
                f"this server's pipeline ({type(service.pipeline).__name__}) takes no filter: send the search "
                "without one.",
            )
        future = service.batcher.submit(body.q, body.k, body.filter)
    except ServerOverloadedError as exc:  # refused before queueing: nothing to withdraw
        return _error(service, 503, str(exc), {"Retry-After": str(exc.retry_after)})
    except ServerClosedError as exc:
        return _error(service, 503, str(exc))
    try:
        hits = await _unless_disconnected(request, future)
    except (ServerClosedError, ShardUnavailableError) as exc:  # the server's fault (a lost shard): retry later
        return _error(service, 503, str(exc))
    except InvalidFilterError as exc:  # the filter does not apply to these documents: the client's to fix
        return filter_error(service, exc.path, str(exc))
    except CherFaissError as exc:
        return _error(service, 400, str(exc))
    except Exception:
        logger.exception("search failed for a valid request (k=%d)", body.k)
        return _error(service, 500, "the search failed on the server; its log says why.")
    if hits is _DISCONNECTED:
        service.disconnected += 1
        return Response(status_code=499)  # nobody reads it: the client has gone
    try:
        content = json.dumps({"hits": hits}, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain)
    except (TypeError, ValueError):
        logger.exception("the pipeline returned hits that are not JSON-serialisable")
        return _error(
            service, 500, "the pipeline returned hits that cannot be written as JSON; the server's log says which."
        )
    service.responses[200] += 1
    return Response(content, media_type="application/json")


def filter_error(service: SearchService, path: str, message: str) -> Any:
    """A 422 shaped as the validation errors are, its field the filter's offending part."""
    from fastapi.responses import JSONResponse

    service.responses[422] += 1
    errors = [{"field": path, "type": "filter_invalid", "message": message}]
    return JSONResponse({"detail": message, "errors": errors}, status_code=422)


_DISCONNECTED = object()


async def _unless_disconnected(request: Any, future: asyncio.Future) -> Any:
    """The future's result, or ``_DISCONNECTED`` (and the future cancelled) if the client goes first.

    A cancelled request still pending is dropped by the batcher: no search is
    spent on a client that has gone.
    """
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({future, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server cancelled this request
        future.cancel()
        raise
    finally:
        watcher.cancel()
    if future.done():
        return future.result()
    future.cancel()
    return _DISCONNECTED


async def _disconnect(request: Any) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in documents' fields, as JSON numbers and lists."""
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def too_deep_error(service: SearchService) -> Any:
    """The 422 for a body nested deeper than the JSON parser reads (its recursion limit)."""
    from ..filters import MAX_DEPTH

    return filter_error(
        service,
        "body",
        f"the request body nests JSON arrays or objects thousands of levels deep, deeper than this server "
        f"reads; a filter may nest at most {MAX_DEPTH} levels. Flatten the filter.",
    )
