"""Running an application with uvicorn on a socket bound here (a clear error when the port is taken)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any

from ..exceptions import InvalidInputError

__all__ = ["serve", "bind", "is_loopback"]

logger = logging.getLogger("cherche_faiss.server")

#: Seconds uvicorn lets requests in flight finish after SIGINT/SIGTERM.
GRACEFUL_SHUTDOWN_S = 10


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``127.0.0.1``, ``::1``, ``localhost``).

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port; read it with ``getsockname()``).

    Raises
    ------
    InvalidInputError
        The port is out of range, the host unknown, or the address already in use.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidInputError(f"port must be an integer from 0 to 65535, got {port!r}.")
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise InvalidInputError(f"cannot resolve host {host!r} ({error}). Pass an address such as 127.0.0.1.") from None
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise InvalidInputError(
            f"cannot listen on {host}:{port} ({error.strerror or error}). Pick another --port, or stop the "
            "process that holds it."
        ) from None
    return sock


def serve(
    app: Any, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info", access_log: bool = True
) -> bool:
    """Serve ``app`` with uvicorn until SIGINT or SIGTERM; returns False if the application failed to start.

    Binds to ``127.0.0.1`` by default: reachable from this machine only.
    Requests in flight get :data:`GRACEFUL_SHUTDOWN_S` seconds to finish.
    """
    import uvicorn

    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    logger.info("serving on http://%s:%d (Ctrl+C to stop)", shown, bound_port)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return bool(server.started)
