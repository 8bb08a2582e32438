"""The FastAPI application: ``POST /search``, ``GET /health``, ``GET /info``.

FastAPI and uvicorn are an extra (``pip install "cherche-faiss[server]"``):
they are imported when an application is created, never by ``import
cherche_faiss``.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints'
# annotations as objects, and the request model is a local of create_app.
import contextlib
import logging
import time
from typing import Any

from .._version import __version__
from ..compose.operators import needs_documents
from ..exceptions import (
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
)
from .answers import search_endpoint, too_deep_error
from .batching import MicroBatcher
from .guard import API_KEY_HEADER, RequestGuard, check_guard_options
from .loading import saved_version
from .schemas import Limits, readable_errors, response_models, search_request_model
from .service import SearchService
from .threads import ThreadPolicy

__all__ = ["create_app", "require_server_extra"]

logger = logging.getLogger("cherche_faiss.server")


def require_server_extra() -> None:
    """Raise :class:`MissingDependencyError` naming the extra when FastAPI or uvicorn is missing."""
    missing = []
    for module in ("fastapi", "uvicorn", "pydantic"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingDependencyError(
            f"serving over HTTP needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            'installed. Install the server extra: pip install "cherche-faiss[server]".'
        )


def create_app(
    pipeline: Any,
    *,
    api_key: str | None = None,
    max_batch_size: int = 64,
    max_wait_ms: float = 2.0,
    batching: bool = True,
    max_pending: int | None = None,
    max_k: int = 1000,
    max_queries: int = 64,
    max_query_length: int = 2048,
    max_body_bytes: int = 1 << 20,
    threads: int | None = None,
    warmup: bool = True,
    freeze_gc: bool = False,
    source: Any = None,
) -> Any:
    """A FastAPI application that serves ``pipeline``.

    Endpoints: ``POST /search`` (``{"q": str | [str], "k": int, "filter": ...}`` ->
    ``{"hits": ...}``, exactly what ``pipeline(q, k=k)`` returns, or
    ``pipeline(q, k=k, filter=filter)`` with a filter), ``GET /health``, ``GET
    /info``, and FastAPI's ``/docs`` and ``/openapi.json``. A filter is checked
    with :func:`~cherche_faiss.filters.parse_filter` before anything reaches the
    pipeline (422 naming its offending part); one the pipeline refuses when
    called (a field its documents lack, a comparison of incompatible types) is
    a 422 too. Requests arriving together with the same ``k`` and filter are
    answered by one pipeline call (see
    :class:`~cherche_faiss.server.batching.MicroBatcher`), always in one worker
    thread: the pipeline is never called concurrently.
    When more queries wait than ``max_pending``, ``/search`` answers 503 with
    ``Retry-After``; ``/health`` never waits for the worker and keeps answering.

    Parameters
    ----------
    pipeline
        A retriever, a pipeline (``retriever + ranker + documents``), a fusion,
        or any callable ``pipeline(q, k=k)`` that finds its own candidates.
    api_key
        When set, every path but ``/health`` and the docs needs it in the
        ``X-API-Key`` header (401 otherwise).
    max_batch_size
        Most queries searched by one pipeline call.
    max_wait_ms
        How long a request may wait for others to join its batch.
    batching
        False: each request is searched alone.
    max_pending
        Most queries waiting for the worker (the batch being searched aside).
        A request that would exceed it gets a 503 at once, with a
        ``Retry-After`` header (seconds: what is queued over the recent
        throughput, 1 to 60), instead of joining an ever longer queue. None:
        16 x ``max_batch_size``. See :class:`~cherche_faiss.server.batching.MicroBatcher`.
    max_k, max_queries, max_query_length
        Largest ``k``, number of queries per request, characters per query
        (422 beyond).
    max_body_bytes
        Largest request body (413 beyond), checked before the body is read.
    threads
        Threads FAISS and torch use for a search; None: one less than the
        available cores (the event loop keeps one). See :mod:`.threads`.
    warmup
        Answer one query at startup, so that lazily loaded models are loaded
        before the first client comes (a startup error if it fails).
    freeze_gc
        After startup, move every object then alive (the pipeline, the libraries)
        to the garbage collector's permanent generation (``gc.freeze()``), so
        that full collections, which stall the whole process, only walk what
        requests allocate: on a busy server they otherwise cost a batch tens of
        milliseconds. Process-wide, so off by default; ``cherche-faiss serve``,
        which owns its process, turns it on. Undone when the server stops.
    source
        Path the pipeline was loaded from, reported by ``/info`` with the
        version that saved it.

    Returns
    -------
    fastapi.FastAPI
        Serve it with uvicorn, e.g. ``uvicorn.run(app, host="127.0.0.1", port=8000)``,
        or with :func:`cherche_faiss.server.serve`.

    Raises
    ------
    MissingDependencyError
        FastAPI or uvicorn is not installed.
    InvalidInputError, InvalidTypeError
        An argument is out of its domain.

    Examples
    --------
    >>> from cherche_faiss import data, rank, retrieve
    >>> from cherche_faiss.encoders import HashingEncoder
    >>> from cherche_faiss.server import create_app
    >>> documents = data.load_towns()
    >>> search = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=30)
    >>> search = search + rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(), k=10)
    >>> search = (search + documents).add(documents, show_progress=False)
    >>> app = create_app(search, max_wait_ms=2)
    >>> sorted(route.path for route in app.routes if route.path in {"/search", "/health", "/info"})
    ['/health', '/info', '/search']
    >>> import uvicorn
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    require_server_extra()
    from fastapi import FastAPI

    _check_servable(pipeline)
    for name, value in (("warmup", warmup), ("freeze_gc", freeze_gc)):
        if not isinstance(value, bool):
            raise InvalidTypeError(f"{name} must be True or False, got {value!r}.")
    limits = Limits(max_k=max_k, max_queries=max_queries, max_query_length=max_query_length)
    max_body_bytes = check_guard_options(api_key, max_body_bytes)
    service = _service(
        pipeline,
        ThreadPolicy(threads, pipeline),
        limits,
        warmup,
        freeze_gc,
        source,
        api_key is not None,
        max_body_bytes,
        dict(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, batching=batching, max_pending=max_pending),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="cherche_faiss",
        version=__version__,
        summary="Neural search on FAISS with Cherche's API.",
        description=(
            '`POST /search` answers `{"q": str | [str], "k": int, "filter": {...}}` with the pipeline\'s hits '
            "(the filter is optional). Requests that arrive together are searched in one batch."
            + (f" Every path but /health and the docs needs the `{API_KEY_HEADER}` header." if api_key else "")
        ),
        lifespan=lifespan,
    )
    app.state.server = service
    _add_routes(app, service, limits, api_key)
    app.add_middleware(RequestGuard, api_key=api_key, max_body_bytes=max_body_bytes)
    return app


