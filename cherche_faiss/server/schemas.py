"""Request and response models of the HTTP API (pydantic v2), and readable validation errors.

The limits (largest ``k``, queries per request, query length) are the
server's settings, so the request model is built for them by
:func:`search_request_model`; its JSON schema (``/openapi.json``) states them.
Each check gives a message that names the field and says what to send
instead, so a client never has to decode a pydantic error.
"""

# No ``from __future__ import annotations``: the models are built inside functions,
# and pydantic must see their annotations as objects, not as names to look up.
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from .._core.validation import check_positive_int

__all__ = ["Limits", "filter_problem", "search_request_model", "response_models", "readable_errors"]

DEFAULT_K = 10


@dataclass(frozen=True)
class Limits:
    """What one search request may ask for.

    Examples
    --------
    >>> Limits(max_k=100).default_k
    10
    >>> Limits(max_k=5).default_k
    5
    """

    max_k: int = 1000
    max_queries: int = 64
    max_query_length: int = 2048

    def __post_init__(self) -> None:
        for name in ("max_k", "max_queries", "max_query_length"):
            check_positive_int(getattr(self, name), name, allow_none=False)

    @property
    def default_k(self) -> int:
        """``k`` when a request does not give one: 10, or ``max_k`` if smaller."""
        return min(DEFAULT_K, self.max_k)


def _kind(value: Any) -> str:
    """A JSON value's kind, as a client would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def query_problem(value: Any, limits: Limits) -> tuple[str, str] | None:
    """``(error type, message)`` for a bad ``q``, None when it is valid.

    Examples
    --------
    >>> limits = Limits(max_queries=2, max_query_length=10)
    >>> query_problem("bordeaux", limits) is None
    True
    >>> query_problem(["wine", 3], limits)[1]
    'q[1] must be a string, got the number 3. Send each query as a JSON string.'
    >>> query_problem("   ", limits)[1]
    'q is blank. Send a query with at least one character other than spaces.'
    """
    if isinstance(value, str):
        return _text_problem(value, "q", limits)
    if not isinstance(value, list):
        return "query_type", (
            f"q must be a query string or a list of query strings, got {_kind(value)}. "
            'Send e.g. {"q": "bordeaux wine"} or {"q": ["bordeaux wine", "football club"]}.'
        )
    if not value:
        return "query_empty", "q is an empty list: there is nothing to search. Send at least one query string."
    if len(value) > limits.max_queries:
        return "too_many_queries", (
            f"q holds {len(value):,} queries, more than the {limits.max_queries:,} one request may hold "
            "(max_queries). Split them over several requests."
        )
    for position, query in enumerate(value):
        if not isinstance(query, str):
            return (
                "query_type",
                f"q[{position}] must be a string, got {_kind(query)}. Send each query as a JSON string.",
            )
        problem = _text_problem(query, f"q[{position}]", limits)
        if problem is not None:
            return problem
    return None


def _text_problem(text: str, name: str, limits: Limits) -> tuple[str, str] | None:
    if not text:
        return "query_empty", f"{name} is an empty string. Send a query with at least one character."
    if text.isspace():
        return "query_empty", f"{name} is blank. Send a query with at least one character other than spaces."
    if len(text) > limits.max_query_length:
        return "query_too_long", (
            f"{name} is {len(text):,} characters long, more than the {limits.max_query_length:,} allowed "
            "(max_query_length). Send a shorter query."
        )
    return None


def k_problem(value: Any, limits: Limits) -> tuple[str, str] | None:
    """``(error type, message)`` for a bad ``k``, None when it is valid.

    Examples
    --------
    >>> k_problem(5, Limits()) is None
    True
    >>> k_problem(0, Limits(max_k=100))[1]
    'k must be from 1 to 100 (max_k), got 0.'
    >>> k_problem("5", Limits())[1]
    'k must be an integer from 1 to 1000, got a string. Send e.g. "k": 10.'
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return "k_type", f'k must be an integer from 1 to {limits.max_k}, got {_kind(value)}. Send e.g. "k": 10.'
    if not 1 <= value <= limits.max_k:
        return "k_range", f"k must be from 1 to {limits.max_k} (max_k), got {value}."
    return None


