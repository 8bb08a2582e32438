"""Encoding documents on a Ray cluster: Ray Data's ``map_batches`` on a pool of encoder actors.

Each actor of the pool holds one copy of the document encoder (a
sentence-transformers model, an ONNX encoder, the hashing encoder ...), built
once, and encodes the batches Ray Data hands it, on whichever node it runs.
The encoded batches come back in the order of the documents
(``preserve_order``), which is the order their ordinals follow (see
:mod:`cherche_faiss.distributed.merge`), so a sharded build ties as one
index built from the same list does.

Documents may be a list (or any iterable) of dicts, validated whole first
and sent to the cluster as ``{"row", "text"}`` rows (their other fields stay
here), or a ``ray.data.Dataset`` whose rows hold the key and ``on`` fields
(read from files with ``ray.data.read_json`` / ``read_parquet`` for corpora
larger than this process' memory).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import numpy as np

from .._core.validation import as_documents, document_texts
from ..exceptions import InvalidInputError

__all__ = ["EncodeBatch", "encode_on_ray", "is_dataset"]


def is_dataset(documents: Any) -> bool:
    """Whether ``documents`` is a ``ray.data.Dataset`` (without importing Ray when it is not loaded)."""
    return type(documents).__module__.startswith("ray.data") and hasattr(documents, "map_batches")


class EncodeBatch:
    """What each actor of the pool runs: the texts of one batch to vectors.

    Parameters
    ----------
    encoder
        The document encoder (an object with ``encode(texts, batch_size=...)``).
    key, on
        The key field and the text fields (documents of a ``ray.data.Dataset``); None for rows
        prepared here (``{"row", "text"}``).
    batch_size
        Texts the encoder encodes at once.
    """

    def __init__(self, encoder: Any, key: str | None, on: list[str] | None, batch_size: int) -> None:
        self.encoder, self.key, self.on, self.batch_size = encoder, key, on, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.on is None:
            texts = [str(text) for text in batch["text"]]
            ids = {"row": np.asarray(batch["row"], dtype=np.int64)}
        else:
            key = str(self.key)
            missing = [field for field in [key, *self.on] if field not in batch]
            if missing:
                raise InvalidInputError(
                    f"the dataset's rows have no field {missing[0]!r} (fields: {sorted(batch)}). Each row needs "
                    f"the key field {self.key!r} and the fields of on={self.on}."
                )
            count = len(batch[key])
            texts = [" ".join(str(batch[field][row]) for field in self.on) for row in range(count)]
            ids = {"key": batch[key]}
        vectors = np.asarray(self.encoder.encode(texts, batch_size=self.batch_size), dtype=np.float32)
        return {**ids, "vector": vectors}


def encode_on_ray(
    documents: Any,
    encoder: Any,
    key: str,
    on: list[str],
    batch_size: int,
    concurrency: int,
    num_cpus: float,
    options: dict[str, Any] | None = None,
) -> tuple[Iterator[tuple[np.ndarray, list[Hashable]]], int | None]:
    """The encoded batches of ``documents`` as ``(vectors, keys)``, in the documents' order, and their
    number when known.

    Parameters
    ----------
    documents
        An iterable of dicts, or a ``ray.data.Dataset``.
    encoder
        The document encoder; every actor of the pool gets a copy.
    key, on
        The key field and the text fields.
    batch_size
        Documents per batch handed to an actor (and texts encoded at once).
    concurrency
        Encoder actors in the pool.
    num_cpus
        CPUs each encoder actor reserves (its threads follow them).
    options
        Other Ray options of the encoder actors (``num_gpus``, ``memory``, ``resources`` ...).
    """
    import ray.data

    keys: list[Hashable] | None = None
    constructor: tuple[Any, ...]
    if is_dataset(documents):
        dataset, total, constructor = documents, None, (encoder, key, on, batch_size)
    else:
        if isinstance(documents, (str, bytes, Mapping)):
            as_documents(documents, key, on)  # raises the usual error
        listed = as_documents(list(documents), key, on)  # validated whole before anything is encoded
        keys = [document[key] for document in listed]
        texts = document_texts(listed, on)
        dataset = ray.data.from_items([{"row": row, "text": text} for row, text in enumerate(texts)])
        total, constructor = len(listed), (encoder, None, None, batch_size)
    encoded = dataset.map_batches(
        EncodeBatch,
        fn_constructor_args=constructor,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus,
        **(options or {}),
    )
    context = encoded.context
    context.execution_options.preserve_order = True  # ordinals follow the documents' order
    context.enable_progress_bars = False  # the retriever shows one bar, in documents

    def batches() -> Iterator[tuple[np.ndarray, list[Hashable]]]:
        for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
            vectors = np.asarray(batch["vector"], dtype=np.float32)
            if keys is None:
                yield vectors, [_plain(value) for value in batch["key"].tolist()]
            else:
                yield vectors, [keys[row] for row in batch["row"].tolist()]

    return batches(), total


def _plain(value: Any) -> Any:
    """A key read back from Arrow as a Python value (``tolist`` gives ints and strs already)."""
    return value.item() if isinstance(value, np.generic) else value


def dataset_size(documents: Any) -> int | None:
    """The number of rows of a ``ray.data.Dataset`` (it may read the dataset's metadata), else None."""
    return int(documents.count()) if is_dataset(documents) else None
