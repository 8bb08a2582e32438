"""Pipelines: a retriever (or documents given at call time) followed by rankers,
optionally ending with a mapping of keys back to whole documents."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from .._core.candidates import Candidates, answers_candidates
from .._core.component import Component
from .._core.keywords import call_keywords, check_keywords, keywords_for
from .._core.tags import DOCUMENTS, PIPELINE, QUERY, RETRIEVER, Tags, tags
from .._core.validation import as_documents, check_k
from ..exceptions import IncompatibleStateError, InvalidInputError, InvalidTypeError, UnknownKeyError
from .keys import give_key
from .operators import ComposeMixin, add_once, needs_documents, register

__all__ = ["Pipeline", "DocumentMap"]


def _pipeline_key(stages: list[Any]) -> str:
    for stage in reversed(stages):
        key = getattr(stage, "key", None)
        if isinstance(key, str):
            return key
    raise InvalidInputError(
        "cannot map documents: no stage of this pipeline has a key field. Add documents after a "
        "retriever or ranker built with key=..."
    )


def _leading_rewriters(stages: list[Any]) -> int:
    """The number of query rewriters (``query.Norvig``, ``query.PRF``) at the head of ``stages``."""
    count = 0
    while count < len(stages) and tags(stages[count]).role == QUERY:
        count += 1
    return count


def _head_position(stages: list[Any]) -> int:
    """The position of the stage that selects candidates: the first after the query rewriters."""
    return min(_leading_rewriters(stages), len(stages) - 1)


def _stage_keywords(stages: list[Any], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The keyword arguments each stage gets: those it takes, ``filter`` only to the stage that selects
    candidates (the retriever at the head, or the first ranker of a pipeline given documents)."""
    if not kwargs:
        return [{}] * len(stages)
    head = _head_position(stages)
    others = {name: value for name, value in kwargs.items() if name != "filter"}
    return [keywords_for(stage, kwargs if position == head else others) for position, stage in enumerate(stages)]


def _is_batch(results: Any) -> bool:
    return bool(results) and isinstance(results[0], list)


def _candidates_stage(stage: Any, found: Candidates | None, field: str, documents: Any) -> bool:
    """Whether ``stage`` is called on candidates as arrays: it answers them and either finds its own
    (a retriever at the head, no ``documents=`` given) or ranks the arrays handed over, whose hits
    would carry its key field (a ranker of another key field is called with hits, and says why not)."""
    if documents is not None or not answers_candidates(stage):
        return False
    if not needs_documents(stage):
        return found is None
    return found is not None and getattr(stage, "key", None) == field


class DocumentMap(Component):
    """Map hits back to whole documents: ``{**document, key: ..., "similarity": ...}``.

    Built by ``pipeline + documents``; :meth:`add` (called by
    ``Pipeline.add``) keeps it in step with the indexed documents.
    """

    def __cherche_tags__(self) -> Tags:
        return Tags(role=DOCUMENTS)

    def __init__(self, key: str, documents: list[Mapping] | None = None) -> None:
        self.key = key
        self._documents: dict[Hashable, Mapping] = {}
        if documents is not None:
            self.add(documents)

    def add(self, documents: list[Mapping], **kwargs: Any) -> DocumentMap:
        """Add or replace documents (by key)."""
        documents = as_documents(documents, self.key)
        self._documents.update((document[self.key], document) for document in documents)
        return self

    def __len__(self) -> int:
        return len(self._documents)

    def _repr_extra(self) -> dict[str, Any]:
        return {"documents": len(self)}

    def _save_state(self) -> dict[str, Any]:
        # The documents as a list (a JSONL file in a save); each holds its key.
        return {"key": self.key, "_documents": list(self._documents.values())}

    def _load_state(self, state: dict[str, Any], context: Any = None) -> None:
        documents = state.get("_documents")
        if not isinstance(documents, list) or not all(
            isinstance(document, Mapping) and self.key in document for document in documents
        ):
            raise IncompatibleStateError(
                f"the saved documents of this DocumentMap are not a list of dicts holding the key {self.key!r}."
            )
        self._documents = {}
        self.add(documents)

    def _map(self, hits: list[Mapping]) -> list[dict]:
        mapped = []
        for hit in hits:
            document = self._documents.get(hit[self.key])
            if document is None:
                raise UnknownKeyError(
                    f"hit with {self.key}={hit[self.key]!r} has no document in this pipeline's "
                    "document mapping. Add the document with pipeline.add(documents=[...]) so that "
                    "every stage and the mapping know it."
                )
            mapped.append({**document, self.key: hit[self.key], "similarity": hit["similarity"]})
        return mapped

    def __call__(self, results: list) -> list:
        if _is_batch(results):
            return [self._map(hits) for hits in results]
        return self._map(results)

    def _map_candidates(self, candidates: Candidates, k: int | None) -> list[list[dict]]:
        """:meth:`__call__` on :class:`Candidates`, the documents of the first ``k`` of each query only
        (every candidate is still checked, so that a missing document raises as it would)."""
        documents, key = self._documents, self.key
        mapped = []
        for rows, scores in zip(candidates.rows, candidates.scores):
            keys = candidates.space.keys_at(rows)
            found: list[Any] = [documents.get(key_) for key_ in keys]
            if None in found:
                self._map([{key: key_, "similarity": None} for key_ in keys])  # raises for the first missing one
            if k is not None:
                keys, found = keys[:k], found[:k]
            mapped.append(
                [
                    {**document, key: key_, "similarity": score}
                    for document, key_, score in zip(found, keys, scores[: len(keys)].tolist())
                ]
            )
        return mapped


