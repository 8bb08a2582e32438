"""A JSON description of a pipeline: its components, their corpus sizes, indexes and devices.

What the server's ``GET /info`` shows; plain dicts, lists, strings and numbers only.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

from .._core.versions import imported_versions
from .._version import __version__

__all__ = ["describe", "versions"]

_JSON_SCALARS = (str, int, float, bool, type(None))
_HIDDEN_PARAMS = {"documents", "embeddings_documents", "models", "encoder", "query_encoder", "tfidf"}


def describe(pipeline: Any) -> dict[str, Any]:
    """Describe ``pipeline`` for humans and monitoring: components, corpus sizes, indexes, devices.

    Parameters
    ----------
    pipeline
        A retriever, a pipeline, a fusion (``|``, ``&``, ``*``) or any callable.

    Returns
    -------
    dict
        ``components`` (nested: each with its class, parameters, number of
        documents, encoder and FAISS index), ``corpus_size`` (the most documents
        any component holds), ``indexes`` (every FAISS index, with the path of
        its component) and ``devices``.

    Examples
    --------
    >>> from cherche_faiss import rank, retrieve
    >>> from cherche_faiss.encoders import HashingEncoder
    >>> documents = [{"id": 0, "title": "Paris"}, {"id": 1, "title": "Bordeaux"}]
    >>> retriever = retrieve.TfIdf(key="id", on="title", documents=documents, k=2)
    >>> ranker = rank.Encoder(key="id", on="title", encoder=HashingEncoder(dimension=16), k=1)
    >>> search = (retriever + ranker + documents).add(documents)
    >>> info = describe(search)
    >>> [component["class"] for component in info["components"]["models"]]
    ['TfIdf', 'Encoder', 'DocumentMap']
    >>> info["corpus_size"], info["indexes"][0]["factory"], info["indexes"][0]["size"], info["devices"]
    (2, 'Flat', 2, ['cpu'])
    """
    indexes: list[dict[str, Any]] = []
    devices: set[str] = set()
    components = _component(pipeline, "pipeline", indexes, devices)
    sizes = [size for size in _sizes(components) if size is not None]
    return {
        "components": components,
        "corpus_size": max(sizes) if sizes else None,
        "indexes": indexes,
        "devices": sorted(devices),
    }


def versions() -> dict[str, str | None]:
    """Versions of Python, cherche_faiss and what it runs on (None when not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version(), "cherche_faiss": __version__}
    for name, distribution in (
        ("faiss", "faiss-cpu"),
        ("numpy", "numpy"),
        ("fastapi", "fastapi"),
        ("uvicorn", "uvicorn"),
        ("pydantic", "pydantic"),
    ):
        found[name] = _distribution_version(distribution)
    faiss = sys.modules.get("faiss")
    if faiss is not None:  # faiss-gpu installs under another distribution name
        found["faiss"] = getattr(faiss, "__version__", found["faiss"])
    found.update(imported_versions(("torch", "sentence_transformers")))  # only when the pipeline loaded them
    return found


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _component(model: Any, path: str, indexes: list[dict[str, Any]], devices: set[str]) -> dict[str, Any]:
    described: dict[str, Any] = {"class": type(model).__name__}
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        described["params"] = {
            name: _jsonable(value) for name, value in get_params().items() if name not in _HIDDEN_PARAMS
        }
    size = _size(model)
    if size is not None:
        described["documents"] = size
    for name in ("encoder", "query_encoder"):
        encoder = getattr(model, name, None)
        if encoder is not None and not (name == "query_encoder" and encoder is getattr(model, "encoder", None)):
            described[name] = _encoder(encoder, devices)
    index = getattr(model, "index", None)
    if _is_faiss_index(index):
        described["index"] = _index(index, f"{path}.index", indexes, devices)
    shards = getattr(model, "describe_shards", None)
    if callable(shards):  # a sharded retriever: where each shard lives (unreachable ones say so)
        described["placement"] = model.placement
        described["shards"] = [_jsonable(entry) for entry in shards()]
    children = getattr(model, "models", None)
    if isinstance(children, list):
        described["models"] = [
            _component(child, f"{path}.models[{position}]", indexes, devices) for position, child in enumerate(children)
        ]
    return described


def _size(model: Any) -> int | None:
    if not hasattr(type(model), "__len__"):
        return None
    try:
        return int(len(model))
    except (TypeError, NotImplementedError):
        return None


def _is_faiss_index(index: Any) -> bool:
    from ..index.faiss import FaissIndex

    return isinstance(index, FaissIndex)


def _index(index: Any, path: str, indexes: list[dict[str, Any]], devices: set[str]) -> dict[str, Any]:
    described = {
        "component": path,
        "factory": index.factory_used,
        "size": len(index),
        "dimension": index.d,
        "metric": index.metric,
        "normalize": index.normalize,
        "device": index.current_device,
        "search_params": dict(index.search_params),
    }
    if index.choice is not None:
        described["chosen_because"] = index.choice["reason"]
    indexes.append(described)
    devices.add(index.current_device)
    return described


def _encoder(encoder: Any, devices: set[str]) -> dict[str, Any]:
    described: dict[str, Any] = {"class": type(encoder).__name__}
    for name in ("model_name_or_path", "dimension", "device"):
        value = encoder.__dict__.get(name) if hasattr(encoder, "__dict__") else None
        if isinstance(value, _JSON_SCALARS) and value is not None:
            described[name] = value
    model = getattr(encoder, "_model", None)  # loaded lazily: never load it just to describe it
    if model is not None and hasattr(model, "device"):
        described["loaded_on"] = str(model.device)
        devices.add(described["loaded_on"])
    elif "model_name_or_path" in described:
        described["loaded_on"] = None  # loads on its first query
    return described


def _jsonable(value: Any) -> Any:
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(item, _JSON_SCALARS) for item in value):
        return list(value)
    if isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(item, _JSON_SCALARS) for key, item in value.items()
    ):
        return dict(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _sizes(component: dict[str, Any]) -> list[int | None]:
    found = [component.get("documents")]
    for child in component.get("models", []):
        found.extend(_sizes(child))
    return found
