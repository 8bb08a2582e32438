"""A deterministic, dependency-free text encoder for examples and unit tests."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from .._core.validation import check_positive_int
from ..exceptions import InvalidInputError, InvalidTypeError
from .base import BaseEncoder

__all__ = ["HashingEncoder"]


class HashingEncoder(BaseEncoder):
    """Hash the character n-grams of each text into a signed, L2-normalised vector.

    The same text always gives the same vector, on every machine and Python
    version (``zlib.crc32`` is stable, unlike ``hash``). Texts sharing n-grams
    get similar vectors, which is enough for tests and examples; it knows no
    semantics.

    Parameters
    ----------
    dimension
        Number of hash buckets (the embedding dimension).
    ngram_range
        Smallest and largest n-gram length, in characters.
    lowercase
        Lower-case texts before hashing.
    seed
        Changes every bucket assignment; two seeds give unrelated encoders.

    Examples
    --------
    >>> encoder = HashingEncoder(dimension=32)
    >>> vectors = encoder.encode(["paris", "paris", "bordeaux"])
    >>> vectors.shape, vectors.dtype.name
    ((3, 32), 'float32')
    >>> bool((vectors[0] == vectors[1]).all()), round(float(vectors[0] @ vectors[0]), 5)
    (True, 1.0)
    """

    def __init__(
        self,
        dimension: int = 256,
        ngram_range: tuple[int, int] = (3, 5),
        lowercase: bool = True,
        seed: int = 0,
    ) -> None:
        self.dimension = check_positive_int(dimension, "dimension", allow_none=False)
        low, high = ngram_range
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
            raise InvalidInputError(f"ngram_range must be (min, max) with 1 <= min <= max, got {ngram_range!r}.")
        self.ngram_range = (low, high)
        self.lowercase = bool(lowercase)
        self.seed = int(seed)

    def _features(self, text: str) -> list[str]:
        padded = f" {text.lower() if self.lowercase else text} "
        low, high = self.ngram_range
        grams = [padded[i : i + n] for n in range(low, high + 1) for i in range(len(padded) - n + 1)]
        # A text shorter than the smallest n-gram still gets a (non-zero) vector.
        return grams or [padded]

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidTypeError("encode takes a list of texts, got one string; wrap it in a list.")
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidTypeError(f"texts[{row}] must be a string, got {type(text).__name__}.")
            for gram in self._features(text):
                digest = zlib.crc32(gram.encode("utf-8"), self.seed)
                vectors[row, digest % self.dimension] += 1.0 if digest & 0x80000000 else -1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # Opposite signs can cancel out exactly; keep such a vector non-zero and stable.
        vectors[norms[:, 0] == 0, 0] = 1.0
        norms[norms == 0] = 1.0
        return vectors / norms
