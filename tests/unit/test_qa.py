"""qa.QA at the end of a pipeline, with a deterministic stand-in for a question-answering pipeline."""

from __future__ import annotations

import pickle

import pytest

import cherche_faiss
from cherche_faiss import qa, retrieve
from cherche_faiss.exceptions import InvalidInputError, InvalidTypeError

DOCUMENTS = [
    {"id": 0, "title": "Paris France"},
    {"id": 1, "title": "Madrid Spain"},
    {"id": 2, "title": "Montreal Canada"},
]


class Reader:
    """The call and return shapes of transformers' question-answering pipeline: the answer is the
    context's first word, scored by how many of the question's words the context holds; one pair
    answers a dict alone, as the pipeline does."""

    def __init__(self):
        self.calls = []

    def __call__(self, inputs):
        self.calls.append(len(inputs["question"]))
        answers = []
        for question, context in zip(inputs["question"], inputs["context"]):
            words = set(question.lower().strip("?").split())
            score = sum(word in words for word in context.lower().split()) / 10
            first = context.split()[0]
            answers.append({"score": score, "start": 0, "end": len(first), "answer": first})
        return answers[0] if len(answers) == 1 else answers


@pytest.fixture()
def search():
    retriever = retrieve.TfIdf(key="id", on="title", documents=DOCUMENTS)
    return retriever + DOCUMENTS + qa.QA(on="title", model=Reader())


def test_qa_merges_answers_into_documents_best_first(search):
    hits = search("what is the capital of canada?")
    assert hits[0] == {
        "id": 2,
        "title": "Montreal Canada",
        "similarity": hits[0]["similarity"],
        "score": 0.1,
        "start": 0,
        "end": 8,
        "answer": "Montreal",
        "question": "what is the capital of canada?",
    }
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    batch = search(["capital of canada?", "madrid spain?"])
    assert [hits[0]["answer"] for hits in batch] == ["Montreal", "Madrid"]
    assert batch[0] == search("capital of canada?")


def test_qa_k_batch_size_and_a_single_pair():
    reader = Reader()
    reader_qa = qa.QA(on="title", model=reader, batch_size=2, k=1)
    hits = reader_qa(["paris", "spain"], documents=[DOCUMENTS, DOCUMENTS])
    assert [[hit["answer"] for hit in answers] for answers in hits] == [["Paris"], ["Madrid"]]
    assert reader.calls == [2, 2, 2]  # six pairs, two at a time
    assert reader_qa("paris", documents=DOCUMENTS[:1], k=None)[0]["answer"] == "Paris"  # a dict alone
    assert len(reader_qa("x", documents=DOCUMENTS, k=3)) == 3
    assert reader_qa("x", documents=[]) == [] and reader_qa(["x", "y"], documents=[[], []]) == [[], []]


def test_qa_documents_without_text_are_not_read_and_bare_hits_are_refused():
    reader = Reader()
    documents = [*DOCUMENTS, {"id": 7, "url": "x", "text": "paris"}]  # no title: read as empty, as in Cherche
    search = retrieve.TfIdf(key="id", on="text", documents=documents) + documents + qa.QA(on="title", model=reader)
    hits = search("paris")
    assert hits == [{"id": 7, "url": "x", "text": "paris", "similarity": 1.0, "score": 0.0, "start": 0, "end": 0,
                     "answer": "", "question": "paris"}]  # fmt: skip
    assert reader.calls == []  # the document without text was not given to the model
    search = retrieve.TfIdf(key="id", on="title", documents=DOCUMENTS) + qa.QA(on="title", model=Reader())
    with pytest.raises(InvalidInputError, match=r"retriever \+ documents \+ qa.QA"):
        search("paris")


def test_qa_goes_at_the_end_of_a_pipeline_not_in_a_fusion():
    retriever = retrieve.TfIdf(key="id", on="title", documents=DOCUMENTS)
    with pytest.raises(InvalidInputError, match="at the end of the pipeline"):
        retriever | qa.QA(on="title", model=Reader())


def test_qa_checks_the_model_and_its_answers():
    with pytest.raises(InvalidTypeError, match="question-answering pipeline"):
        qa.QA(on="title", model=42)
    bad = qa.QA(on="title", model=lambda inputs: [{"answer": "x"}])
    with pytest.raises(InvalidInputError, match="one dict with a 'score' per pair"):
        bad("paris", documents=DOCUMENTS)


def test_qa_with_a_model_name_pickles_and_saves_the_name(tmp_path):
    named = (
        retrieve.TfIdf(key="id", on="title", documents=DOCUMENTS) + DOCUMENTS + qa.QA(on="title", model="some/model")
    )
    for copy in (pickle.loads(pickle.dumps(named)), cherche_faiss.load(cherche_faiss.save(named, tmp_path / "qa"))):
        assert copy.models[-1].model == "some/model" and repr(copy) == repr(named)
    with pytest.raises(InvalidTypeError, match="Python callable"):
        cherche_faiss.save(
            retrieve.TfIdf(key="id", on="title", documents=DOCUMENTS) + qa.QA("title", Reader()), tmp_path / "x"
        )
