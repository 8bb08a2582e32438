"""The Ray actor that hosts one shard (imported only where Ray is used).

A :class:`ShardHost` holds one :class:`~cherche_faiss.distributed.shard.Shard`
in its process. Ray restarts the actor when its process or machine is lost
(``max_restarts``); the restarted actor comes up *lost*, holding nothing, and
answers every call with :class:`~cherche_faiss.exceptions.ShardUnavailableError`
until the retriever's process tells it to :meth:`ShardHost.restore` its saved
folder, which it does only when that save holds the shard's current contents.
A restart therefore never answers silently from an older or empty shard.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ShardUnavailableError
from .merge import ShardHits
from .shard import Shard, index_from_spec

__all__ = ["ShardHost"]


class ShardHost:
    """One shard in a Ray actor (see the module docstring)."""

    def __init__(self, number: int) -> None:
        import ray

        self.number = number
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self.node = ray.get_runtime_context().get_node_id()
        self.shard: Shard | None = None

    def _held(self) -> Shard:
        if self.shard is None:
            what = "was restarted after its process or machine was lost" if self.restarted else "was never started"
            raise ShardUnavailableError(
                f"shard {self.number} {what} and holds nothing yet (node {self.node[:12]}, pid {os.getpid()}).",
                (self.number,),
            )
        return self.shard

    def info(self) -> dict[str, Any]:
        """Where this shard lives and what it holds."""
        return {
            "shard": self.number,
            "node": self.node,
            "pid": os.getpid(),
            "documents": None if self.shard is None else len(self.shard),
            "restarted": self.restarted,
        }

    def start(self, spec: dict[str, Any]) -> int:
        self.shard = Shard(self.number, index_from_spec(spec))
        return 0

    def restore(self, folder: str, manifest: str, device: str, mmap: bool, verify: bool) -> int:
        """Load this shard's save from ``folder`` (a path this machine reads), checked against ``manifest``."""
        from ..persist._tree import LoadContext
        from ..persist.safe import load_nested

        context = LoadContext(device=device, mmap=mmap, verified=verify)
        shard = load_nested(Path(folder), manifest, context)
        if not isinstance(shard, Shard) or shard.number != self.number:
            raise ShardUnavailableError(f"{folder} does not hold shard {self.number}.", (self.number,))
        self.shard = shard
        return len(shard)

    def add(self, vectors: np.ndarray, keys: list[Hashable], ordinals: np.ndarray) -> int:
        return len(self._held().add(vectors, keys, ordinals))

    def missing(self, keys: list[Hashable]) -> list[Hashable]:
        return self._held().missing(keys)

    def remove(self, keys: list[Hashable]) -> int:
        return len(self._held().remove(keys))

    def search(self, matrix: np.ndarray, k: int | None, params: dict[str, int]) -> ShardHits:
        return self._held().search(matrix, k, **params)

    def save(self, folder: str) -> None:
        from ..persist.safe import save

        save(self._held(), folder)
