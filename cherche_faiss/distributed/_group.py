"""What a sharded retriever asks of its shards, wherever they live.

:class:`ShardGroup` is the interface: start the shards, add and remove
documents, search them all, write their saves. Two placements implement it:
:class:`~cherche_faiss.distributed._local.LocalShards` (every shard in this
process: a sharded save loaded with ``cherche_faiss.load``) and
:class:`~cherche_faiss.distributed._ray_shards.RayShards` (one Ray actor per
shard). :class:`ShardRecord` is what the retriever's process knows of each
shard: its size, and whether a save holds its current contents (the only
copy a lost shard can be restarted from).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .merge import ShardHits

__all__ = ["ShardRecord", "ShardGroup", "manifest_sha256"]


def manifest_sha256(folder: Path) -> str:
    """The SHA-256 of ``folder/manifest.json`` (what a restart checks the folder against)."""
    return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


@dataclass
class ShardRecord:
    """The driver's view of one shard.

    ``generation`` counts the changes made to the shard; ``saved_generation``
    is the generation its saved ``folder`` holds (-1: none does).
    """

    documents: int = 0
    folder: Path | None = None
    manifest: str | None = None
    generation: int = 0
    saved_generation: int = -1

    @property
    def restorable(self) -> bool:
        """Whether a save holds exactly what the shard holds (a lost shard can then be reloaded)."""
        return self.folder is not None and self.saved_generation == self.generation

    def changed(self) -> None:
        self.generation += 1


class ShardGroup:
    """The shards of one sharded retriever (see the module docstring)."""

    #: Where the shards live, for messages and ``repr``.
    placement = "in-process"

    def __init__(self, count: int) -> None:
        self.count = count
        self.records = [ShardRecord() for _ in range(count)]

    @property
    def started(self) -> bool:
        raise NotImplementedError

    def start(self, spec: dict[str, Any]) -> None:
        """Create the empty shards, each with an index built from ``spec`` (see ``shard.index_spec``)."""
        raise NotImplementedError

    def submit_add(self, shard: int, vectors: np.ndarray, keys: list[Hashable], ordinals: np.ndarray) -> None:
        """Add to one shard; the change may still be under way until :meth:`flush`."""
        raise NotImplementedError

    def flush(self) -> None:
        """Wait until every submitted addition is done (raising the first failure)."""

    def missing(self, parts: dict[int, list[Hashable]]) -> list[Hashable]:
        """The keys of ``parts`` (keys by owning shard) that their shard does not hold."""
        raise NotImplementedError

    def remove(self, parts: dict[int, list[Hashable]]) -> None:
        """Remove keys, each from the shard that owns it (every one must be held)."""
        raise NotImplementedError

    def search(
        self, matrix: np.ndarray, k: int | None, params: dict[str, int], timeout: float
    ) -> tuple[list[ShardHits | None], dict[int, str]]:
        """Every shard's hits for the prepared query ``matrix``, and why the shards that gave none failed."""
        raise NotImplementedError

    def write(self, folders: Sequence[Path]) -> None:
        """Save shard ``i`` into ``folders[i]`` (a complete save each), all of them together."""
        raise NotImplementedError

    def saved(self, folders: Sequence[Path], generations: Sequence[int]) -> None:
        """The saves just written are in place at ``folders``: a lost shard may be reloaded from there
        as long as it has not changed since (``generations``: each shard's when it was saved)."""
        for record, folder, generation in zip(self.records, folders, generations):
            record.folder, record.manifest = Path(folder), manifest_sha256(Path(folder))
            record.saved_generation = generation

    def describe(self) -> list[dict[str, Any]]:
        """One dict per shard: where it lives and what it holds."""
        return [{"shard": number, "documents": record.documents} for number, record in enumerate(self.records)]

    def close(self) -> None:
        """Let the shards go (actors are ended; in-process shards are dropped)."""

    # -- pickling: what another process needs to reach the same shards --------------------------
    def state(self) -> dict[str, Any]:
        return {"records": [vars(record).copy() for record in self.records]}

    def restore_records(self, state: dict[str, Any]) -> None:
        self.records = [ShardRecord(**record) for record in state["records"]]
