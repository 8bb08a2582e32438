"""Encode texts with an exported ONNX model: onnxruntime and `tokenizers`, never torch.

The encoder reproduces what sentence-transformers does with the same model
(tokenisation truncated at the model's ``max_seq_length`` and padded to the
longest text of each batch, the model's pooling, its normalisation), so its
vectors match the torch model's to float32 rounding. Texts are encoded
longest first, ``batch_size`` at a time, as sentence-transformers does, which
keeps padding small.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from .._core.device import onnx_load_device, parse_device, resolve_onnx_device
from .._core.saved_file import is_file_bytes
from .._core.validation import check_positive_int
from ..exceptions import (
    CorruptFileError,
    IncompatibleStateError,
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
)
from ._onnx_files import ModelFiles
from ._pooling import normalize_rows, pool
from .base import BaseEncoder, check_encoded

__all__ = ["OnnxEncoder", "import_onnxruntime", "available_threads"]

# Output names of the token vectors in exports of this library and of other tools.
_TOKEN_OUTPUTS = ("token_embeddings", "last_hidden_state")


def import_onnxruntime() -> Any:
    """``onnxruntime``, or a :class:`MissingDependencyError` naming the extra."""
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingDependencyError(
            f"an ONNX encoder needs onnxruntime and tokenizers ({error}). Install them with "
            '`pip install "cherche-faiss[onnx]"`.'
        ) from None
    return onnxruntime


def _import_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as error:
        raise MissingDependencyError(
            f"an ONNX encoder needs the tokenizers package ({error}). Install it with "
            '`pip install "cherche-faiss[onnx]"`.'
        ) from None
    return tokenizers


def available_threads() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class OnnxEncoder(BaseEncoder):
    """Encode texts with a sentence-transformers model exported to ONNX, without torch.

    Parameters
    ----------
    path
        Folder written by :func:`~cherche_faiss.encoders.export_onnx` (or a
        sentence-transformers folder holding ``model.onnx`` or
        ``onnx/model.onnx`` and ``tokenizer.json``).
    files
        The same files in memory, ``{name: bytes}``: what a save or a pickle of
        an embedded encoder holds. Used instead of ``path`` when given.
    device
        ``"cpu"``, ``"cuda"`` / ``"cuda:N"`` (needs onnxruntime-gpu) or ``"auto"``
        (a GPU when onnxruntime can use one).
    threads
        Threads onnxruntime uses for one batch; None: every core this process
        may run on.
    batch_size
        Default number of texts per forward pass.
    normalize_embeddings
        Scale every vector to unit length (models ending with a ``Normalize``
        module are normalised anyway).
    embed_weights
        Store the model's files inside pickles and saves, so that they load
        where ``path`` does not exist; otherwise they name ``path``.
    verify
        Check the files against the SHA-256s of the export's manifest before
        the first encoding (about 60 ms for a 90 MB model).

    Examples
    --------
    >>> from cherche_faiss.encoders import OnnxEncoder, export_onnx
    >>> from cherche_faiss.data import minilm_path
    >>> folder = export_onnx(minilm_path(), "minilm-onnx")  # doctest: +SKIP
    >>> encoder = OnnxEncoder(folder)  # doctest: +SKIP
    >>> encoder.encode(["Bordeaux wine"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        files: Mapping[str, bytes] | None = None,
        device: str = "auto",
        threads: int | None = None,
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        embed_weights: bool = False,
        verify: bool = True,
    ) -> None:
        if path is not None and (not isinstance(path, (str, os.PathLike)) or not str(path)):
            raise InvalidTypeError(f"path must be the folder of an exported ONNX model, got {path!r}.")
        if files is not None and not (
            isinstance(files, Mapping) and all(isinstance(k, str) and is_file_bytes(v) for k, v in files.items())
        ):
            raise InvalidTypeError("files must map file names to bytes (what an embedded ONNX encoder holds).")
        if path is None and files is None:
            raise InvalidInputError(
                "OnnxEncoder needs the folder of an exported model: OnnxEncoder(path). Export one with "
                "cherche_faiss.encoders.export_onnx(model, folder) or `cherche-faiss export-onnx MODEL --out DIR`."
            )
        for name, flag in (
            ("normalize_embeddings", normalize_embeddings),
            ("embed_weights", embed_weights),
            ("verify", verify),
        ):
            if not isinstance(flag, bool):
                raise InvalidTypeError(f"{name} must be True or False, got {flag!r}.")
        self.path = None if path is None else os.path.abspath(os.fspath(path))
        self.files = dict(files) if files is not None else None
        self.device = parse_device(device)
        self.threads = check_positive_int(threads, "threads")
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=False)
        self.normalize_embeddings = normalize_embeddings
        self.embed_weights = embed_weights
        self.verify = verify
        # Reads the settings now, so that a bad folder fails here and not at the first query.
        self._model_files = ModelFiles(None if self.files is not None else self.path, self.files)
        self._session: Any = None
        self._tokenizer: Any = None
        self._output: str | None = None
        self._input_types: dict[str, Any] = {}
        self._loaded_from_state = False  # devices of loaded states follow the load policy
        self._files_checked = False  # embedded files a save already checked: not hashed a second time

    # -- what it reproduces -----------------------------------------------------------------------
    @property
    def settings(self) -> Any:
        """The :class:`~cherche_faiss.encoders._onnx_files.OnnxSettings` read from the export."""
        return self._model_files.settings

    @property
    def dimension(self) -> int:
        """Size of the vectors (encodes a probe when the export does not say)."""
        if self.settings.dimension:
            return int(self.settings.dimension)
        return int(self.encode(["probe"]).shape[1])

    # -- the runtime ----------------------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The ``onnxruntime.InferenceSession``, created on first use."""
        if self._session is None:
            self._start()
        return self._session

    def set_threads(self, threads: int | None) -> OnnxEncoder:
        """Threads for later batches (the session is rebuilt on next use); returns ``self``."""
        threads = check_positive_int(threads, "threads")
        if threads != self.threads:
            self.threads = threads
            self._session = None
        return self

    def _start(self) -> None:
        ort = import_onnxruntime()
        tokenizers = _import_tokenizers()
        files = self._model_files
        if self.verify and not self._files_checked:
            files.verify()
        device = onnx_load_device(self.device) if self._loaded_from_state else resolve_onnx_device(self.device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or available_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initialisers are noise to users
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(device.split(":")[1])}))
        source = files.path(files.model_name)
        try:
            session = ort.InferenceSession(
                str(source) if source is not None else files.read(files.model_name), options, providers=providers
            )
            tokenizer = tokenizers.Tokenizer.from_str(files.read("tokenizer.json").decode("utf-8"))
        except Exception as error:  # onnxruntime and tokenizers raise their own exception types
            raise CorruptFileError(
                f"cannot read the ONNX model of {files.where} ({type(error).__name__}: {str(error)[:300]}). "
                "The file is damaged or not an ONNX model; export it again with cherche_faiss.encoders.export_onnx."
            ) from None
        self._configure_tokenizer(tokenizer)
        outputs = {output.name: output for output in session.get_outputs()}
        self._output = next((name for name in _TOKEN_OUTPUTS if name in outputs), session.get_outputs()[0].name)
        types = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
        self._input_types = {}
        for given in session.get_inputs():
            if given.name not in ("input_ids", "attention_mask", "token_type_ids") or given.type not in types:
                raise IncompatibleStateError(
                    f"the ONNX model of {files.where} takes the input {given.name!r} ({given.type}); an ONNX "
                    "encoder feeds input_ids, attention_mask and token_type_ids as integers. Export the model "
                    "with cherche_faiss.encoders.export_onnx."
                )
            self._input_types[given.name] = types[given.type]
        self._session, self._tokenizer = session, tokenizer

    def _configure_tokenizer(self, tokenizer: Any) -> None:
        """Truncate at the model's length and pad to each batch's longest text.

        A ``tokenizer.json`` may ship fixed padding and another truncation
        length (MiniLM's pads every text to 128 tokens and cuts it there):
        both are replaced by the sentence-transformers settings.
        """
        settings = self.settings
        padding = tokenizer.padding or {}
        pad_token = padding.get("pad_token")
        if pad_token is None:
            pad_token = next(
                (token for token in ("[PAD]", "<pad>", "<|pad|>") if tokenizer.token_to_id(token) is not None), None
            )
        pad_id = padding.get("pad_id", tokenizer.token_to_id(pad_token) if pad_token is not None else 0)
        tokenizer.enable_padding(
            direction=settings.padding_side,
            pad_id=pad_id or 0,
            pad_type_id=padding.get("pad_type_id", 0),
            pad_token=pad_token or "[PAD]",
            length=None,
        )
        tokenizer.enable_truncation(max_length=settings.max_seq_length)

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidTypeError("encode takes a list of texts, got one string; wrap it in a list.")
        texts = list(texts)
        if not texts:
            raise InvalidInputError("encode got no texts; pass at least one text.")
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidTypeError(f"texts[{row}] must be a string, got {type(text).__name__}.")
        size = check_positive_int(batch_size, "batch_size") or self.batch_size
        session = self.session
        settings = self.settings
        if settings.prompt:
            texts = [settings.prompt + text for text in texts]
        if settings.do_lower_case:
            texts = [text.lower() for text in texts]
        # Longest first, as sentence-transformers does: similar lengths share a batch, padding stays small.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        vectors: np.ndarray | None = None
        for start in range(0, len(texts), size):
            rows = order[start : start + size]
            batch = self._forward(session, [texts[i] for i in rows])
            if vectors is None:
                vectors = np.empty((len(texts), batch.shape[1]), dtype=np.float32)
            vectors[rows] = batch
        if settings.normalize or self.normalize_embeddings:
            # texts is not empty (checked above), so the loop ran and allocated vectors.
            vectors = normalize_rows(cast(np.ndarray, vectors))
        return check_encoded(vectors, texts, f"OnnxEncoder({self.path or 'embedded'!r})")

    def _forward(self, session: Any, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        columns = {
            "input_ids": lambda: [encoding.ids for encoding in encodings],
            "attention_mask": lambda: mask,
            "token_type_ids": lambda: [encoding.type_ids for encoding in encodings],
        }
        feed = {name: np.asarray(columns[name](), dtype=dtype) for name, dtype in self._input_types.items()}
        output = session.run([self._output], feed)[0]
        if output.ndim == 2:  # the export pools inside the graph
            return np.asarray(output, dtype=np.float32)
        return pool(np.asarray(output, dtype=np.float32), mask, self.settings.pooling)

    # -- pickling and saving ----------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in self._param_names()}
        if self.embed_weights and state["files"] is None:
            state["files"] = {name: self._model_files.read(name) for name in self._model_files.names()}
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        type(self).__init__(self, **state)  # validates what was saved, reads the settings again
        self._loaded_from_state = True

    def _load_state(self, state: dict[str, Any], context: Any = None) -> None:
        self._loaded_from_state = True
        # Embedded files read into memory from a save whose SHA-256s were checked before this was built are not
        # hashed again; mapped ones are read later, from a path a later save may have replaced: they are.
        self._files_checked = (
            self.files is not None and bool(getattr(context, "verified", False)) and not getattr(context, "mmap", False)
        )
        device = getattr(context, "device", "auto")
        if device != "auto":  # asked for explicitly: resolved (and refused if unusable) at first use
            self.device, self._loaded_from_state = device, False

    def __repr__(self) -> str:
        where = self.path if self.path is not None else f"{len(self.files or ())} embedded files"
        return (
            f"OnnxEncoder({where!r}, device={self.device!r}, threads={self.threads}, batch_size={self.batch_size}, "
            f"pooling={self.settings.pooling}, normalize={self.settings.normalize or self.normalize_embeddings}, "
            f"quantize={self.settings.quantize})"
        )
