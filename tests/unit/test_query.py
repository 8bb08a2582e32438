"""Query rewriters: query.Norvig (spelling), query.PRF (pseudo-relevance feedback), in pipelines."""

from __future__ import annotations

import pickle

import pytest

import cherche_faiss
from cherche_faiss import data, query, rank, retrieve
from cherche_faiss.encoders import HashingEncoder
from cherche_faiss.exceptions import InvalidInputError, NotIndexedError

DOCUMENTS = [
    {"id": 0, "title": "Paris", "article": "Paris is the capital of France. The Eiffel tower is in Paris."},
    {"id": 1, "title": "Bordeaux", "article": "Bordeaux wine comes from the Garonne valley."},
    {"id": 2, "title": "Toulouse", "article": "Toulouse builds aircraft: Airbus is there."},
    {"id": 3, "title": "Lyon", "article": "Lyon is known for its food."},
]


def ids(hits):
    return [hit["id"] for hit in hits]


# -- Norvig ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corrector():
    return query.Norvig(on=["title", "article"]).add(data.load_towns())


def test_norvig_corrects_words_within_two_edits(corrector):
    assert corrector("tha citi af Parisa is in Fronce") == "the city of paris is in france"
    assert corrector(["bordeau", "toulous", "lyon"]) == ["bordeaux", "toulouse", "lyon"]
    assert corrector("qqqqqqqqq") == "qqqqqqqqq"  # nothing within two edits: kept


def test_norvig_keeps_punctuation_digits_and_spacing(corrector):
    assert corrector("bordeau?  in 2024, toulous!") == "bordeaux?  in 2024, toulouse!"


def test_norvig_prefers_frequent_words_and_breaks_ties_by_vocabulary_order():
    corrector = query.Norvig(on="text").add([{"text": "cat cat bat"}, {"text": "rat"}])
    assert corrector("hat") == "cat"  # cat (2) over bat and rat (1), all one edit away
    corrector = query.Norvig(on="text").add("bat rat")
    assert corrector("hat") == "bat"  # equally frequent: the first seen


def test_norvig_lower_false_is_case_sensitive():
    corrector = query.Norvig(on="text", lower=False).add("Paris paris")
    assert corrector("Pariss") == "Paris" and corrector("pariss") == "paris"


def test_norvig_without_vocabulary_returns_the_query_and_reset_forgets():
    corrector = query.Norvig(on="text")
    assert corrector("helo") == "helo"
    corrector.add("hello")
    assert corrector("helo") == "hello"
    assert corrector.reset()("helo") == "helo"


def test_norvig_pickles_and_saves(corrector, tmp_path):
    for copy in (
        pickle.loads(pickle.dumps(corrector)),
        cherche_faiss.load(cherche_faiss.save(corrector, tmp_path / "n")),
    ):
        assert copy("tha citi af Parisa") == "the city of paris"
        assert copy.occurrences == corrector.occurrences and repr(copy) == repr(corrector)


# -- PRF -------------------------------------------------------------------------------------------
def test_prf_works_with_its_defaults():
    """Cherche 2.2.1's PRF(on=..., documents=...) raised AttributeError: its default lenlp vectorizer
    has no get_feature_names_out."""
    prf = query.PRF(on=["title", "article"], documents=DOCUMENTS, nb_docs=1, nb_terms_per_doc=2)
    assert prf("wine") == "wine bordeaux comes"
    assert prf(["wine", "zzz"]) == ["wine bordeaux comes", "zzz"]  # no match: unchanged, no trailing space


def test_each_prf_has_its_own_vectorizer():
    first = query.PRF(on="article", documents=DOCUMENTS, nb_docs=1, nb_terms_per_doc=1)
    expected = first("aircraft")
    query.PRF(on="title", documents=DOCUMENTS[:1])  # in Cherche this refitted the shared default
    assert first("aircraft") == expected == "aircraft airbus"


