"""The safe on-disk format: layout, indexes of every type, keys of every type, refusals,
integrity checks, versions, memory-mapped loads and devices."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import cherche_faiss
from cherche_faiss import data, rank, retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import (
    CherFaissError,
    CorruptFileError,
    DeviceFallbackWarning,
    DeviceUnavailableError,
    IncompatibleStateError,
    InconsistentVersionWarning,
    InvalidInputError,
    InvalidTypeError,
    MissingFileError,
)
from cherche_faiss.index import FaissIndex
from cherche_faiss.persist import safe
from cherche_faiss.persist._digest import BLOCK_BYTES

QUERIES = ["bordeaux wine", "airbus aircraft in toulouse", "montreal quebec", "the capital"]


@pytest.fixture(scope="module")
def towns():
    return data.load_towns()


def towns_pipeline(towns):
    encoder = HashingEncoder(dimension=64)
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=towns, k=30)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=encoder, k=10)
    search = retriever + ranker + towns
    return search.add(towns, show_progress=False)


def rewrite_manifest(path: Path, edit) -> None:
    """Apply ``edit(manifest)`` and recompute the manifest's own hash (a deliberate edit)."""
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    manifest["manifest_sha256"] = safe._canonical_hash(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def set_in_components(path: Path, class_name: str, location: tuple, value) -> None:
    """Set ``node[location[0]][location[1]]...`` to ``value`` in every saved component of class
    ``class_name`` (a deliberate edit: the manifest's hash is recomputed)."""

    def edit(manifest):
        for node in manifest["components"]:
            if node["class"] == class_name:
                for key in location[:-1]:
                    node = node[key]
                node[location[-1]] = value

    rewrite_manifest(path, edit)


# -- layout ------------------------------------------------------------------------------------------
def test_layout_manifest_and_plain_files(towns, tmp_path):
    search = towns_pipeline(towns)
    path = cherche_faiss.save(search, tmp_path / "search")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "cherche_faiss.save" and manifest["format_version"] == 1
    assert manifest["cherche_faiss_version"] == cherche_faiss.__version__
    classes = [node["class"] for node in manifest["components"]]
    assert classes[manifest["root"]] == "cherche_faiss.compose.Pipeline"
    assert {
        "cherche_faiss.retrieve.TfIdf",
        "cherche_faiss.rank.Encoder",
        "cherche_faiss.index.FaissIndex",
        "cherche_faiss.compose.DocumentMap",
        "cherche_faiss.encoders.HashingEncoder",
    } <= set(classes)
    tfidf = manifest["components"][classes.index("cherche_faiss.retrieve.TfIdf")]
    assert tfidf["params"]["key"] == "id" and tfidf["params"]["k"] == 30  # constructor parameters, readable
    suffixes = {Path(name).suffix for name in manifest["files"]}
    assert {".faiss", ".npz", ".jsonl", ".npy"} <= suffixes
    assert not any(suffix in (".pkl", ".pickle") for suffix in suffixes)
    for name, entry in manifest["files"].items():
        assert (path / name).stat().st_size == entry["size"] and len(entry["sha256"]) == 64
    documents_file = next(name for name in manifest["files"] if name.endswith(".jsonl"))
    lines = (path / documents_file).read_text().splitlines()
    assert len(lines) == len(towns) and json.loads(lines[0]) == towns[0]  # documents as JSONL
    loaded = cherche_faiss.load(path)
    assert loaded(QUERIES) == search(QUERIES)
    assert repr(loaded) == repr(search)


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF8,Flat", "IVF8,SQ8", "IVF8,PQ8x4", "PQ8x4", "SQ8", "auto"])
@pytest.mark.parametrize("mmap", [False, True])
def test_every_index_type_round_trips(factory, mmap, rng, tmp_path):
    vectors = rng.standard_normal((800, 32)).astype(np.float32)
    keys = [f"doc-{i}" for i in range(800)]
    index = FaissIndex(factory=factory, search_params={"nprobe": 4} if factory.startswith("IVF") else None)
    index.add(vectors, keys)
    if factory != "HNSW16":
        index.remove(keys[:10])  # holes in the id space
    queries = rng.standard_normal((5, 32)).astype(np.float32)
    expected = index.search(queries, k=7)
    loaded = cherche_faiss.load(cherche_faiss.save(index, tmp_path / "index"), mmap=mmap)
    found = loaded.search(queries, k=7)
    if mmap and factory in ("Flat", "auto"):  # "auto" picks Flat at this size
        # A mapped flat file is searched by FAISS (its vectors sit unaligned for NumPy's BLAS):
        # the same keys, similarities equal to float32 rounding.
        assert found[1] == expected[1]
        assert np.allclose(found[0], expected[0], atol=1e-6)
    else:
        assert found == expected
    assert loaded.keys() == index.keys() and repr(loaded) == repr(index)
    assert loaded.faiss_index.ntotal == index.faiss_index.ntotal
    if mmap:
        with pytest.raises(InvalidInputError, match="mmap=True"):
            loaded.add(vectors[:1], ["new"])
        with pytest.raises(InvalidInputError, match="mmap=True"):
            loaded.remove(keys[20:21])
        assert loaded.search(queries, k=7) == found  # refused changes changed nothing
    else:
        loaded.add(vectors[:1] + 1, ["new"])
        assert "new" in loaded


def test_keys_of_every_type_and_removed_ids(rng, tmp_path):
    keys = [0, "a", ("t", 1), 2.5, None, True, -(2**40), "é", ("nested", ("x", 2))] + list(range(100, 200))
    index = FaissIndex().add(rng.standard_normal((len(keys), 8)).astype(np.float32), keys)
    index.remove([100, 150, "a"])
    loaded = cherche_faiss.load(cherche_faiss.save(index, tmp_path / "keys"))
    assert loaded.keys() == index.keys()
    assert [type(key) for key in loaded.keys()] == [type(key) for key in index.keys()]
    assert None in loaded and "a" not in loaded and 150 not in loaded
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    assert loaded.search(queries, k=5) == index.search(queries, k=5)


def test_long_int_key_tables_are_stored_as_arrays(rng, tmp_path):
    index = FaissIndex().add(rng.standard_normal((500, 8)).astype(np.float32), list(range(500)))
    index.remove([3, 7])
    path = cherche_faiss.save(index, tmp_path / "ints")
    files = json.loads((path / "manifest.json").read_text())["files"]
    assert any(name.endswith("_keys.npy") for name in files)
    assert cherche_faiss.load(path).keys() == index.keys()


def test_shared_objects_stay_shared(documents, tmp_path):
    encoder = HashingEncoder(dimension=32)
    retriever = retrieve.Encoder(key="id", on="title", encoder=encoder, k=3).add(documents, show_progress=False)
    ranker = rank.Encoder(key="id", on="title", encoder=encoder, k=2)
    loaded = cherche_faiss.load(
        cherche_faiss.save((retriever + ranker).add(documents, show_progress=False), tmp_path / "p")
    )
    first, second = loaded.models
    assert first.encoder is first.query_encoder is second.encoder
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert [node["class"] for node in manifest["components"]].count("cherche_faiss.encoders.HashingEncoder") == 1


def test_fusions_and_bm25_round_trip(towns, tmp_path):
    bm25 = retrieve.BM25(key="id", on=["title", "article"], documents=towns, k=20)
    chars = retrieve.BM25(key="id", on=["title", "article"], documents=towns, k=20, tokenizer="char", method="bm25+")
    dense = retrieve.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=48), k=20)
    dense.add(towns, show_progress=False)
    for search in (
        bm25 | chars | dense,
        bm25 & dense,
        bm25 * chars,
        retrieve.TfIdf(key="id", on="title", documents=towns) | dense,
    ):
        for mmap in (False, True):
            loaded = cherche_faiss.load(cherche_faiss.save(search, tmp_path / "fusion"), mmap=mmap)
            assert loaded(QUERIES) == search(QUERIES)
            assert repr(loaded) == repr(search)


