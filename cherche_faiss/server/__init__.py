"""Serve a pipeline over HTTP (work in progress: the micro-batcher and the thread policy)."""

from .batching import MicroBatcher, ServerClosedError

__all__ = ["MicroBatcher", "ServerClosedError"]
