"""ShardedRetriever on a real multi-node Ray cluster on this machine: a head and two worker nodes, one CPU
each, started once for the module (``ray.cluster_utils.Cluster``; not ``ray.init(num_cpus=2)``, which is
one node). Shards are placed on the workers only (a custom ``shard`` resource), spread one per worker.

Run alone with ``pytest -m ray tests/distributed``; skipped when Ray is not installed. Never under
pytest-xdist (Ray's advice).
"""

from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason='the Ray tests need pip install "cherche-faiss[ray]"')

import cherche_faiss  # noqa: E402
from cherche_faiss import retrieve  # noqa: E402
from cherche_faiss.contract import Case, check_component  # noqa: E402
from cherche_faiss.distributed import ShardedRetriever, shard_of  # noqa: E402
from cherche_faiss.distributed import load as load_sharded  # noqa: E402
from cherche_faiss.encoders import HashingEncoder  # noqa: E402
from cherche_faiss.exceptions import PartialResultsWarning, ShardUnavailableError, UnknownKeyError  # noqa: E402
from cherche_faiss.index import FaissIndex  # noqa: E402

from ..helpers import REPO  # noqa: E402
from ..unit.test_distributed import assert_same_answers, same_ranking  # noqa: E402

pytestmark = pytest.mark.ray

STORE = 150 * 2**20  # each node's object store: small, the machine is shared
ON_WORKERS = {"resources": {"shard": 1}}  # shards go to the worker nodes, never to the head
TIMEOUT = 20.0  # the bound of every search here
CACHE = REPO / "benchmarks" / ".cache"