def test_documents_keep_their_types(tmp_path):
    documents = [
        {"id": 0, "title": "Paris", "tags": ("capital", "france"), "score": float("nan"), "meta": {1: "one"}},
        {"id": "b", "title": "Lyon", "tags": [], "score": float("inf"), "meta": {"$weird": None}},
    ]
    retriever = retrieve.TfIdf(key="id", on="title", documents=documents, k=2)
    search = retriever + documents
    loaded = cherche_faiss.load(cherche_faiss.save(search, tmp_path / "docs"))
    hit = loaded("Paris")[0]
    assert hit["tags"] == ("capital", "france") and hit["meta"] == {1: "one"} and np.isnan(hit["score"])
    assert loaded("Lyon")[0]["meta"] == {"$weird": None} and loaded("Lyon")[0]["score"] == float("inf")


def test_cross_encoder_ranker_keeps_its_model_reference(documents, tmp_path):
    from cherche_faiss.encoders import CrossEncoderScorer

    scorer = CrossEncoderScorer("/models/ms-marco-MiniLM", device="cpu", num_labels=1, batch_size=8)
    ranker = rank.CrossEncoder(key="id", on=["title", "article"], encoder=scorer, k=3).add(documents)
    loaded = cherche_faiss.load(cherche_faiss.save(ranker, tmp_path / "cross"))
    assert repr(loaded) == repr(ranker) and loaded._texts == ranker._texts
    assert isinstance(loaded.encoder, CrossEncoderScorer) and loaded.encoder.num_labels == 1
    assert loaded.encoder._model is None  # loaded lazily, on its first query


