"""cherche_faiss.distributed without a cluster: routing, the exact merge, shards, and a sharded retriever
whose shards live in this process (what ``cherche_faiss.load`` gives for a sharded save).

The same retriever on a real multi-node Ray cluster is tested in ``tests/distributed``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import cherche_faiss
from cherche_faiss import rank, retrieve
from cherche_faiss.contract import Case, check_component
from cherche_faiss.distributed import Shard, ShardedRetriever, ShardHits, key_hash, merge_top_k, shard_of
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import (
    CorruptFileError,
    InvalidInputError,
    InvalidTypeError,
    NotIndexedError,
    UnknownKeyError,
)
from cherche_faiss.index import FaissIndex

from ..helpers import REPO, unit_rows


def same_ranking(actual, expected, tolerance=1e-6):
    """Same similarities (to float32 rounding) and the same keys in the same order, except among hits whose
    similarities tie to float32 rounding (BLAS may order those either way) and among hits tied at the k-th
    place, which one index leaves unspecified too (see cherche_faiss.distributed.merge)."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert [hit["similarity"] for hit in got] == pytest.approx([hit["similarity"] for hit in want], abs=tolerance)
        start = 0
        while start < len(want):  # one group of hits tied to ``tolerance`` at a time
            end = start + 1
            while end < len(want) and abs(want[end]["similarity"] - want[end - 1]["similarity"]) <= tolerance:
                end += 1
            if end < len(want) or len(want) < 10:  # the group cut by k is left unspecified
                assert {hit["id"] for hit in got[start:end]} == {hit["id"] for hit in want[start:end]}, (got, want)
            start = end


def edge_tied(single, query, k=10, **params):
    """Whether the k-th and (k+1)-th hits of ``query`` tie in ``single`` (the case left unspecified)."""
    found = single(query, k=k + 1, **params)
    return len(found) > k and found[k - 1]["similarity"] == found[k]["similarity"]


def assert_same_answers(sharded, single, queries, **params):
    """Identical answers, but for queries with a tie at the 10th place: the same up to which tied hits fill it."""
    for query in queries:
        got, want = sharded(query, **params), single(query, **params)
        if edge_tied(single, query, **params):
            same_ranking([got], [want])
        else:
            assert got == want
    batch = [i for i, query in enumerate(queries) if not edge_tied(single, query, **params)]
    assert len(batch) > len(queries) // 2
    assert sharded(queries[batch], **params) == single(queries[batch], **params)


def embedding_pair(factory, vectors, shards=3, metric="ip", **search_params):
    """A sharded Embedding retriever in process and one unsharded index, sharing their trained index."""
    documents = [{"id": i} for i in range(len(vectors))]
    template = retrieve.Embedding(key="id", index=FaissIndex(factory=factory, metric=metric), k=10)
    sharded = ShardedRetriever.in_process(template, shards=shards).add(
        documents, embeddings_documents=vectors, show_progress=False
    )
    trained = sharded.trained_index
    index = FaissIndex(factory=trained if trained is not None else factory, metric=metric)
    single = retrieve.Embedding(key="id", index=index, k=10, search_params=search_params or None)
    single.add(documents, embeddings_documents=vectors, show_progress=False)
    sharded.set_search_params(**search_params)
    return sharded, single


def with_duplicates(rng, n=1500, d=16):
    """Unit vectors where some rows repeat (ties, inside and beyond the top 10)."""
    vectors = unit_rows(rng, n, d)
    vectors[100:104] = vectors[3]  # four copies of row 3: ties at the top of its own query
    vectors[200:260] = vectors[7]  # sixty copies of row 7: ties straddling the 10th place
    return vectors


# -- routing ------------------------------------------------------------------------------------------------
KEYS = [0, 1, -5, 2**40, "doc-1", "", "é", b"raw", 1.5, None, (1, "a"), 2**70]


def test_routing_is_the_same_in_every_process():
    code = (
        "import json, sys\nfrom cherche_faiss.distributed import shard_of\n"
        "keys = [0, 1, -5, 2**40, 'doc-1', '', 'é', b'raw', 1.5, None, (1, 'a'), 2**70]\n"
        "print(json.dumps(shard_of(keys, 7).tolist()))"
    )
    found = set()
    for seed in ("1", "2", "random"):
        environment = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        found.add(result.stdout.strip())
    assert found == {json.dumps(shard_of(KEYS, 7).tolist())}


