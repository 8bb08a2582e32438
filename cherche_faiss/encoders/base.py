"""The encoder protocol, the library's encoder base and the wrappers of plain callables.

An encoder turns texts into a float32 matrix: ``encode(texts, batch_size) ->
(n, d)``; a scorer turns (query, document) pairs into scores. What users pass
is recognised by :mod:`.factories`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from .._core.component import Component
from .._core.validation import as_matrix
from ..exceptions import InvalidInputError, InvalidTypeError

__all__ = ["Encoder", "BaseEncoder", "CallableEncoder", "CallableScorer", "check_encoded", "check_scores"]


@runtime_checkable
class Encoder(Protocol):
    """Anything with ``encode(texts, batch_size=None) -> np.ndarray`` of shape ``(n, d)``."""

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray: ...


class BaseEncoder(Component):
    """Base of the library's encoders: calling one is the same as ``encode``."""

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return self.encode(texts, batch_size=batch_size)


def to_numpy(output: Any) -> Any:
    """Bring a model's output (numpy, list, torch tensor on any device) to host memory."""
    if hasattr(output, "detach") and hasattr(output, "cpu"):
        output = output.detach().cpu().numpy()
    return output


def check_encoded(output: Any, texts: Sequence[str], who: str) -> np.ndarray:
    """Validate an encoder's output: one finite float32 row per text."""
    matrix = as_matrix(to_numpy(output), f"embeddings returned by {who}")
    if len(matrix) != len(texts):
        raise InvalidInputError(
            f"{who} returned {len(matrix)} embeddings for {len(texts)} texts; an encoder must "
            "return one row per text, in order."
        )
    return matrix


def check_scores(output: Any, n: int, who: str) -> np.ndarray:
    """Validate a scorer's output: ``n`` finite float32 scores."""
    scores = np.asarray(to_numpy(output), dtype=np.float32)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.shape != (n,):
        raise InvalidInputError(
            f"{who} returned scores of shape {scores.shape} for {n} pairs; a scorer must return one "
            "number per (query, document) pair (use num_labels=1 for a cross-encoder)."
        )
    if not np.isfinite(scores).all():
        raise InvalidInputError(f"{who} returned NaN or infinite scores.")
    return scores


class CallableScorer(BaseEncoder):
    """Wrap a plain callable ``pairs -> scores`` (e.g. a cross-encoder's ``predict``)."""

    def __init__(self, function: Callable[[list[tuple[str, str]]], Any]) -> None:
        if not callable(function):
            raise InvalidTypeError(
                f"a scorer must be callable, got {type(function).__name__}. Pass a function "
                "[(query, document), ...] -> scores, e.g. CrossEncoder(path).predict."
            )
        self.function = function

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None) -> np.ndarray:
        # tuple() of each (str, str) pair (lists from JSON included) is that pair; mypy says tuple[str, ...].
        pairs = cast(list[tuple[str, str]], [tuple(pair) for pair in pairs])
        if not pairs:
            return np.empty(0, dtype=np.float32)
        return check_scores(self.function(pairs), len(pairs), f"scorer {self.function!r}")


class CallableEncoder(BaseEncoder):
    """Wrap a plain callable ``texts -> array`` (what Cherche calls an encoder).

    The callable is pickled as it is, so it must be picklable (a module-level
    function or a bound method of a picklable object, not a lambda).

    Examples
    --------
    >>> import numpy as np
    >>> encoder = CallableEncoder(lambda texts: np.ones((len(texts), 2)))
    >>> encoder.encode(["a", "b"]).shape
    (2, 2)
    """

    def __init__(self, function: Callable[[list[str]], Any]) -> None:
        if not callable(function):
            raise InvalidTypeError(
                f"an encoder must be callable, got {type(function).__name__}. Pass a function "
                "texts -> array, e.g. SentenceTransformer(path).encode."
            )
        self.function = function

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            raise InvalidInputError("encode got no texts; pass at least one text.")
        return check_encoded(self.function(texts), texts, f"encoder {self.function!r}")
