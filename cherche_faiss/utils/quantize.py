"""Dynamic quantization of a torch model (its linear layers to int8), as Cherche's ``utils.quantize``."""

from __future__ import annotations

from typing import Any

from .._core.optional import require
from ..exceptions import InvalidInputError

__all__ = ["quantize"]


def quantize(model: Any, dtype: Any = None, layers: Any = None, engine: str = "qnnpack") -> Any:
    """Quantize ``model``'s layers dynamically: faster CPU inference, slightly different outputs.

    Parameters
    ----------
    model
        A torch module, e.g. a ``SentenceTransformer``.
    dtype
        Quantized type of the weights (default ``torch.qint8``).
    layers
        Layer types quantized (default ``{torch.nn.Linear}``).
    engine
        torch's quantized engine (``torch.backends.quantized.engine``): ``"qnnpack"``
        as in Cherche, ``"x86"`` or ``"fbgemm"`` on x86 CPUs.

    Returns
    -------
    The quantized model (a copy: ``model`` is left as it was).

    Notes
    -----
    Needs torch (imported here, not with the library). For a model served
    without torch, export it to ONNX with int8 weights instead
    (``cherche_faiss.save(pipeline, path, onnx="int8")``).
    """
    torch = require("torch", "utils.quantize")
    engines = list(torch.backends.quantized.supported_engines)
    if engine not in engines:
        raise InvalidInputError(f"engine {engine!r} is not supported by this torch build; it supports {engines}.")
    torch.backends.quantized.engine = engine
    quantization = getattr(torch, "ao", torch).quantization
    return quantization.quantize_dynamic(
        model, layers if layers is not None else {torch.nn.Linear}, dtype if dtype is not None else torch.qint8
    )
