"""A loaded TF-IDF retriever answers without importing scikit-learn, with the same hits.

The analyzers of ``cherche_faiss.retrieve._tfidf_analyzers`` are compared with
scikit-learn's on random unicode text; the deferred vectorizer the safe format
loads is checked to accept only parameters scikit-learn accepts; fresh
interpreters load saves and answer queries with ``sklearn`` never imported."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

import cherche_faiss
from cherche_faiss import data, rank, retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import IncompatibleStateError
from cherche_faiss.persist import safe
from cherche_faiss.retrieve._deferred_vectorizer import DEFAULT_PARAMS, DeferredTfidfVectorizer
from cherche_faiss.retrieve._tfidf_analyzers import query_analyzer
from cherche_faiss.retrieve.tfidf import sklearn_vectorizer

REPO = Path(__file__).resolve().parents[2]
QUERIES = [
    "bordeaux wine",
    "airbus aircraft in toulouse",
    "montreal quebec",
    "the capital",
    "Île-de-France, PARIS!",
    "zzzzqqq",
    "  spaced\tout\n query  ",
    "é",
]
ON = ["title", "article"]
EXTRA = [
    {"id": 17, "title": "Bordeaux", "url": "", "article": "Bordeaux now grows apples and builds aircraft."},
    {"id": "new-1", "title": "Quimper", "url": "", "article": "Quimper, in Brittany, is known for its faience."},
    {"id": "new-2", "title": "Nantes", "url": "", "article": "Nantes lies on the Loire; its wine is muscadet."},
]

# Characters where scikit-learn's steps could differ from a careless rewrite: whitespace that
# str.split and the regex \s see (and one they do not), case changes that alter the length,
# compatibility forms NFKD expands, combining marks, astral characters.
_TRICKY = (
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\u200b"
    "aAzZéÉèÀçÇñÑ\u0301\u0327\u0308ﬁﬀİıßẞΣσςǅǄ½²"
    "0123456789_-.,;!?'\""
    "日本語😀\U0001d400"
)
texts = st.one_of(st.text(alphabet=st.sampled_from(_TRICKY), max_size=40), st.text(max_size=40))
ngram_ranges = st.tuples(st.integers(1, 8), st.integers(0, 6)).map(lambda pair: (pair[0], pair[0] + pair[1]))
analyzer_params = st.fixed_dictionaries(
    {
        "analyzer": st.sampled_from(["char_wb", "char", "word"]),
        "ngram_range": st.one_of(st.sampled_from([(1, 1), (1, 2), (2, 2), (3, 7), (1, 12)]), ngram_ranges),
        "lowercase": st.booleans(),
        "strip_accents": st.sampled_from([None, "ascii", "unicode"]),
        "token_pattern": st.sampled_from([r"(?u)\b\w\w+\b", r"(?u)\b\w+\b", r"\S+", r"(\w)\w", r"[a-z]+", r"."]),
    }
)


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(params=analyzer_params, text=texts)
def test_analyzers_equal_scikit_learn(params, text):
    vectorizer = TfidfVectorizer(**params)
    analyzer = query_analyzer(vectorizer.get_params())
    assert analyzer is not None
    assert analyzer(text) == vectorizer.build_analyzer()(text)  # the same n-grams, in the same order


def test_analyzers_leave_other_settings_to_scikit_learn():
    for params in (
        {"stop_words": "english"},
        {"stop_words": ["the"]},
        {"input": "filename"},
        {"preprocessor": str.lower},
        {"analyzer": str.split},
        {"strip_accents": str.lower},
        {"ngram_range": (0, 2)},
        {"token_pattern": r"(a)(b)"},
        {"lowercase": np.True_},
    ):
        assert query_analyzer(TfidfVectorizer(**params).get_params()) is None, params


def test_default_params_are_scikit_learns():
    defaults = TfidfVectorizer().get_params()
    assert list(DEFAULT_PARAMS) == list(defaults) and DEFAULT_PARAMS == defaults


# Candidate values of each parameter, valid ones and values scikit-learn refuses; edits draw a
# parameter's own candidates or any odd value.
_ODD = [None, True, False, 0, 1, -1, 2, 2.5, 0.5, float("nan"), "", "x", [1], {"a": 1}, (1, 2), np.True_, str.lower]
_CANDIDATES = {
    "analyzer": ["word", "char", "char_wb", "nope"],
    "input": ["content", "file", "filename", "url"],
    "encoding": ["utf-8", "latin-1", 8],
    "decode_error": ["strict", "ignore", "replace", "loud"],
    "strip_accents": [None, "ascii", "unicode", "both"],
    "norm": ["l1", "l2", None, "l3"],
    "ngram_range": [(1, 1), (3, 7), (2, 4), (7, 3), (0, 2), (1, 2, 3), (1.0, 2.0), ("a", "b"), [1, 2], (True, 2)],
    "token_pattern": [r"(?u)\b\w\w+\b", r"(a)(b)", r"(", None, r"\S+", r"(\w)\w"],
    "max_df": [1.0, 0.5, 2, 1, 0, 1.5, -0.1],
    "min_df": [1, 0.0, 3, 0, 1.5, 0.2],
    "max_features": [None, 1, 100, 0, -5, 2.0],
    "dtype": [np.float32, np.float64, np.int64, "float32", None, 5],
    "stop_words": [None, "english", ["the"], "french"],
    "vocabulary": [None, ["a", "b"], {"a": 0}],
    "preprocessor": [None, str.lower],
    "tokenizer": [None, str.split],
    **{
        name: [True, False, np.False_, 0, "yes"]
        for name in ("binary", "lowercase", "smooth_idf", "sublinear_tf", "use_idf")
    },
}
_VALUES = list({repr(value): value for value in _ODD + [v for values in _CANDIDATES.values() for v in values]}.values())
param_edits = st.lists(st.sampled_from([*sorted(DEFAULT_PARAMS), "colour"]), max_size=4, unique=True).flatmap(
    lambda names: st.fixed_dictionaries(
        {name: st.one_of(st.sampled_from(_CANDIDATES.get(name, _VALUES)), st.sampled_from(_VALUES)) for name in names}
    )
)


def _scikit_learn_accepts(params: dict) -> bool:
    """The checks the safe format's loader made with scikit-learn before this module existed."""
    try:
        vectorizer = TfidfVectorizer(**params)
        vectorizer._validate_params()
        vectorizer._validate_ngram_range()
        vectorizer.build_analyzer()("probe")
    except (TypeError, ValueError, AttributeError, re.error):  # what the loader caught
        return False
    return True


