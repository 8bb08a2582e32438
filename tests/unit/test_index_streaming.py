"""Streaming adds: documents from any iterable, encoded and added batch by batch."""

from __future__ import annotations

import tracemalloc

import pytest

from cherche_faiss import retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import (
    InvalidInputError,
    InvalidTypeError,
)


# -- streaming ---------------------------------------------------------------------------
def test_streaming_add_never_holds_every_embedding(rng):
    """A generator of 8,000 documents: Python-side memory holds the key table (about 1 MB)
    and one batch (512 kB of vectors), far below the 16 MB of all embeddings."""
    retriever = retrieve.Encoder(key="id", on="text", encoder=HashingEncoder(dimension=512), batch_size=256)
    documents = ({"id": i, "text": f"document number {i} about topic {i % 97}"} for i in range(8_000))
    retrieve.Encoder(key="id", on="text", encoder=HashingEncoder()).add(
        [{"id": 0, "text": "warm"}], show_progress=False
    )  # imports
    tracemalloc.start()
    try:
        retriever.add(documents, show_progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(retriever) == 8_000
    assert peak < 5_000_000, f"peak {peak:,} bytes: embeddings were accumulated"
    assert retriever("topic 5", k=1)[0]["id"] % 97 == 5


def test_streaming_add_equals_adding_a_list(documents, encoder):
    from_list = retrieve.Encoder(key="id", on=["title", "article"], encoder=encoder, batch_size=2)
    from_list.add(documents, show_progress=False)
    streamed = retrieve.Encoder(key="id", on=["title", "article"], encoder=encoder, batch_size=2)
    streamed.add((document for document in documents), show_progress=False)
    assert streamed("wine", k=3) == from_list("wine", k=3)


def test_a_bad_document_in_a_stream_names_its_position(encoder):
    retriever = retrieve.Encoder(key="id", on="text", encoder=encoder, batch_size=4)
    stream = ({"id": i, "text": "t"} if i != 6 else {"text": "no id"} for i in range(10))
    with pytest.raises(InvalidInputError, match=r"documents\[6\]"):
        retriever.add(stream, show_progress=False)
    assert len(retriever) == 4  # the first batch was added: a stream is not atomic (documented)
    with pytest.raises(InvalidTypeError, match="iterable"):
        retriever.add(42, show_progress=False)


def test_pipeline_reads_a_generator_once_for_every_model(documents, encoder):
    tfidf = retrieve.TfIdf(key="id", on=["title", "article"])
    dense = retrieve.Encoder(key="id", on=["title", "article"], encoder=encoder)
    union = tfidf | dense
    union.add(document for document in documents)
    assert len(tfidf) == len(dense) == len(documents)
