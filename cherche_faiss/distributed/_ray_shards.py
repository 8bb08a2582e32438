"""Shards on a Ray cluster: one actor per shard, every call bounded in time, lost shards reloaded.

Each shard lives in a :class:`~cherche_faiss.distributed._ray_host.ShardHost`
actor, spread over the cluster's nodes. A search puts the query matrix in
Ray's object store once and calls every shard with a reference to it (a
matrix of a few queries, under 64 KiB, travels inside each call instead:
cheaper than a put); the answers are collected until the call's deadline.

When a shard's process or machine is lost, Ray restarts its actor
(``max_restarts``) and the call fails with a Ray error, or the restarted
actor says it holds nothing. If a save holds the shard's current contents
(see :class:`~cherche_faiss.distributed._group.ShardRecord`), the shard is
reloaded from that folder (by the restarted actor, or by a new one when Ray
gave up restarting it) and asked again, all within the same deadline;
otherwise the shard is reported as failed, with where it lived and why.
Errors of the request itself (a query of the wrong dimension) are raised as
they are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import CherFaissError, ShardUnavailableError
from ._group import ShardGroup
from ._ray_host import ShardHost
from .merge import ShardHits

__all__ = ["RayShards", "connect"]

#: Seconds a new actor may take to be placed and to answer its first call.
START_TIMEOUT = 120.0
#: Query matrices up to this size go inside each call; larger ones are put in the object store once.
_INLINE_BYTES = 64 << 10
#: Submitted additions kept in flight per shard before the next one waits (memory stays bounded).
_IN_FLIGHT_PER_SHARD = 2
_HOST_CLASS: list[Any] = []


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (None: the one this process uses, else a local one)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address)


def _host_class() -> Any:
    if not _HOST_CLASS:
        import ray

        _HOST_CLASS.append(ray.remote(ShardHost))
    return _HOST_CLASS[0]


def _request_error(error: Exception) -> ShardUnavailableError | None:
    """Raise what a shard raised about the request itself (a library error: a damaged save, a query of
    another dimension), as one index would; return the shard's own ShardUnavailableError (it holds
    nothing since a restart), or None for a fault of Ray (a lost actor or node)."""
    import ray.exceptions as faults

    if not isinstance(error, faults.RayTaskError):
        return None
    cause = getattr(error, "cause", None)
    if isinstance(cause, ShardUnavailableError):
        return cause
    if isinstance(cause, CherFaissError):
        raise cause from None
    raise error


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


class RayShards(ShardGroup):
    """One Ray actor per shard (see the module docstring).

    Parameters
    ----------
    count
        Number of shards.
    address
        The Ray cluster to join when this process has not joined one yet.
    options
        Ray actor options of every shard (``num_cpus``, ``memory``,
        ``resources``, ``scheduling_strategy`` ...), over the defaults
        ``num_cpus=0`` and ``scheduling_strategy="SPREAD"``; or a list of
        them, one per shard (to pin shard ``i`` to a machine, say).
    max_restarts
        How many times Ray restarts a lost shard actor.
    load_options
        ``device``, ``mmap``, ``verify``: how shards load their saved folders.
    """

    placement = "ray"

    def __init__(
        self,
        count: int,
        address: str | None = None,
        options: dict[str, Any] | list[dict[str, Any]] | None = None,
        max_restarts: int = 3,
        load_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(count)
        self.address = address
        self.options = options
        self.max_restarts = max_restarts
        self.load_options = {"device": "auto", "mmap": False, "verify": True, **(load_options or {})}
        self.hosts: list[Any] = []
        self.nodes: list[str] = [""] * count
        self._pending: list[tuple[int, str, tuple, Any]] = []
        self._recovering = threading.Lock()

    @property
    def started(self) -> bool:
        return bool(self.hosts)

    # -- actors ---------------------------------------------------------------------------------------
    def _new_host(self, number: int) -> Any:
        given = self.options[number] if isinstance(self.options, list) else self.options
        options = {"num_cpus": 0, "scheduling_strategy": "SPREAD", **(given or {})}
        options.update(max_restarts=self.max_restarts, max_task_retries=0)
        return _host_class().options(**options).remote(number)

    def _place(self, calls: list[tuple[int, str, tuple]]) -> None:
        """New actors for every shard, each running its first call; raise when one cannot be placed."""
        connect(self.address)
        self.hosts = [self._new_host(number) for number in range(self.count)]
        try:
            results, failures = self._call(calls, START_TIMEOUT, recover=False)
        except BaseException:  # a damaged save, say: no actor is left behind
            self.close()
            raise
        if failures:
            self.close()
            raise self._unavailable(
                failures,
                f"could not be started within {START_TIMEOUT:g} s (the cluster may lack the resources of "
                f"shard_options={self.options!r})",
            )
        self._update_nodes()
        for (number, _, _), size in zip(calls, results):
            self.records[number].documents = int(size)

    def start(self, spec: dict[str, Any]) -> None:
        import ray

        connect(self.address)
        reference = ray.put(spec)  # one copy of the trained index in the object store, whatever the shard count
        self._place([(number, "start", (reference,)) for number in range(self.count)])

    def attach(self, folders: Sequence[Path], manifests: Sequence[str]) -> None:
        """Start one actor per shard, each loading its own saved folder."""
        self._place(
            [
                (number, "restore", self._restore_args(folder, manifest))
                for number, (folder, manifest) in enumerate(zip(folders, manifests))
            ]
        )
        for record, folder, manifest in zip(self.records, folders, manifests):
            record.folder, record.manifest = Path(folder), manifest
            record.generation, record.saved_generation = 0, 0

    def _restore_args(self, folder: Path, manifest: str) -> tuple:
        options = self.load_options
        return (str(folder), manifest, options["device"], bool(options["mmap"]), bool(options["verify"]))

    def _update_nodes(self, shards: Sequence[int] | None = None, timeout: float = START_TIMEOUT) -> None:
        """Remember which node each of ``shards`` (default: all) lives on, for messages."""
        import ray

        numbers = list(range(self.count)) if shards is None else list(shards)
        try:
            infos = ray.get([self.hosts[number].info.remote() for number in numbers], timeout=timeout)
        except Exception:  # only for messages: a shard that cannot say where it is will say so when called
            return
        for number, info in zip(numbers, infos):
            self.nodes[number] = info["node"]

    def describe(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Each shard's number, documents, node, process and whether Ray restarted it; a shard that does not
        answer within ``timeout`` seconds is marked ``"reachable": False``."""
        import ray

        described = super().describe()
        if not self.hosts:
            return described
        references = [host.info.remote() for host in self.hosts]
        ready, _ = ray.wait(references, num_returns=len(references), timeout=timeout)
        for entry, reference in zip(described, references):
            entry["node"] = self.nodes[entry["shard"]]
            try:
                info = ray.get(reference, timeout=0) if reference in ready else None
            except Exception:  # lost: said as such
                info = None
            if info is None:
                entry["reachable"] = False
                continue
            entry.update(node=info["node"], pid=info["pid"], restarted=info["restarted"], reachable=True)
        return described

    def close(self) -> None:
        import ray

        for host in self.hosts:
            try:
                ray.kill(host)
            except Exception:  # already gone with its node: nothing left to end
                pass
        self.hosts = []

    # -- calls ----------------------------------------------------------------------------------------
    def _call(
        self, calls: list[tuple[int, str, tuple]], timeout: float | None, recover: bool = True
    ) -> tuple[list[Any], dict[int, str]]:
        """Run ``(shard, method, args)`` calls; their results (None where failed) and why shards failed.

        ``timeout`` bounds the whole, recoveries included (None: no bound, for
        writes, whose failures Ray still reports).
        """
        import ray

        deadline = None if timeout is None else time.monotonic() + timeout
        results: list[Any] = [None] * len(calls)
        failures: dict[int, str] = {}
        pending = {getattr(self.hosts[shard], method).remote(*args): i for i, (shard, method, args) in enumerate(calls)}
        while pending:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            # Every answer at once (one wake-up, not one per shard); a shard that fails fast is answered by then.
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=remaining)
            for reference in ready:
                position = pending.pop(reference)
                shard, method, args = calls[position]
                try:
                    results[position] = ray.get(reference)
                    continue
                except Exception as error:  # classified below: request errors are raised, faults recovered
                    if recover:
                        reason = self._recover(shard, error, deadline)
                    else:
                        _request_error(error)
                        reason = _first_line(error)
                if reason is None:
                    pending[getattr(self.hosts[shard], method).remote(*args)] = position
                else:
                    failures[shard] = reason
        for reference, position in pending.items():
            failures[calls[position][0]] = f"no answer within {timeout:g} s"
            ray.cancel(reference)
        return results, failures

    def _recover(self, shard: int, error: Exception, deadline: float | None) -> str | None:
        """After a failed call: None when the shard may be asked again, else why it failed for good."""
        import ray.exceptions as faults

        cause = _request_error(error)
        if isinstance(error, faults.ActorUnavailableError):
            time.sleep(0.05 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
            return None  # restarting, or briefly unreachable: Ray queues the next call until it is back
        if cause is None and not isinstance(error, faults.RayActorError):
            return _first_line(error)
        record = self.records[shard]
        if not record.restorable:
            saved = "no save holds its current contents" if record.folder else "it was never saved"
            return (
                f"lost with its process or machine (node {self.nodes[shard][:12] or '?'}), and {saved}: save the "
                "retriever (cherche_faiss.save) to make lost shards restartable"
            )
        with self._recovering:
            return self._reload(shard, deadline)

    def _reload(self, shard: int, deadline: float | None) -> str | None:
        """Reload a lost shard from its save: in its restarted actor, else in a new one (Ray gave up on it)."""
        import ray

        record = self.records[shard]
        args = self._restore_args(record.folder, record.manifest)  # type: ignore[arg-type]  # restorable
        for attempt in range(2):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ray.get(self.hosts[shard].restore.remote(*args), timeout=remaining)
            except ray.exceptions.GetTimeoutError:
                return "it was lost and could not be reloaded from its save in time"
            except ray.exceptions.ActorUnavailableError:
                return None  # still restarting: asked again
            except ray.exceptions.RayActorError:
                if attempt:
                    return "it was lost, and so was the new actor started to reload it"
                self.hosts[shard] = self._new_host(shard)  # dead for good (restarts exhausted): a new actor
                continue
            except Exception as error:  # the save is gone or damaged
                cause = getattr(error, "cause", None) or error
                return f"it was lost, and reloading it from {record.folder} failed ({_first_line(cause)})"
            self._update_nodes([shard], timeout=1.0)
            return None
        return None  # pragma: no cover - the loop returns

    def _unavailable(self, failures: dict[int, str], what: str) -> ShardUnavailableError:
        details = "; ".join(f"shard {shard}: {reason}" for shard, reason in sorted(failures.items()))
        return ShardUnavailableError(
            f"{len(failures)} of {self.count} shards {what}: {details}.", tuple(sorted(failures))
        )

    def _checked(self, calls: list[tuple[int, str, tuple]], what: str, timeout: float | None = None) -> list[Any]:
        results, failures = self._call(calls, timeout)
        if failures:
            raise self._unavailable(failures, what)
        return results

    # -- the ShardGroup interface ---------------------------------------------------------------------
    def submit_add(self, shard: int, vectors: np.ndarray, keys: list[Hashable], ordinals: np.ndarray) -> None:
        self.records[shard].changed()
        args = (vectors, keys, ordinals)
        self._pending.append((shard, "add", args, self.hosts[shard].add.remote(*args)))
        if len(self._pending) > _IN_FLIGHT_PER_SHARD * self.count:
            self._settle(self._pending[: len(self._pending) // 2])

    def _settle(self, submitted: list[tuple[int, str, tuple, Any]]) -> None:
        import ray

        del self._pending[: len(submitted)]
        for shard, method, args, reference in submitted:
            try:
                size = ray.get(reference)
            except Exception as error:  # retried once recovered, else said
                reason = self._recover(shard, error, None)
                if reason is not None:
                    self._pending.clear()
                    raise self._unavailable({shard: reason}, "could not add documents") from None
                size = self._checked([(shard, method, args)], "could not add documents")[0]
            self.records[shard].documents = int(size)

    def flush(self) -> None:
        self._settle(list(self._pending))

    def missing(self, parts: dict[int, list[Hashable]]) -> list[Hashable]:
        calls = [(shard, "missing", (keys,)) for shard, keys in parts.items()]
        return [key for found in self._checked(calls, "could not look keys up") for key in found]

    def remove(self, parts: dict[int, list[Hashable]]) -> None:
        for shard in parts:
            self.records[shard].changed()
        calls = [(shard, "remove", (keys,)) for shard, keys in parts.items()]
        for (shard, _, _), size in zip(calls, self._checked(calls, "could not remove documents")):
            self.records[shard].documents = int(size)

    def search(
        self, matrix: np.ndarray, k: int | None, params: dict[str, int], timeout: float
    ) -> tuple[list[ShardHits | None], dict[int, str]]:
        import ray

        # One copy in the object store, whatever the shard count (each node fetches it once); a small matrix
        # (a few queries) travels inside each call instead, as Ray does with small arguments: cheaper than a put.
        query = ray.put(matrix) if matrix.nbytes > _INLINE_BYTES else matrix
        results, failures = self._call([(shard, "search", (query, k, params)) for shard in range(self.count)], timeout)
        return results, failures

    def write(self, folders: Sequence[Path]) -> None:
        self._checked([(shard, "save", (str(folder),)) for shard, folder in enumerate(folders)], "could not be saved")

    # -- pickling ---------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        self.flush()
        return {
            **super().state(),
            "hosts": list(self.hosts),
            "nodes": list(self.nodes),
            "address": self.address,
            "options": self.options,
            "max_restarts": self.max_restarts,
            "load_options": self.load_options,
        }

    @classmethod
    def from_state(cls, count: int, state: dict[str, Any]) -> RayShards:
        group = cls(count, state["address"], state["options"], state["max_restarts"], state["load_options"])
        group.restore_records(state)
        group.hosts, group.nodes = list(state["hosts"]), list(state["nodes"])
        return group