class LocalCluster:
    """A head and two one-CPU workers; :meth:`restart` replaces them with a new cluster."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        from ray.cluster_utils import Cluster

        # Ray starts workers at nice 15: on a machine busy with other work the shards would starve and
        # searches crawl towards their bound; a cluster's nodes run nothing else.
        os.environ.setdefault("RAY_WORKER_NICENESS", "0")

        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "object_store_memory": STORE, "include_dashboard": False},
        )
        self.workers = [
            self.cluster.add_node(num_cpus=1, object_store_memory=STORE, resources={"shard": 100}) for _ in range(2)
        ]
        ray.init(address=self.cluster.address, log_to_driver=False)

    def stop(self) -> None:
        ray.shutdown()
        self.cluster.shutdown()

    def restart(self) -> None:
        self.stop()
        self.start()

    def worker_of(self, node_id: str):
        return next(worker for worker in self.workers if worker.node_id == node_id)


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def corpus():
    """SciFact: 20,000 MiniLM sentence vectors and the 1,109 claims (benchmarks/.cache), else the same
    number of hashing-encoder vectors of made-up sentences (CI without the cache still checks exactness)."""
    sentences = sorted(CACHE.glob("scifact-minilm-v1-sentences-*.npy"))
    queries = sorted(CACHE.glob("scifact-minilm-v1-queries-*.npy"))
    if sentences and queries:
        return np.ascontiguousarray(np.load(sentences[-1])[:20_000]), np.load(queries[-1])
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choice(words, 12)) for _ in range(20_000)]
    encoder = HashingEncoder(dimension=384)
    return encoder.encode(texts), encoder.encode([" ".join(rng.choice(words, 8)) for _ in range(300)])


def embedding_documents(vectors):
    return [{"id": i} for i in range(len(vectors))]


def sharded_embedding(vectors, index=None, shards=2, **options):
    template = retrieve.Embedding(key="id", index=index, k=10)
    sharded = ShardedRetriever(template, shards=shards, shard_options=ON_WORKERS, timeout=TIMEOUT, **options)
    return sharded.add(embedding_documents(vectors), embeddings_documents=vectors, show_progress=False)


def texts(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["paris", "wine", "tower", "river", "city", "food", "metro", "canada", "airbus", "silk", "sea", "snow"]
    return [
        {"id": f"doc-{i}", "title": " ".join(rng.choice(words, 2)), "article": " ".join(rng.choice(words, 6))}
        for i in range(n)
    ]


def encoder_template():
    return retrieve.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=64), k=10)


def test_the_cluster_has_three_nodes(cluster):
    assert len([node for node in ray.nodes() if node["Alive"]]) == 3


def test_flat_shards_answer_as_one_index(cluster, corpus):
    vectors, queries = corpus
    sharded = sharded_embedding(vectors)
    single = retrieve.Embedding(key="id", k=10).add(embedding_documents(vectors), embeddings_documents=vectors)
    nodes = {entry["node"] for entry in sharded.describe_shards()}
    assert nodes == {worker.node_id for worker in cluster.workers}  # one shard per worker
    assert sharded.placement == "ray" and len(sharded) == len(vectors)
    same_ranking(sharded(queries), single(queries))  # BLAS: similarities to float32 rounding
    same_ranking([sharded(query) for query in queries[:20]], [single(query) for query in queries[:20]])
    sharded.close()


def test_ivf_shards_share_their_centroids(cluster, corpus):
    vectors, queries = corpus
    sharded = sharded_embedding(vectors, index="IVF64,Flat")
    trained = sharded.trained_index
    assert trained.is_trained and trained.ntotal == 0  # trained once, here, then given to both shards
    single = retrieve.Embedding(key="id", index=FaissIndex(factory=trained), k=10, search_params={"nprobe": 8})
    single.add(embedding_documents(vectors), embeddings_documents=vectors)
    sharded.set_search_params(nprobe=8)
    assert_same_answers(sharded, single, queries[:200])  # identical bits: FAISS scores each vector alone
    assert_same_answers(sharded, single, queries[:50], nprobe=2)
    sharded.close()


def test_documents_are_encoded_on_an_actor_pool(cluster):
    documents = texts(3000)
    sharded = ShardedRetriever(encoder_template(), shards=2, shard_options=ON_WORKERS, timeout=TIMEOUT)
    sharded.add(documents, batch_size=256, concurrency=2, show_progress=False)
    single = encoder_template().add(documents, show_progress=False)
    queries = ["paris wine", "tower river city", "silk food", "snow"]
    same_ranking(sharded(queries), single(queries))
    from_dataset = ShardedRetriever(encoder_template(), shards=2, shard_options=ON_WORKERS, timeout=TIMEOUT)
    from_dataset.add(ray.data.from_items(documents), batch_size=500, show_progress=False)
    assert from_dataset(queries) == sharded(queries)  # the same order of arrival: the same shards
    sharded.close()
    from_dataset.close()


def test_upserts_and_removals(cluster, corpus):
    vectors = corpus[0][:3000]
    rng = np.random.default_rng(1)
    sharded = sharded_embedding(vectors)
    single = retrieve.Embedding(key="id", k=10).add(embedding_documents(vectors), embeddings_documents=vectors)
    changed = np.ascontiguousarray(rng.permutation(vectors[:50]))
    for retriever in (sharded, single):
        retriever.add(embedding_documents(changed), embeddings_documents=changed)
    sharded.remove(range(100, 200))
    single.index.remove(range(100, 200))
    assert len(sharded) == len(single) == 2900
    with pytest.raises(UnknownKeyError, match="nothing was removed"):
        sharded.remove([5, 150])
    assert len(sharded) == 2900
    same_ranking(sharded(vectors[:200]), single(vectors[:200]))
    sizes = [entry["documents"] for entry in sharded.describe_shards()]
    owners = np.bincount(shard_of([i for i in range(3000) if not 100 <= i < 200], 2), minlength=2)
    assert sizes == owners.tolist()
    sharded.close()


def test_the_contract_holds_on_ray(cluster):
    encoder = HashingEncoder(dimension=32)
    template = retrieve.Embedding(key="id", k=3)
    case = Case(
        lambda: ShardedRetriever(template, shards=2, shard_options=ON_WORKERS, timeout=TIMEOUT),
        vectors=lambda queries: encoder.encode(queries),
    )
    check_component(case)  # pickles hold handles to the same actors; saves load back in process


SAVED: dict = {}


def test_save_then_load_on_a_new_cluster(cluster, tmp_path_factory):
    documents = texts(2000, seed=2)
    sharded = ShardedRetriever(encoder_template(), shards=2, shard_options=ON_WORKERS, timeout=TIMEOUT)
    sharded.add(documents, concurrency=2, show_progress=False)
    queries = ["paris wine", "tower river", "airbus canada metro"]
    expected = sharded(queries)
    path = cherche_faiss.save(sharded, tmp_path_factory.mktemp("saves") / "sharded")
    cluster.restart()  # every actor and node of the first cluster is gone
    loaded = load_sharded(path)
    assert loaded.placement == "ray" and loaded(queries) == expected
    assert {entry["node"] for entry in loaded.describe_shards()} == {worker.node_id for worker in cluster.workers}
    assert cherche_faiss.load(path)(queries) == expected  # the same save, in this process
    mapped = load_sharded(path, mmap=True)  # each shard maps its folder (FAISS searches it: float32 rounding)
    same_ranking(mapped(queries), expected)
    mapped.close()
    SAVED.update(path=path, queries=queries, expected=expected)
    loaded.close()


def test_one_endpoint_serves_the_shards(cluster):
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from cherche_faiss.server import create_app, load_served

    from ..serving import served

    if not SAVED:
        pytest.skip("needs the save of test_save_then_load_on_a_new_cluster")
    retriever = load_served(SAVED["path"], ray_address="auto")
    assert retriever.placement == "ray"
    with served(create_app(retriever, max_wait_ms=5)) as url:
        answers = [httpx.post(f"{url}/search", json={"q": query, "k": 10}).json()["hits"] for query in SAVED["queries"]]
        info = httpx.get(f"{url}/info").json()
    same_ranking(answers, SAVED["expected"])  # one query a call here, a batch there: float32 rounding apart
    assert len(info["components"]["shards"]) == 2 and info["components"]["placement"] == "ray"
    retriever.close()


def test_a_lost_worker_mid_search(cluster, corpus, tmp_path):
    """Last: it removes a worker. A saved retriever's shard restarts from its folder and every search
    answers; an unsaved one fails clearly, or answers from its live shard when asked to; none waits
    past its bound."""
    vectors, queries = corpus[0][:5000], corpus[1][:40]
    saved = sharded_embedding(vectors)
    unsaved = sharded_embedding(vectors)
    cherche_faiss.save(saved, tmp_path / "saved")
    expected = saved(queries)
    victim = cluster.worker_of(saved.describe_shards()[0]["node"])
    lost = [entry["shard"] for entry in unsaved.describe_shards() if entry["node"] == victim.node_id]
    assert len(lost) == 1  # one shard of each retriever per worker
    answers, durations, errors = [], [], []

    def search_all_the_time(stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                answers.append(saved(queries))
            except Exception as error:  # reported below
                errors.append(error)
            durations.append(time.monotonic() - started)

    stop = threading.Event()
    searcher = threading.Thread(target=search_all_the_time, args=(stop,))
    searcher.start()
    time.sleep(0.5)
    cluster.cluster.remove_node(victim)
    time.sleep(4.0)
    stop.set()
    searcher.join(timeout=2 * TIMEOUT)
    assert not errors, errors[:1]
    assert answers and all(answer == expected for answer in answers)
    assert max(durations) < TIMEOUT
    restarted = [entry for entry in saved.describe_shards() if entry.get("restarted")]
    assert restarted and restarted[0]["node"] != victim.node_id

    started = time.monotonic()
    with pytest.raises(ShardUnavailableError, match=f"shard {lost[0]}: lost with its process or machine") as raised:
        unsaved(queries)
    assert raised.value.shards == tuple(lost) and time.monotonic() - started < TIMEOUT
    unsaved.on_shard_failure = "partial"
    with pytest.warns(PartialResultsWarning, match=f"shard {lost[0]}"):
        partial = unsaved(queries)
    live = 1 - lost[0]
    assert all(shard_of([hit["id"] for hit in hits], 2).tolist() == [live] * len(hits) for hits in partial)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PartialResultsWarning)
        alone = unsaved(queries[0])
    from_live = [hit for hit in expected[0] if shard_of([hit["id"]], 2)[0] == live]
    same_ranking([alone[: len(from_live)]], [from_live])  # the live shard's hits, in the same order
    saved.close()
    unsaved.close()
