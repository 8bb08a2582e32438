"""Programs written for Cherche 2.2.1 run on cherche_faiss with only the import changed.

Each program below is Cherche code, as Cherche's documentation writes it (``from cherche import
...``), covering every module: retrieve, rank, compose, query, qa, utils, index, evaluate, data. The
test rewrites only the import (``from cherche_faiss import ...``), runs it, and checks that every
output has Cherche's shape. Where Cherche 2.2.1 is installed (the ``bench`` extra; CI's ``dev``
install has not got it and skips), the same programs also run on Cherche and the outputs are
compared: the same ids for the retrievers and pipelines that are meant to agree, the same
corrections, answers and evaluation keys, the same shapes for the rest.

Inputs are the same for both: the packaged towns corpus and the offline MiniLM are given to every
program as ``documents`` and ``MODEL``. A few documents lose a field, as real corpora do (Cherche
reads a missing field as an empty string; so do we, unless ``strict_fields`` is set).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from cherche_faiss import data

pytestmark = pytest.mark.integration

QUERIES = ["bordeaux wine", "toulouse aircraft", "paris eiffel tower", "lyon food", "montreal"]

#: name -> (Cherche program, how each entry of its `result` compares with Cherche's:
#: "ids" same keys in the same order, "prefix" ours the first k of Cherche's (which ignored k),
#: "equal" equal values, "equal-ish" same documents and fields, "shape" same nesting and lengths,
#: "run" only that it runs on both).
PROGRAMS: dict[str, tuple[str, dict[str, str]]] = {
    "retrieve: Lunr, Flash, Fuzz": (
        """
from cherche import retrieve

lunr = retrieve.Lunr(key="id", on=["title", "article"], documents=documents)
flash = retrieve.Flash(key="id", on=["title", "url"])
flash.add(documents=documents)
fuzz = retrieve.Fuzz(key="id", on=["title", "article"], k=10)
fuzz.add(documents=documents)
result = {
    "lunr": lunr(QUERIES[0]), "lunr batch": lunr(QUERIES, k=5),
    "flash": flash(QUERIES[0]), "flash batch": flash(QUERIES, k=5),
    "fuzz": fuzz(QUERIES[0]), "fuzz batch": fuzz(QUERIES),
}
""",
        {"lunr": "ids", "lunr batch": "ids", "flash": "ids", "flash batch": "ids", "fuzz": "ids", "fuzz batch": "ids"},
    ),
    "retrieve: TfIdf, BM25, Encoder, DPR, Embedding with index.Faiss": (
        """
import faiss
from lenlp import sparse
from sentence_transformers import SentenceTransformer
from cherche import index, retrieve

model = SentenceTransformer(MODEL)
tfidf = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=10)
bm25 = retrieve.BM25(key="id", on=["title", "article"], documents=documents, k=10)
vectorizer = sparse.BM25Vectorizer(normalize=True, ngram_range=(3, 5), analyzer="char_wb")
lenlp_bm25 = retrieve.BM25(key="id", on=["title", "article"], documents=documents, count_vectorizer=vectorizer, k=10)
encoder = retrieve.Encoder(key="id", on=["title", "article"], encoder=model.encode, k=10)
encoder.add(documents=documents)
dpr = retrieve.DPR(key="id", on=["title", "article"], encoder=model.encode, query_encoder=model.encode, k=10)
dpr.add(documents=documents)
embedding = retrieve.Embedding(key="id", index=faiss.IndexFlatL2(384), k=10)
embedding.add(documents=documents, embeddings_documents=model.encode([d["title"] for d in documents]))
faiss_index = index.Faiss(key="id")
faiss_index = faiss_index.add(documents=documents, embeddings=model.encode([d.get("article", "") for d in documents]))
result = {
    "tfidf": tfidf(QUERIES), "bm25": bm25(QUERIES), "lenlp bm25": lenlp_bm25(QUERIES),
    "encoder": encoder(QUERIES), "dpr": dpr(QUERIES[0]),
    "embedding": embedding(model.encode(QUERIES)), "index.Faiss": faiss_index(model.encode(QUERIES), k=5),
}
""",
        # Cherche's Encoder and DPR return every document whatever k: ours honour k, a prefix of theirs.
        # TfIdf and BM25 with lenlp's vectorizer are Cherche's; BM25's default (bm25s) is ours.
        {
            "tfidf": "ids",
            "bm25": "shape",
            "lenlp bm25": "ids",
            "encoder": "prefix",
            "dpr": "prefix",
            "embedding": "prefix",
            "index.Faiss": "ids",
        },  # fmt: skip
    ),
    "rank and pipelines, documents missing a field": (
        """
from sentence_transformers import SentenceTransformer
from cherche import rank, retrieve

