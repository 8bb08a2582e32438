"""Serve a pipeline over HTTP: ``cherche-faiss serve PATH`` or :func:`create_app`.

Needs the server extra, ``pip install "cherche-faiss[server]"`` (FastAPI and
uvicorn). Importing this package is cheap: FastAPI is imported by
:func:`create_app`, which raises :class:`~cherche_faiss.exceptions.MissingDependencyError`
naming the extra when it is not installed.

Modules: ``app`` (the FastAPI application's routes), ``answers`` (what
``POST /search`` answers), ``service`` (what they share: start, stop,
``/info``), ``batching`` (the micro-batcher and its bounded
queue), ``worker`` (what runs in its thread), ``counters`` (its counters and
retry hint), ``schemas`` (request and response models), ``guard`` (API key and body size),
``threads`` (the thread policy), ``loading`` (what ``serve`` loads), ``runner``
(uvicorn on a bound socket). What ``/info`` shows comes from :mod:`cherche_faiss.server.describe`.
"""

from ..exceptions import ServerClosedError, ServerOverloadedError
from .app import create_app, require_server_extra
from .batching import MicroBatcher
from .describe import describe
from .loading import load_served, saved_version
from .runner import serve

__all__ = [
    "create_app",
    "describe",
    "load_served",
    "saved_version",
    "serve",
    "MicroBatcher",
    "ServerClosedError",
    "ServerOverloadedError",
    "require_server_extra",
]
