"""Cherche's ``utils`` module: batching helpers, a top-k pipeline stage and model quantization."""

from .batch import yield_batch, yield_batch_single
from .quantize import quantize
from .topk import TopK

__all__ = ["quantize", "yield_batch", "yield_batch_single", "TopK"]