class Pipeline(ComposeMixin, Component):
    """Stages run left to right: ``retriever + ranker + ranker + documents``.

    Each stage keeps its own ``k``; the ``k`` given when calling the pipeline
    limits only the final output. Hits are never modified in place.

    Examples
    --------
    >>> from cherche_faiss import retrieve, rank
    >>> from cherche_faiss.encoders import HashingEncoder
    >>> documents = [
    ...     {"id": 0, "title": "Paris", "article": "The Eiffel tower is in Paris."},
    ...     {"id": 1, "title": "Bordeaux", "article": "Bordeaux is a wine city."},
    ...     {"id": 2, "title": "Lyon", "article": "Lyon is known for its food."},
    ... ]
    >>> retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=3)
    >>> ranker = rank.Encoder(key="id", on=["title", "article"], encoder=HashingEncoder(), k=2)
    >>> search = retriever + ranker + documents
    >>> search = search.add(documents)
    >>> [hit["title"] for hit in search("wine in bordeaux")]
    ['Bordeaux', 'Paris']
    """

    models: list[Any]

    def __init__(self, models: list[Any]) -> None:
        if not isinstance(models, (list, tuple)) or not models:
            raise InvalidInputError(
                f"a pipeline needs a non-empty list of models, got {models!r}. Build one with retriever + ranker."
            )
        stages: list[Any] = []
        for model in models:
            if isinstance(model, Pipeline):
                stages.extend(model.models)
            elif isinstance(model, (dict, list)):
                documents = list(model.values()) if isinstance(model, dict) else model
                stages.append(DocumentMap(key=_pipeline_key(stages), documents=documents))
            elif callable(model):
                stages.append(model)
            else:
                raise InvalidTypeError(
                    f"pipeline stage {model!r} ({type(model).__name__}) is not a retriever, a "
                    "ranker or a list of documents."
                )
        rewriters = _leading_rewriters(stages)  # query.Norvig + retriever: the queries are rewritten first
        if len(stages) > rewriters and tags(stages[rewriters]).role == DOCUMENTS:
            raise InvalidInputError(
                "a pipeline cannot start with a document mapping: it maps the hits of the stage before "
                "it. Build it as retriever + documents (or ranker + documents)."
            )
        for position, stage in enumerate(stages):
            if tags(stage).role == RETRIEVER and position != rewriters:
                raise InvalidInputError(
                    f"{type(stage).__name__} retriever at position {position}: a retriever can only "
                    "start a pipeline (it ignores its input). Combine retrievers with | or &, or "
                    "put the retriever first."
                )
            if tags(stage).role == QUERY and position >= rewriters:
                raise InvalidInputError(
                    f"{type(stage).__name__} at position {position} rewrites queries: put it at the head of "
                    "the pipeline (query.Norvig(...) + retriever + ranker)."
                )
        if any(isinstance(getattr(stage, "key", None), str) for stage in stages):
            give_key(stages, _pipeline_key(stages))  # a cross-encoder without key takes the pipeline's
        self.models = stages

    def _stages(self) -> list[Any]:
        return list(self.models)

    def __cherche_tags__(self) -> Tags:
        first = self.models[min(_leading_rewriters(self.models), len(self.models) - 1)]
        return Tags(role=PIPELINE, needs_candidates=needs_documents(first))

    @property
    def key(self) -> str:
        """The key field of the pipeline's documents."""
        return _pipeline_key(self.models)

    def add(self, documents: list[Mapping], **kwargs: Any) -> Pipeline:
        """Add ``documents`` to every stage that indexes documents, each once."""
        add_once(self.models, documents, **kwargs)
        return self

    def __call__(
        self,
        q: Any,
        k: int | None = None,
        batch_size: int | None = None,
        documents: list | None = None,
        **kwargs: Any,
    ) -> list:
        """Run the stages on ``q`` (a string or a list of strings).

        Parameters
        ----------
        q
            One query or a list of queries.
        k
            Number of hits of the final output (each stage keeps its own ``k``).
        batch_size
            Passed to every stage.
        documents
            Candidates for a pipeline that starts with a ranker.
        """
        if kwargs:
            check_keywords(self, kwargs, ("q", "k", "batch_size", "documents"))
        k = check_k(k)
        per_stage = _stage_keywords(self.models, kwargs)
        results: Any = documents  # then what each stage returned (any callable can be a stage)
        # While the stages answer candidates (see _candidates_stage), hits travel as arrays: `found`
        # (Candidates), `field` (the key field of their hits) and `single` stand for `results`.
        found: Candidates | None = None
        field, single, head = "", False, True  # head: no stage but query rewriters has run yet
        last = len(self.models) - 1
        for position, stage in enumerate(self.models):
            if tags(stage).role == QUERY:
                q = stage(q)  # the next stages search the rewritten queries
                continue
            if found is not None and tags(stage).role == DOCUMENTS and getattr(stage, "key", None) == field:
                mapped = stage._map_candidates(found, k if position == last else None)
                results, found = (mapped[0] if single else mapped), None
                continue
            stage_kwargs = per_stage[position]
            if _candidates_stage(stage, found, field, documents if head else None):
                found, single = stage._call_candidates(q, None, batch_size, found, **stage_kwargs)
                field, head = (stage.key if head else field), False
                continue
            head = False
            if found is not None:  # this stage takes hits: build them
                hits = found.hits(field)
                results, found = (hits[0] if single else hits), None
            if tags(stage).role == DOCUMENTS:
                results = stage(results)
            elif not needs_documents(stage):
                results = stage(q, batch_size=batch_size, **stage_kwargs)
            else:
                if results is None:
                    raise InvalidInputError(
                        f"this pipeline starts with {type(stage).__name__}, which ranks candidates: "
                        "pass them with documents=[...] (one list per query for a list of queries)."
                    )
                results = stage(q, documents=results, batch_size=batch_size, **stage_kwargs)
        if found is not None:  # hit dicts built once, for the final k only
            hits = found.hits(field, k)
            return hits[0] if single else hits
        if k is not None:
            results = [hits[:k] for hits in results] if _is_batch(results) else results[:k]
        return results

    def _answers_candidates(self) -> bool:
        """Whether the whole pipeline can answer :class:`Candidates` (inside a fusion): every stage can,
        and they share one key field (with another, a ranker is called with hits, and says why not)."""
        fields = {getattr(stage, "key", None) for stage in self.models}
        return len(fields) == 1 and all(answers_candidates(stage) for stage in self.models)

    def _call_candidates(
        self, q: Any, k: int | None, batch_size: int | None, candidates: Candidates | None, **kwargs: Any
    ) -> tuple[Candidates, bool]:
        found, single = candidates, False
        for stage, stage_kwargs in zip(self.models, _stage_keywords(self.models, kwargs)):
            found, single = stage._call_candidates(q, None, batch_size, found, **stage_kwargs)
        if found is None:  # pragma: no cover - a pipeline has a stage
            raise InvalidInputError("an empty pipeline answers nothing.")
        return found.head(check_k(k)), single

    def _accepted_keywords(self) -> frozenset[str] | None:
        """The keyword arguments some stage takes (``filter``: the stage that selects candidates must take
        it, since the others never get it); None when a stage takes any."""
        head = _head_position(self.models)
        accepted: set[str] = set()
        for position, stage in enumerate(self.models):
            if tags(stage).role == DOCUMENTS:
                continue
            keywords = call_keywords(stage)
            if keywords is None:
                return None
            accepted |= keywords if position == head else keywords - {"filter"}
        return frozenset(accepted)

    def _repr_extra(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return "Pipeline(\n" + "".join(f"  {stage!r},\n" for stage in self.models) + ")"


def _join(left: Any, right: Any) -> Pipeline:
    """``left + right``: the stages of both, or ``left``'s stages and a mapping to the documents ``right``."""
    if isinstance(right, list):
        return Pipeline([*left._stages(), DocumentMap(key=_pipeline_key(left._stages()), documents=right)])
    return Pipeline([*left._stages(), *(right._stages() if isinstance(right, ComposeMixin) else [right])])


register("+", _join)
