"""Sentence-transformers' pooling, read from its configuration and computed with NumPy.

An exported transformer returns one vector per token; sentence-transformers
then pools them into one vector per text (its ``Pooling`` module) and may
normalise it (its ``Normalize`` module). :func:`read_pooling` reads a
``1_Pooling/config.json`` in either of the two layouts sentence-transformers
has written (``pooling_mode_*`` flags, or one ``pooling_mode`` entry), and
:func:`pool` computes the same vectors from a token-embedding array and its
attention mask, so that encoding needs no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..exceptions import IncompatibleStateError

__all__ = ["POOLING_MODES", "read_pooling", "pool", "normalize_rows"]

#: The pooling modes reproduced here, by sentence-transformers' names.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

# The older layout: one flag per mode, pooled vectors concatenated in this order.
_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def read_pooling(config: Mapping[str, Any], where: str) -> tuple[list[str], bool]:
    """The pooling modes (in output order) and ``include_prompt`` of a pooling configuration.

    Parameters
    ----------
    config
        The content of ``1_Pooling/config.json``.
    where
        Names the file in errors.

    Raises
    ------
    IncompatibleStateError
        The configuration names a mode this module does not reproduce.

    Examples
    --------
    >>> read_pooling({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "config.json")
    (['mean'], True)
    >>> read_pooling({"pooling_mode": ["cls", "max"], "include_prompt": True}, "config.json")
    (['cls', 'max'], True)
    """
    if not isinstance(config, Mapping):
        raise IncompatibleStateError(f"{where} is not a JSON object; it cannot describe a pooling.")
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        modes = [mode] if isinstance(mode, str) else list(mode) if isinstance(mode, (list, tuple)) else None
    else:
        modes = [name for flag, name in _FLAGS.items() if config.get(flag) is True] or ["mean"]
    unknown = [mode for mode in modes or [None] if mode not in POOLING_MODES]
    if modes is None or not modes or unknown:
        raise IncompatibleStateError(
            f"{where} asks for the pooling {config.get('pooling_mode', modes)!r}, which cherche_faiss cannot "
            f"reproduce without torch (it reproduces {', '.join(POOLING_MODES)}). Use the model through "
            "SentenceTransformerEncoder instead."
        )
    include_prompt = config.get("include_prompt", True)
    if not isinstance(include_prompt, bool):
        raise IncompatibleStateError(f"{where}: include_prompt must be true or false, got {include_prompt!r}.")
    return modes, include_prompt


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, modes: list[str]) -> np.ndarray:
    """One vector per text from its token vectors, as sentence-transformers' ``Pooling`` computes it.

    Parameters
    ----------
    token_embeddings
        ``(texts, tokens, dimension)`` float32, padding positions included.
    attention_mask
        ``(texts, tokens)``, 1 for real tokens and 0 for padding.
    modes
        Pooling modes; their vectors are concatenated in this order.

    Returns
    -------
    numpy.ndarray
        ``(texts, dimension * len(modes))`` float32.

    Examples
    --------
    >>> tokens = np.array([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]]], dtype=np.float32)
    >>> mask = np.array([[1, 1, 0]])
    >>> pool(tokens, mask, ["mean", "cls", "max"]).tolist()
    [[2.0, 1.0, 1.0, 0.0, 3.0, 2.0]]
    """
    mask = attention_mask.astype(np.float32)[:, :, None]
    counts = np.maximum(mask.sum(axis=1), 1e-9)
    vectors = []
    for mode in modes:
        if mode == "cls":
            first = attention_mask.argmax(axis=1)  # the first real token, whichever side is padded
            vectors.append(token_embeddings[np.arange(len(first)), first])
        elif mode == "max":
            vectors.append(np.where(mask > 0, token_embeddings, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            summed = (token_embeddings * mask).sum(axis=1)
            vectors.append(summed / (counts if mode == "mean" else np.sqrt(counts)))
        elif mode == "weightedmean":
            # Weights 1, 2, ... counted from the first real token (left padding shifts them).
            positions = np.arange(1, token_embeddings.shape[1] + 1, dtype=np.float32)[None, :]
            weights = (positions - attention_mask.argmax(axis=1)[:, None])[:, :, None] * mask
            vectors.append((token_embeddings * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))
        elif mode == "lasttoken":
            length = attention_mask.shape[1]
            flipped = attention_mask[:, ::-1]
            last = length - 1 - flipped.argmax(axis=1)
            last = np.where(flipped.max(axis=1) == 0, length - 1, last)
            vectors.append((token_embeddings * mask)[np.arange(len(last)), last])
        else:  # read_pooling refuses every other name
            raise IncompatibleStateError(f"unknown pooling mode {mode!r}.")
    pooled = vectors[0] if len(vectors) == 1 else np.concatenate(vectors, axis=1)
    return np.ascontiguousarray(pooled, dtype=np.float32)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as sentence-transformers' ``Normalize`` (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