def _service(
    pipeline: Any,
    policy: ThreadPolicy,
    limits: Limits,
    warmup: bool,
    freeze_gc: bool,
    source: Any,
    api_key_set: bool,
    max_body_bytes: int,
    batching: dict[str, Any],
) -> SearchService:
    """The state the endpoints share, with its batcher (whose worker calls the service's search)."""
    service: SearchService

    def run(q: Any, k: int, filter: Any = None) -> Any:  # noqa: A002 - the pipelines' keyword
        return service.search(q, k, filter)

    batcher = MicroBatcher(run, **batching)
    service = SearchService(
        pipeline, batcher, policy, limits, warmup, freeze_gc, _describe_source(source), api_key_set, max_body_bytes
    )
    return service


def _describe_source(source: Any) -> dict[str, Any] | None:
    """What ``/info`` says about where the pipeline was loaded from."""
    if source is None:
        return None
    from pathlib import Path

    path = Path(source)
    return {"name": path.name, "format": "folder" if path.is_dir() else "pickle", "saved_version": saved_version(path)}


def _error_responses(models: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The error answers of the endpoints, for the OpenAPI schema."""
    return {
        400: {"model": models["error"], "description": "The pipeline refused the search (a library error)."},
        401: {"model": models["error"], "description": "Missing or wrong API key."},
        413: {"model": models["error"], "description": "The request body is too large."},
        422: {
            "model": models["validation_error"],
            "description": "The request body is not a valid search, or its filter does not apply to the "
            "documents (an unknown field, a comparison of incompatible types); `errors[].field` names the part.",
        },
        503: {
            "model": models["error"],
            "description": "The server is shutting down (retry on another one), a shard of a sharded retriever "
            "did not answer, or the server is overloaded: its queue of pending queries is full, and the "
            "`Retry-After` header says in how many seconds to retry.",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying (overload only).",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
        },
    }


def _add_routes(app: Any, service: SearchService, limits: Limits, api_key: str | None) -> None:
    """``POST /search``, ``GET /health``, ``GET /info`` and the readable 422 handler."""
    from fastapi import Depends, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from fastapi.security import APIKeyHeader
    from starlette.exceptions import HTTPException as StarletteHTTPException

    models = response_models()
    errors = _error_responses(models)
    SearchRequest = search_request_model(limits)
    # Declared for the OpenAPI schema (the Authorize button of /docs); RequestGuard enforces the key.
    security = [Depends(APIKeyHeader(name=API_KEY_HEADER, auto_error=False))] if api_key is not None else []

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400 "error parsing the body" when json.loads hits its recursion limit.
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            return too_deep_error(service)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        found = readable_errors(exc.errors(), request.headers.get("content-type"))
        service.responses[422] += 1
        return JSONResponse({"detail": " ".join(item["message"] for item in found), "errors": found}, status_code=422)

    @app.post(
        "/search",
        response_model=models["search"],
        responses=errors,
        dependencies=security,
        summary="Search one query or a list of queries",
    )
    async def search(request: Request, body: SearchRequest) -> Response:  # type: ignore[valid-type]
        return await search_endpoint(service, request, body)

    # /health never goes through the batcher: it answers at once while the queue is full.
    shutting_down = {"model": models["error"], "description": "The server is shutting down."}

    @app.get("/health", response_model=models["health"], responses={503: shutting_down}, summary="Liveness")
    async def health() -> Response:
        stopped = service.state == "stopped"
        body = {
            "status": "shutting down" if stopped else "ok",
            "version": __version__,
            "uptime_s": round(time.monotonic() - service.started_at, 3),
        }
        return JSONResponse(body, status_code=503 if stopped else 200)

    @app.get(
        "/info",
        responses={401: errors[401]},
        dependencies=security,
        summary="The pipeline, its indexes, devices, versions, settings and counters",
    )
    async def info() -> dict[str, Any]:
        if service.state == "idle":
            await service.start()
        return await service.info()


def _check_servable(pipeline: Any) -> None:
    if not callable(pipeline):
        raise InvalidTypeError(
            f"pipeline must be a retriever, a pipeline or a callable pipeline(q, k=k), got "
            f"{type(pipeline).__name__}. Build one with retriever + ranker + documents."
        )
    if needs_documents(pipeline):
        raise InvalidInputError(
            f"{type(pipeline).__name__} ranks candidates given to it, which an HTTP client cannot send. Serve "
            "a pipeline that starts with a retriever: retriever + ranker (+ documents)."
        )
