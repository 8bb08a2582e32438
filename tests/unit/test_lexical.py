"""Cherche's lexical retrievers: Lunr (lunr.py), Flash (FlashText keywords), Fuzz (RapidFuzz)."""

from __future__ import annotations

import pickle

import pytest

import cherche_faiss
from cherche_faiss import retrieve
from cherche_faiss.exceptions import InvalidInputError, InvalidTypeError, NotIndexedError

TOWNS = [
    {"id": 0, "title": "Paris", "article": "Eiffel tower"},
    {"id": 1, "title": "Paris", "article": "Paris is in France."},
    {"id": 2, "title": "Montreal", "article": "Montreal is in Canada."},
]


def ids(hits):
    return [hit["id"] for hit in hits]


# -- Lunr ------------------------------------------------------------------------------------------
def test_lunr_ranks_with_lunr_scores_and_honours_k():
    retriever = retrieve.Lunr(key="id", on=["title", "article"], documents=TOWNS)
    assert retriever("paris") == [{"id": 1, "similarity": 0.268}, {"id": 0, "similarity": 0.134}]
    assert ids(retriever("paris", k=1)) == [1]
    assert [ids(hits) for hits in retriever(["paris", "canada", "unknown"])] == [[1, 0], [2], []]
    assert len(retriever) == 3


def test_lunr_query_syntax_and_accents_never_raise():
    documents = [*TOWNS, {"id": 3, "title": "Montréal", "article": "Québec"}]
    retriever = retrieve.Lunr(key="id", on=["title", "article"], documents=documents)
    for query in ["", "   ", "paris +tower -x ~2 ^3 title:paris *", "?!"]:
        assert isinstance(retriever(query), list)
    assert ids(retriever("Montréal")) == [3]  # Cherche's ASCII-only cleaning made it "Montr al"


def test_lunr_adds_and_replaces_documents():
    retriever = retrieve.Lunr(key="id", on=["title", "article"])
    with pytest.raises(NotIndexedError, match=r"\.add\("):
        retriever("paris")
    retriever.add(TOWNS[:2])
    assert ids(retriever("montreal")) == []
    retriever.add(TOWNS[2:])
    assert ids(retriever("montreal")) == [2]
    retriever.add([{"id": 2, "title": "Lyon", "article": "Lyon is in France"}])  # replaces key 2
    assert len(retriever) == 3
    assert ids(retriever("montreal")) == [] and ids(retriever("lyon")) == [2]


def test_lunr_keys_of_any_type_stay_apart():
    retriever = retrieve.Lunr(key="id", on="title", documents=[{"id": 1, "title": "a b"}, {"id": "1", "title": "b c"}])
    assert sorted(map(repr, ids(retriever("b")))) == ["'1'", "1"]


def test_lunr_pickle_holds_texts_not_the_index():
    retriever = retrieve.Lunr(key="id", on=["title", "article"], documents=TOWNS)
    expected = retriever(["paris", "canada"])
    state = retriever.__getstate__()["state"]
    assert state["_index"] is None and state["_documents"][0] == {"title": "Paris", "article": "Eiffel tower"}
    assert pickle.loads(pickle.dumps(retriever))(["paris", "canada"]) == expected


# -- Flash -----------------------------------------------------------------------------------------
def test_flash_scores_are_shares_of_the_matches_as_in_cherche():
    documents = [
        {"id": 0, "title": "paris", "article": "eiffel tower"},
        {"id": 1, "title": "paris", "article": "paris"},
        {"id": 2, "title": "montreal", "article": "montreal is in canada"},
    ]
    retriever = retrieve.Flash(key="id", on=["title", "article"]).add(documents)
    assert retriever("paris") == [{"id": 1, "similarity": 2 / 3}, {"id": 0, "similarity": 1 / 3}]
    assert retriever(["Montreal", "nothing"]) == [[{"id": 2, "similarity": 1.0}], []]
    assert len(retriever) == 3  # documents (Cherche's len counted keywords)


