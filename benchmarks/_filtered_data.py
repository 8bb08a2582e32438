"""What the filtered-search benchmarks share: the documents, their ``bucket`` column,
the filters of each selectivity, the exact filtered answers and raw FAISS indexes,
cached under ``benchmarks/.cache`` (gitignored) so that reruns skip the slow parts.

Documents are the SciFact MiniLM vectors grown to ``n`` rows by
``embeddings.dataset`` (1,000,000 x 384 at the quick and full sizes). Each
document gets an integer ``bucket`` drawn uniformly from ``[0, 10000)``
(seeded), independent of its vector, so the filter ``{"bucket": {"$lt": t}}``
allows a fraction ``t / 10000`` of the corpus: 5000 for 50 %, 1 for 0.01 %.
Queries are the first SciFact claims (held out from the documents).
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Config  # noqa: E402

K = 10
BUCKETS = 10_000
SIZES = {"smoke": 20_000, "quick": 1_000_000, "full": 1_000_000}
QUERIES = {"smoke": 20, "quick": 200, "full": 200}
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001, 0.0001)
# Finer steps for the planner's threshold (exact subset against a selector).
THRESHOLD_SELECTIVITIES = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0001)


def size_for(config: Config) -> int:
    return int(config.extra.get("n", SIZES[config.size]))


def threshold_of(selectivity: float) -> int:
    """``t`` of the filter ``{"bucket": {"$lt": t}}`` allowing ``selectivity`` of the documents."""
    return max(1, round(selectivity * BUCKETS))


def filter_of(selectivity: float) -> dict[str, Any]:
    return {"bucket": {"$lt": threshold_of(selectivity)}}


def buckets(n: int, seed: int = 1) -> np.ndarray:
    """The ``bucket`` column: int32 drawn uniformly from ``[0, BUCKETS)``, independent of the vectors."""
    return np.random.default_rng(seed).integers(0, BUCKETS, size=n, dtype=np.int32)


def data(config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``(documents, bucket column, queries, source)`` for ``config``.

    Beyond smoke size the documents grow from every real sentence vector (45,183, as
    ``large_corpus`` at full size): grown from the 10,000 of the quick size, each real vector
    would get 99 noisy copies at 1M, clusters of near-equidistant siblings on which HNSW32
    needs efSearch 1024 for recall@10 0.9 without any filter (0.957 at efSearch 48 from 45k).
    """
    from embeddings import dataset

    n = size_for(config)
    vectors = dataset(n, config if config.smoke else Config(size="full", cache_dir=config.cache_dir))
    queries = np.ascontiguousarray(vectors.queries[: int(config.extra.get("queries", QUERIES[config.size]))])
    return vectors.documents, buckets(n), queries, vectors.source


def _tag(documents: np.ndarray, queries: np.ndarray) -> str:
    """A short fingerprint of the data, so that a cache never serves other vectors."""
    digest = hashlib.sha256()
    for array in (documents[:: max(1, len(documents) // 997)], queries):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(str(documents.shape).encode())
    return digest.hexdigest()[:12]


def data_tag(documents: np.ndarray) -> str:
    """A short fingerprint of the documents alone (rows sampled, and the shape)."""
    return _tag(documents, documents[:0])


def exact_filtered(
    documents: np.ndarray, column: np.ndarray, queries: np.ndarray, selectivity: float, k: int = K
) -> np.ndarray:
    """Ids of the exact top-``k`` among the allowed documents for each query (``-1`` padded)."""
    allowed = np.flatnonzero(column < threshold_of(selectivity))
    found = np.full((len(queries), k), -1, dtype=np.int64)
    if not len(allowed):
        return found
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), 0), -1, dtype=np.int64)
    for start in range(0, len(allowed), 1 << 17):
        ids = allowed[start : start + (1 << 17)]
        scores = np.concatenate([best_scores, queries @ documents[ids].T], axis=1)
        every = np.concatenate([best_ids, np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
        keep = min(k, scores.shape[1])
        top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(every, top, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    ranked = np.take_along_axis(best_ids, order, axis=1)
    found[:, : ranked.shape[1]] = ranked
    return found


def truths(
    config: Config, documents: np.ndarray, column: np.ndarray, queries: np.ndarray, selectivities: tuple[float, ...]
) -> dict[float, np.ndarray]:
    """Exact filtered answers for every selectivity, cached on disk (not at smoke size)."""
    path = Path(config.cache_dir) / f"filtered-truth-{_tag(documents, queries)}-{len(queries)}.npz"
    cached: dict[str, np.ndarray] = dict(np.load(path)) if path.is_file() and not config.smoke else {}
    found = {}
    for selectivity in selectivities:
        name = f"s{threshold_of(selectivity)}"
        if name not in cached:
            cached[name] = exact_filtered(documents, column, queries, selectivity)
        found[selectivity] = cached[name]
    if not config.smoke:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **cached)
    return found


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of ``|found ∩ truth| / |truth|`` (truth without its ``-1`` padding)."""
    values = []
    for hits, expected in zip(found, truth):
        wanted = {int(i) for i in expected if i >= 0}
        if wanted:
            values.append(len(wanted & {int(i) for i in hits if i >= 0}) / len(wanted))
    return float(np.mean(values)) if values else 1.0


def raw_index(config: Config, factory: str, documents: np.ndarray, queries: np.ndarray) -> tuple[Any, float]:
    """A raw FAISS inner-product index of ``documents`` (ids = row numbers), read from the cache
    or built and cached (not at smoke size); returns it and the build time in seconds (0 when read)."""
    import faiss

    name = factory.replace(",", "_")
    path = Path(config.cache_dir) / f"filtered-raw-{name}-{_tag(documents, queries)}.faiss"
    if path.is_file() and not config.smoke:
        return faiss.read_index(str(path)), 0.0
    started = time.perf_counter()
    index = faiss.index_factory(documents.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        ivf = faiss.extract_index_ivf(index)
        index.train(documents[: min(len(documents), 50 * ivf.nlist)])
    for start in range(0, len(documents), 100_000):
        index.add(documents[start : start + 100_000])
    seconds = time.perf_counter() - started
    if not config.smoke:
        path.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(index, str(path) + ".tmp")
        Path(str(path) + ".tmp").replace(path)
    return index, seconds


def bitmap_selector(mask: np.ndarray) -> tuple[Any, np.ndarray]:
    """A ``faiss.IDSelectorBitmap`` over row numbers, and the bytes it points to (keep them alive)."""
    import faiss

    bits = np.packbits(mask, bitorder="little")
    # n counts bytes: id i is selected when bit i % 8 of byte i // 8 is set.
    return faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits
