"""Fuzzing the loaders: random small pipelines are saved, their files damaged in random
ways, and every load must give back an identical pipeline or raise a library error
(``CherFaissError``), never another exception and never a crash. The same for pickles.

Counts of the cases tried are printed (``pytest -s``) and asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cherche_faiss
from cherche_faiss import rank, retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import CherFaissError
from cherche_faiss.persist import safe

REPO = Path(__file__).resolve().parents[2]
QUERIES = ["wine of bordeaux", "capital city", "aircraft"]
DOCUMENTS = [
    {"id": 0, "title": "Paris", "article": "The Eiffel tower stands in Paris, capital of France."},
    {"id": "m", "title": "Montreal", "article": "Montreal is the largest city of Quebec, in Canada."},
    {"id": 2, "title": "Bordeaux", "article": "Bordeaux is famous for its red wine and the Garonne."},
    {"id": (3, "t"), "title": "Toulouse", "article": "Toulouse builds aircraft: Airbus is based there."},
    {"id": 4, "title": "Lyon", "article": "Lyon is known for its food and its silk history.", "tags": ["food"]},
    {"id": 5, "title": "Rennes", "article": "Rennes is the capital of Brittany, with a metro.", "n": 1.5},
] + [{"id": 100 + i, "title": f"Town {i}", "article": f"A small town number {i} with a market."} for i in range(74)]

RETRIEVERS = {
    "tfidf": lambda: retrieve.TfIdf(key="id", on=["title", "article"], k=5),
    "bm25": lambda: retrieve.BM25(key="id", on=["title", "article"], k=5),
    "bm25-char": lambda: retrieve.BM25(key="id", on=["title", "article"], k=5, tokenizer="char"),
    "flat": lambda: retrieve.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=16), k=5),
    "hnsw": lambda: retrieve.Encoder(
        key="id", on=["title", "article"], encoder=HashingEncoder(dimension=16), k=5, index="HNSW8"
    ),
    "ivf": lambda: retrieve.Encoder(
        key="id",
        on=["title", "article"],
        encoder=HashingEncoder(dimension=16),
        k=5,
        index="IVF2,Flat",
        search_params={"nprobe": 2},
    ),
    "dpr": lambda: retrieve.DPR(
        key="id",
        on="title",
        encoder=HashingEncoder(dimension=16),
        query_encoder=HashingEncoder(dimension=16, seed=3),
        k=5,
    ),
}
RANKERS = {
    "none": None,
    "encoder": lambda: rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=24), k=3),
    "dpr": lambda: rank.DPR(
        key="id",
        on="article",
        encoder=HashingEncoder(dimension=8),
        query_encoder=HashingEncoder(dimension=8, seed=1),
        k=3,
    ),
}

pipelines = st.fixed_dictionaries(
    {
        "retrievers": st.lists(st.sampled_from(sorted(RETRIEVERS)), min_size=1, max_size=3, unique=True),
        "fusion": st.sampled_from(["|", "&", "*"]),
        "ranker": st.sampled_from(sorted(RANKERS)),
        "documents": st.booleans(),
    }
)


def build(recipe: dict):
    models = [RETRIEVERS[name]() for name in recipe["retrievers"]]
    search = models[0]
    for model in models[1:]:
        search = {"|": search.__or__, "&": search.__and__, "*": search.__mul__}[recipe["fusion"]](model)
    if RANKERS[recipe["ranker"]] is not None:
        search = search + RANKERS[recipe["ranker"]]()
    if recipe["documents"]:
        search = search + DOCUMENTS
    return search.add(DOCUMENTS, show_progress=False)


def answers(search):
    return search(QUERIES), repr(search)


# -- damages ----------------------------------------------------------------------------------------
FILE_DAMAGES = ["flip", "truncate", "delete", "append", "swap", "zero"]


def damage(folder: Path, data: st.DataObject, edit: bool = False) -> str:
    """Damage the save in ``folder`` in one random way (``edit``: an edit of the manifest with
    its hash recomputed); returns the kind of damage."""
    manifest = json.loads((folder / "manifest.json").read_text())
    names = sorted(manifest["files"]) + ["manifest.json"]
    kind = data.draw(st.sampled_from(FILE_DAMAGES)) if not edit else "manifest-edit"
    name = data.draw(st.sampled_from(names))
    path = folder / name
    raw = bytearray(path.read_bytes())
    if kind == "flip" and raw:
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] ^= 1 << data.draw(st.integers(0, 7))
        path.write_bytes(bytes(raw))
    elif kind == "truncate":
        path.write_bytes(bytes(raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]))
    elif kind == "delete":
        path.unlink()
    elif kind == "append":
        path.write_bytes(bytes(raw) + data.draw(st.binary(min_size=1, max_size=64)))
    elif kind == "zero":
        path.write_bytes(bytes(len(raw)))
    elif kind == "swap":  # two files of different content trade places (the manifest among them)
        different = [other for other in names if (folder / other).read_bytes() != bytes(raw)]
        other = folder / data.draw(st.sampled_from(different))
        first, second = path.read_bytes(), other.read_bytes()
        path.write_bytes(second)
        other.write_bytes(first)
    else:
        edit_manifest(manifest, data)
        manifest["manifest_sha256"] = safe._canonical_hash(manifest)  # a deliberate edit, hash recomputed
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return kind


_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(-2, 5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(
        [
            {"$component": 0},
            {"$component": 99},
            {"$array": "x.npy"},
            {"$tuple": 1},
            {"$dict": [[1]]},
            {"$ints": None},
            {"$object": "faiss.Index", "value": {}},
            {"$float": "big"},
            {"$jsonl": 3},
        ]
    ),
)


def edit_manifest(manifest: dict, data: st.DataObject) -> None:
    """Replace, delete or retype one value somewhere in the manifest."""
    containers = []

    def walk(value, depth=0):
        if isinstance(value, dict):
            containers.append(value)
            for item in value.values():
                walk(item, depth + 1)
        elif isinstance(value, list):
            containers.append(value)
            for item in value:
                walk(item, depth + 1)

    walk(manifest)
    container = data.draw(st.sampled_from(containers))
    if not container:
        return
    if isinstance(container, dict):
        key = data.draw(st.sampled_from(sorted(container, key=str)))
        if key == "manifest_sha256":
            return
        if data.draw(st.booleans()):
            del container[key]
        else:
            container[key] = data.draw(_JSON_VALUES)
    else:
        position = data.draw(st.integers(0, len(container) - 1))
        if data.draw(st.booleans()):
            del container[position]
        else:
            container[position] = data.draw(_JSON_VALUES)


# -- the fuzz tests ---------------------------------------------------------------------------------
# CI runs a fixed, derandomised set of cases; CHERCHE_FAISS_FUZZ_EXAMPLES=N runs N random ones.
LONG_RUN = int(os.environ.get("CHERCHE_FAISS_FUZZ_EXAMPLES", "0"))


def _fuzz_saves(tmp_path_factory, examples: int, edit: bool) -> Counter:
    outcomes: Counter = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=not LONG_RUN,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(recipe=pipelines, data=st.data())
    def case(recipe, data):
        search = build(recipe)
        expected = answers(search)
        folder = tmp_path_factory.mktemp("fuzz") / "search"
        cherche_faiss.save(search, folder)
        assert answers(cherche_faiss.load(folder)) == expected  # intact: identical
        mmap = data.draw(st.booleans())
        if mmap:  # a mapped index may be searched by FAISS instead of BLAS: similarities may differ by an ulp
            expected = answers(cherche_faiss.load(folder, mmap=True))
        kind = damage(folder, data, edit)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an edited version number warns: allowed
                loaded = cherche_faiss.load(folder, mmap=mmap)
        except CherFaissError:
            outcomes[kind, "library error"] += 1
            return
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)
        if edit:
            # A deliberate edit with a recomputed hash may describe another valid pipeline
            # (k=3 instead of 5, say): using it gives hits or a library error, nothing else.
            try:
                loaded(QUERIES)
                outcomes[kind, "loaded and answers"] += 1
            except CherFaissError:
                outcomes[kind, "loaded, library error on use"] += 1
        else:
            assert answers(loaded) == expected, kind  # undetected damage would have to change nothing
            outcomes[kind, "identical"] += 1

    case()
    print(f"\n{sum(outcomes.values())} cases: " + ", ".join(f"{k[0]}/{k[1]}: {v}" for k, v in sorted(outcomes.items())))
    return outcomes


def test_damaged_files_are_always_detected(tmp_path_factory):
    examples = LONG_RUN or 300
    outcomes = _fuzz_saves(tmp_path_factory, examples, edit=False)
    assert sum(outcomes.values()) == examples
    assert {kind for kind, _ in outcomes} == set(FILE_DAMAGES)
    assert all(outcome == "library error" for _, outcome in outcomes)  # bit flips, truncation, swaps ...


def test_edited_manifests_load_or_raise_library_errors(tmp_path_factory):
    examples = LONG_RUN or 200
    outcomes = _fuzz_saves(tmp_path_factory, examples, edit=True)
    assert sum(outcomes.values()) == examples
    assert outcomes["manifest-edit", "library error"] > examples / 2  # most edits break the structure


# Pickles are fuzzed in a child process: a damaged pickle may be any program, so a crash
# there must fail this test instead of ending the test session.
_PICKLE_CHILD = textwrap.dedent(
    """
    import io, json, pickle, random, sys
    from collections import Counter
    sys.path.insert(0, sys.argv[1])
    from tests.unit.test_persist_fuzz import QUERIES, build, answers
    from cherche_faiss import dump_pickle, load_pickle
    from cherche_faiss.exceptions import CherFaissError

    generator = random.Random(11)
    outcomes = Counter()
    others = []
    recipes = [
        {"retrievers": ["tfidf", "flat"], "fusion": "|", "ranker": "encoder", "documents": True},
        {"retrievers": ["ivf"], "fusion": "|", "ranker": "dpr", "documents": False},
        {"retrievers": ["bm25", "hnsw"], "fusion": "&", "ranker": "none", "documents": True},
    ]
    for recipe in recipes:
        search = build(recipe)
        expected = answers(search)
        stamped = io.BytesIO()
        dump_pickle(search, stamped)
        for way, raw in (("dump_pickle", stamped.getvalue()), ("pickle.dumps", pickle.dumps(search, protocol=5))):
            for case in range(int(sys.argv[2])):
                damaged = bytearray(raw)
                kind = generator.choice(["flip", "truncate", "append", "splice"])
                if kind == "flip":
                    for _ in range(generator.randint(1, 4)):
                        damaged[generator.randrange(len(damaged))] ^= 1 << generator.randrange(8)
                elif kind == "truncate":
                    damaged = damaged[: generator.randrange(len(damaged))]
                elif kind == "append":
                    damaged += bytes(generator.randrange(256) for _ in range(generator.randint(1, 32)))
                else:
                    start = generator.randrange(len(damaged))
                    damaged[start : start + 16] = bytes(generator.randrange(256) for _ in range(16))
                try:
                    loaded = load_pickle(io.BytesIO(bytes(damaged)))
                    try:
                        result = "identical" if answers(loaded) == expected else "different"
                    except CherFaissError:
                        result = "library error on use"
                except CherFaissError:
                    result = "library error"
                except Exception as error:
                    result = "other"
                    others.append(f"{way} {kind}: {type(error).__name__}: {error}"[:300])
                outcomes[f"{way}/{kind}/{result}"] += 1
    print(json.dumps({"outcomes": outcomes, "others": others}))
    """
)


def test_damaged_pickles_load_identically_or_raise_library_errors():
    """dump_pickle's pickles: identical or a library error. Plain pickle.dumps: no crash and only
    library errors (their bytes outside the FAISS index carry no checksum, so a damaged document
    text can load as another text; the count is reported)."""
    cases = 75  # per pipeline and way of pickling
    done = subprocess.run(
        [sys.executable, "-c", _PICKLE_CHILD, str(REPO), str(cases)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, f"the pickle fuzz process crashed ({done.returncode}): {done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    outcomes = report["outcomes"]
    print(f"\n{sum(outcomes.values())} damaged pickles: {outcomes}")
    assert sum(outcomes.values()) == 3 * 2 * cases
    assert report["others"] == []
    stamped = {name: count for name, count in outcomes.items() if name.startswith("dump_pickle/")}
    assert sum(stamped.values()) == 3 * cases
    assert all(name.endswith(("/library error", "/identical")) for name in stamped), stamped