def test_routing_is_frozen():
    """Changing the hash would send saved documents' keys to other shards: it must never change."""
    assert key_hash(0) == 16294208416658607535
    assert key_hash("doc-1") == key_hash("doc-1") != key_hash("doc-2")
    assert shard_of(list(range(8)), 4).tolist() == [key_hash(i) % 4 for i in range(8)]


def test_keys_equal_as_dict_keys_go_to_the_same_shard():
    assert key_hash(3) == key_hash(3.0) == key_hash(np.int64(3)) == key_hash(np.float32(3))
    assert key_hash(True) == key_hash(1)
    assert key_hash("1") != key_hash(1) != key_hash((1,))
    assert shard_of([3, 2**70], 5).tolist() == [key_hash(3) % 5, key_hash(2**70) % 5]  # the int fast path agrees


def test_routing_spreads_keys_evenly():
    counts = np.bincount(shard_of([f"doc-{i}" for i in range(8000)], 4), minlength=4)
    assert counts.min() > 1800
    counts = np.bincount(shard_of(list(range(8000)), 4), minlength=4)
    assert counts.min() > 1800


def test_unroutable_key_is_refused():
    with pytest.raises(InvalidTypeError, match="every process must compute alike"):
        shard_of([frozenset({1})], 2)


# -- the merge -----------------------------------------------------------------------------------------------
def hits(scores, ordinals, keys, descending=False):
    return ShardHits(np.array([scores], np.float32), np.array([ordinals], np.int64), [keys], descending)


def test_merge_orders_ties_as_the_shards_index_does():
    first = hits([0.9, 0.5, 0.5], [8, 1, 6], ["h", "a", "f"])
    second = hits([0.5, 0.2], [3, 2], ["c", "b"])
    assert merge_top_k([first, second], 4)[0] == [["h", "a", "c", "f"]]
    first, second = (
        hits([0.9, 0.5, 0.5], [8, 6, 1], ["h", "f", "a"], True),
        hits([0.5, 0.2], [3, 2], ["c", "b"], True),
    )
    assert merge_top_k([first, second], 4)[0] == [["h", "f", "c", "a"]]


def test_merge_skips_padding_and_returns_every_hit_without_k():
    short = ShardHits(np.array([[0.4, -np.inf]], np.float32), np.array([[5, -1]]), [["e"]])
    empty = ShardHits(np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64), [[]])
    other = hits([0.7, 0.1], [2, 9], ["b", "i"])
    keys, similarities = merge_top_k([short, empty, other], None)
    assert keys == [["b", "e", "i"]]
    assert similarities == [[pytest.approx(0.7), pytest.approx(0.4), pytest.approx(0.1)]]
    assert all(type(value) is float for value in similarities[0])
    assert merge_top_k([short, empty, other], 10)[0] == keys


# -- shards --------------------------------------------------------------------------------------------------
def test_shard_answers_arrays_and_keeps_ordinals_through_replacements(rng):
    shard = Shard(2).add(unit_rows(rng, 5), ["a", "b", "c", "d", "e"], ordinals=[0, 3, 4, 7, 9])
    shard.add(unit_rows(rng, 1), ["b"], ordinals=[12])  # replaced: a new FAISS id, a new ordinal
    found = shard.search(FaissIndex().prepare(unit_rows(rng, 2)), k=5)
    assert found.similarities.dtype == np.float32 and found.ordinals.shape == (2, 5)
    ordinal_of = dict(zip("acdeb", [0, 4, 7, 9, 12]))
    for row_keys, row_ordinals in zip(found.keys, found.ordinals.tolist()):
        assert row_ordinals == [ordinal_of[key] for key in row_keys]
    with pytest.raises(InvalidInputError, match="one ordinal per key"):
        shard.add(unit_rows(rng, 2), ["x", "y"], ordinals=[1])


def test_an_empty_shard_answers_nothing(rng):
    found = Shard(0).search(unit_rows(rng, 3), k=4)
    assert found.keys == [[], [], []] and found.similarities.shape == (3, 0)


