"""Dense retrieval beyond one machine: shards of one index on a Ray cluster (``pip install cherche-faiss[ray]``).

A :class:`ShardedRetriever` wraps a dense retriever built as usual (the
*template*), routes each document to the shard that owns its key, and answers
queries like one index: the query is encoded once, every shard searches its
part, and the per-shard top-k are merged exactly. Documents are encoded on an
actor pool with Ray Data, an index that needs training is trained once and
shared by every shard, saves hold one folder per shard, and a shard lost with
its machine is reloaded from its save within the call's time bound.

Importing this package does not import Ray: the cluster is joined at the
first ``add`` (or by :func:`load`).
"""

from ._persistence import load
from .merge import ShardHits, merge_top_k
from .retriever import ShardedRetriever
from .routing import key_hash, shard_of
from .shard import Shard

__all__ = ["ShardedRetriever", "Shard", "ShardHits", "load", "merge_top_k", "key_hash", "shard_of"]