def test_flash_reads_lists_skips_missing_and_empty_fields_and_replaces_keywords():
    retriever = retrieve.Flash(key="id", on=["tags", "title"], k=5)
    retriever.add([{"id": 0, "tags": ["New York", "usa"]}, {"id": 1, "title": ""}, {"id": 2, "tags": [None, "usa"]}])
    assert ids(retriever("I love new york")) == [0]
    assert ids(retriever("usa")) == [0, 2]
    retriever.add([{"id": 0, "tags": ["boston"]}])  # key 0 again: its keywords are replaced
    assert ids(retriever("new york")) == [] and ids(retriever("boston")) == [0]
    assert ids(retriever("usa")) == [2]
    assert len(retriever) == 3


def test_flash_lowercase_false_keeps_case():
    retriever = retrieve.Flash(key="id", on="title", lowercase=False).add([{"id": 0, "title": "Paris"}])
    assert ids(retriever("Paris")) == [0]


def test_flash_custom_keyword_processor_survives_pickle_and_save(tmp_path):
    from flashtext import KeywordProcessor

    processor = KeywordProcessor()
    processor.add_keyword("nyc", "new york")  # a synonym known before any document
    retriever = retrieve.Flash(key="id", on="title", keywords=processor).add([{"id": 0, "title": "new york"}])
    assert ids(retriever("flights to NYC")) == [0]
    for copy in (
        pickle.loads(pickle.dumps(retriever)),
        cherche_faiss.load(cherche_faiss.save(retriever, tmp_path / "f")),
    ):
        assert ids(copy("flights to NYC")) == [0]
        copy.add([{"id": 1, "title": "new york"}])
        assert ids(copy("nyc")) == [0, 1]
    with pytest.raises(InvalidTypeError, match="KeywordProcessor"):
        retrieve.Flash(key="id", on="title", keywords="paris")


# -- Fuzz ------------------------------------------------------------------------------------------
def test_fuzz_scores_every_document_and_processes_the_query():
    retriever = retrieve.Fuzz(key="id", on=["title", "article"]).add(TOWNS)
    assert retriever("paris", k=2) == [{"id": 0, "similarity": 100.0}, {"id": 1, "similarity": 100.0}]
    assert len(retriever("zzz")) == 3  # every document gets a score
    assert retriever("PARIS!", k=2) == retriever("paris", k=2)  # the query is cleaned as the documents


def test_fuzz_scorers_by_function_or_name():
    from rapidfuzz import fuzz
    from rapidfuzz.distance import Levenshtein

    by_function = retrieve.Fuzz(key="id", on="title", fuzzer=fuzz.ratio).add(TOWNS)
    by_name = retrieve.Fuzz(key="id", on="title", fuzzer="fuzz.ratio").add(TOWNS)
    assert by_function.fuzzer == by_name.fuzzer == "ratio"
    assert by_function("montral") == by_name("montral")
    assert ids(by_name("montral", k=1)) == [2]
    distance = retrieve.Fuzz(key="id", on="title", fuzzer=Levenshtein.distance).add(TOWNS)
    assert distance.fuzzer == "Levenshtein.distance"
    hits = distance("montral")
    assert ids(hits)[0] == 2 and hits[0]["similarity"] == 1.0  # a distance: best (smallest) first
    assert all(type(hit["similarity"]) is float for hit in hits)
    with pytest.raises(InvalidInputError, match="not a rapidfuzz scorer"):
        retrieve.Fuzz(key="id", on="title", fuzzer="levenshtein_typo")


def test_fuzz_custom_scorer_works_but_is_not_saved(tmp_path):
    def first_letter(query, text, **kwargs):
        return 100.0 if query[:1] == text[:1] else 0.0

    retriever = retrieve.Fuzz(key="id", on="title", fuzzer=first_letter).add(TOWNS)
    assert ids(retriever("m", k=1)) == [2]
    with pytest.raises(InvalidTypeError, match="Python callable"):
        cherche_faiss.save(retriever, tmp_path / "fuzz")


def test_fuzz_replaces_in_place_and_saves(tmp_path):
    retriever = retrieve.Fuzz(key="id", on="title", default_process=False).add(TOWNS)
    retriever.add([{"id": 0, "title": "Lyon"}])
    assert len(retriever) == 3 and ids(retriever("Lyon", k=1)) == [0]
    loaded = cherche_faiss.load(cherche_faiss.save(retriever, tmp_path / "fuzz"))
    assert loaded(["Lyon", "Paris"]) == retriever(["Lyon", "Paris"]) and repr(loaded) == repr(retriever)