def filter_problem(value: Any) -> tuple[str, str, str] | None:
    """``(error type, message, path)`` for a bad ``filter``, None when it is valid (or absent).

    The filter is checked with :func:`cherche_faiss.filters.parse_filter`, so a
    malformed one (an unknown operator, a wrong operand type, too deep, too
    many conditions) never reaches the pipeline; ``path`` names its offending
    part, e.g. ``filter["year"]["$gt"]``.

    Examples
    --------
    >>> filter_problem({"year": {"$gte": 2020}}) is None
    True
    >>> filter_problem(None) is None
    True
    >>> kind, message, path = filter_problem({"year": {"$near": 2020}})
    >>> kind, path
    ('filter_invalid', 'filter["year"]["$near"]')
    >>> filter_problem("year > 2020")[1]  # doctest: +ELLIPSIS
    'filter must be a JSON object of conditions such as {"year": {"$gte": 2020}} or an array ..., got a string.'
    """
    from ..exceptions import InvalidFilterError
    from ..filters import parse_filter

    if value is None:
        return None
    if not isinstance(value, (Mapping, list)):
        return (
            "filter_type",
            (
                'filter must be a JSON object of conditions such as {"year": {"$gte": 2020}} or an array of '
                f"allowed keys, got {_kind(value)}."
            ),
            "filter",
        )
    try:
        parse_filter(value)
    except InvalidFilterError as error:
        return "filter_invalid", str(error), error.path
    return None


def search_request_model(limits: Limits) -> type:
    """The pydantic model of ``POST /search`` bodies for these limits.

    Examples
    --------
    >>> SearchRequest = search_request_model(Limits(max_queries=2))
    >>> SearchRequest(q="bordeaux wine", k=3)
    SearchRequest(q='bordeaux wine', k=3, filter=None)
    >>> SearchRequest(q="bordeaux wine", filter={"year": {"$gte": 2020}}).filter
    {'year': {'$gte': 2020}}
    >>> SearchRequest(q=["a", "b", "c"])
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for SearchRequest
    q
      q holds 3 queries, more than the 2 one request may hold (max_queries). Split them over several requests. ...
    """
    from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
    from pydantic_core import PydanticCustomError

    def fail(problem: tuple[str, ...]) -> None:
        kind, message, *path = problem
        # The message travels in the context: braces in it are never read as a template.
        raise PydanticCustomError(kind, "{message}", {"message": message, **({"path": path[0]} if path else {})})

    Query = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_query_length)]

    class SearchRequest(BaseModel):
        """A search: one query or a list of queries, and the number of hits wanted for each."""

        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={
                "examples": [
                    {"q": "bordeaux wine", "k": 3},
                    {"q": ["bordeaux", "football club"], "k": 10},
                    {"q": "bordeaux wine", "k": 5, "filter": {"year": {"$gte": 2020}, "lang": "en"}},
                ]
            },
        )

        q: Query | Annotated[list[Query], Field(min_length=1, max_length=limits.max_queries)] = Field(
            description=(
                "One query string (the answer is a list of hits) or a list of query strings (one list of hits "
                f"per query). At most {limits.max_queries} queries of at most {limits.max_query_length} "
                "characters, none empty or blank."
            ),
        )
        k: Annotated[int, Field(ge=1, le=limits.max_k)] = Field(
            default=limits.default_k,
            description=(
                "Number of hits wanted per query. It limits the pipeline's final output; each stage keeps "
                "its own k, so a pipeline whose last ranker keeps 10 returns at most 10."
            ),
        )

        filter: dict[str, Any] | list[str | int] | None = Field(
            default=None,
            description=(
                "Search only the documents this filter allows: a JSON object of conditions on the documents' "
                'fields, e.g. {"year": {"$gte": 2020}, "lang": "en"} (operators $eq $ne $gt $gte $lt $lte $in '
                "$nin $exists on a field, $and $or $not around conditions), or an array of the allowed "
                "documents' keys. Checked before the search: a malformed filter, or one naming a field the "
                "documents lack, is a 422 naming its offending part."
            ),
        )

        @field_validator("q", "k", mode="wrap")
        @classmethod
        def _check(cls, value: Any, handler: Any, info: Any) -> Any:
            # Our messages first (they name the limit), then pydantic's own checks.
            problem = (query_problem if info.field_name == "q" else k_problem)(value, limits)
            if problem is not None:
                fail(problem)
            return handler(value)

        @field_validator("filter", mode="wrap")
        @classmethod
        def _check_filter(cls, value: Any, handler: Any) -> Any:
            # The filter language's own checks (they name the part of the filter): the value is kept
            # as sent (JSON), so that requests can be grouped by it.
            problem = filter_problem(value)
            if problem is not None:
                fail(problem)
            return value

    return SearchRequest