CHERCHE_DEFAULT = {"analyzer": "char_wb", "ngram_range": (3, 7), "dtype": np.float32}  # TfIdf's default vectorizer


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(edits=param_edits, base=st.sampled_from([{}, CHERCHE_DEFAULT]))
def test_deferred_vectorizer_accepts_only_what_scikit_learn_accepts(edits, base):
    params = {**base, **edits}
    deferred = DeferredTfidfVectorizer.from_params(params)
    if deferred is None:
        return  # scikit-learn judges these (refusing them, or building its own vectorizer)
    assert _scikit_learn_accepts(params), params
    expected = TfidfVectorizer(**params).get_params()
    assert list(deferred.params) == list(expected) and deferred.params == expected


@pytest.mark.parametrize(
    "params",
    [
        {},
        CHERCHE_DEFAULT,
        {"analyzer": "char", "ngram_range": (2, 4)},
        {"strip_accents": "unicode", "lowercase": False, "max_df": 0.9, "min_df": 1, "max_features": 500},
        {"token_pattern": r"\S+", "ngram_range": (1, 2), "norm": "l1", "encoding": "latin-1", "decode_error": "ignore"},
    ],
)
def test_plain_parameters_are_deferred(params):
    assert DeferredTfidfVectorizer.from_params(TfidfVectorizer(**params).get_params()) is not None


# -- in one process -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def towns():
    return data.load_towns()


def seed_pipeline(towns, vectorizer=None):
    """The seed pipeline: TfIdf(k=30) + rank.Encoder(HashingEncoder()) + the documents."""
    retriever = retrieve.TfIdf(key="id", on=ON, documents=towns, tfidf=vectorizer, k=30)
    ranker = rank.Encoder(key="id", on=ON, encoder=HashingEncoder(), k=10)
    return (retriever + ranker + towns).add(towns, show_progress=False)


def test_a_loaded_retriever_defers_the_vectorizer_and_gives_scikit_learns_on_demand(towns, tmp_path):
    original = retrieve.TfIdf(key="id", on=ON, documents=towns, tfidf=sklearn_vectorizer(), k=30)
    loaded = cherche_faiss.load(cherche_faiss.save(original, tmp_path / "tfidf"))
    assert isinstance(loaded._tfidf, DeferredTfidfVectorizer)
    assert loaded(QUERIES) == original(QUERIES) and [loaded(q) for q in QUERIES] == original(QUERIES)
    assert isinstance(loaded._tfidf, DeferredTfidfVectorizer)  # queries did not need scikit-learn
    resaved = cherche_faiss.save(loaded, tmp_path / "again")
    assert isinstance(loaded._tfidf, DeferredTfidfVectorizer)  # nor did saving again
    assert _save_contents(resaved) == _save_contents(tmp_path / "tfidf")
    vectorizer = loaded.tfidf  # what Cherche users get: scikit-learn's object
    assert type(vectorizer) is TfidfVectorizer and loaded._tfidf is vectorizer
    assert vectorizer.get_params() == original.tfidf.get_params()
    assert vectorizer.vocabulary_ == original.tfidf.vocabulary_ and vectorizer.fixed_vocabulary_ is False
    assert vectorizer.idf_.dtype == original.tfidf.idf_.dtype and np.array_equal(vectorizer.idf_, original.tfidf.idf_)
    assert loaded(QUERIES) == original(QUERIES) and repr(loaded) == repr(original)