model = SentenceTransformer(MODEL)
retriever = retrieve.Lunr(key="id", on=["title", "article"], documents=documents)
ranker = rank.Encoder(key="id", on=["title", "article"], encoder=model.encode, k=5)
dpr = rank.DPR(key="id", on=["title", "article"], encoder=model.encode, query_encoder=model.encode, k=5)
dpr.add(documents=documents)
search = retriever + ranker
search.add(documents=documents)
result = {
    "retriever + ranker": search(QUERIES),
    "retriever + ranker + documents": (retriever + ranker + documents)(QUERIES[0]),
    "retriever + dpr": (retriever + dpr)(QUERIES),
}
""",
        {"retriever + ranker": "ids", "retriever + ranker + documents": "equal-ish", "retriever + dpr": "ids"},
    ),
    "compose: |, &, * and a CrossEncoder without key": (
        """
from sentence_transformers import SentenceTransformer
from cherche import rank, retrieve

def cross_encoder(pairs):  # a stand-in for CrossEncoder(...).predict: shared words
    return [len(set(q.split()) & set(t.lower().split())) for q, t in pairs]

model = SentenceTransformer(MODEL)
lunr = retrieve.Lunr(key="id", on=["title", "article"], documents=documents)
fuzz = retrieve.Fuzz(key="id", on=["title", "article"], k=10)
fuzz.add(documents=documents)  # (lunr | fuzz).add(...) fails in Cherche: its Fuzz's `index` is a dict
ranker = rank.Encoder(key="id", on=["title", "article"], encoder=model.encode, k=10)
cross = rank.CrossEncoder(on=["title", "article"], encoder=cross_encoder, k=10)
union = lunr | fuzz
search = lunr + documents + (ranker | cross)
search.add(documents=documents)
result = {
    "union": union(QUERIES), "intersection": (lunr & fuzz)(QUERIES[0]), "vote": (lunr * fuzz)(QUERIES),
    "pipelines union": ((lunr + documents) | (fuzz + documents))(QUERIES[1]),
    "ranker | cross-encoder": search(QUERIES),
}
""",
        {
            "union": "run",
            "intersection": "run",
            "vote": "run",
            "pipelines union": "run",
            "ranker | cross-encoder": "run",
        },
    ),
    "query: Norvig and PRF in front of a retriever": (
        """
from sklearn.feature_extraction.text import TfidfVectorizer
from cherche import query, retrieve

corrector = query.Norvig(on=["title", "article"], lower=True)
corrector.add(documents)
prf = query.PRF(on=["title", "article"], documents=documents, tf=TfidfVectorizer(), nb_docs=3, nb_terms_per_doc=2)
retriever = retrieve.Lunr(key="id", on=["title", "article"], documents=documents)
result = {
    "corrections": corrector(["bordeau wyne", "toulous aircraft", "marseile harbour", "the citi of lyon"]),
    "correction": corrector("bordeau"),
    "norvig + retriever": (corrector + retriever)("bordeau wyne"),
    "prf": prf(QUERIES),
    "prf + retriever": (prf + retriever)(QUERIES),
}
""",
        {
            "corrections": "equal",
            "correction": "equal",
            "norvig + retriever": "run",
            "prf": "run",
            "prf + retriever": "run",
        },
    ),
    "qa: a question-answering model after the documents": (
        """
from cherche import qa, retrieve

def reader(inputs):  # the shapes of transformers' pipeline("question-answering", ...)
    answers = []
    for question, context in zip(inputs["question"], inputs["context"]):
        words = context.split()
        answers.append({"score": sum(w.lower() in question for w in words) / len(words), "start": 0,
                        "end": len(words[0]), "answer": words[0]})
    return answers[0] if len(answers) == 1 else answers

retriever = retrieve.Lunr(key="id", on=["title", "article"], documents=documents)
search = retriever + documents + qa.QA(on=["title", "article"], model=reader, batch_size=8)
result = {"answers": search("what does toulouse build?"), "batch": search(["lyon food", "montreal"])}
""",
        {"answers": "equal", "batch": "equal"},
    ),
    "utils and evaluate": (
        """
from cherche import evaluate, retrieve, utils

retriever = retrieve.Lunr(key="id", on=["title", "article"], documents=documents)
search = retriever + utils.TopK(k=3) + documents
query_answers = [(d["title"] + " " + " ".join(d.get("article", "").split()[:6]), [d]) for d in documents[:40]]
result = {
    "top k": search(QUERIES),
    "batches": list(utils.yield_batch(list(range(7)), batch_size=3, desc="batches", tqdm_bar=False)),
    "evaluation": evaluate.evaluation(search=retriever + documents, query_answers=query_answers, k=10),
}
""",
        {"top k": "equal", "batches": "equal", "evaluation": "equal"},
    ),
    "utils.quantize and data": (
        """
from sentence_transformers import SentenceTransformer
from cherche import data, retrieve, utils