@functools.cache
def response_models() -> dict[str, type]:
    """The response models, for the OpenAPI schema: ``search``, ``health``, ``error``, ``validation_error``."""
    from pydantic import BaseModel, Field

    Hit = dict[str, Any]

    class SearchResponse(BaseModel):
        """The hits, exactly as the pipeline returns them: ``{key: ..., "similarity": float, ...document}``."""

        hits: list[Hit] | list[list[Hit]] = Field(
            description=(
                "For a query string, a list of hits, best first; for a list of queries, one such list per query."
            ),
        )

    class HealthResponse(BaseModel):
        status: str = Field(description='"ok" while the server answers searches, "shutting down" after.')
        version: str
        uptime_s: float

    class ErrorResponse(BaseModel):
        detail: str = Field(description="What was wrong and how to fix it.")

    class FieldError(BaseModel):
        field: str
        type: str
        message: str

    class ValidationErrorResponse(BaseModel):
        detail: str = Field(description="Every problem found in the request, in one sentence each.")
        errors: list[FieldError]

    return {
        "search": SearchResponse,
        "health": HealthResponse,
        "error": ErrorResponse,
        "validation_error": ValidationErrorResponse,
    }


_EXAMPLE = '{"q": "bordeaux wine", "k": 10}'


def readable_errors(errors: Sequence[Mapping[str, Any]], content_type: str | None) -> list[dict[str, str]]:
    """Turn FastAPI's validation errors into ``{"field", "type", "message"}`` a person can act on.

    Examples
    --------
    >>> readable_errors([{"type": "missing", "loc": ("body", "q"), "msg": "Field required"}], "application/json")
    [{'field': 'q', 'type': 'missing', 'message': 'q is required: a query string or a list of query strings.'}]
    >>> error = {"type": "extra_forbidden", "loc": ("body", "top_k"), "msg": "Extra inputs"}
    >>> readable_errors([error], None)[0]["message"]
    "unknown field 'top_k': a search takes q, k and filter only."
    """
    readable = []
    for error in errors:
        location = [part for part in error.get("loc", ()) if part != "body"]
        kind = str(error.get("type", ""))
        # A JSON syntax error is located by character position, not by field; a filter's error by its part.
        field = "body" if kind == "json_invalid" else ".".join(str(part) for part in location) or "body"
        field = str((error.get("ctx") or {}).get("path", field))
        readable.append({"field": field, "type": kind, "message": _message(kind, field, location, error, content_type)})
    return readable


def _message(kind: str, field: str, location: list, error: Mapping[str, Any], content_type: str | None) -> str:
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        where = location[0] if location else "?"
        return f"the request body is not valid JSON ({reason} at character {where}). Send e.g. {_EXAMPLE}."
    if field == "body" and not _is_json(content_type):
        return f"send the body as JSON, with the header content-type: application/json, e.g. {_EXAMPLE}."
    if kind == "missing" and field == "body":
        return f"the request body is empty. Send a JSON object such as {_EXAMPLE}."
    if field == "body":
        return f"the request body must be a JSON object such as {_EXAMPLE}, got {_kind(error.get('input'))}."
    if kind == "missing":
        return f"{field} is required" + (": a query string or a list of query strings." if field == "q" else ".")
    if kind == "extra_forbidden":
        return f"unknown field {field!r}: a search takes q, k and filter only."
    return str(error.get("msg", kind))


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
