"""Filtered search in FAISS indexes: the planner's answers against brute force over the allowed documents.

Every index type is checked with random filters and queries: the exact path gives the brute-force answer
over the allowed documents' stored vectors, and no path (exact, selector with widening, GPU fallback) ever
returns an excluded key. The filter is evaluated here by a plain Python reference of the language's
semantics, independent of the NumPy compiler.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cherche_faiss import retrieve
from cherche_faiss.index import _filtered
from cherche_faiss.index._selectors import make_selector, selector_parameters

FACTORIES = ["Flat", "IVF8,Flat", "IVF8,SQ8", "IVF4,PQ4x4", "HNSW16", "auto"]
LANGS = ["en", "fr", "de", "es"]
D = 8
N = 700  # IVF4,PQ4x4 trains 16 centroids per sub-quantizer: 39 vectors each at least


def make_documents(seed: int, n: int = N) -> list[dict]:
    rng = np.random.default_rng(seed)
    documents = []
    for i in range(n):
        document = {"id": f"d{i}", "year": int(rng.integers(1990, 2030)), "lang": LANGS[int(rng.integers(0, 4))]}
        if rng.random() < 0.8:
            document["score"] = round(float(rng.normal()), 3)
        if rng.random() < 0.5:
            document["open"] = bool(rng.random() < 0.5)
        documents.append(document)
    return documents


# -- a reference evaluation of the language, document by document (Mongo's rules for missing values) ----
def _holds(document: dict, field: str, operator: str, value) -> bool:
    if field not in document or document[field] is None:
        return operator in ("$ne", "$nin")
    have = document[field]

    def same_kind(a, b) -> bool:
        kind = lambda x: "b" if isinstance(x, bool) else "s" if isinstance(x, str) else "n"  # noqa: E731
        return kind(a) == kind(b)

    if operator == "$eq":
        return same_kind(have, value) and have == value
    if operator == "$ne":
        return not (same_kind(have, value) and have == value)
    if operator == "$in":
        return any(same_kind(have, v) and have == v for v in value)
    if operator == "$nin":
        return not any(same_kind(have, v) and have == v for v in value)
    compare = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b, "$lt": lambda a, b: a < b}
    compare["$lte"] = lambda a, b: a <= b
    return same_kind(have, value) and compare[operator](have, value)


def matches(document: dict, filter: dict) -> bool:  # noqa: A002
    for name, condition in filter.items():
        if name == "$and":
            ok = all(matches(document, term) for term in condition)
        elif name == "$or":
            ok = any(matches(document, term) for term in condition)
        elif name == "$not":
            ok = not matches(document, condition)
        elif isinstance(condition, dict):
            ok = True
            for operator, value in condition.items():
                if operator == "$exists":
                    ok &= (name in document and document[name] is not None) == value
                else:
                    ok &= _holds(document, name, operator, value)
        else:
            ok = _holds(document, name, "$eq", condition)
        if not ok:
            return False
    return True


def _field(field, operators, values):
    return st.builds(lambda op, v: {field: {op: v}}, st.sampled_from(operators), values)


def conditions():
    year = st.integers(1985, 2035)
    return st.one_of(
        _field("year", ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"], year),
        st.builds(lambda v: {"year": v}, year),
        _field("lang", ["$eq", "$ne", "$gt", "$lte"], st.sampled_from(LANGS)),
        _field("lang", ["$in", "$nin"], st.lists(st.sampled_from(LANGS), min_size=1, max_size=3)),
        _field("score", ["$gt", "$lte"], st.floats(-2, 2, allow_nan=False)),
        st.builds(lambda v: {"score": {"$exists": v}}, st.booleans()),
        st.builds(lambda v: {"open": v}, st.booleans()),
    )


def filters():
    leaf = conditions()
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(lambda terms: {"$and": terms}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda terms: {"$or": terms}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda term: {"$not": term}, inner),
        ),
        max_leaves=5,
    )


@pytest.fixture(scope="module")
def built():
    """One Embedding retriever per index type over the same random documents and vectors."""
    documents = make_documents(0)
    vectors = np.random.default_rng(1).standard_normal((N, D)).astype(np.float32)
    models = {}
    for factory in FACTORIES:
        model = retrieve.Embedding(key="id", index=factory, search_params=_params(factory))
        models[factory] = model.add(documents, embeddings_documents=vectors, show_progress=False)
    return documents, models


def _params(factory: str) -> dict | None:
    if factory.startswith("IVF"):
        return {"nprobe": 2}
    if factory.startswith("HNSW"):
        return {"efSearch": 16}
    return None


def brute_force(model, documents, query, allowed_keys, k):
    """The k best allowed documents by exact scoring of the vectors the index stores."""
    if not allowed_keys:
        return []
    stored = model.index.reconstruct(allowed_keys)
    scores = stored @ model.index.prepare(query)[0]
    order = np.argsort(-scores, kind="stable")[:k]
    return [(allowed_keys[i], float(scores[i])) for i in order]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filter=filters(), seed=st.integers(0, 2**16), k=st.integers(1, 15), factory=st.sampled_from(FACTORIES))
def test_every_index_type_gives_brute_force_exactly_and_no_excluded_key(built, monkeypatch, filter, seed, k, factory):  # noqa: A002
    documents, models = built
    model = models[factory]
    query = np.random.default_rng(seed).standard_normal(D).astype(np.float32)
    allowed = [document["id"] for document in documents if matches(document, filter)]
    expected = brute_force(model, documents, query, allowed, k)

    with monkeypatch.context() as patch:  # the exact path, whatever the selectivity
        patch.setattr(_filtered, "EXACT_FRACTION", 1.0)
        patch.setattr(_filtered, "EXACT_FRACTION_IN_PLACE", 1.0)
        exact = model(query, k=k, filter=filter)
    assert len(exact) == len(expected)
    np.testing.assert_allclose([hit["similarity"] for hit in exact], [s for _, s in expected], rtol=1e-4, atol=1e-5)
    truth = dict(brute_force(model, documents, query, allowed, len(allowed)))
    for hit in exact:  # each hit allowed, with its own exact score (ties may swap equal documents)
        assert hit["similarity"] == pytest.approx(truth[hit["id"]], rel=1e-4, abs=1e-5)

    allowed_set = set(allowed)
    with monkeypatch.context() as patch:  # the ANN path with a selector, whatever the selectivity
        patch.setattr(_filtered, "EXACT_FRACTION", 0.0)
        patch.setattr(_filtered, "EXACT_FRACTION_IN_PLACE", 0.0)
        patch.setattr(_filtered, "EXACT_MIN", 0)
        patch.setattr(_filtered, "EXACT_MIN_IN_PLACE", 0)
        approximate = model(query, k=k, filter=filter)
    assert {hit["id"] for hit in approximate} <= allowed_set
    assert len(approximate) == min(k, len(allowed))  # widening, then exact: never short of k

    planned = model(query, k=k, filter=filter)  # the planner's own choice
    assert {hit["id"] for hit in planned} <= allowed_set and len(planned) == min(k, len(allowed))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), filter=filters(), n=st.integers(1, 60))
def test_random_documents_lexical_and_dense_agree_with_the_reference(seed, filter, n):  # noqa: A002
    documents = [{**document, "text": f"word{i % 7} common"} for i, document in enumerate(make_documents(seed, n))]
    allowed = {document["id"] for document in documents if matches(document, filter)}
    fields = ["year", "lang", "score", "open"]  # declared: a field no random document holds is still known
    tfidf = retrieve.TfIdf(key="id", on="text", documents=documents, filter_fields=fields)
    found = tfidf("common", k=None, filter=filter)
    assert {hit["id"] for hit in found} == allowed  # every document holds "common"
    assert found == [hit for hit in tfidf("common", k=None) if hit["id"] in allowed]
    vectors = np.random.default_rng(seed).standard_normal((n, D))
    dense = retrieve.Embedding(key="id", index="HNSW16", filter_fields=fields)
    dense = dense.add(documents, embeddings_documents=vectors)
    assert {hit["id"] for hit in dense(vectors[0], k=None, filter=filter)} == allowed


def test_the_planner_chooses_by_selectivity(built, monkeypatch):
    _, models = built
    ivf, hnsw, flat = models["IVF8,Flat"].index, models["HNSW16"].index, models["Flat"].index
    monkeypatch.setattr(_filtered, "EXACT_MIN", 0)
    monkeypatch.setattr(_filtered, "EXACT_MIN_IN_PLACE", 0)
    monkeypatch.setattr(_filtered, "EXACT_FRACTION", 0.02)
    assert _filtered.plan(ivf, N // 100) == "exact" and _filtered.plan(ivf, N // 10) == "selector"
    assert _filtered.plan(hnsw, N // 25) == "exact" and _filtered.plan(hnsw, N // 5) == "selector"  # read in place
    assert _filtered.plan(flat, N) == "exact"


def test_the_gpu_fallback_is_exact(built, monkeypatch):
    documents, models = built
    model = models["HNSW16"]
    monkeypatch.setattr(_filtered, "selectors_supported", lambda index: False)
    monkeypatch.setattr(_filtered, "EXACT_FRACTION", 0.0)
    monkeypatch.setattr(_filtered, "EXACT_FRACTION_IN_PLACE", 0.0)
    monkeypatch.setattr(_filtered, "EXACT_MIN", 0)
    monkeypatch.setattr(_filtered, "EXACT_MIN_IN_PLACE", 0)
    query = np.ones(D, dtype=np.float32)
    filter = {"year": {"$gte": 2000}}  # noqa: A001
    allowed = [document["id"] for document in documents if matches(document, filter)]
    expected = brute_force(model, documents, query, allowed, 10)
    assert [hit["id"] for hit in model(query, k=10, filter=filter)] == [key for key, _ in expected]


def test_selectors_fit_the_mask_and_hnsw_keeps_its_bounded_queue():
    mask = np.zeros(1000, dtype=bool)
    mask[100:200] = True
    assert make_selector(mask, int(mask.sum())).kind == "range"
    mask[:] = False
    mask[[3, 500, 900]] = True
    assert make_selector(mask, int(mask.sum())).kind == "batch"
    mask[::2] = True
    selector = make_selector(mask, int(mask.sum()))
    assert selector.kind == "bitmap"
    assert selector.selector.is_member(2) and selector.selector.is_member(3) and not selector.selector.is_member(5)
    parameters = selector_parameters("hnsw", selector, {"efSearch": 32})
    assert parameters.bounded_queue and parameters.efSearch == 32  # faiss issue 5504: never False


def test_search_parameters_rise_as_selectivity_falls(built):
    _, models = built
    ivf, hnsw = models["IVF8,Flat"].index, models["HNSW16"].index
    assert _filtered.raised_params("ivf", {"nprobe": 2}, 0.5, ivf.faiss_index, N)["nprobe"] == 3  # 2 * 0.5 ** -0.35
    assert _filtered.raised_params("ivf", {"nprobe": 2}, 0.01, ivf.faiss_index, N)["nprobe"] == 8  # all lists
    assert _filtered.raised_params("hnsw", {"efSearch": 16}, 0.1, hnsw.faiss_index, N)["efSearch"] == 160


def test_a_filter_matching_nothing_gives_no_hit(built):
    _, models = built
    for model in models.values():
        assert model(np.ones(D), k=5, filter={"year": 1000}) == []
        assert model([np.ones(D), np.ones(D)], k=5, filter=[]) == [[], []]
