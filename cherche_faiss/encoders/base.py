"""The encoder protocol and the wrapping of whatever a user passes as ``encoder``.

An encoder turns texts into a float32 matrix: ``encode(texts, batch_size) ->
(n, d)``. Users may pass, as in Cherche, any callable ``texts -> array`` (a
``SentenceTransformer(...).encode`` bound method included); :func:`as_encoder`
recognises each kind and returns an object with that one method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._state import Component
from .._validation import as_matrix
from ..exceptions import InvalidInputError, InvalidTypeError

__all__ = ["Encoder", "BaseEncoder", "CallableEncoder", "CallableScorer", "as_encoder", "as_scorer"]


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
        pairs = [tuple(pair) for pair in pairs]
        if not pairs:
            return np.empty(0, dtype=np.float32)
        return check_scores(self.function(pairs), len(pairs), f"scorer {self.function!r}")


def _is_model_class(obj: Any, name: str) -> bool:
    """Whether ``obj`` is a sentence-transformers ``name`` (``SentenceTransformer``, ``CrossEncoder``).

    Checked by name so that sentence-transformers is never imported just to ask.
    """
    return any(cls.__name__ == name and cls.__module__.startswith("sentence_transformers") for cls in type(obj).__mro__)


def _is_sentence_transformer(obj: Any) -> bool:
    return _is_model_class(obj, "SentenceTransformer")


def _is_cross_encoder(obj: Any) -> bool:
    return _is_model_class(obj, "CrossEncoder")


def as_scorer(scorer: Any, name: str = "encoder") -> Any:
    """Return an object with ``score(pairs, batch_size)`` for what a user passed:
    a sentence-transformers ``CrossEncoder`` or its bound ``predict`` (pickled by
    reference), a library scorer, or any callable ``pairs -> scores``."""
    if hasattr(scorer, "score") and isinstance(scorer, BaseEncoder):
        return scorer
    owner = getattr(scorer, "__self__", None)
    model = owner if owner is not None and _is_cross_encoder(owner) else scorer if _is_cross_encoder(scorer) else None
    if model is not None:
        from .sentence_transformers import CrossEncoderScorer

        return CrossEncoderScorer.from_model(model)
    if callable(scorer):
        return CallableScorer(scorer)
    raise InvalidTypeError(
        f"{name} must be a cross-encoder or a callable [(query, document), ...] -> scores, got "
        f"{type(scorer).__name__}. Pass e.g. CrossEncoder(path).predict."
    )


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


def as_encoder(encoder: Any, name: str = "encoder") -> Any:
    """Return an object with ``encode(texts, batch_size)`` for what a user passed.

    * the library's encoders, and objects following :class:`Encoder`, as they are;
    * a ``SentenceTransformer`` model or its bound ``encode`` method: a
      :class:`~cherche_faiss.encoders.SentenceTransformerEncoder` that pickles
      the model by reference, never as CUDA tensors;
    * any other callable: a :class:`CallableEncoder`.
    """
    if isinstance(encoder, BaseEncoder):
        return encoder
    owner = getattr(encoder, "__self__", None)
    if owner is not None and getattr(encoder, "__name__", "") == "encode" and _is_sentence_transformer(owner):
        from .sentence_transformers import SentenceTransformerEncoder

        return SentenceTransformerEncoder.from_model(owner)
    if _is_sentence_transformer(encoder):
        from .sentence_transformers import SentenceTransformerEncoder

        return SentenceTransformerEncoder.from_model(encoder)
    if callable(encoder):
        return CallableEncoder(encoder)
    if isinstance(encoder, Encoder):
        return encoder
    raise InvalidTypeError(
        f"{name} must be callable (texts -> array) or have an encode(texts, batch_size) method, "
        f"got {type(encoder).__name__}. Pass e.g. SentenceTransformer(path).encode or "
        "cherche_faiss.encoders.HashingEncoder()."
    )
