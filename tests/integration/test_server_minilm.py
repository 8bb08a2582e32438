"""The README's pipeline with the real offline MiniLM, served over HTTP."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("fastapi", reason='the server tests need pip install "cherche-faiss[server]"')
httpx = pytest.importorskip("httpx")

from cherche_faiss import data, rank, retrieve  # noqa: E402
from cherche_faiss.server import create_app  # noqa: E402

from ..helpers import assert_same_hits  # noqa: E402
from ..serving import post_all, served  # noqa: E402

pytestmark = pytest.mark.integration

QUERIES = ["bordeaux wine", "aerospace industry", "football club", "metro", "university", "harbour", "rugby"]


def test_the_readme_pipeline_served_with_minilm(minilm):
    import torch

    documents = data.load_towns()
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=30)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=minilm.encode, k=10)
    search = (retriever + ranker + documents).add(documents, show_progress=False)
    expected = [search(query, k=5) for query in QUERIES]
    torch_threads = torch.get_num_threads()
    # The server runs this very pipeline: nothing else calls it while it serves.
    with served(create_app(search, max_wait_ms=100, threads=1)) as url:
        responses = asyncio.run(post_all(url, [{"q": query, "k": 5} for query in QUERIES], concurrency=len(QUERIES)))
        info = httpx.get(f"{url}/info").json()
    for response, answer in zip(responses, expected):
        assert response.status_code == 200, response.text
        # MiniLM encodes a query padded in a batch a few ulps away from the same query alone.
        assert_same_hits(response.json()["hits"], answer, tolerance=1e-5)
    assert info["stats"]["pipeline_calls"] < len(QUERIES)  # one encoder call for several requests
    encoder = info["components"]["models"][1]["encoder"]
    assert encoder["class"] == "SentenceTransformerEncoder" and encoder["loaded_on"] == "cpu"
    assert info["threads"]["torch"] == 1 and info["versions"]["torch"] == torch.__version__
    assert torch.get_num_threads() == torch_threads  # given back when the server stopped
