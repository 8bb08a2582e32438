"""What an exported ONNX model holds, read without onnxruntime: files, settings and checksums.

An export folder (written by :func:`cherche_faiss.encoders.export_onnx`)::

    model.onnx                   the transformer: token ids in, one vector per token out
    tokenizer.json               the `tokenizers` tokenizer (padding and truncation set at run time)
    1_Pooling/config.json        sentence-transformers' pooling configuration
    sentence_bert_config.json    max_seq_length, do_lower_case
    modules.json                 the sentence-transformers modules (tells whether vectors are normalised)
    cherche_faiss_onnx.json      the settings below and a SHA-256 per file

The same files can also come from memory (an encoder embedded in a save or a
pickle). A folder without ``cherche_faiss_onnx.json`` (a sentence-transformers
folder holding a ``model.onnx`` or ``onnx/model.onnx`` exported elsewhere) is
read from its sentence-transformers files, without checksums.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from .._core.saved_file import SavedFile, as_bytes
from ..exceptions import CorruptFileError, IncompatibleStateError, MissingFileError
from ._pooling import read_pooling

__all__ = ["MANIFEST", "FORMAT", "FORMAT_VERSION", "OnnxSettings", "ModelFiles", "sha256_of"]

MANIFEST = "cherche_faiss_onnx.json"
FORMAT = "cherche_faiss.onnx"
FORMAT_VERSION = 1
MODEL = "model.onnx"
TOKENIZER = "tokenizer.json"
# sentence-transformers modules whose work the encoder reproduces; any other one changes the vectors.
_REPRODUCED_MODULES = {"Transformer", "Pooling", "Normalize"}


@dataclass(frozen=True)
class OnnxSettings:
    """How token vectors become sentence vectors: what sentence-transformers' modules did.

    Attributes
    ----------
    max_seq_length
        Tokens kept per text (longer texts are truncated).
    pooling
        Pooling modes, in output order (see :mod:`._pooling`).
    normalize
        Whether the model ends with a ``Normalize`` module.
    do_lower_case
        Lower-case texts before tokenising.
    prompt
        Text put before every input (the model's default prompt), ``""`` for none.
    padding_side
        ``"right"`` or ``"left"``.
    dimension
        Size of the sentence vectors, when known.
    quantize
        ``None`` for float32 weights, ``"int8"`` for a quantised model.
    """

    max_seq_length: int = 512
    pooling: list[str] = field(default_factory=lambda: ["mean"])
    normalize: bool = False
    do_lower_case: bool = False
    prompt: str = ""
    padding_side: str = "right"
    dimension: int | None = None
    quantize: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str) -> OnnxSettings:
        """Settings from a manifest, every value checked (a manifest may have been edited)."""
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        settings = cls(**known)
        length = settings.max_seq_length
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise IncompatibleStateError(f"{where}: max_seq_length must be a positive integer, got {length!r}.")
        read_pooling({"pooling_mode": settings.pooling}, where)
        if settings.padding_side not in ("right", "left"):
            raise IncompatibleStateError(
                f"{where}: padding_side must be 'right' or 'left', got {settings.padding_side!r}."
            )
        if not isinstance(settings.prompt, str) or not all(
            isinstance(flag, bool) for flag in (settings.normalize, settings.do_lower_case)
        ):
            raise IncompatibleStateError(f"{where}: prompt, normalize or do_lower_case has the wrong type.")
        if settings.quantize not in (None, "int8"):
            raise IncompatibleStateError(f"{where}: quantize must be null or 'int8', got {settings.quantize!r}.")
        return settings


def sha256_of(data: bytes | Path) -> str:
    """SHA-256 of bytes, or of a file read in 4 MiB chunks."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with open(data, "rb") as handle:
        for chunk in iter(lambda: handle.read(4 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelFiles:
    """The files of an exported model, from a folder or from memory (``{name: bytes}``).

    Parameters
    ----------
    folder
        An export folder, or None when ``files`` is given.
    files
        The same files held in memory.
    """

    def __init__(self, folder: str | os.PathLike | None = None, files: Mapping[str, Any] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.files = dict(files) if files is not None else None
        self.model_name = MODEL
        self.where = str(self.folder) if self.folder is not None else "the embedded ONNX model"
        if self.folder is not None:
            if not self.folder.is_dir():
                raise MissingFileError(
                    f"{self.folder} is not a folder. Pass the folder written by cherche_faiss.encoders.export_onnx "
                    "(or `cherche-faiss export-onnx MODEL --out DIR`)."
                )
            if not (self.folder / MODEL).is_file() and (self.folder / "onnx" / MODEL).is_file():
                self.model_name = f"onnx/{MODEL}"  # sentence-transformers' own ONNX layout
        for name in (self.model_name, TOKENIZER):
            if not self.exists(name):
                raise MissingFileError(
                    f"{self.where} has no {name}: an ONNX encoder needs {MODEL} and {TOKENIZER}. Export the "
                    "model with cherche_faiss.encoders.export_onnx(model, folder), or `cherche-faiss export-onnx "
                    "MODEL --out DIR`."
                )
        self.manifest = self._manifest()
        self.settings = self._settings()

    # -- the files ------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        if self.files is not None:
            return name in self.files
        return self._on_disk(name).is_file()

    def read(self, name: str) -> bytes:
        if self.files is not None:
            return as_bytes(self.files[name])
        return self._on_disk(name).read_bytes()

    def path(self, name: str) -> Path | None:
        """The file on disk (None for files in memory), for libraries that read files themselves."""
        if self.files is not None:
            value = self.files[name]
            return value.path if isinstance(value, SavedFile) else None
        return self._on_disk(name)

    def _on_disk(self, name: str) -> Path:
        # Only called when files is None, and then the caller gave a folder (one or the other, never neither).
        return cast(Path, self.folder) / name

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise CorruptFileError(f"{name} of {self.where} is not valid JSON ({error}).") from None

    def names(self) -> list[str]:
        """Every file an embedded copy needs: those the manifest lists, or the known ones."""
        if self.manifest is not None:
            return [MANIFEST, *self.manifest["files"]]
        candidates = [
            self.model_name,
            TOKENIZER,
            "modules.json",
            "sentence_bert_config.json",
            "config_sentence_transformers.json",
            "1_Pooling/config.json",
        ]
        return [name for name in candidates if self.exists(name)]

    def verify(self) -> None:
        """Check every file the manifest lists against its SHA-256 (nothing to check without one).

        Raises
        ------
        CorruptFileError
            Naming the first missing or altered file.
        """
        if self.manifest is None:
            return
        for name, entry in self.manifest["files"].items():
            if not self.exists(name):
                raise CorruptFileError(f"{name} is missing from {self.where}; export the model again.")
            source = self.path(name) or self.read(name)
            if sha256_of(source) != entry.get("sha256"):
                raise CorruptFileError(
                    f"{name} of {self.where} does not match its SHA-256 in {MANIFEST}: the file was altered or "
                    "damaged. Export the model again (cherche_faiss.encoders.export_onnx)."
                )

    # -- the settings ---------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any] | None:
        if not self.exists(MANIFEST):
            return None
        manifest = self.json(MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IncompatibleStateError(f"{MANIFEST} of {self.where} is not a cherche_faiss ONNX manifest.")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IncompatibleStateError(
                f"{MANIFEST} of {self.where} has format version {version!r}; this cherche_faiss reads version "
                f"{FORMAT_VERSION} and older. Upgrade cherche_faiss, or export the model again."
            )
        files = manifest.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(name, str) and isinstance(entry, dict) and _safe_name(name) for name, entry in files.items()
        ):
            raise IncompatibleStateError(f"{MANIFEST} of {self.where} has a damaged file table.")
        if not isinstance(manifest.get("settings"), dict):
            raise IncompatibleStateError(f"{MANIFEST} of {self.where} has no settings.")
        return manifest

    def _settings(self) -> OnnxSettings:
        if self.manifest is not None:
            return OnnxSettings.from_dict(self.manifest["settings"], f"{MANIFEST} of {self.where}")
        return self._settings_of_sentence_transformers()

    def _settings_of_sentence_transformers(self) -> OnnxSettings:
        """Settings read from a sentence-transformers folder's own files."""
        pooling_file = "1_Pooling/config.json"
        normalize = False
        if self.exists("modules.json"):
            modules = self.json("modules.json")
            kinds = [str(module.get("type", "")).rpartition(".")[2] for module in modules if isinstance(module, dict)]
            others = sorted(set(kinds) - _REPRODUCED_MODULES)
            if others:
                raise IncompatibleStateError(
                    f"{self.where} is a sentence-transformers model with the module(s) {others}, whose work an "
                    "ONNX encoder does not reproduce (it reproduces Transformer, Pooling and Normalize). Use "
                    "SentenceTransformerEncoder for this model."
                )
            normalize = "Normalize" in kinds
            pooling_file = next(
                (
                    f"{module['path']}/config.json"
                    for module in modules
                    if isinstance(module, dict)
                    and str(module.get("type", "")).endswith("Pooling")
                    and module.get("path")
                ),
                pooling_file,
            )
        if not self.exists(pooling_file):
            raise IncompatibleStateError(
                f"{self.where} has no {pooling_file} and no {MANIFEST}, so how its token vectors become one vector "
                "per text is unknown. Export the model with cherche_faiss.encoders.export_onnx, which writes both."
            )
        modes, include_prompt = read_pooling(self.json(pooling_file), f"{pooling_file} of {self.where}")
        config = self.json("sentence_bert_config.json") if self.exists("sentence_bert_config.json") else {}
        prompt = (
            _default_prompt(self.json("config_sentence_transformers.json"))
            if self.exists("config_sentence_transformers.json")
            else ""
        )
        check_prompt_pooling(prompt, include_prompt, self.where)
        return OnnxSettings.from_dict(
            {
                "max_seq_length": config.get("max_seq_length") or 512,
                "do_lower_case": bool(config.get("do_lower_case", False)),
                "pooling": modes,
                "normalize": normalize,
                "prompt": prompt,
            },
            self.where,
        )


def _default_prompt(config: Any) -> str:
    if not isinstance(config, dict):
        return ""
    name = config.get("default_prompt_name")
    prompts = config.get("prompts") or {}
    return str(prompts.get(name, "")) if name and isinstance(prompts, dict) else ""


def check_prompt_pooling(prompt: str, include_prompt: bool, where: str) -> None:
    """Refuse a pooling that leaves the prompt's tokens out: the encoder does not reproduce it."""
    if prompt and not include_prompt:
        raise IncompatibleStateError(
            f"{where} pools without its prompt's tokens (include_prompt=False), which an ONNX encoder does "
            "not reproduce. Use SentenceTransformerEncoder for this model."
        )


def _safe_name(name: str) -> bool:
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and "\\" not in name
        and all(part not in ("", ".", "..") for part in parts)
    )
