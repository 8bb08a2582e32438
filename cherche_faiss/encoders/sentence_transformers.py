"""A sentence-transformers model that pickles by reference (or as CPU weights),
never as CUDA tensors, and loads lazily on the best device available."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from .._core.device import parse_device, resolve_torch_device, torch_load_device
from .._core.saved_file import SavedFile, is_file_bytes
from .._core.validation import check_positive_int
from ..exceptions import IncompatibleStateError, InvalidInputError, MissingDependencyError
from .base import BaseEncoder, check_encoded, check_scores

__all__ = ["SentenceTransformerEncoder", "CrossEncoderScorer"]


def _import_sentence_transformers() -> Any:
    try:
        import sentence_transformers
    except ImportError as error:
        raise MissingDependencyError(
            f"SentenceTransformerEncoder needs sentence-transformers and torch ({error}). Install them with "
            '`pip install "cherche-faiss[sentence-transformers]"`; to answer queries without torch, save the '
            "pipeline with cherche_faiss.save(pipeline, path, onnx=True) and load it where onnxruntime is installed."
        ) from None
    return sentence_transformers


def _model_device(model: Any) -> str:
    device = str(getattr(model, "device", "cpu"))
    return "cuda:0" if device == "cuda" else device


def _model_reference(model: Any) -> str | None:
    """The name or path that loads ``model`` again, when it can be found."""
    card = getattr(model, "model_card_data", None)
    base = getattr(card, "base_model", None)
    if isinstance(base, str) and base:
        return base  # a hub id: portable across machines
    try:
        path = model[0].auto_model.config._name_or_path
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return path if isinstance(path, str) and path else None


class SentenceTransformerEncoder(BaseEncoder):
    """Encode texts with a sentence-transformers model.

    The model is loaded on first use. A pickle holds the model's name or path
    and these options (a few hundred bytes), so it never holds CUDA tensors;
    with ``embed_weights=True`` it also holds the model's files (weights on
    the CPU, as safetensors), so it loads where the model is not installed.
    After loading, the model is rebuilt on the device the load policy allows:
    a model saved for ``cuda:0`` comes back on the CPU, with a
    :class:`~cherche_faiss.exceptions.DeviceFallbackWarning`, where there is no GPU.

    Parameters
    ----------
    model_name_or_path
        Hub id or local folder of a sentence-transformers model. Offline, use a
        folder (e.g. ``cherche_faiss.data.minilm_path()``).
    device
        ``"auto"`` (a GPU when torch sees one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    normalize_embeddings
        Ask the model for unit-length embeddings.
    batch_size
        Default number of texts per forward pass.
    embed_weights
        Store the model's files inside pickles.
    trust_remote_code
        Passed to ``SentenceTransformer``.

    Examples
    --------
    >>> from cherche_faiss.data import minilm_path
    >>> encoder = SentenceTransformerEncoder(minilm_path(), device="cpu")  # doctest: +SKIP
    >>> encoder.encode(["Bordeaux wine"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike,
        device: str = "auto",
        normalize_embeddings: bool = False,
        batch_size: int = 32,
        embed_weights: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        if not isinstance(model_name_or_path, (str, os.PathLike)) or not str(model_name_or_path):
            raise InvalidInputError(f"model_name_or_path must be a model name or a folder, got {model_name_or_path!r}.")
        self.model_name_or_path = str(model_name_or_path)
        self.device = parse_device(device)
        self.normalize_embeddings = bool(normalize_embeddings)
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=False)
        self.embed_weights = bool(embed_weights)
        self.trust_remote_code = bool(trust_remote_code)
        self._model: Any = None
        self._weights: dict[str, bytes] | None = None  # model files, only after unpickling
        self._saved_device: str | None = None  # device of the pickled model, resolved lazily

    @classmethod
    def from_model(cls, model: Any, embed_weights: bool = False) -> SentenceTransformerEncoder:
        """Wrap a loaded model (what ``as_encoder`` does for ``model.encode``)."""
        reference = _model_reference(model)
        embed = embed_weights or reference is None
        if reference is None:
            warnings.warn(
                "this SentenceTransformer has no name or path to reload it from, so its pickles "
                "will embed its weights (tens of MB). Save the model with model.save(folder) and "
                "pass SentenceTransformerEncoder(folder) to pickle it by reference.",
                UserWarning,
                stacklevel=3,
            )
        encoder = cls(
            reference or "<in-memory model>", device=_model_device(model), embed_weights=embed, **cls._options_of(model)
        )
        encoder._model = model
        return encoder

    @classmethod
    def _options_of(cls, model: Any) -> dict[str, Any]:
        """Constructor options read off a loaded model (subclasses add theirs)."""
        return {}

    # -- the model ------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The ``SentenceTransformer``, loaded on first access."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> Any:
        st = _import_sentence_transformers()
        if self._saved_device is not None:
            device = torch_load_device(self._saved_device)
        else:
            device = resolve_torch_device(self.device)
        model_class = getattr(st, self._model_class)
        options = {"device": device, "trust_remote_code": self.trust_remote_code, **self._load_options()}
        if self._weights is None:
            try:
                return model_class(self.model_name_or_path, **options)
            except (OSError, ValueError) as error:
                raise MissingDependencyError(
                    f"cannot load the sentence-transformers model {self.model_name_or_path!r} "
                    f"({type(error).__name__}: {str(error).strip().splitlines()[0][:200]}). This "
                    "encoder refers to the model by name or path: install or copy the model there, "
                    "or pickle the encoder with embed_weights=True to carry the weights."
                ) from error
        folder = tempfile.mkdtemp(prefix="cherche_faiss_model_")
        try:
            for name, data in self._weights.items():
                path = Path(folder, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(data, SavedFile):
                    shutil.copyfile(data.path, path)
                else:
                    path.write_bytes(data)
            return model_class(folder, **options)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    _model_class = "SentenceTransformer"

    def _load_options(self) -> dict[str, Any]:
        """Extra keyword arguments of the model class (subclasses add theirs)."""
        return {}

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            raise InvalidInputError("encode got no texts; pass at least one text.")
        output = self.model.encode(
            texts,
            batch_size=batch_size or self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize_embeddings,
        )
        return check_encoded(output, texts, f"SentenceTransformer {self.model_name_or_path!r}")

    @property
    def dimension(self) -> int:
        """Embedding dimension of the model (loads it)."""
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    # -- pickling -------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state = {
            name: value for name, value in self.__dict__.items() if name not in ("_model", "_weights", "_saved_device")
        }
        # Where the model runs now, so that the load policy can bring it back there.
        state["saved_device"] = (
            _model_device(self._model) if self._model is not None else (self._saved_device or self.device)
        )
        state["weights"] = self._model_files() if self.embed_weights else None
        return state

    def _model_files(self) -> dict[str, bytes]:
        if self._weights is not None and self._model is None:
            return self._weights
        folder = tempfile.mkdtemp(prefix="cherche_faiss_save_")
        try:
            # save() writes safetensors on the host, whatever device the model is on.
            self.model.save(folder)
            return {
                str(path.relative_to(folder)): path.read_bytes()
                for path in sorted(Path(folder).rglob("*"))
                if path.is_file()
            }
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._weights = state.pop("weights")
        self._saved_device = state.pop("saved_device")
        self.__dict__.update(state)
        self._model = None

    def _load_state(self, state: dict[str, Any], context: Any = None) -> None:
        self._set_state(state)
        device = getattr(context, "device", "auto")
        if device != "auto":  # asked for explicitly: resolved (and refused if unusable) when the model loads
            self.device, self._saved_device = device, None

    def _check_loaded(self) -> None:
        weights = self._weights
        if weights is not None and not (
            isinstance(weights, dict) and all(isinstance(k, str) and is_file_bytes(v) for k, v in weights.items())
        ):
            raise IncompatibleStateError("the saved model files of this encoder are not a dict of file names to bytes.")
        if weights is not None and any(Path(name).is_absolute() or ".." in Path(name).parts for name in weights):
            raise IncompatibleStateError("the saved model files of this encoder name paths outside their folder.")
        if self._saved_device is not None:
            parse_device(self._saved_device)


class CrossEncoderScorer(SentenceTransformerEncoder):
    """Score (query, document) pairs with a sentence-transformers ``CrossEncoder``.

    Pickled like :class:`SentenceTransformerEncoder`: by reference, or with
    ``embed_weights=True`` with the model's files (needed to keep a head that
    exists only in memory, e.g. one just initialised or fine-tuned).

    Parameters
    ----------
    model_name_or_path, device, batch_size, embed_weights, trust_remote_code
        As for :class:`SentenceTransformerEncoder`.
    num_labels
        Passed to ``CrossEncoder`` (1 for a relevance score).
    """

    _model_class = "CrossEncoder"

    def __init__(
        self,
        model_name_or_path: str | os.PathLike,
        device: str = "auto",
        batch_size: int = 32,
        embed_weights: bool = False,
        trust_remote_code: bool = False,
        num_labels: int | None = None,
    ) -> None:
        super().__init__(
            model_name_or_path,
            device=device,
            batch_size=batch_size,
            embed_weights=embed_weights,
            trust_remote_code=trust_remote_code,
        )
        self.num_labels = num_labels

    @classmethod
    def _options_of(cls, model: Any) -> dict[str, Any]:
        labels = getattr(model, "num_labels", None)
        return {"num_labels": labels} if isinstance(labels, int) else {}

    def _load_options(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels} if self.num_labels is not None else {}

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None) -> np.ndarray:
        """One relevance score per ``(query, document)`` pair, as a float32 vector."""
        # tuple() of each (str, str) pair (lists from JSON included) is that pair; mypy says tuple[str, ...].
        pairs = cast(list[tuple[str, str]], [tuple(pair) for pair in pairs])
        if not pairs:
            return np.empty(0, dtype=np.float32)
        scores = self.model.predict(
            pairs, batch_size=batch_size or self.batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return check_scores(scores, len(pairs), f"CrossEncoder {self.model_name_or_path!r}")

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        raise InvalidInputError("a cross-encoder scores (query, document) pairs: call score(pairs).")

    def __call__(self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None) -> np.ndarray:  # type: ignore[override]
        return self.score(pairs, batch_size=batch_size)
