"""Text encoders: the protocol, a hashing encoder for tests, and sentence-transformers."""

from .base import BaseEncoder, CallableEncoder, CallableScorer, Encoder, as_encoder, as_scorer
from .hashing import HashingEncoder
from .sentence_transformers import CrossEncoderScorer, SentenceTransformerEncoder

__all__ = [
    "Encoder",
    "BaseEncoder",
    "CallableEncoder",
    "HashingEncoder",
    "SentenceTransformerEncoder",
    "as_encoder",
    "CallableScorer",
    "CrossEncoderScorer",
    "as_scorer",
]
