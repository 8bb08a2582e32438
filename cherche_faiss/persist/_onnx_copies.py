"""ONNX copies of the sentence-transformers encoders of a save, and which encoder a load builds.

``save(pipeline, path, onnx=True)`` exports every
:class:`~cherche_faiss.encoders.SentenceTransformerEncoder` of the pipeline to
ONNX and stores the export, embedded, as an
:class:`~cherche_faiss.encoders.OnnxEncoder` node beside the encoder's own
node (``"onnx": <node number>`` in the manifest). The document vectors are
untouched: they stay in the FAISS indexes exactly as computed at build time;
only queries (and documents added later) go through the copy.

``load(path, backend=...)`` then builds, for each such encoder, the copy
(``"onnx"``, or ``"auto"`` where onnxruntime is installed) or the
sentence-transformers encoder (``"torch"``, or ``"auto"`` without
onnxruntime). The ONNX path imports neither torch nor sentence-transformers.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from typing import Any

from ..exceptions import IncompatibleStateError, InvalidInputError, InvalidTypeError, MissingDependencyError

__all__ = ["BACKENDS", "check_backend", "OnnxCopies", "chosen_node"]

#: Values ``load(..., backend=...)`` accepts.
BACKENDS = ("auto", "onnx", "torch")

_SENTENCE_TRANSFORMER = "cherche_faiss.encoders.SentenceTransformerEncoder"
_CROSS_ENCODER = "cherche_faiss.encoders.CrossEncoderScorer"
_ONNX = "cherche_faiss.encoders.OnnxEncoder"


def check_backend(backend: Any) -> str:
    """Validate ``backend``; ``"onnx"`` also requires onnxruntime and tokenizers to be installed."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InvalidInputError(
            f"backend must be one of {BACKENDS}, got {backend!r}: 'auto' answers queries with a save's ONNX copies "
            "where onnxruntime is installed, 'onnx' always (never importing torch), 'torch' with "
            "sentence-transformers."
        )
    if backend == "onnx" and not onnx_available():
        raise MissingDependencyError(
            "backend='onnx' needs onnxruntime and tokenizers, which are not installed. Install them with "
            '`pip install "cherche-faiss[onnx]"`, or load with backend="torch".'
        )
    return backend


def onnx_available() -> bool:
    """Whether onnxruntime and tokenizers can be imported (found without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "tokenizers"))


class OnnxCopies:
    """Export each sentence-transformers model of a pipeline once, for ``save(..., onnx=True)``.

    Encoders sharing a model and options share one copy, so a save holds
    each exported model once.
    """

    def __init__(self, quantize: str | None = None) -> None:
        self.quantize = quantize
        self._copies: dict[tuple, Any] = {}

    def copy_of(self, encoder: Any) -> Any:
        """The :class:`OnnxEncoder` copy of ``encoder``, or None for every other component."""
        from ..encoders import SentenceTransformerEncoder

        if type(encoder) is not SentenceTransformerEncoder:
            return None  # cross-encoders score pairs: they have no ONNX path
        model = encoder.model  # loads it if need be: the export reads the loaded model
        reference = encoder.model_name_or_path if encoder.model_name_or_path != "<in-memory model>" else id(model)
        key = (reference, encoder.normalize_embeddings, encoder.batch_size)
        if key not in self._copies:
            self._copies[key] = self._export(model, encoder)
        return self._copies[key]

    def _export(self, model: Any, encoder: Any) -> Any:
        from ..encoders import OnnxEncoder, export_onnx
        from ..encoders._onnx_files import ModelFiles

        folder = tempfile.mkdtemp(prefix="cherche_faiss_onnx_")
        try:
            exported = export_onnx(model, f"{folder}/model", quantize=self.quantize)
            files = ModelFiles(exported)
            contents = {name: files.read(name) for name in files.names()}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return OnnxEncoder(
            files=contents,
            device="auto",
            batch_size=encoder.batch_size,
            normalize_embeddings=encoder.normalize_embeddings,
            embed_weights=True,
        )


def chosen_node(nodes: list[Any], number: int, backend: str, where: str) -> int:
    """The node to build for node ``number``: itself, or its ONNX copy.

    Raises
    ------
    IncompatibleStateError
        The copy reference is damaged, or ``backend="onnx"`` and an encoder of
        the save has no ONNX copy.
    """
    node = nodes[number]
    if not isinstance(node, dict):
        return number  # reported as damaged when it is built
    copy = node.get("onnx")
    name = node.get("class")
    if copy is None:
        if backend == "onnx" and name in (_SENTENCE_TRANSFORMER, _CROSS_ENCODER):
            raise IncompatibleStateError(
                f"backend='onnx', but {where} is a {name.rpartition('.')[2]} without an ONNX copy in this save"
                + (" (cross-encoders have none)" if name == _CROSS_ENCODER else "")
                + ". Save the pipeline again with cherche_faiss.save(pipeline, path, onnx=True), or load it with "
                "backend='auto' or 'torch'."
            )
        return number
    if (
        name != _SENTENCE_TRANSFORMER
        or isinstance(copy, bool)
        or not isinstance(copy, int)
        or not 0 <= copy < len(nodes)
        or copy == number
        or not isinstance(nodes[copy], dict)
        or nodes[copy].get("class") != _ONNX
    ):
        raise IncompatibleStateError(
            f"{where} refers to an ONNX copy ({copy!r}) that is not an OnnxEncoder of this save: the manifest was "
            "edited or damaged. Save the pipeline again."
        )
    if backend == "torch" or (backend == "auto" and not onnx_available()):
        return number
    return copy


def onnx_copies_for(onnx: Any) -> OnnxCopies | None:
    """What ``save(..., onnx=...)`` exports: nothing (False), float32 copies (True) or int8 ones ("int8")."""
    if onnx is False:
        return None
    if onnx is True:
        return OnnxCopies()
    if onnx == "int8":
        return OnnxCopies(quantize="int8")
    raise InvalidTypeError(
        f"onnx must be False, True (float32 copies: the model's vectors to rounding) or 'int8' (smaller and "
        f"faster, cosine about 0.99 to the model's), got {onnx!r}."
    )