def test_prf_takes_only_terms_of_matching_documents_once():
    prf = query.PRF(on="article", documents=DOCUMENTS, nb_docs=10, nb_terms_per_doc=50)  # more than there are
    expanded = prf("Paris").split()
    assert expanded[0] == "Paris" and "paris" not in expanded[1:]  # the query's own term, in any case
    assert len(expanded) == len(set(expanded))
    words = {word.strip(".:").lower() for document in DOCUMENTS[:1] for word in document["article"].split()}
    assert set(expanded[1:]) <= words  # only document 0 shares a term with the query


def test_prf_accepts_a_vectorizer_with_only_a_vocabulary_mapping():
    from sklearn.feature_extraction.text import TfidfVectorizer

    class VocabularyOnly:  # the interface of lenlp's vectorizers: no get_feature_names_out
        def __init__(self):
            self.inner = TfidfVectorizer()

        def fit_transform(self, texts):
            matrix = self.inner.fit_transform(texts)
            self.vocabulary = dict(self.inner.vocabulary_)
            return matrix

        def transform(self, texts):
            return self.inner.transform(texts)

    prf = query.PRF(on="article", documents=DOCUMENTS, tf=VocabularyOnly(), nb_docs=1, nb_terms_per_doc=1)
    assert prf("aircraft") == "aircraft airbus"


def test_prf_errors_and_persistence(tmp_path):
    with pytest.raises(InvalidInputError, match="nb_docs"):
        query.PRF(on="article", documents=DOCUMENTS, nb_docs=0)
    with pytest.raises(NotIndexedError, match="documents="):
        query.PRF(on="article")("wine")
    prf = query.PRF(on=["title", "article"], documents=DOCUMENTS, nb_docs=2, nb_terms_per_doc=2)
    for copy in (pickle.loads(pickle.dumps(prf)), cherche_faiss.load(cherche_faiss.save(prf, tmp_path / "prf"))):
        assert copy(["wine", "Eiffel"]) == prf(["wine", "Eiffel"]) and repr(copy) == repr(prf)


# -- in pipelines ----------------------------------------------------------------------------------
def test_a_rewriter_at_the_head_of_a_pipeline_rewrites_what_every_stage_reads():
    """Cherche's Pipeline handed the rewritten query to the next stage as `documents` and kept
    searching the original: `query.Norvig(...) + retriever` searched uncorrected queries."""
    corrector = query.Norvig(on=["title", "article"])
    retriever = retrieve.BM25(key="id", on=["title", "article"], k=3)
    seen = []

    def scorer(pairs):  # a cross-encoder stand-in that records the queries it reads
        seen.extend(query for query, _ in pairs)
        return [1.0] * len(pairs)

    search = corrector + retriever + DOCUMENTS + rank.CrossEncoder(on="title", encoder=scorer)
    search.add(DOCUMENTS)  # the corrector learns its vocabulary too
    assert retriever("bordeau wyne") == []  # BM25 on words: the misspelt query finds nothing
    assert ids(search("bordeau wyne")) == [1]
    assert seen == ["bordeaux wine"]
    assert [ids(hits) for hits in search(["bordeau wyne", "aircrafts"])] == [[1], [2]]


def test_rewriters_compose_and_are_refused_where_they_cannot_work():
    corrector = query.Norvig(on="article").add(DOCUMENTS)
    prf = query.PRF(on="article", documents=DOCUMENTS, nb_docs=1, nb_terms_per_doc=1)
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=DOCUMENTS, k=2)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(dimension=32))
    search = (corrector + prf + retriever + ranker + DOCUMENTS).add(DOCUMENTS)
    assert [stage.__class__.__name__ for stage in search.models][:3] == ["Norvig", "PRF", "TfIdf"]
    assert search("aircraf")[0]["title"] == "Toulouse"
    with pytest.raises(InvalidInputError, match="head of the pipeline"):
        retriever + corrector
    for combine in (lambda: corrector | retriever, lambda: retriever | corrector, lambda: corrector & prf):
        with pytest.raises(InvalidInputError, match="rewrites queries"):
            combine()
    union = corrector + (retriever | retrieve.BM25(key="id", on="article", documents=DOCUMENTS))
    assert ids(union("aircraf"))[0] == 2