# -- a sharded retriever in this process ---------------------------------------------------------------------
@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "IVF16,SQ8", "IVF16,PQ4x4"])
def test_sharded_equals_one_index(rng, factory):
    vectors = with_duplicates(rng)
    sharded, single = (
        embedding_pair(factory, vectors, nprobe=4) if "IVF" in factory else embedding_pair(factory, vectors)
    )
    queries = np.concatenate([vectors[[3, 7, 11]], unit_rows(rng, 40)])
    if factory == "Flat":  # BLAS: a row's product depends on its place in the matrix, by float32 rounding
        same_ranking(sharded(queries), single(queries))
        same_ranking([sharded(q) for q in queries[:5]], [single(q) for q in queries[:5]])
    else:  # FAISS' scanners compute every distance alone: the same bits, ties in the same order
        assert_same_answers(sharded, single, queries)
        assert_same_answers(sharded, single, queries[:10], nprobe=16)
    assert edge_tied(single, vectors[7])  # 61 equal vectors: the case the comparison above had to relax
    ids = [hit["id"] for hit in sharded(vectors[3])[:5]]
    assert ids == [hit["id"] for hit in single(vectors[3])[:5]] and set(ids[:5]) == {3, 100, 101, 102, 103}


def test_sharded_l2_equals_one_index(rng):
    vectors = with_duplicates(rng)
    sharded, single = embedding_pair("Flat", vectors, metric="l2")
    queries = np.concatenate([vectors[[3, 7]], unit_rows(rng, 20)])
    assert sharded(queries) == single(queries)


def test_sharded_ivf_trains_once_on_a_sample(rng):
    vectors = unit_rows(rng, 2000)
    sharded, _ = embedding_pair("IVF32,Flat", vectors)
    trained = sharded.trained_index
    assert trained.is_trained and trained.ntotal == 0 and sharded._group.shards[1].index.faiss_index.nlist == 32
    centroids = [shard.index.faiss_index.quantizer.reconstruct_n(0, 32) for shard in sharded._group.shards]
    assert all(np.array_equal(centroids[0], other) for other in centroids[1:])


def encoder_template(k=3, index=None):
    return retrieve.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32), k=k, index=index)


def make_sharded():
    return ShardedRetriever.in_process(encoder_template(), shards=3)


def test_sharded_retriever_keeps_the_contract():
    check_component(make_sharded)


def test_sharded_embedding_retriever_keeps_the_contract():
    encoder = HashingEncoder(dimension=32)
    case = Case(
        lambda: ShardedRetriever.in_process(retrieve.Embedding(key="id", k=3), shards=2),
        vectors=lambda texts: encoder.encode(texts),
    )
    check_component(case)


def test_upserts_and_removals_go_to_the_owning_shard(documents):
    sharded = make_sharded().add(documents, show_progress=False)
    single = encoder_template().add(documents, show_progress=False)
    changed = [{**documents[1], "article": "Montreal has a tower too."}, {"id": 9, "title": "Nice", "article": "sea"}]
    sharded.add(changed, show_progress=False)
    single.add(changed, show_progress=False)
    assert len(sharded) == 7
    assert sharded(["tower", "sea"]) == single(["tower", "sea"])
    sizes = [len(shard) for shard in sharded._group.shards]
    owners = shard_of([document["id"] for document in documents] + [9], 3)
    assert sizes == np.bincount(owners, minlength=3).tolist()
    with pytest.raises(UnknownKeyError, match="nothing was removed"):
        sharded.remove([0, 42])
    assert len(sharded) == 7
    sharded.remove([0, 9])
    single.index.remove([0, 9])
    assert len(sharded) == 5 and sharded(["tower", "sea"]) == single(["tower", "sea"])


def test_pipelines_compose(documents):
    sharded = make_sharded()
    search = sharded + rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32)) + documents
    search.add(documents)
    found = search("paris tower")
    assert found[0]["title"] == "Paris" and "article" in found[0]
    union = retrieve.BM25(key="id", on=["title", "article"], documents=documents) | sharded
    assert {hit["id"] for hit in union("wine bordeaux")} >= {2}


def test_sharded_save_is_a_checked_folder_per_shard(tmp_path, documents):
    sharded = make_sharded().add(documents, show_progress=False)
    assert not any(record.restorable for record in sharded._group.records)
    path = cherche_faiss.save(sharded, tmp_path / "sharded")
    records = sharded._group.records
    assert all(record.restorable and record.folder.is_relative_to(path) for record in records)
    sharded.add(documents[:1], show_progress=False)  # that shard's save is stale now, the others' not
    assert sum(record.restorable for record in records) == 2
    manifest = json.loads((path / "manifest.json").read_text())
    nested = sorted(name for name in manifest["files"] if name.endswith("/manifest.json"))
    assert len(nested) == 3 and all("_shards/" in name for name in nested)
    loaded = cherche_faiss.load(path)
    assert loaded.placement == "in-process" and loaded(["paris", "wine"]) == sharded(["paris", "wine"])
    assert repr(loaded) == repr(sharded)
    # A shard folder is checked against the manifest its parent names, then its own files.
    shard_folder = path / nested[1].rsplit("/", 1)[0]
    index_file = next(shard_folder.rglob("*.faiss"))
    index_file.write_bytes(index_file.read_bytes()[:-1] + b"\x01")
    with pytest.raises(CorruptFileError, match="does not match its SHA-256"):
        cherche_faiss.load(path)


