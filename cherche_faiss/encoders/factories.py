"""Whatever a user passes as ``encoder``, as an object with ``encode`` (or ``score``).

Users may pass, as in Cherche, any callable ``texts -> array`` (a
``SentenceTransformer(...).encode`` bound method included) or, for
cross-encoders, ``pairs -> scores``; :func:`as_encoder` and :func:`as_scorer`
recognise each kind. sentence-transformers models are recognised by class
name, so that it is never imported just to ask.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import InvalidTypeError
from .base import BaseEncoder, CallableEncoder, CallableScorer, Encoder
from .sentence_transformers import CrossEncoderScorer, SentenceTransformerEncoder

__all__ = ["as_encoder", "as_scorer"]


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
        return CrossEncoderScorer.from_model(model)
    if callable(scorer):
        return CallableScorer(scorer)
    raise InvalidTypeError(
        f"{name} must be a cross-encoder or a callable [(query, document), ...] -> scores, got "
        f"{type(scorer).__name__}. Pass e.g. CrossEncoder(path).predict."
    )


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
        return SentenceTransformerEncoder.from_model(owner)
    if _is_sentence_transformer(encoder):
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
