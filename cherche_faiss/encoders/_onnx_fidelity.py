"""The check every ONNX export passes before it is kept: the ONNX encoder must give the model's vectors.

Texts of every length are encoded both ways (the torch model, and an
:class:`~cherche_faiss.encoders.OnnxEncoder` on the export); an export whose
lowest cosine falls under :data:`MIN_COSINE` is refused, since its pooling or
tokenisation is not what the model does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import IncompatibleStateError

__all__ = ["MIN_COSINE", "CHECK_TEXTS", "check_fidelity"]

#: Smallest cosine between the ONNX and torch vectors an export must reach, by ``quantize``.
MIN_COSINE = {None: 0.9999, "int8": 0.98}

# Texts of every length the check encodes: short, long, punctuation, accents, beyond the truncation.
CHECK_TEXTS = [
    "Bordeaux",
    "What is the capital of France?",
    "Montreal is the largest city of Quebec, in Canada.",
    "Les vins de Bordeaux sont réputés dans le monde entier; l'été y est chaud.",
    "0.5 mg/kg of ZnO nanoparticles reduced IL-6 expression by 37% (p < 0.01) in vitro.",
    "  leading and trailing spaces  ",
    "a",
    " ".join(["Toulouse builds aircraft and Airbus is based there"] * 60),
]


def check_fidelity(model: Any, folder: Path, quantize: str | None) -> dict[str, Any]:
    """Encode the check texts both ways; refuse an export whose vectors differ from the model's."""
    from .onnx import OnnxEncoder

    expected = np.asarray(model.encode(CHECK_TEXTS, convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
    got = OnnxEncoder(folder, device="cpu", verify=False).encode(CHECK_TEXTS)
    if got.shape != expected.shape:
        raise IncompatibleStateError(
            f"the ONNX export gives vectors of shape {got.shape} where the model gives {expected.shape}; this model "
            "cannot be reproduced by an ONNX encoder. Keep using it through SentenceTransformerEncoder."
        )
    cosines = (got * expected).sum(axis=1) / np.maximum(
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1), 1e-12
    )
    lowest = float(cosines.min())
    if lowest < MIN_COSINE[quantize]:
        raise IncompatibleStateError(
            f"the ONNX export's vectors differ from the model's (lowest cosine {lowest:.6f}, below "
            f"{MIN_COSINE[quantize]}): its pooling or tokenisation is not reproduced. Keep using this model "
            "through SentenceTransformerEncoder."
        )
    return {"min_cosine": lowest, "mean_cosine": float(cosines.mean()), "texts": len(CHECK_TEXTS)}