def test_a_mapped_sharded_save_answers_alike_and_stays_read_only(tmp_path, documents):
    sharded = make_sharded().add(documents, show_progress=False)
    path = cherche_faiss.save(sharded, tmp_path / "sharded")
    mapped = cherche_faiss.load(path, mmap=True)  # FAISS searches mapped vectors: float32 rounding apart
    same_ranking(mapped(["paris", "wine"]), sharded(["paris", "wine"]))
    with pytest.raises(InvalidInputError, match="mmap=True"):
        mapped.add([{"id": 0, "title": "Paris", "article": "again"}], show_progress=False)


def test_a_shard_folder_from_another_save_is_refused(tmp_path, documents):
    first = cherche_faiss.save(make_sharded().add(documents, show_progress=False), tmp_path / "first")
    second = cherche_faiss.save(make_sharded().add(documents[:3], show_progress=False), tmp_path / "second")
    name = "000-ShardedRetriever/_shards/000"
    (first / name / "manifest.json").write_bytes((second / name / "manifest.json").read_bytes())
    with pytest.raises(CorruptFileError):
        cherche_faiss.load(first)


def test_pickles_of_in_process_shards(documents):
    sharded = make_sharded().add(documents, show_progress=False)
    copy = pickle.loads(pickle.dumps(sharded))
    assert copy.placement == "in-process" and copy(["paris", "lyon food"]) == sharded(["paris", "lyon food"])


def test_bad_templates_and_options_are_refused(documents):
    with pytest.raises(InvalidTypeError, match="dense retriever"):
        ShardedRetriever(retrieve.TfIdf(key="id", on="title"))
    with pytest.raises(InvalidInputError, match="pass it empty"):
        ShardedRetriever(encoder_template().add(documents, show_progress=False))
    with pytest.raises(InvalidInputError, match="on_shard_failure"):
        ShardedRetriever(encoder_template(), on_shard_failure="ignore")
    with pytest.raises(InvalidInputError, match="timeout"):
        ShardedRetriever(encoder_template(), timeout=0)
    with pytest.raises(InvalidInputError, match="shards"):
        ShardedRetriever(encoder_template(), shards=0)
    with pytest.raises(NotIndexedError, match=r"\.add\("):
        ShardedRetriever(encoder_template())("paris")


def test_bad_vectors_change_no_shard(rng):
    sharded = ShardedRetriever.in_process(retrieve.Embedding(key="id"), shards=2)
    sharded.add([{"id": i} for i in range(10)], embeddings_documents=unit_rows(rng, 10), show_progress=False)
    bad = unit_rows(rng, 4)
    bad[2] = 0.0
    with pytest.raises(InvalidInputError, match="zero vectors"):
        sharded.add([{"id": 20 + i} for i in range(4)], embeddings_documents=bad, show_progress=False)
    with pytest.raises(InvalidInputError, match="dimension"):
        sharded.add([{"id": 30}], embeddings_documents=unit_rows(rng, 1, d=8), show_progress=False)
    assert len(sharded) == 10


def test_served_sharded_saves_load_in_process_without_a_ray_address(tmp_path, documents):
    from cherche_faiss.server import load_served

    path = cherche_faiss.save(make_sharded().add(documents, show_progress=False), tmp_path / "sharded")
    served = load_served(path)
    assert served.placement == "in-process" and served("paris")[0]["id"] == 0
    with open(tmp_path / "search.pkl", "wb") as handle:
        pickle.dump(served, handle)
    with pytest.raises(InvalidInputError, match="ray_address applies to the saved folder format"):
        load_served(tmp_path / "search.pkl", allow_pickle=True, ray_address="auto")


def test_a_pipeline_holding_a_sharded_retriever_saves_and_loads(tmp_path, documents):
    search = make_sharded() + documents
    search.add(documents)
    loaded = cherche_faiss.load(cherche_faiss.save(search, tmp_path / "pipeline"))
    assert loaded("bordeaux wine") == search("bordeaux wine") and loaded("bordeaux wine")[0]["title"] == "Bordeaux"
