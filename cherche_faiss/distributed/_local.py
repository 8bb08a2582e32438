"""Every shard in this process: what ``cherche_faiss.load`` gives for a sharded save.

The shards are searched one after the other and merged exactly as on a
cluster, so a sharded save answers the same on one machine (when it fits in
its memory) as on many: useful to inspect or test a save, or to serve a
corpus that has outgrown its build cluster but not one large machine.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._core.component import Component
from ..exceptions import IncompatibleStateError
from ._group import ShardGroup
from .merge import ShardHits
from .shard import Shard, index_from_spec

__all__ = ["LocalShards"]


class LocalShards(ShardGroup):
    """Shards held in this process (see the module docstring)."""

    placement = "in-process"

    def __init__(self, count: int, shards: list[Shard] | None = None) -> None:
        super().__init__(count)
        self.shards: list[Shard] = list(shards or [])
        if self.shards and len(self.shards) != count:
            raise IncompatibleStateError(f"a sharded retriever of {count} shards holds {len(self.shards)}.")
        for record, shard in zip(self.records, self.shards):
            record.documents = len(shard)

    @property
    def started(self) -> bool:
        return bool(self.shards)

    def start(self, spec: dict[str, Any]) -> None:
        self.shards = [Shard(number, index_from_spec(spec)) for number in range(self.count)]

    def submit_add(self, shard: int, vectors: np.ndarray, keys: list[Hashable], ordinals: np.ndarray) -> None:
        self.shards[shard].add(vectors, keys, ordinals)
        self.records[shard].documents = len(self.shards[shard])
        self.records[shard].changed()

    def missing(self, parts: dict[int, list[Hashable]]) -> list[Hashable]:
        return [key for shard, keys in parts.items() for key in self.shards[shard].missing(keys)]

    def remove(self, parts: dict[int, list[Hashable]]) -> None:
        for shard, keys in parts.items():
            self.shards[shard].remove(keys)
            self.records[shard].documents = len(self.shards[shard])
            self.records[shard].changed()

    def search(
        self, matrix: np.ndarray, k: int | None, params: dict[str, int], timeout: float
    ) -> tuple[list[ShardHits | None], dict[int, str]]:
        return [shard.search(matrix, k, **params) for shard in self.shards], {}

    def write(self, folders: Sequence[Path]) -> None:
        from ..persist.safe import save

        for shard, folder in zip(self.shards, folders):
            save(shard, folder)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "shards": self.shards}

    @classmethod
    def from_state(cls, count: int, state: dict[str, Any]) -> LocalShards:
        shards = state.get("shards")
        if not isinstance(shards, list) or not all(isinstance(shard, Component) for shard in shards):
            raise IncompatibleStateError("the shards of this pickled sharded retriever are damaged.")
        group = cls(count, shards)
        group.restore_records(state)
        return group