model = utils.quantize(SentenceTransformer(MODEL), engine=ENGINE)
retriever = retrieve.Encoder(key="id", on="title", encoder=model.encode, k=3)
retriever.add(documents=data.load_towns())
result = {"quantized encoder": retriever(QUERIES), "towns": data.load_towns()[:2]}
""",
        {"quantized encoder": "run", "towns": "run"},
    ),
}


@pytest.fixture(scope="module")
def inputs():
    """The names every program finds: the same documents and model for Cherche and for us."""
    documents = data.load_towns()
    for document in documents[5::40]:
        del document["article"]  # documents missing an `on` field, as real corpora have
    import torch

    engine = "qnnpack" if "qnnpack" in torch.backends.quantized.supported_engines else "x86"
    return {"documents": documents, "MODEL": data.minilm_path(), "QUERIES": QUERIES, "ENGINE": engine}


def run(source: str, inputs: dict[str, Any], library: str) -> dict[str, Any]:
    if library == "cherche_faiss":
        source = re.sub(r"^from cherche import", "from cherche_faiss import", source, flags=re.MULTILINE)
        assert "cherche import" not in source.replace("cherche_faiss import", "")
    namespace = {name: (list(map(dict, value)) if name == "documents" else value) for name, value in inputs.items()}
    exec(compile(source, f"<{library} program>", "exec"), namespace)
    return namespace["result"]


def check_cherche_shape(value: Any, name: str) -> None:
    """Hits as Cherche returns them: a list of dicts with "similarity" (or answers with "score"), or a
    list of such lists for a list of queries; strings for corrections; percentages for evaluation."""
    if isinstance(value, dict):
        assert all(isinstance(v, str) and v.endswith("%") for v in value.values()), name
        return
    if isinstance(value, str):
        return
    assert isinstance(value, list), name
    for item in value:
        if isinstance(item, list):
            check_cherche_shape(item, name)
        elif isinstance(item, dict):
            assert "similarity" in item or "score" in item, (name, item)
            assert all(isinstance(item[field], float) for field in ("similarity", "score") if field in item), name
        else:
            assert isinstance(item, (str, int)), (name, item)  # corrections, batches of items


def keys_of(value: Any) -> Any:
    if isinstance(value, list):
        return [keys_of(item) for item in value]
    return value["id"] if isinstance(value, dict) else value


def shape_of(value: Any) -> Any:
    return [shape_of(item) for item in value] if isinstance(value, list) else type(value).__name__


def plain(value: Any) -> Any:
    """numpy scalars as Python numbers (Cherche returns numpy floats in places)."""
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value.item() if hasattr(value, "item") else value


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_cherche_program_runs_with_only_the_import_changed(name, inputs):
    source, _ = PROGRAMS[name]
    result = run(source, inputs, "cherche_faiss")
    assert result
    for entry, value in result.items():
        if entry != "towns":
            check_cherche_shape(value, f"{name}: {entry}")
    if "corrections" in result:
        assert result["corrections"][0] == "bordeaux wine"


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_cherche_program_gives_cherche_outputs(name, inputs):
    pytest.importorskip("cherche")
    source, comparisons = PROGRAMS[name]
    ours, theirs = run(source, inputs, "cherche_faiss"), plain(run(source, inputs, "cherche"))
    for entry, how in comparisons.items():
        if how == "ids":
            assert keys_of(ours[entry]) == keys_of(theirs[entry]), entry
        elif how == "prefix":  # k honoured where Cherche ignored it
            mine, cherche = keys_of(ours[entry]), keys_of(theirs[entry])
            pairs = zip(mine, cherche) if isinstance(mine[0], list) else [(mine, cherche)]
            assert all(a == b[: len(a)] and len(a) == 10 for a, b in pairs), entry
        elif how == "equal":
            assert _same(ours[entry], theirs[entry]), entry
        elif how == "equal-ish":  # same documents and fields; similarities to float32 rounding
            assert keys_of(ours[entry]) == keys_of(theirs[entry]), entry
            assert [sorted(hit) for hit in ours[entry]] == [sorted(hit) for hit in theirs[entry]], entry
        elif how == "shape":
            assert shape_of(ours[entry]) == shape_of(theirs[entry]) or (
                len(ours[entry]) == len(theirs[entry]) and all(isinstance(h, list) for h in ours[entry])
            ), entry


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(ours) == len(theirs) and all(map(_same, ours, theirs))
    if isinstance(ours, dict):
        return (
            isinstance(theirs, dict) and ours.keys() == theirs.keys() and all(_same(ours[k], theirs[k]) for k in ours)
        )
    if isinstance(ours, float):
        return ours == pytest.approx(theirs, rel=1e-5)
    return ours == theirs


def test_query_rewriters_are_applied_where_cherche_dropped_them(inputs):
    """Cherche's pipelines handed a rewriter's output to the next stage as `documents` and searched
    the original query: here `query.Norvig(...) + retriever` searches the corrected one."""
    from cherche_faiss import query, retrieve

    documents = inputs["documents"]
    corrector = query.Norvig(on=["title", "article"]).add(documents)
    retriever = retrieve.Lunr(key="id", on=["title", "article"], documents=documents)
    assert retriever("bordeau wyne") != retriever("bordeaux wine")
    assert (corrector + retriever)("bordeau wyne") == retriever("bordeaux wine")
