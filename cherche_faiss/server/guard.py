"""An ASGI middleware that checks the API key and the body size before the application reads anything.

Both checks run ahead of FastAPI on purpose: a client without the key learns
nothing about the API (not even whether its JSON is valid), and a body larger
than the limit is refused from its ``Content-Length`` without being read, or
as soon as a streamed (chunked) body passes the limit.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from .._core.validation import check_positive_int
from ..exceptions import InvalidInputError, InvalidTypeError

__all__ = ["RequestGuard", "check_guard_options", "API_KEY_HEADER", "OPEN_PATHS"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_HEADER = "X-API-Key"
#: Paths open without the key: the health check (for load balancers and
#: orchestrators, which seldom hold secrets) and the API's documentation.
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def check_guard_options(api_key: str | None, max_body_bytes: int) -> int:
    """Validate the guard's settings (an empty key would let anyone in); returns ``max_body_bytes``."""
    if api_key is not None and not isinstance(api_key, str):
        raise InvalidTypeError(f"api_key must be a string or None, got {type(api_key).__name__}.")
    if api_key is not None and not api_key.strip():
        raise InvalidInputError(
            "api_key is empty or blank, which anyone could send. Pass a long random string "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'), or None for no key."
        )
    return check_positive_int(max_body_bytes, "max_body_bytes", allow_none=False)


class RequestGuard:
    """Refuse requests without the API key (401) and bodies over ``max_body_bytes`` (413).

    Parameters
    ----------
    app
        The ASGI application guarded.
    api_key
        The key clients send in the ``X-API-Key`` header; None: no key needed.
        Compared in constant time; never logged.
    max_body_bytes
        Largest request body accepted.
    open_paths
        Paths served without the key (every other path needs it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None = None,
        max_body_bytes: int = 1 << 20,
        open_paths: Collection[str] = OPEN_PATHS,
    ) -> None:
        self.max_body_bytes = check_guard_options(api_key, max_body_bytes)
        self.app = app
        self._key = api_key.encode("utf-8") if api_key is not None else None
        self.open_paths = frozenset(open_paths)
        self._header = API_KEY_HEADER.lower().encode("latin-1")

    def __repr__(self) -> str:  # never shows the key
        return f"RequestGuard(api_key={'set' if self._key else None}, max_body_bytes={self.max_body_bytes})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._key is not None and scope["path"] not in self.open_paths and not self._authorised(scope):
            await _refuse(send, 401, f"missing or wrong API key: send the server's key in the {API_KEY_HEADER} header.")
            return
        declared = _content_length(scope)
        if declared is None:
            await _refuse(send, 400, "the Content-Length header is not a non-negative integer.")
            return
        if declared > self.max_body_bytes:
            await _refuse(send, 413, self._too_large(f"{declared:,} bytes"))
            return
        await self._guard_body(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == self._header:
                return hmac.compare_digest(value, self._key)
        return False

    def _too_large(self, size: str) -> str:
        return (
            f"the request body ({size}) is larger than the {self.max_body_bytes:,} bytes this server accepts "
            "(max_body_bytes). Send fewer or shorter queries per request."
        )

    async def _guard_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count a body's bytes as they arrive (a chunked body declares no length)."""
        received = 0
        too_large = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # The application sees a client that went away; the 413 below answers.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # whatever the application says about a body it never got whole
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, guarded_send)
        if too_large and not started:
            await _refuse(send, 413, self._too_large(f"more than {self.max_body_bytes:,} bytes"))


def _content_length(scope: Scope) -> int | None:
    """The declared body length (0 when absent), None when the header is malformed."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return 0


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("latin-1")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