# -- what the safe format refuses -----------------------------------------------------------------
def test_plain_callables_are_refused_and_nothing_is_written(documents, tmp_path):
    retriever = retrieve.Encoder(key="id", on="title", encoder=lambda texts: np.ones((len(texts), 4)), k=2)
    retriever.add(documents, show_progress=False)
    with pytest.raises(InvalidTypeError, match=r"Encoder\.encoder: it wraps the Python callable <function"):
        cherche_faiss.save(retriever, tmp_path / "lambda")
    bm25 = retrieve.BM25(key="id", on="title", documents=documents, tokenizer=str.split)
    with pytest.raises(InvalidTypeError, match=r"BM25\.tokenizer"):
        cherche_faiss.save(bm25, tmp_path / "tokenizer")
    assert list(tmp_path.iterdir()) == []  # no folder, no temporary left behind


def test_subclasses_and_foreign_objects_are_refused(documents, tmp_path):
    class MyTfIdf(retrieve.TfIdf):
        pass

    with pytest.raises(InvalidTypeError, match="not one of the library's components"):
        cherche_faiss.save(MyTfIdf(key="id", on="title", documents=documents), tmp_path / "sub")
    with pytest.raises(InvalidTypeError, match="stores the library's components"):
        cherche_faiss.save({"not": "a component"}, tmp_path / "dict")


def test_never_replaces_what_is_not_a_save(documents, tmp_path):
    retriever = retrieve.TfIdf(key="id", on="title", documents=documents)
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"\xff\xd8 pixels")
    with pytest.raises(InvalidInputError, match="not a cherche_faiss save; refusing to replace it"):
        cherche_faiss.save(retriever, precious)
    assert (precious / "holiday.jpg").read_bytes() == b"\xff\xd8 pixels"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(InvalidInputError, match="is a file"):
        cherche_faiss.save(retriever, a_file)
    assert a_file.read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cherche_faiss.load(cherche_faiss.save(retriever, empty))("Paris") == retriever("Paris")


def test_saving_again_replaces_the_previous_save(documents, tmp_path):
    path = tmp_path / "search"
    first = retrieve.TfIdf(key="id", on="title", documents=documents[:2])
    second = retrieve.TfIdf(key="id", on="title", documents=documents)
    cherche_faiss.save(first, path)
    cherche_faiss.save(second, path)
    assert len(cherche_faiss.load(path)) == len(documents)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search"]  # nothing left beside it


# -- integrity -------------------------------------------------------------------------------------
@pytest.fixture
def saved(towns, tmp_path):
    search = towns_pipeline(towns)
    return search, cherche_faiss.save(search, tmp_path / "search")


def _files(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())["files"]


def test_truncated_file_is_named(saved):
    _, path = saved
    name = next(name for name in _files(path) if name.endswith(".faiss"))
    target = path / name
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(CorruptFileError, match=rf"{name} .* holds [\d,]+ bytes but [\d,]+ were saved"):
        cherche_faiss.load(path)


def test_edited_byte_is_named(saved):
    _, path = saved
    name = next(name for name in _files(path) if name.endswith(".npz"))
    raw = bytearray((path / name).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (path / name).write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=rf"{name} .* does not match its SHA-256"):
        cherche_faiss.load(path)


def test_missing_file_is_named(saved):
    _, path = saved
    name = next(name for name in _files(path) if name.endswith(".jsonl"))
    (path / name).unlink()
    with pytest.raises(CorruptFileError, match=rf"{name} is missing"):
        cherche_faiss.load(path)


def test_a_link_in_place_of_a_file_is_refused(saved, tmp_path):
    _, path = saved
    name = next(name for name in _files(path) if name.endswith(".jsonl"))
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes((path / name).read_bytes())
    (path / name).unlink()
    (path / name).symlink_to(outside)
    with pytest.raises(CorruptFileError, match="not a regular file"):
        cherche_faiss.load(path)


