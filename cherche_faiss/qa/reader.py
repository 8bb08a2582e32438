"""An extractive reader with the interface of Hugging Face's question-answering pipeline.

transformers 5 removed that pipeline, which Cherche's ``qa.QA`` examples build;
this reader loads the same models (``AutoModelForQuestionAnswering``: any
SQuAD-tuned checkpoint) with any transformers version and answers the way the
pipeline does: each context is cut into overlapping windows, and the answer is
the span of context tokens with the highest start-probability times
end-probability, at most ``max_answer_len`` tokens long.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._core.optional import require
from ..exceptions import InvalidInputError

__all__ = ["ExtractiveReader"]


def _softmax(logits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Probabilities over the tokens where ``keep`` is true (0 elsewhere)."""
    masked = np.where(keep, logits, -np.inf)
    exp = np.exp(masked - masked.max())
    return exp / exp.sum()


class ExtractiveReader:
    """Answer questions by extracting a span of their context, with a question-answering model.

    Needs ``transformers`` and ``torch`` (``pip install cherche-faiss[qa]``);
    :class:`~cherche_faiss.qa.QA` builds one when given a model name.

    Parameters
    ----------
    model
        Name or path of an extractive question-answering model, e.g.
        ``"deepset/roberta-base-squad2"`` or ``"distilbert-base-cased-distilled-squad"``.
    max_answer_len
        Longest answer, in tokens.
    max_seq_len
        Tokens per window (question included).
    doc_stride
        Tokens shared by consecutive windows of a long context.
    device
        Where the model runs (``"cpu"``, ``"cuda"`` ...).
    """

    def __init__(
        self,
        model: str,
        max_answer_len: int = 15,
        max_seq_len: int = 384,
        doc_stride: int = 128,
        device: str = "cpu",
    ) -> None:
        transformers = require("transformers", "qa.QA with a model name")
        self.torch = require("torch", "qa.QA with a model name")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        self.model = transformers.AutoModelForQuestionAnswering.from_pretrained(model).to(device).eval()
        self.device = device
        self.max_answer_len = max_answer_len
        self.max_seq_len = max_seq_len
        self.doc_stride = doc_stride

    def __call__(self, inputs: Mapping | None = None, **kwargs: Any) -> dict | list[dict]:
        """Answer ``{"question": [...], "context": [...]}`` (or ``question=..., context=...``): one dict
        per pair, ``{"score", "start", "end", "answer"}``, or a dict alone for one pair."""
        given = dict(inputs or {}, **kwargs)
        questions, contexts = given.get("question"), given.get("context")
        single = isinstance(questions, str)
        questions = [questions] if single else questions
        contexts = [contexts] if isinstance(contexts, str) else contexts
        if not isinstance(questions, list) or not isinstance(contexts, list) or len(questions) != len(contexts):
            raise InvalidInputError("pass question and context as two strings or two lists of the same length.")
        answers = self._answer(questions, contexts)
        return answers[0] if single else answers

    def _answer(self, questions: list[str], contexts: list[str]) -> list[dict]:
        encoded = self.tokenizer(
            questions,
            contexts,
            truncation="only_second",
            max_length=self.max_seq_len,
            stride=self.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=True,
            return_tensors="pt",
        )
        pair_of = encoded.pop("overflow_to_sample_mapping").tolist()
        offsets = encoded.pop("offset_mapping").tolist()
        with self.torch.inference_mode():
            output = self.model(**{name: tensor.to(self.device) for name, tensor in encoded.items()})
        starts = output.start_logits.float().cpu().numpy()
        ends = output.end_logits.float().cpu().numpy()
        best: list[tuple[float, int, int] | None] = [None] * len(questions)
        for window, pair in enumerate(pair_of):
            in_context = np.array([sequence == 1 for sequence in encoded.sequence_ids(window)])
            if not in_context.any():
                continue
            scores = np.outer(_softmax(starts[window], in_context), _softmax(ends[window], in_context))
            scores = np.tril(np.triu(scores), self.max_answer_len - 1)  # start <= end < start + max_answer_len
            start, end = np.unravel_index(int(np.argmax(scores)), scores.shape)
            score = float(scores[start, end])
            if best[pair] is None or score > best[pair][0]:
                best[pair] = (score, offsets[window][start][0], offsets[window][end][1])
        answers = []
        for context, found in zip(contexts, best):
            score, first, last = found if found is not None else (0.0, 0, 0)
            answers.append({"score": score, "start": first, "end": last, "answer": context[first:last]})
        return answers
