"""Extractive question answering over a pipeline's documents, as Cherche's ``qa.QA``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._core.component import Component
from .._core.keywords import check_keywords
from .._core.tags import READER, Tags
from .._core.validation import (
    as_queries,
    check_k,
    check_on,
    check_positive_int,
    document_texts,
    has_text,
    per_query_lists,
)
from ..compose.operators import ComposeMixin
from ..exceptions import InvalidInputError, InvalidTypeError

__all__ = ["QA"]

#: What a document without text answers (the model is not asked: it has nothing to read).
_NO_ANSWER = {"score": 0.0, "start": 0, "end": 0, "answer": ""}


class QA(ComposeMixin, Component):
    """Find the answer to each question in each of its documents; answers best first.

    Goes at the end of a pipeline whose documents carry their text, as in
    Cherche: ``retriever + ranker + documents + qa.QA(...)``. Each hit is the
    document with the reader's answer merged in and the question:
    ``{**document, "answer": str, "score": float, "start": int, "end": int,
    "question": str}`` (``"similarity"`` stays the previous stage's), sorted by
    the answer's ``score``.

    Parameters
    ----------
    on
        Field(s) the answer is looked for in, joined by spaces (a missing field reads as empty).
    model
        A Hugging Face question-answering pipeline (``transformers<5``:
        ``pipeline("question-answering", model="deepset/roberta-base-squad2")``),
        or any callable with its interface: called with ``{"question": [...],
        "context": [...]}``, it returns one dict per pair (a dict alone for
        one pair) holding ``"score"``, ``"start"``, ``"end"`` and ``"answer"``.
        Or the name or path of an extractive QA model (a SQuAD-tuned one such
        as ``"deepset/roberta-base-squad2"``): this library's reader
        (:class:`~cherche_faiss.qa.ExtractiveReader`) loads it with
        ``transformers``, whatever its version (transformers 5 has no
        question-answering pipeline), and a save stores the name.
    batch_size
        (question, document) pairs given to the model per call.
    k
        Default number of answers kept per question (``None``: one per document).

    Examples
    --------
    >>> from cherche_faiss import qa, retrieve
    >>> documents = [
    ...     {"id": 0, "title": "Paris France"},
    ...     {"id": 1, "title": "Madrid Spain"},
    ...     {"id": 2, "title": "Montreal Canada"},
    ... ]
    >>> def reader(inputs):  # a stand-in with the interface of a question-answering pipeline
    ...     answers = [
    ...         {"score": float(c.split()[-1].lower() in q.lower()), "start": 0, "end": len(c.split()[0]),
    ...          "answer": c.split()[0]}
    ...         for q, c in zip(inputs["question"], inputs["context"])
    ...     ]
    ...     return answers[0] if len(answers) == 1 else answers
    >>> search = retrieve.TfIdf(key="id", on="title", documents=documents) + documents + qa.QA(on="title", model=reader)
    >>> [(hit["answer"], hit["score"], hit["id"]) for hit in search("what is the capital city of Canada?")]
    [('Montreal', 1.0, 2), ('Paris', 0.0, 0)]
    """

    #: Keyword arguments a call takes besides its named parameters (none: see ``_core.keywords``).
    _call_keywords: frozenset[str] = frozenset()

    def __cherche_tags__(self) -> Tags:
        return Tags(role=READER, needs_candidates=True)

    def __init__(self, on: Any, model: Any, batch_size: int = 32, k: int | None = None) -> None:
        self.on = check_on(on)
        if not (isinstance(model, str) and model) and not callable(model):
            raise InvalidTypeError(
                f"model must be a question-answering pipeline (a callable) or a model name, got {model!r}."
            )
        self.model = model
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=False)
        self.k = check_k(k)
        self.key: str | None = None  # the pipeline's, to tell bare hits from documents without text
        self._reader: Callable | None = None  # built from the name, on first use

    def _adopt_key(self, key: str) -> None:
        self.key = key

    def _answerer(self) -> Callable:
        if not isinstance(self.model, str):
            return self.model
        if self._reader is None:
            from .reader import ExtractiveReader

            self._reader = ExtractiveReader(self.model)
        return self._reader

    def _context(self, document: Any, number: int) -> str:
        if not isinstance(document, Mapping):
            raise InvalidTypeError(f"document {document!r} of question {number} is not a dict.")
        if not has_text(document, self.key, self.on):
            raise InvalidInputError(
                f"document {document!r} of question {number} has none of the fields {self.on} to read the answer "
                "in. Map hits back to documents first: retriever + documents + qa.QA(...)."
            )
        return document_texts([document], self.on)[0]

    def _answers(self, pairs: list[tuple[str, str]], batch_size: int) -> list[Mapping]:
        answers: list[Mapping] = []
        asked = [(question, context) for question, context in pairs if context.strip()]
        model = self._answerer() if asked else None
        given: list[Any] = []
        for start in range(0, len(asked), batch_size):
            batch = asked[start : start + batch_size]
            output = model({"question": [q for q, _ in batch], "context": [c for _, c in batch]})  # type: ignore[misc]
            output = [output] if isinstance(output, Mapping) else list(output)
            if len(output) != len(batch) or not all(isinstance(a, Mapping) and "score" in a for a in output):
                raise InvalidInputError(
                    f"the QA model answered {len(output)} items for {len(batch)} (question, context) pairs; it "
                    "must return one dict with a 'score' per pair, as a Hugging Face question-answering pipeline."
                )
            given.extend(output)
        answers_iter = iter(given)
        for _, context in pairs:
            answers.append(next(answers_iter) if context.strip() else _NO_ANSWER)
        return answers

    def __call__(
        self, q: Any, documents: Any, batch_size: int | None = None, k: int | None = None, **kwargs: Any
    ) -> list:
        """The answers to ``q`` (one question or a list) in ``documents`` (one list of documents per question)."""
        if kwargs:
            check_keywords(self, kwargs, ("q", "documents", "batch_size", "k"))
        queries, single = as_queries(q)
        candidates = per_query_lists(documents, len(queries), single, "question", "questions", "dicts")
        k = check_k(k) or self.k
        batch_size = check_positive_int(batch_size, "batch_size") or self.batch_size
        pairs = [
            (question, self._context(document, number))
            for number, (question, hits) in enumerate(zip(queries, candidates))
            for document in hits
        ]
        answers = iter(self._answers(pairs, batch_size))
        ranked = []
        for question, hits in zip(queries, candidates):
            merged = [{**document, **next(answers), "question": question} for document in hits]
            merged.sort(key=lambda hit: -float(hit["score"]))  # stable: equal scores keep the documents' order
            ranked.append(merged[:k])
        return ranked[0] if single else ranked

    def _get_state(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None}  # a model loaded from its name is loaded again
