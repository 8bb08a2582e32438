"""Document and query vectors for the dense benchmarks: real MiniLM embeddings of
SciFact, cached, and larger sets derived from them.

Documents are the sentences of the SciFact abstracts (``corpus.jsonl.gz``):
each abstract is split after ``.``, ``!`` or ``?`` followed by white space,
sentences of fewer than five words are dropped, and the order is the corpus
order (deterministic). Queries are the 1,109 SciFact claims
(``queries.jsonl``), held out from the documents. Both are encoded once with
all-MiniLM-L6-v2 (``normalize_embeddings=True``, batches of 64, float32) and
cached as ``.npy`` files under ``benchmarks/.cache`` (gitignored)::

    python benchmarks/embeddings.py --build            # 10,000 sentences + queries (about a minute)
    python benchmarks/embeddings.py --build --all      # every sentence (45,183, several minutes)

Sizes. ``quick`` uses 10,000 real sentence vectors, ``full`` every sentence;
larger collections (100k, 1M) are :func:`derived` from those. ``smoke`` uses
2,000 vectors derived from 300 real sentences, taken from the cache when it
exists and otherwise encoded with the dependency-free
:class:`~cherche_faiss.encoders.HashingEncoder` (queries too), so that CI never
loads a model.

Derived vectors. Row ``i`` of a derived set is real vector ``i`` for
``i < m`` (the ``m`` real ones come first, unchanged) and otherwise real vector
``i mod m`` plus Gaussian noise of standard deviation ``SIGMA = 0.04`` per
dimension, renormalised. At d=384 the noise has norm ``0.04 * sqrt(384) =
0.78``, so a copy keeps a cosine of about ``1 / sqrt(1 + 0.61) = 0.79`` with
its source and about 0.62 with a sibling copy: the range of genuine
paraphrase neighbours in MiniLM space. A query's top-10 is then a mix of real
sentences and copies of the best ones, the scores keep the spread of real
data (which is what a top-k heap or ``argpartition`` feels), and no two
vectors are identical, so exact ties (which would make the sides' top-10
disagree for no reason) do not occur. A smaller sigma (0.01) would make
clusters of near-duplicates with almost equal scores; a larger one (0.1)
would drown the semantic structure in noise (cosine 0.45 to the source).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE_DIR, SCIFACT, Config  # noqa: E402

__all__ = [
    "DIMENSION",
    "SIGMA",
    "Vectors",
    "dataset",
    "derived",
    "query_texts",
    "query_vectors",
    "real_vectors",
    "sentences",
]

DIMENSION = 384  # all-MiniLM-L6-v2
SIGMA = 0.04  # noise per dimension of derived vectors (see the module docstring)
MIN_WORDS = 5
QUICK_REAL = 10_000  # real sentence vectors behind the quick size
SMOKE_REAL = 300  # real sentences behind the smoke size
SMOKE_SIZE = 2_000
BATCH_SIZE = 64
_TAG = "scifact-minilm-v1"  # bump when the sentence split or the encoding changes
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _require_scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl.gz").is_file() or not (SCIFACT / "queries.jsonl").is_file():
        raise FileNotFoundError(
            f"the SciFact data is missing: expected corpus.jsonl.gz and queries.jsonl in {SCIFACT}. "
            "The dense benchmarks read it from the shared folder next to the repository "
            "(../shared/data/scifact); check out or mount ../shared first."
        )
    return SCIFACT


# -- texts -------------------------------------------------------------------------------------
def sentences(limit: int | None = None) -> list[str]:
    """Sentences of at least five words from the SciFact abstracts, in corpus order.

    Parameters
    ----------
    limit
        Stop after this many sentences (all of them when None).

    Raises
    ------
    FileNotFoundError
        When ``../shared/data/scifact`` is missing.
    """
    folder = _require_scifact()
    found: list[str] = []
    with gzip.open(folder / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            for sentence in _SENTENCE_END.split(json.loads(line)["text"]):
                sentence = sentence.strip()
                if len(sentence.split()) >= MIN_WORDS:
                    found.append(sentence)
                    if limit is not None and len(found) >= limit:
                        return found
    return found


def query_texts() -> list[str]:
    """The 1,109 SciFact claims, in file order (held out from the documents)."""
    folder = _require_scifact()
    with open(folder / "queries.jsonl", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


# -- encoding and cache ----------------------------------------------------------------------------
def _encode_minilm(texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    from cherche_faiss.data import minilm_path

    model = SentenceTransformer(minilm_path(), device="cpu")
    vectors = model.encode(
        texts, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _encode_hashing(texts: list[str]) -> np.ndarray:
    from cherche_faiss.encoders import HashingEncoder

    vectors = HashingEncoder(dimension=DIMENSION).encode(texts)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _cache_file(cache_dir: Path, kind: str, count: int) -> Path:
    return Path(cache_dir) / f"{_TAG}-{kind}-{count}.npy"


def _cached(cache_dir: Path, kind: str, n: int | None) -> Path | None:
    """The smallest cache file of ``kind`` holding at least ``n`` rows (any when ``n`` is None: the largest)."""
    files = []
    for path in Path(cache_dir).glob(f"{_TAG}-{kind}-*.npy"):
        try:
            files.append((int(path.stem.rsplit("-", 1)[1]), path))
        except ValueError:
            continue
    if not files:
        return None
    if n is None:
        return max(files)[1]
    fitting = sorted(item for item in files if item[0] >= n)
    return fitting[0][1] if fitting else None


def real_vectors(n: int | None = None, cache_dir: Path = CACHE_DIR, encode: bool = True) -> np.ndarray | None:
    """MiniLM vectors of the first ``n`` sentences (all when None), from the cache or encoded.

    A cache of more sentences serves a smaller ``n`` (its first rows). When
    ``n`` is None only a cache of every sentence counts.

    Parameters
    ----------
    n
        Number of sentences.
    cache_dir
        Folder of the ``.npy`` cache.
    encode
        Encode (and cache) when the cache lacks them; when False, return None instead.

    Returns
    -------
    numpy.ndarray or None
        Float32 ``(n, 384)``, unit rows.
    """
    texts = None
    if n is None:
        texts = sentences()
        n = len(texts)
    path = _cached(cache_dir, "sentences", n)
    if path is not None:
        return np.ascontiguousarray(np.load(path, mmap_mode="r")[:n])
    if not encode:
        return None
    texts = texts if texts is not None else sentences(n)
    vectors = _encode_minilm(texts)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    np.save(_cache_file(cache_dir, "sentences", len(vectors)), vectors)
    return vectors


def query_vectors(cache_dir: Path = CACHE_DIR, encode: bool = True) -> np.ndarray | None:
    """MiniLM vectors of the 1,109 SciFact queries, from the cache or encoded (None when
    absent and ``encode`` is False)."""
    path = _cached(cache_dir, "queries", None)
    if path is not None:
        return np.load(path)
    if not encode:
        return None
    vectors = _encode_minilm(query_texts())
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    np.save(_cache_file(cache_dir, "queries", len(vectors)), vectors)
    return vectors


# -- derived collections ---------------------------------------------------------------------------
def derived(
    n: int,
    seed: int = 0,
    base: np.ndarray | None = None,
    sigma: float = SIGMA,
    chunk: int = 1 << 16,
) -> np.ndarray:
    """``n`` unit vectors grown from real ones: the real rows first, then noisy copies.

    Row ``i`` is ``base[i]`` for ``i < len(base)``, else ``base[i % len(base)]``
    plus N(0, ``sigma``\\ :sup:`2`) noise per dimension, renormalised. Built in
    chunks of ``chunk`` rows so that only the result (``n * d * 4`` bytes) and
    one chunk of noise are in memory.

    Parameters
    ----------
    n
        Number of vectors wanted.
    seed
        Seed of the noise.
    base
        Real unit vectors, float32 ``(m, d)``; the cached quick set
        (10,000 MiniLM sentence vectors) when None.
    sigma
        Standard deviation of the noise per dimension.
    chunk
        Rows generated at once.

    Returns
    -------
    numpy.ndarray
        Float32 ``(n, d)``, C-contiguous, unit rows.
    """
    if base is None:
        base = real_vectors(QUICK_REAL)
    base = np.asarray(base, dtype=np.float32)
    m, d = base.shape
    out = np.empty((n, d), dtype=np.float32)
    out[: min(n, m)] = base[: min(n, m)]
    rng = np.random.default_rng(seed)
    for start in range(m, n, chunk):
        stop = min(start + chunk, n)
        block = out[start:stop]
        rng.standard_normal(out=block, dtype=np.float32)
        block *= np.float32(sigma)
        block += base[np.arange(start, stop) % m]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


@dataclass
class Vectors:
    """A document collection and its held-out queries.

    Attributes
    ----------
    documents
        Float32 ``(n, d)`` unit rows.
    queries
        Float32 ``(nq, d)`` unit rows (the SciFact claims).
    source
        How the documents were made, for the reports.
    """

    documents: np.ndarray
    queries: np.ndarray
    source: str


def dataset(n: int, config: Config, seed: int = 0) -> Vectors:
    """``n`` document vectors and the query vectors for ``config.size``.

    ``quick`` grows from 10,000 real sentence vectors, ``full`` from every
    sentence; ``smoke`` from 300 sentences (MiniLM from the cache, else the
    hashing encoder). Real vectors come first; beyond them, :func:`derived`.

    Raises
    ------
    FileNotFoundError
        When ``../shared/data/scifact`` is missing.
    """
    _require_scifact()
    if config.smoke:
        base = real_vectors(SMOKE_REAL, config.cache_dir, encode=False)
        queries = query_vectors(config.cache_dir, encode=False)
        if base is None or queries is None:
            base, queries, model = _encode_hashing(sentences(SMOKE_REAL)), _encode_hashing(query_texts()), "hashing"
        else:
            model = "MiniLM"
    else:
        base = real_vectors(None if config.full else QUICK_REAL, config.cache_dir)
        queries, model = query_vectors(config.cache_dir), "MiniLM"
    m = len(base)
    if n <= m:
        return Vectors(np.ascontiguousarray(base[:n]), queries, f"{n:,} real SciFact sentence vectors ({model})")
    documents = derived(n, seed=seed, base=base)
    source = f"{m:,} real SciFact sentence vectors ({model}) + {n - m:,} derived (sigma {SIGMA} per dimension)"
    return Vectors(documents, queries, source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fill the embedding cache of the dense benchmarks.")
    parser.add_argument("--build", action="store_true", help="encode and cache the sentence and query vectors")
    parser.add_argument("--all", action="store_true", help="every sentence (the full size), not only 10,000")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    args = parser.parse_args(argv)
    if not args.build:
        parser.print_help()
        return 0
    started = time.perf_counter()
    queries = query_vectors(args.cache_dir)
    documents = real_vectors(None if args.all else QUICK_REAL, args.cache_dir)
    print(
        f"cached {len(documents):,} sentence vectors and {len(queries):,} query vectors in "
        f"{args.cache_dir} ({time.perf_counter() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
