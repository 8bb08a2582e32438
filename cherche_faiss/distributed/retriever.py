"""ShardedRetriever: a dense retriever whose index is spread over shards, on a Ray cluster.

See ``docs/distributed.md`` for the build, search and serve paths, the
measured costs and the scaling model.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from .._core.documents import encoded_batches, length_of
from .._core.keywords import check_keywords
from .._core.validation import check_k, check_positive_int, documents_with_vectors
from ..exceptions import InvalidInputError, InvalidTypeError, PartialResultsWarning, UnknownKeyError
from ..index._search_params import SEARCH_PARAMETERS, check_search_params
from ..index.dense import chunks
from ..index.faiss import FaissIndex
from ..retrieve._dense import DenseRetriever
from ..retrieve._hits import make_hits
from ..retrieve.base import Retriever
from ._group import ShardGroup
from ._ingest import Router, buffered, counted, shard_index_spec, training_size
from ._persistence import ShardedStateMixin
from .build import dataset_size, encode_on_ray, is_dataset
from .merge import merge_top_k
from .routing import shard_of

__all__ = ["ShardedRetriever"]

_POLICIES = ("raise", "partial")


class ShardedRetriever(ShardedStateMixin, Retriever):
    """A dense retriever split into ``shards`` shards, one Ray actor each, that answers like one index.

    Documents go to the shard that owns their key (a hash every process
    computes alike, see :mod:`~cherche_faiss.distributed.routing`). A query is
    encoded once, here; its vectors go to every shard (one object in Ray's
    store, or inside each call for a few queries), each shard returns its top-``k`` as arrays, and the lists are
    merged exactly (:mod:`~cherche_faiss.distributed.merge`): the same hits,
    similarities and order as one unsharded index (similarities of exact
    inner-product search agree to float32 rounding, as a query alone and in a
    batch do on one index).

    Parameters
    ----------
    template
        An empty dense retriever built as usual: ``retrieve.Encoder(...)``,
        ``retrieve.DPR(...)`` or ``retrieve.Embedding(...)``, with ``index``
        ``None``, ``"auto"`` (chosen for the whole corpus; its
        ``memory_budget`` is each shard's), a factory string or a
        ``faiss.Index``. Its key, fields, encoders, ``k``, ``batch_size``,
        metric and normalisation are the sharded retriever's.
    shards
        Number of shards (fixed: keys are routed by ``hash % shards``).
    address
        The Ray cluster to use when this process has not joined one (``None``:
        ``ray.init()``'s default, a local cluster or ``RAY_ADDRESS``;
        ``"auto"``; ``"ray://host:10001"``). Actors start at the first ``add``.
    on_shard_failure
        ``"raise"``: a call that a shard cannot answer raises
        :class:`~cherche_faiss.exceptions.ShardUnavailableError` naming it;
        ``"partial"``: the other shards' hits come back, with a
        :class:`~cherche_faiss.exceptions.PartialResultsWarning`.
    timeout
        Seconds a search may take, recoveries of lost shards included; no
        search waits longer.
    shard_options
        Ray actor options of each shard (``{"num_cpus": 8, "memory": 64e9}``,
        ``resources``, ``scheduling_strategy`` ...), or a list of them, one
        per shard; by default a shard reserves no CPU (one search thread:
        Ray sets a worker's threads to the CPUs it reserves) and shards are
        spread over the nodes.
    max_restarts
        How many times Ray restarts a lost shard actor. A restarted shard is
        reloaded from its save when a save holds its current contents
        (``cherche_faiss.save``); otherwise it is reported as lost.

    Examples
    --------
    Without a cluster, a sharded save loaded with ``cherche_faiss.load`` holds
    its shards in this process (see ``docs/distributed.md`` for Ray):

    >>> from cherche_faiss import retrieve
    >>> from cherche_faiss.encoders import HashingEncoder
    >>> template = retrieve.Encoder(key="id", on="title", encoder=HashingEncoder(), k=2)
    >>> sharded = ShardedRetriever.in_process(template, shards=3)
    >>> sharded = sharded.add([{"id": i, "title": t} for i, t in enumerate(["Paris", "Lyon", "Lille"])],
    ...                       show_progress=False)
    >>> sharded("lyon")[0]["id"], len(sharded)
    (1, 3)
    """

    #: Similarities are float32 vector products: a batch answers as its queries one by one to float32
    #: rounding, as a dense retriever's do (the contract suite reads this).
    _float32_similarities = True

    def __init__(
        self,
        template: Any,
        shards: int = 2,
        address: str | None = None,
        on_shard_failure: str = "raise",
        timeout: float = 30.0,
        shard_options: dict | list[dict] | None = None,
        max_restarts: int = 3,
    ) -> None:
        if not isinstance(template, DenseRetriever):
            raise InvalidTypeError(
                f"template must be a dense retriever (retrieve.Encoder, retrieve.DPR or retrieve.Embedding), got "
                f"{type(template).__name__}. Build it as for one machine, empty, and pass it here."
            )
        if len(template):
            raise InvalidInputError(
                f"template holds {len(template)} documents; pass it empty and add the documents to the sharded "
                "retriever, which routes each one to its shard."
            )
        if on_shard_failure not in _POLICIES:
            raise InvalidInputError(f"on_shard_failure must be one of {_POLICIES}, got {on_shard_failure!r}.")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        if shard_options is not None and not (
            isinstance(shard_options, dict)
            or (isinstance(shard_options, list) and all(isinstance(options, dict) for options in shard_options))
        ):
            raise InvalidTypeError(
                f"shard_options must be a dict of Ray actor options, or a list of them (one per shard), got "
                f"{shard_options!r}."
            )
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise InvalidInputError(f"max_restarts must be a non-negative integer, got {max_restarts!r}.")
        if address is not None and not isinstance(address, str):
            raise InvalidTypeError(f"address must be a Ray address (a string) or None, got {address!r}.")
        self._reads_fields = template._reads_fields
        super().__init__(key=template.key, on=template.on, k=template.k, batch_size=template.batch_size)
        self.template = template
        self.shards = check_positive_int(shards, "shards", allow_none=False)
        if isinstance(shard_options, list) and len(shard_options) != self.shards:
            raise InvalidInputError(f"shard_options lists {len(shard_options)} options for {self.shards} shards.")
        self.address = address
        self.on_shard_failure = on_shard_failure
        self.timeout = float(timeout)
        self.shard_options = shard_options
        self.max_restarts = max_restarts
        self.search_params: dict[str, int] = {}
        self._group: ShardGroup | None = None
        self._next_ordinal = 0
        self._dimension: int | None = None
        self._trained: np.ndarray | None = None  # the trained empty index every shard started from

    @classmethod
    def in_process(cls, template: Any, shards: int = 2, **options: Any) -> ShardedRetriever:
        """A sharded retriever whose shards live in this process (no Ray): what ``cherche_faiss.load`` gives
        for a sharded save, for tests and for corpora one machine can still hold."""
        from ._local import LocalShards

        retriever = cls(template, shards, **options)
        retriever._group = LocalShards(retriever.shards)
        return retriever

    # -- what it holds ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return 0 if self._group is None else sum(record.documents for record in self._group.records)

    @property
    def placement(self) -> str:
        """Where the shards live: ``"ray"`` or ``"in-process"`` (``"none"`` before the first ``add``)."""
        return "none" if self._group is None else self._group.placement

    @property
    def trained_index(self) -> Any:
        """The trained, empty ``faiss.Index`` every shard started from (None when the index needs no training)."""
        if self._trained is None:
            return None
        import faiss

        return faiss.deserialize_index(self._trained)

    def describe_shards(self) -> list[dict[str, Any]]:
        """One dict per shard: its number, documents, and (on Ray) its node, process and whether it restarted."""
        return [] if self._group is None else self._group.describe()

    def close(self) -> None:
        """End the shard actors (their documents are gone unless saved); the retriever is empty after."""
        if self._group is not None:
            self._group.close()
        self._group = None
        self._next_ordinal, self._dimension, self._trained = 0, None, None

    def _shard_group(self) -> ShardGroup:
        if self._group is None:
            from ._ray_shards import RayShards

            self._group = RayShards(self.shards, self.address, self.shard_options, self.max_restarts)
        return self._group

    # -- adding and removing ------------------------------------------------------------------------------
    def add(
        self,
        documents: Any,
        embeddings_documents: Any = None,
        batch_size: int | None = None,
        concurrency: int = 1,
        num_cpus: float = 1,
        show_progress: bool = True,
        encode_options: dict | None = None,
        **kwargs: Any,
    ) -> ShardedRetriever:
        """Encode ``documents`` and add each one to the shard that owns its key (a key added again is replaced).

        On Ray, documents are encoded by ``concurrency`` encoder actors
        (Ray Data ``map_batches`` on an actor pool, see
        :mod:`~cherche_faiss.distributed.build`); in process, here, batch by
        batch. The first vectors decide the shards' index: ``"auto"`` chooses
        it for the corpus, and an index that needs training is trained once,
        on a sample of them, then given to every shard.

        Parameters
        ----------
        documents
            Dicts with the key and ``on`` fields (a list or any iterable), or a
            ``ray.data.Dataset`` of them.
        embeddings_documents
            The vectors, for an ``Embedding`` template (one row per document).
        batch_size
            Documents per encoding batch (default: the template's ``batch_size``).
        concurrency
            Encoder actors on Ray.
        num_cpus
            CPUs each encoder actor reserves (Ray sets its threads to them).
        show_progress
            A progress bar of the documents added.
        encode_options
            Other Ray options of the encoder actors: ``{"num_gpus": 1}`` (with a
            template encoder on ``device="cuda"``), ``memory``, ``resources`` ...

        Returns
        -------
        ShardedRetriever
            ``self``.
        """
        size = check_positive_int(batch_size, "batch_size") or self.batch_size
        concurrency = check_positive_int(concurrency, "concurrency", allow_none=False)
        group = self._shard_group()
        if not self._reads_fields:
            keys, vectors = documents_with_vectors(documents, embeddings_documents, self.key, "retriever")
            batches: Iterable = ((chunk, keys[start : start + len(chunk)]) for start, chunk in chunks(vectors, size))
            total: int | None = len(keys)
        elif group.placement == "ray":
            total = dataset_size(documents) if is_dataset(documents) else None
            encoder = self.template.encoder
            fields = list(self.on or ())
            batches, counted_total = encode_on_ray(
                documents, encoder, self.key, fields, size, concurrency, num_cpus, encode_options
            )
            total = total or counted_total
        else:
            total = length_of(documents) if not is_dataset(documents) else None
            batches = encoded_batches(self.template.encoder, documents, self.key, self.on, size)  # type: ignore[arg-type]
        self._ingest(counted(batches, total, show_progress, "ShardedRetriever adding"), total, show_progress)
        return self

    def _ingest(self, batches: Iterable[tuple[Any, list[Hashable]]], total: int | None, show_progress: bool) -> None:
        group = self._shard_group()
        router = Router(group, self._next_ordinal, self._dimension, self.template.index.normalize)
        try:
            if not group.started:
                batches = self._start_shards(group, batches, total, show_progress)
            for vectors, keys in batches:
                router.send(vectors, keys)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to see
                group.flush()
            raise
        else:
            group.flush()
        finally:
            self._next_ordinal = router.next_ordinal
            self._dimension = router.dimension

    def _start_shards(self, group: ShardGroup, batches: Iterable, total: int | None, show_progress: bool) -> Any:
        """Start the shards from the first vectors (training the index once when it needs it); the batches
        with those vectors put back in front."""
        first, rest = buffered(batches, 1)
        if not first:
            return iter(())
        dimension = int(np.asarray(first[0][0]).shape[-1])
        needed = training_size(self.template.index, dimension, total, self.shards)
        held = sum(len(keys) for _, keys in first)
        if needed > held:
            more, rest = buffered(rest, needed - held)
            first += more
        sample = np.concatenate([vectors for vectors, _ in first])
        spec, trained = shard_index_spec(self.template.index, sample, total, self.shards, show_progress)
        group.start(spec)
        self._trained = None if trained is None else np.asarray(trained, dtype=np.uint8)
        return _chain(first, rest)

    def remove(self, keys: Iterable[Hashable]) -> ShardedRetriever:
        """Remove the documents of ``keys`` from their shards; every key must be held (else nothing changes)."""
        keys = list(keys)
        if not keys:
            return self
        if self._group is None or not self._group.started:
            raise UnknownKeyError(f"cannot remove {len(keys)} key(s): the sharded retriever holds no document.")
        parts = _by_shard(keys, self.shards)
        missing = self._group.missing(parts)
        if missing:
            raise UnknownKeyError(
                f"cannot remove {len(missing)} key(s) no shard holds, e.g. {missing[:5]}; nothing was removed. "
                "Remove only keys that were added."
            )
        self._group.remove(parts)
        return self

    # -- searching --------------------------------------------------------------------------------------
    def set_search_params(self, **search_params: int) -> ShardedRetriever:
        """Default ``nprobe``/``efSearch`` of every shard's searches; returns ``self``."""
        self.search_params = {**self.search_params, **check_search_params(search_params)}
        return self

    def _call_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return check_search_params({name: kwargs[name] for name in SEARCH_PARAMETERS if name in kwargs})

    #: Keyword arguments a call takes besides ``q``, ``k`` and ``batch_size``: no ``filter`` (see ``__call__``).
    _call_keywords = frozenset(SEARCH_PARAMETERS)

    def __call__(self, q: Any, k: int | None = None, batch_size: int | None = None, **kwargs: Any) -> list:
        if "filter" in kwargs:
            raise InvalidInputError(
                "ShardedRetriever does not support filter= yet: its shards keep vectors only, not the filterable "
                "fields. Search an unsharded retriever (retrieve.Encoder, retrieve.Embedding ...) with filter=, "
                "or filter the hits yourself."
            )
        if kwargs:
            check_keywords(self, kwargs, ("q", "k", "batch_size"))
        if self._reads_fields:
            return super().__call__(q, k, batch_size, **kwargs)
        # An Embedding template: q is one vector, or one row per query (as retrieve.Embedding takes it).
        k = check_k(k) or self.k
        size = check_positive_int(batch_size, "batch_size") or self.batch_size
        params = self._call_options(kwargs)
        self._check_indexed()
        vectors = self._query_index().prepare(q, "q")
        results: list[list[dict]] = []
        for _, chunk in chunks(vectors, size):
            results.extend(self._hits(chunk, k, params))
        return results[0] if len(vectors) == 1 else results

    def _search(self, queries: list[str], k: int | None, **search_params: int) -> list[list[dict]]:
        vectors = self.template.query_encoder.encode(queries, batch_size=self.batch_size)
        return self._hits(self._query_index().prepare(vectors, "queries"), k, search_params)

    def _query_index(self) -> FaissIndex:
        """An empty index with the shards' dimension and normalisation: it checks and normalises queries
        exactly as one unsharded index would (once, here, for every shard)."""
        index = self.template.index
        checker = self.__dict__.get("_checker")
        if checker is None or checker.dimension != self._dimension:
            checker = FaissIndex(dimension=self._dimension, metric=index.metric, normalize=index.normalize)
            self.__dict__["_checker"] = checker
        return checker

    def _hits(self, matrix: np.ndarray, k: int | None, params: dict[str, int]) -> list[list[dict]]:
        group = self._shard_group()
        answers, failures = group.search(matrix, k, {**self.search_params, **params}, self.timeout)
        if failures:
            details = "; ".join(f"shard {shard}: {reason}" for shard, reason in sorted(failures.items()))
            message = f"{len(failures)} of {self.shards} shards did not answer ({details})"
            if self.on_shard_failure == "raise":
                from ..exceptions import ShardUnavailableError

                raise ShardUnavailableError(
                    message + '. Pass on_shard_failure="partial" to get the other shards\' hits.', tuple(failures)
                )
            warnings.warn(message + "; these hits come from the other shards only.", PartialResultsWarning, 3)
        keys, similarities = merge_top_k([answer for answer in answers if answer is not None], k)
        return [make_hits(self.key, row_keys, row_scores) for row_keys, row_scores in zip(keys, similarities)]


def _by_shard(keys: list[Hashable], shards: int) -> dict[int, list[Hashable]]:
    owners = shard_of(keys, shards).tolist()
    parts: dict[int, list[Hashable]] = {}
    for key, owner in zip(keys, owners):
        parts.setdefault(owner, []).append(key)
    return parts


def _chain(first: list, rest: Iterable) -> Any:
    yield from first
    yield from rest