def test_edited_manifest_is_detected(saved):
    _, path = saved
    text = (path / "manifest.json").read_text().replace('"k": 30', '"k": 3')
    (path / "manifest.json").write_text(text)
    with pytest.raises(CorruptFileError, match="does not match its own SHA-256"):
        cherche_faiss.load(path)


def test_truncated_manifest_is_detected(saved):
    _, path = saved
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        cherche_faiss.load(path)


def test_unknown_class_is_refused_even_with_a_valid_hash(saved):
    _, path = saved

    def edit(manifest):
        manifest["components"][manifest["root"]]["class"] = "os.system"

    rewrite_manifest(path, edit)
    with pytest.raises(IncompatibleStateError, match=r"class 'os\.system', which is not in cherche_faiss's allow-list"):
        cherche_faiss.load(path)


def test_file_names_outside_the_folder_are_refused(saved):
    _, path = saved

    def edit(manifest):
        manifest["files"]["../../etc/passwd"] = {"size": 1, "sha256": "0" * 64}

    rewrite_manifest(path, edit)
    with pytest.raises(IncompatibleStateError, match="outside the save folder"):
        cherche_faiss.load(path)


def test_a_reference_to_a_file_not_in_the_manifest_is_refused(saved):
    _, path = saved

    set_in_components(path, "cherche_faiss.retrieve.TfIdf", ("state", "_matrix"), {"$sparse": "../elsewhere.npz"})
    with pytest.raises(CorruptFileError, match="not a file of this save's manifest"):
        cherche_faiss.load(path)


def test_edited_parameters_are_validated_by_the_constructor(saved):
    _, path = saved

    set_in_components(path, "cherche_faiss.retrieve.TfIdf", ("params", "k"), -4)
    with pytest.raises(IncompatibleStateError, match=r"cannot rebuild .*TfIdf.*k must be a positive integer"):
        cherche_faiss.load(path)


def test_a_cycle_in_the_component_table_is_refused(saved):
    _, path = saved

    def edit(manifest):
        root = manifest["root"]
        manifest["components"][root]["params"]["models"].append({"$component": root})

    rewrite_manifest(path, edit)
    with pytest.raises(IncompatibleStateError, match="a cycle"):
        cherche_faiss.load(path)


def test_not_a_save(tmp_path):
    with pytest.raises(MissingFileError, match="nothing is there"):
        cherche_faiss.load(tmp_path / "nowhere")
    (tmp_path / "folder").mkdir()
    with pytest.raises(CorruptFileError, match="no manifest.json"):
        cherche_faiss.load(tmp_path / "folder")
    (tmp_path / "search.pkl").write_bytes(b"\x80\x05")
    with pytest.raises(IncompatibleStateError, match="load_pickle"):
        cherche_faiss.load(tmp_path / "search.pkl")


# -- versions ---------------------------------------------------------------------------------------
def test_newer_format_is_refused_with_both_versions(saved):
    _, path = saved
    rewrite_manifest(path, lambda manifest: manifest.update(format_version=99, cherche_faiss_version="9.0"))
    with pytest.raises(
        IncompatibleStateError, match=r"format version 99 \(written by cherche_faiss 9\.0\).*reads format version 1"
    ):
        cherche_faiss.load(path)


def test_older_format_without_upgrade_is_refused_explicitly(saved):
    _, path = saved
    rewrite_manifest(path, lambda manifest: manifest.update(format_version=0))
    with pytest.raises(IncompatibleStateError, match="format version 0 .* cannot upgrade to version 1"):
        cherche_faiss.load(path)


def test_older_format_is_upgraded(saved, monkeypatch):
    search, path = saved
    rewrite_manifest(path, lambda manifest: manifest.update(format_version=0))
    upgraded = []

    def upgrade(manifest):
        upgraded.append(True)
        return {**manifest, "format_version": 1}

    monkeypatch.setitem(safe._UPGRADES, 0, upgrade)
    assert cherche_faiss.load(path)(QUERIES) == search(QUERIES) and upgraded


def test_other_library_version_warns(saved):
    search, path = saved
    rewrite_manifest(path, lambda manifest: manifest.update(cherche_faiss_version="0.0.1"))
    with pytest.warns(InconsistentVersionWarning, match="written by cherche_faiss 0.0.1"):
        loaded = cherche_faiss.load(path)
    assert loaded(QUERIES) == search(QUERIES)


def test_state_layout_mismatch_is_refused(saved):
    _, path = saved

    set_in_components(path, "cherche_faiss.index.FaissIndex", ("state_version",), 7)
    with pytest.raises(IncompatibleStateError, match="state layout 7"):
        cherche_faiss.load(path)


