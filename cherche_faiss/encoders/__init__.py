"""Text encoders: the protocol, a hashing encoder for tests, and sentence-transformers."""

from .base import BaseEncoder, CallableEncoder, Encoder, as_encoder
from .hashing import HashingEncoder
from .sentence_transformers import SentenceTransformerEncoder

__all__ = [
    "Encoder",
    "BaseEncoder",
    "CallableEncoder",
    "HashingEncoder",
    "SentenceTransformerEncoder",
    "as_encoder",
]
