"""Export a sentence-transformers model to ONNX: what :class:`~cherche_faiss.encoders.OnnxEncoder` reads.

Exporting needs torch and sentence-transformers (where the model was built);
using the result needs only onnxruntime and `tokenizers`. The transformer is
exported with ``torch.onnx.export`` (TorchScript exporter, dynamic batch and
sequence axes); pooling and normalisation are read from the model's modules
and reproduced by the encoder. Every export is checked before it is kept:
the ONNX encoder must give the torch model's vectors (cosine >= 0.9999 in
float32, >= 0.98 for int8) on texts of every length up to the truncation.
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from .._core.versions import imported_versions
from .._version import __version__
from ..exceptions import InvalidInputError, InvalidTypeError, MissingDependencyError
from ._onnx_fidelity import MIN_COSINE, check_fidelity
from ._onnx_files import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MODEL,
    TOKENIZER,
    OnnxSettings,
    check_prompt_pooling,
    sha256_of,
)
from ._pooling import read_pooling
from .sentence_transformers import _model_reference

__all__ = ["export_onnx", "QUANTIZE", "MIN_COSINE"]


#: Values ``quantize`` accepts.
QUANTIZE = (None, "int8")


def _sentence_transformer(model: Any) -> Any:
    """A loaded ``SentenceTransformer`` from what was passed."""
    if type(model).__name__ in ("SentenceTransformerEncoder",) and hasattr(model, "model"):
        return model.model
    if any(cls.__name__ == "SentenceTransformer" for cls in type(model).__mro__):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise InvalidTypeError(
            f"export_onnx takes a sentence-transformers model, its name or its folder, got {type(model).__name__}."
        )
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise MissingDependencyError(
            f"exporting a model to ONNX needs torch and sentence-transformers ({error}). Install them where the "
            'model is built: `pip install "cherche-faiss[export]"`; the exported folder then runs without them.'
        ) from None
    return SentenceTransformer(str(model), device="cpu")


def _modules(model: Any) -> tuple[Any, Any, bool]:
    """The Transformer and Pooling modules, and whether a Normalize module follows."""
    kinds = [type(module).__name__ for module in model]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise InvalidInputError(
            f"this model is made of the modules {kinds}; an ONNX export reproduces Transformer, Pooling and an "
            "optional Normalize, in that order. Keep using it through SentenceTransformerEncoder."
        )
    return model[0], model[1], len(kinds) == 3


def _settings(model: Any, transformer: Any, pooling: Any, normalize: bool, quantize: str | None) -> OnnxSettings:
    modes, include_prompt = read_pooling(pooling.get_config_dict(), "the model's Pooling module")
    prompts = getattr(model, "prompts", None) or {}
    name = getattr(model, "default_prompt_name", None)
    prompt = str(prompts.get(name, "")) if name else ""
    check_prompt_pooling(prompt, include_prompt, "this model")
    tokenizer = transformer.tokenizer
    dimension = (
        model.get_embedding_dimension()
        if hasattr(model, "get_embedding_dimension")
        else (model.get_sentence_embedding_dimension())
    )
    return OnnxSettings(
        max_seq_length=int(model.max_seq_length or tokenizer.model_max_length),
        pooling=modes,
        normalize=normalize,
        do_lower_case=bool(getattr(transformer, "do_lower_case", False)),
        prompt=prompt,
        padding_side=str(getattr(tokenizer, "padding_side", "right")),
        dimension=int(dimension) if dimension else None,
        quantize=quantize,
    )


def _export_graph(transformer: Any, folder: Path, opset: int) -> list[str]:
    """Write the transformer (token ids -> token vectors) to ``folder/model.onnx``; returns its input names."""
    import torch

    network = transformer.auto_model
    tokenizer = transformer.tokenizer
    parameter = next(network.parameters())
    if parameter.dtype != torch.float32:
        raise InvalidInputError(
            f"the model's weights are {parameter.dtype}; export a float32 model (model.float()), and pass "
            "quantize='int8' for smaller weights."
        )
    sample = tokenizer(["a short text", "a somewhat longer text to export"], padding=True, return_tensors="pt")
    accepted = set(inspect.signature(network.forward).parameters)  # follows the decorators' __wrapped__
    names: list[str] = [
        name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample and name in accepted
    ]

    class TokenVectors(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, *inputs: Any) -> Any:
            return self.network(**dict(zip(names, inputs))).last_hidden_state

    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "token_embeddings"]}
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about Python branches on shapes (padding, causal masks) that this export
            # fixes on purpose; the fidelity check below is what shows that the graph is right.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", module=r"torch\.onnx.*")
            # dynamo=False on purpose: one self-contained file, and the graph this library's check accepts.
            warnings.filterwarnings(
                "ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning
            )
            torch.onnx.export(
                TokenVectors(),
                tuple(sample[name].to(parameter.device) for name in names),
                str(folder / MODEL),
                input_names=names,
                output_names=["token_embeddings"],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        network.train(was_training)
    return names


def _write_tokenizer(transformer: Any, folder: Path, settings: OnnxSettings) -> None:
    """``tokenizer.json`` with the model's truncation and dynamic padding (not the file's fixed ones)."""
    from tokenizers import Tokenizer

    tokenizer = transformer.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InvalidInputError(
            "this model's tokenizer has no `tokenizers` (fast) version, which an ONNX encoder needs to run "
            "without transformers. Keep using it through SentenceTransformerEncoder."
        )
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    pad_token = tokenizer.pad_token or "[PAD]"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    copy.enable_padding(direction=settings.padding_side, pad_id=int(pad_id), pad_token=str(pad_token))
    copy.enable_truncation(max_length=settings.max_seq_length)
    copy.save(str(folder / TOKENIZER))


def _write_sentence_transformers_files(folder: Path, pooling: Any, settings: OnnxSettings) -> None:
    """The sentence-transformers description of the export, for people and other tools."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if settings.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=1) + "\n", encoding="utf-8")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(pooling.get_config_dict(), indent=1, default=str) + "\n", encoding="utf-8"
    )
    config = {"max_seq_length": settings.max_seq_length, "do_lower_case": settings.do_lower_case}
    (folder / "sentence_bert_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


def _quantize(folder: Path) -> None:
    """Replace ``model.onnx`` by its dynamically quantised int8 version (onnxruntime's quantiser).

    Only the products with a weight matrix are quantised, one scale per output
    channel: quantising the attention's activation-by-activation products too,
    or one scale per matrix, took MiniLM's lowest cosine to its float32 vectors
    from 0.989 down to 0.90 on SciFact texts.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = folder / "model.float32.onnx"
    (folder / MODEL).rename(source)
    quantize_dynamic(
        str(source),
        str(folder / MODEL),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        extra_options={"MatMulConstBOnly": True},
    )
    source.unlink()


def _require_quantizer() -> None:
    try:
        import onnxruntime.quantization  # noqa: F401  (it imports the onnx package)
    except ImportError as error:
        raise MissingDependencyError(
            f"quantize='int8' needs onnxruntime's quantisation tools and the onnx package ({error}). Install "
            'them with `pip install "cherche-faiss[export]"`, or export without quantize.'
        ) from None


def _versions() -> dict[str, str]:
    modules = ("torch", "transformers", "sentence_transformers", "onnx", "onnxruntime", "tokenizers")
    return {"cherche_faiss": __version__, **imported_versions(modules)}


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _write_manifest(
    folder: Path,
    files: dict[str, Any],
    settings: OnnxSettings,
    source: str,
    inputs: list[str],
    opset: int,
    fidelity: dict[str, Any] | None,
) -> None:
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": source,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings.as_dict(),
        "inputs": inputs,
        "output": "token_embeddings",
        "opset": opset,
        "fidelity": fidelity,
        "versions": _versions(),
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _place(staging: Path, target: Path) -> None:
    """Move the finished export to ``target``, replacing an earlier export there (never anything else)."""
    if target.exists():
        if not (target / MANIFEST).is_file():
            raise InvalidInputError(
                f"{target} exists and is not an ONNX export; pick an empty or new folder for the export."
            )
        retired = target.with_name(f".{target.name}.replaced")
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(target)


def export_onnx(
    model: Any,
    out_dir: str | os.PathLike,
    quantize: str | None = None,
    opset: int = 17,
) -> Path:
    """Export a sentence-transformers model to a folder an :class:`OnnxEncoder` reads without torch.

    Parameters
    ----------
    model
        A ``SentenceTransformer``, a :class:`SentenceTransformerEncoder`, or
        the name or folder of a model (loaded on the CPU).
    out_dir
        Folder to write: ``model.onnx``, ``tokenizer.json``, the pooling and
        length settings and ``cherche_faiss_onnx.json`` (settings, versions,
        the fidelity check and a SHA-256 per file). An earlier export there is
        replaced once the new one is complete; any other existing folder is refused.
    quantize
        ``None`` (float32: the model's vectors to rounding) or ``"int8"``
        (dynamic quantisation: about 4x smaller and faster on some CPUs, cosine
        about 0.999 to the model's; opt-in).
    opset
        ONNX opset of the graph.

    Returns
    -------
    pathlib.Path
        The export folder.

    Raises
    ------
    MissingDependencyError
        torch or sentence-transformers is missing, or onnxruntime's quantiser for ``"int8"``.
    InvalidInputError
        The model has modules an ONNX encoder does not reproduce (a Dense layer ...).
    IncompatibleStateError
        The exported vectors differ from the model's.

    Examples
    --------
    >>> from cherche_faiss.data import minilm_path
    >>> from cherche_faiss.encoders import OnnxEncoder, export_onnx
    >>> folder = export_onnx(minilm_path(), "minilm-onnx")  # doctest: +SKIP
    >>> OnnxEncoder(folder).encode(["Bordeaux wine"]).shape  # doctest: +SKIP
    (1, 384)
    """
    if quantize not in QUANTIZE:
        raise InvalidInputError(f"quantize must be None or 'int8', got {quantize!r}.")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 14 <= opset <= 21:
        raise InvalidInputError(
            f"opset must be an ONNX opset from 14 to 21, got {opset!r}. The default, 17, suits most models."
        )
    if quantize is not None:
        _require_quantizer()
    from .onnx import import_onnxruntime

    import_onnxruntime()  # the fidelity check runs the export
    target = Path(os.path.abspath(os.fspath(out_dir)))
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / MANIFEST).is_file())):
        raise InvalidInputError(
            f"{target} exists and is not an ONNX export; pick an empty or new folder for the export."
        )
    loaded = _sentence_transformer(model)
    source = (
        str(model)
        if isinstance(model, (str, os.PathLike))
        else str(getattr(model, "model_name_or_path", None) or _model_reference(loaded) or "")
    )
    transformer, pooling, normalize = _modules(loaded)
    settings = _settings(loaded, transformer, pooling, normalize, quantize)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the export is an ordinary folder
    try:
        inputs = _export_graph(transformer, staging, opset)
        if quantize == "int8":
            _quantize(staging)
        _write_tokenizer(transformer, staging, settings)
        _write_sentence_transformers_files(staging, pooling, settings)
        files = _file_table(staging)
        # Written before the check too, so that the check reads exactly these settings (prompt, padding side).
        _write_manifest(staging, files, settings, source, inputs, opset, None)
        fidelity = check_fidelity(loaded, staging, quantize)
        _write_manifest(staging, files, settings, source, inputs, opset, fidelity)
        _place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