# -- verification and its cost -----------------------------------------------------------------------
def test_verify_false_skips_hashing_but_checks_sizes(saved, monkeypatch):
    search, path = saved
    from cherche_faiss.persist import _digest

    hashed = []
    original = _digest._sha256
    monkeypatch.setattr(_digest, "_sha256", lambda *args: hashed.append(args) or original(*args))
    assert cherche_faiss.load(path, verify=False)(QUERIES) == search(QUERIES)
    assert hashed == []
    cherche_faiss.load(path)
    assert len(hashed) == len(_files(path))
    name = next(name for name in _files(path) if name.endswith(".faiss"))
    (path / name).write_bytes((path / name).read_bytes()[:-8])
    with pytest.raises(CorruptFileError, match="bytes but"):
        cherche_faiss.load(path, verify=False)


def test_large_files_are_checked_block_by_block(tmp_path, monkeypatch):
    from cherche_faiss.persist import _digest

    monkeypatch.setattr(_digest, "BLOCK_BYTES", 1 << 12)  # 4 KiB blocks: a 24 kB index has six
    rng = np.random.default_rng(1)
    index = FaissIndex().add(rng.standard_normal((100, 60)).astype(np.float32), list(range(100)))
    path = cherche_faiss.save(index, tmp_path / "blocks")
    entry = next(entry for name, entry in _files(path).items() if name.endswith(".faiss"))
    assert len(entry["blocks"]) == -(-entry["size"] // (1 << 12)) > 1
    name = next(name for name in _files(path) if name.endswith(".faiss"))
    raw = bytearray((path / name).read_bytes())
    raw[5000] ^= 0x80  # second block
    (path / name).write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match="does not match its SHA-256"):
        cherche_faiss.load(path)
    assert BLOCK_BYTES == 64 << 20


# -- devices ----------------------------------------------------------------------------------------
def test_index_saved_on_a_gpu_loads_on_this_cpu(saved):
    search, path = saved

    set_in_components(path, "cherche_faiss.index.FaissIndex", ("state", "_device"), "cuda:0")
    with pytest.warns(DeviceFallbackWarning, match="saved for 'cuda:0'"):
        loaded = cherche_faiss.load(path)
    assert loaded(QUERIES) == search(QUERIES)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeviceFallbackWarning)
        assert cherche_faiss.load(path, device="cpu")(QUERIES) == search(QUERIES)
    with pytest.raises(DeviceUnavailableError, match="cuda:0"):
        cherche_faiss.load(path, device="cuda")


def test_bad_load_options(saved):
    _, path = saved
    with pytest.raises(InvalidInputError, match="unknown device"):
        cherche_faiss.load(path, device="tpu")
    with pytest.raises(InvalidTypeError, match="mmap and verify"):
        cherche_faiss.load(path, mmap="yes")


# -- memory-mapped loads ------------------------------------------------------------------------------
_MMAP_CHILD = """
import sys, time
import faiss, numpy, scipy.sparse  # the libraries' own memory is not the index's
import cherche_faiss

def resident():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096

before = resident()
start = time.perf_counter()
index = cherche_faiss.load(sys.argv[1], mmap=sys.argv[2] == "1", verify=False)
seconds = time.perf_counter() - start
print(resident() - before, seconds)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_mmap_load_does_not_read_the_vectors_into_memory(tmp_path):
    rng = np.random.default_rng(2)
    n, d = 60_000, 384  # 92 MB of vectors
    index = FaissIndex().add(rng.standard_normal((n, d)).astype(np.float32), list(range(n)))
    path = cherche_faiss.save(index, tmp_path / "big")
    grown = {}
    for mmap in ("0", "1"):
        done = subprocess.run(
            [sys.executable, "-c", _MMAP_CHILD, str(path), mmap],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        grown[mmap] = int(done.stdout.split()[0])
    codes = n * d * 4
    assert grown["0"] > 0.9 * codes  # read into memory
    assert grown["1"] < 0.2 * codes, grown  # mapped: the key table (10 MB) only; pages stay on disk until read


def test_damage_never_escapes_as_another_error(saved):
    """A few targeted damages to every file: always a library error."""
    _, path = saved
    originals = {name: (path / name).read_bytes() for name in _files(path)}
    for name, raw in originals.items():
        for damaged in (raw[:1], raw + b"x", bytes(len(raw))):
            (path / name).write_bytes(damaged)
            with pytest.raises(CherFaissError):
                cherche_faiss.load(path)
        (path / name).write_bytes(raw)
    cherche_faiss.load(path)