def test_repr_and_pickles_of_a_loaded_retriever_hold_scikit_learns_vectorizer(towns, tmp_path):
    original = retrieve.TfIdf(key="id", on=ON, documents=towns, tfidf=sklearn_vectorizer(), k=30)
    path = cherche_faiss.save(original, tmp_path / "tfidf")
    assert repr(cherche_faiss.load(path)) == repr(original)
    loaded = cherche_faiss.load(path)
    state = loaded.__getstate__()["state"]
    assert type(state["tfidf"]) is TfidfVectorizer and "_tfidf" not in state  # the layout pickles always had
    assert list(state) == list(original.__getstate__()["state"])
    assert pickle.loads(pickle.dumps(cherche_faiss.load(path)))(QUERIES) == original(QUERIES)


def test_get_params_of_a_loaded_retriever_gives_scikit_learns_vectorizer(towns, tmp_path):
    path = cherche_faiss.save(
        retrieve.TfIdf(key="id", on="title", documents=towns, tfidf=sklearn_vectorizer()), tmp_path / "t"
    )
    loaded = cherche_faiss.load(path)
    assert type(loaded.get_params()["tfidf"]) is TfidfVectorizer


@pytest.mark.parametrize(
    "settings_",
    [
        {"analyzer": "char", "ngram_range": (2, 4)},
        {"analyzer": "word"},
        {"analyzer": "word", "ngram_range": (1, 2)},
        {"strip_accents": "unicode", "analyzer": "char_wb", "ngram_range": (2, 5)},
        {"strip_accents": "ascii", "lowercase": False, "analyzer": "char_wb", "ngram_range": (3, 3)},
        {"sublinear_tf": True},
        {"binary": True},
        {"norm": "l1"},
        {"norm": None},
        {"stop_words": "english"},
        {"stop_words": ["the", "is"]},
        {"vocabulary": ["wine", "capital", "aircraft", "city"]},
        {"token_pattern": r"(?u)\b\w+\b", "max_df": 0.8, "dtype": np.float64},
    ],
)
def test_every_setting_loads_with_the_same_hits(settings_, towns, tmp_path):
    original = retrieve.TfIdf(key="id", on=ON, documents=towns, tfidf=TfidfVectorizer(**settings_), k=20)
    loaded = cherche_faiss.load(cherche_faiss.save(original, tmp_path / "tfidf"))
    assert loaded(QUERIES) == original(QUERIES)
    assert [loaded(q) for q in QUERIES] == original(QUERIES)
    assert repr(loaded) == repr(original)
    matrix = original.tfidf.transform([f"{d['title']} {d['article']}" for d in towns])
    for query, hits in zip(QUERIES, loaded(QUERIES)):  # the direct query path equals scikit-learn's transform
        expected = (original.tfidf.transform([query]) @ matrix.T).toarray()[0]
        best = np.sort(expected[expected > 0])[::-1][: len(hits)]
        np.testing.assert_allclose([hit["similarity"] for hit in hits], best, rtol=1e-5, atol=1e-7)


