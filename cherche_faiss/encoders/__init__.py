"""Text encoders: the protocol, a hashing encoder for tests, sentence-transformers, and ONNX."""

from .base import BaseEncoder, CallableEncoder, CallableScorer, Encoder
from .factories import as_encoder, as_scorer
from .hashing import HashingEncoder
from .onnx import OnnxEncoder
from .onnx_export import export_onnx
from .sentence_transformers import CrossEncoderScorer, SentenceTransformerEncoder

__all__ = [
    "Encoder",
    "BaseEncoder",
    "CallableEncoder",
    "HashingEncoder",
    "SentenceTransformerEncoder",
    "OnnxEncoder",
    "export_onnx",
    "as_encoder",
    "CallableScorer",
    "CrossEncoderScorer",
    "as_scorer",
]
