"""qa.ExtractiveReader loads a transformers question-answering model and answers as the pipeline does.

No SQuAD-tuned model is available offline: the offline MiniLM's encoder with a freshly initialised
(seeded) span head stands in. Its answers mean nothing; what is checked is the mechanics: spans of
the context, probabilities, windows over a long context, batches, and qa.QA built from a name.
"""

from __future__ import annotations

import pytest

from cherche_faiss import data, qa, retrieve

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]


@pytest.fixture(scope="module")
def reader():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    return qa.ExtractiveReader(data.minilm_path(), max_answer_len=5, max_seq_len=64, doc_stride=16)


def test_answers_are_spans_of_their_context(reader):
    contexts = ["Paris is the capital of France.", "Bordeaux wine " * 40 + "comes from the Garonne valley."]
    answers = reader({"question": ["where is paris?", "where does the wine come from?"], "context": contexts})
    assert len(answers) == 2
    for answer, context in zip(answers, contexts):
        assert set(answer) == {"score", "start", "end", "answer"}
        assert 0.0 < answer["score"] <= 1.0 and answer["answer"] == context[answer["start"] : answer["end"]]
        assert answer["answer"] and len(answer["answer"].split()) <= 5
    alone = reader(question="where is paris?", context=contexts[0])  # one pair: a dict, as the pipeline
    assert alone["answer"] == answers[0]["answer"] and alone["score"] == pytest.approx(answers[0]["score"], rel=1e-4)


def test_qa_from_a_model_name(reader):
    import torch

    torch.manual_seed(0)
    documents = data.load_towns()
    search = retrieve.TfIdf(key="id", on="title", documents=documents, k=3) + documents
    search = search + qa.QA(on="article", model=data.minilm_path(), k=2)
    hits = search(["bordeaux", "lyon"])
    assert isinstance(search.models[-1]._reader, qa.ExtractiveReader)  # built from the name, on first use
    assert [len(answers) for answers in hits] == [2, 2]
    for answers in hits:
        assert all(hit["answer"] == hit["article"][hit["start"] : hit["end"]] for hit in answers)
        assert answers[0]["score"] >= answers[1]["score"]