def test_damaged_parameters_are_still_refused(towns, tmp_path):
    path = cherche_faiss.save(
        retrieve.TfIdf(key="id", on="title", documents=towns, tfidf=sklearn_vectorizer()), tmp_path / "tfidf"
    )
    clean = json.loads((path / "manifest.json").read_text())
    edits = [
        {"ngram_range": {"$tuple": [7, 3]}},
        {"analyzer": "nope"},
        {"analyzer": "word", "token_pattern": "(a)(b)"},
        {"analyzer": "word", "token_pattern": None},
        {"max_df": 2.5},
        {"min_df": 0},
        {"lowercase": "yes"},
        {"colour": "red"},
        {"norm": "l3"},
        {"input": "url"},
        {"decode_error": "loud"},
        {"max_features": 0},
        {"strip_accents": "both"},
        {"ngram_range": [3, 7]},
        {"stop_words": "french"},
    ]
    for edit in edits:
        manifest = json.loads(json.dumps(clean))
        node = next(node for node in manifest["components"] if node["class"] == "cherche_faiss.retrieve.TfIdf")
        node["params"]["tfidf"]["value"]["params"].update(edit)
        manifest["manifest_sha256"] = safe._canonical_hash(manifest)
        (path / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(IncompatibleStateError, match="TF-IDF parameters are not valid"):
            cherche_faiss.load(path)


def test_derived_attributes_are_never_taken_from_a_save(towns, tmp_path):
    original = retrieve.TfIdf(key="id", on=ON, documents=towns, k=5)
    path = cherche_faiss.save(original, tmp_path / "tfidf")
    manifest = json.loads((path / "manifest.json").read_text())
    node = next(node for node in manifest["components"] if node["class"] == "cherche_faiss.retrieve.TfIdf")
    node["state"].update(_fast=[1, 2], _matrix_t=7)
    manifest["manifest_sha256"] = safe._canonical_hash(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert cherche_faiss.load(path)(QUERIES) == original(QUERIES)


def test_a_scikit_learn_that_refuses_the_saved_parameters_is_a_library_error(towns, tmp_path, monkeypatch):
    from sklearn.feature_extraction import text

    path = cherche_faiss.save(
        retrieve.TfIdf(key="id", on="title", documents=towns, tfidf=sklearn_vectorizer()), tmp_path / "t"
    )
    loaded = cherche_faiss.load(path)

    def refuse(**params):
        raise TypeError("__init__() got an unexpected keyword argument 'dtype'")

    monkeypatch.setattr(text, "TfidfVectorizer", refuse)
    with pytest.raises(IncompatibleStateError, match="cannot rebuild the saved TF-IDF vectorizer"):
        _ = loaded.tfidf


# -- in fresh interpreters ----------------------------------------------------------------------
_CHILD = """
import json, sys
import cherche_faiss
folders, queries, extra, resave = json.loads(sys.argv[1])
report = {}
for name, folder in folders.items():
    search = cherche_faiss.load(folder)
    if extra:
        search.add(extra)
    report[name] = {"alone": [search(query) for query in queries], "batch": search(queries)}
    if resave:
        cherche_faiss.save(search, folder + "-again")
report["sklearn"] = "sklearn" in sys.modules
print(json.dumps(report))
"""


def _in_a_fresh_interpreter(folders: dict, extra: list | None = None, resave: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([folders, QUERIES, extra, resave])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _as_json(value):
    return json.loads(json.dumps(value))


def _save_contents(path: Path) -> dict:
    """Every file of a save but its manifest, and the manifest's component and file tables."""
    manifest = json.loads((path / "manifest.json").read_text())
    files = {name: (path / name).read_bytes() for name in manifest["files"]}
    return {"files": files, "table": manifest["files"], "components": manifest["components"]}


def _searches(towns) -> dict:
    """TfIdf alone and in the seed pipeline, with Cherche's vectorizer (the default) and scikit-learn's."""
    return {
        "tfidf": retrieve.TfIdf(key="id", on=ON, documents=towns, k=30),
        "seed": seed_pipeline(towns),
        "tfidf-sklearn": retrieve.TfIdf(key="id", on=ON, documents=towns, tfidf=sklearn_vectorizer(), k=30),
        "seed-sklearn": seed_pipeline(towns, sklearn_vectorizer()),
    }


def test_a_fresh_interpreter_loads_and_answers_without_scikit_learn(towns, tmp_path):
    searches = _searches(towns)
    folders = {name: str(cherche_faiss.save(search, tmp_path / name)) for name, search in searches.items()}
    report = _in_a_fresh_interpreter(folders, resave=True)
    assert report.pop("sklearn") is False
    for name, search in searches.items():
        assert report[name]["alone"] == _as_json([search(query) for query in QUERIES]), name
        assert report[name]["batch"] == _as_json(search(QUERIES)), name
        # Saved again there, without scikit-learn: the same files.
        assert _save_contents(Path(folders[name] + "-again")) == _save_contents(Path(folders[name])), name


def test_a_loaded_pipeline_adds_documents_like_one_never_saved(towns, tmp_path):
    searches = _searches(towns)
    folders = {name: str(cherche_faiss.save(search, tmp_path / name)) for name, search in searches.items()}
    report = _in_a_fresh_interpreter(folders, extra=EXTRA)
    report.pop("sklearn")  # adding documents transforms them with scikit-learn: it may be imported
    for name, search in searches.items():
        search.add(EXTRA)
        assert report[name]["alone"] == _as_json([search(query) for query in QUERIES]), name
        assert report[name]["batch"] == _as_json(search(QUERIES)), name
