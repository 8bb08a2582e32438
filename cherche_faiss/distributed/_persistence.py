"""Saving, loading and pickling a sharded retriever.

A save (``cherche_faiss.save(sharded, path)``) is one safe-format folder: the
manifest holds the template (parameters and query encoder) and the
retriever's counters, and lists one nested save per shard
(``NNN-ShardedRetriever/_shards/000`` ...), each a complete save of a
:class:`~cherche_faiss.distributed.shard.Shard` written by the process that
holds it (a shard actor writes its own folder, so the path must be one every
machine shares). The outer manifest hashes each nested manifest, which hashes
its files; the whole folder is put in place atomically, as every save.

``cherche_faiss.load(path)`` loads every shard into this process; on a
cluster, :func:`load` starts one actor per shard that loads (or maps, with
``mmap=True``) its own folder, and reloads it from there when it is lost.
A pickle of a sharded retriever on Ray holds handles to its live actors (valid
while they run, within their cluster); an in-process one holds its shards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import IncompatibleStateError
from ..index._search_params import check_search_params
from ..persist._nested import NestedSaves
from ..persist._tree import LoadContext
from ._group import ShardGroup
from .shard import Shard

__all__ = ["ShardedStateMixin", "RayPlacement", "load"]


@dataclass(frozen=True)
class RayPlacement:
    """Where :func:`load` starts the shards of the sharded retrievers it loads."""

    address: str | None = None
    shard_options: Any = None


def load(
    path: str | os.PathLike,
    address: str | None = None,
    mmap: bool = False,
    verify: bool = True,
    device: str = "auto",
    backend: str = "auto",
    shard_options: dict | list[dict] | None = None,
) -> Any:
    """Load a save holding sharded retrievers, with one Ray actor per shard that loads its own folder.

    Parameters
    ----------
    path
        The save's folder, at a path every node of the cluster reads (a shared file system).
    address
        The Ray cluster to join when this process has not joined one.
    mmap
        Each shard maps its vectors from its folder instead of reading them
        (read-only shards; see :func:`cherche_faiss.persist.load`).
    verify
        Check the SHA-256 of every file: the manifests here, each shard's files on its own node.
    device, backend
        As :func:`cherche_faiss.persist.load` (the shards' indexes, the query encoder).
    shard_options
        Ray actor options of the shards (see :class:`~cherche_faiss.distributed.ShardedRetriever`), instead of
        the saved ones: where shards run is the cluster's business, not the save's.

    Returns
    -------
    object
        What was saved (a ``ShardedRetriever``, or a pipeline holding some), its shards on Ray.
    """
    from .._core.device import parse_device
    from ..persist._onnx_copies import check_backend
    from ..persist.safe import load_with

    context = LoadContext(
        device=parse_device(device),
        mmap=bool(mmap),
        backend=check_backend(backend),
        verified=bool(verify),
        placement=RayPlacement(address, shard_options),
    )
    return load_with(path, context)


class ShardedStateMixin:
    """``_get_state`` / ``_set_state`` (pickles) and ``_save_state`` / ``_load_state`` (safe format) of a
    :class:`~cherche_faiss.distributed.ShardedRetriever` (see the module docstring)."""

    _group: ShardGroup | None
    _next_ordinal: int
    _dimension: int | None
    _trained: np.ndarray | None
    search_params: dict[str, int]
    shards: int
    address: str | None
    shard_options: dict | list[dict] | None
    max_restarts: int
    template: Any

    if TYPE_CHECKING:  # pragma: no cover - provided by Component

        @classmethod
        def _param_names(cls) -> list[str]: ...

    # -- pickles ----------------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state = {name: value for name, value in vars(self).items() if name not in ("_group", "_checker")}
        group = self._group
        state["_group"] = None if group is None else {"placement": group.placement, **group.state()}
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        group = state.pop("_group")
        vars(self).update(state)
        self._group = None if group is None else _group_from_state(self.shards, group)

    # -- the safe format --------------------------------------------------------------------------------
    def _save_state(self) -> dict[str, Any]:
        params = {name: getattr(self, name) for name in self._param_names()}
        group = self._group
        saves = None
        if group is not None and group.started:
            group.flush()
            generations = [record.generation for record in group.records]
            saves = NestedSaves(
                count=group.count,
                write=group.write,
                saved=lambda folders: group.saved(folders, generations),
            )
        return {
            **params,
            "search_params": dict(self.search_params),
            "_next_ordinal": self._next_ordinal,
            "_dimension": self._dimension,
            "_trained": self._trained,
            "_shards": saves,
        }

    def _load_state(self, state: dict[str, Any], context: Any = None) -> None:
        state = dict(state)
        saves = state.pop("_shards", None)
        self.search_params = check_search_params(state.pop("search_params", None))
        self._next_ordinal = state.pop("_next_ordinal", 0)
        self._dimension = state.pop("_dimension", None)
        self._trained = state.pop("_trained", None)
        if state:
            raise IncompatibleStateError(
                f"this saved ShardedRetriever holds attributes no version wrote ({list(state)[:5]})."
            )
        if saves is None:
            return
        if not isinstance(saves, NestedSaves) or saves.count != self.shards:
            raise IncompatibleStateError(f"the saved shards of this ShardedRetriever are not its {self.shards} shards.")
        context = context if isinstance(context, LoadContext) else LoadContext()
        if context.placement is None:
            self._group = _load_in_process(saves, context, self.shards)
        else:
            from ._ray_shards import RayShards

            if context.placement.address is not None:
                self.address = context.placement.address
            if context.placement.shard_options is not None:
                self.shard_options = context.placement.shard_options
            group = RayShards(
                self.shards,
                self.address,
                self.shard_options,
                self.max_restarts,
                {"device": context.device, "mmap": context.mmap, "verify": context.verified},
            )
            group.attach(saves.folders, saves.manifests)
            self._group = group

    def _check_loaded(self) -> None:
        ordinal, dimension = self._next_ordinal, self._dimension
        if isinstance(ordinal, bool) or not isinstance(ordinal, int) or ordinal < 0:
            raise IncompatibleStateError(f"the saved ordinal counter of this ShardedRetriever is {ordinal!r}.")
        if dimension is not None and (isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1):
            raise IncompatibleStateError(f"the saved dimension of this ShardedRetriever is {dimension!r}.")
        if self._trained is not None and (not isinstance(self._trained, np.ndarray) or self._trained.dtype != np.uint8):
            raise IncompatibleStateError("the saved trained index of this ShardedRetriever is not a byte array.")


def _load_in_process(saves: NestedSaves, context: LoadContext, count: int) -> ShardGroup:
    """Every shard of ``saves`` loaded here, each checked against the manifest the outer save names."""
    from ..persist.safe import load_nested
    from ._local import LocalShards

    shards = []
    for number, (readable, manifest) in enumerate(zip(saves.readable, saves.manifests)):
        shard = load_nested(readable, manifest, context)
        if not isinstance(shard, Shard) or shard.number != number:
            raise IncompatibleStateError(f"the saved folder of shard {number} does not hold shard {number}.")
        shards.append(shard)
    group = LocalShards(count, shards)
    for record, folder, manifest in zip(group.records, saves.folders, saves.manifests):
        record.folder, record.manifest, record.saved_generation = folder, manifest, 0
    return group


def _group_from_state(count: int, state: Any) -> ShardGroup:
    if not isinstance(state, dict) or state.get("placement") not in ("ray", "in-process"):
        raise IncompatibleStateError("the shards of this pickled ShardedRetriever are damaged.")
    if state["placement"] == "ray":
        from ._ray_shards import RayShards

        return RayShards.from_state(count, state)
    from ._local import LocalShards

    return LocalShards.from_state(count, state)
