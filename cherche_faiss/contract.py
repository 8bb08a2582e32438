"""The contract every retriever, ranker and pipeline keeps, as checks anyone can run.

After scikit-learn's ``estimator_checks``: the library's own contract suite
runs these checks on every component it ships, and a user who writes a
component (or wraps one) runs them on theirs::

    from cherche_faiss.contract import check_component

    check_component(lambda: MyRetriever(key="id", on=["title", "article"], k=3))

Each check builds fresh components with ``make`` and raises
:class:`ContractViolation` (an ``AssertionError``) naming what broke. The
promises checked: ``add`` returns the component; a call before ``add`` fails
clearly (rankers may encode unknown candidates instead); ``repr`` names the
class and its parameters; a batch of queries answers as the same queries one
by one (dense retrievers to float32 rounding), hits are sorted dicts with
Python floats, JSON-serialisable; two pickle round trips and two safe-format
round trips answer identically; ``k`` at call time wins over the
constructor's and must be positive; adding a key again replaces it; hits are
fresh dicts; dense components keep their vectors in a FaissIndex.
"""

from __future__ import annotations

import json
import pickle
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._core.tags import PIPELINE, RANKER, RETRIEVER, tags
from .exceptions import InvalidInputError, InvalidTypeError, NotIndexedError, UnknownKeyError

__all__ = ["ContractViolation", "Case", "CHECKS", "check_component", "DOCUMENTS", "QUERIES"]

#: Documents the checks index by default (``key="id"``, fields ``title`` and ``article``).
DOCUMENTS = [
    {"id": 0, "title": "Paris", "article": "The Eiffel tower stands in Paris, capital of France."},
    {"id": 1, "title": "Montreal", "article": "Montreal is the largest city of Quebec, in Canada."},
    {"id": 2, "title": "Bordeaux", "article": "Bordeaux is famous for its red wine and the Garonne."},
    {"id": 3, "title": "Toulouse", "article": "Toulouse builds aircraft: Airbus is based there."},
    {"id": 4, "title": "Lyon", "article": "Lyon is known for its food and its silk history."},
    {"id": 5, "title": "Rennes", "article": "Rennes is the capital of Brittany, with a metro."},
]
#: Queries the checks ask by default.
QUERIES = ["paris tower", "wine of bordeaux", "capital"]
_TOLERANCE = 1e-6  # a query alone is a matrix-vector product, a batch a matrix product: a few ulps apart


class ContractViolation(AssertionError):
    """A component broke the contract; the message says which promise and how."""


def _require(condition: Any, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


class Case:
    """How the checks use one kind of component.

    Parameters
    ----------
    make
        Builds a fresh, empty component (the checks add the documents themselves).
    documents
        Documents to add (dicts with ``key`` ``"id"``).
    queries
        Query texts.
    vectors
        For components that read vectors instead of texts (``Embedding``):
        ``vectors(texts) -> array``, used for the documents' ``embeddings_documents``
        and for the queries.
    k
        The ``k`` the component was built with (checked against the number of hits).
    """

    def __init__(
        self,
        make: Callable[[], Any],
        documents: Sequence[Mapping] = DOCUMENTS,
        queries: Sequence[str] = QUERIES,
        vectors: Callable[[list[str]], np.ndarray] | None = None,
        k: int = 3,
    ) -> None:
        self.make = make
        self.documents = [dict(document) for document in documents]
        self.queries = list(queries)
        self.vectors = vectors
        self.k = k

    def texts(self, documents: Sequence[Mapping]) -> list[str]:
        return [" ".join(str(value) for name, value in document.items() if name != "id") for document in documents]

    def add(self, component: Any, documents: Sequence[Mapping] | None = None) -> Any:
        documents = list(self.documents if documents is None else documents)
        if self.vectors is not None:
            return component.add(documents, embeddings_documents=self.vectors(self.texts(documents)))
        return component.add(documents)

    def query_inputs(self) -> Any:
        return self.vectors(self.queries) if self.vectors is not None else self.queries

    def call(self, component: Any, q: Any, documents: Sequence[Mapping] | None = None, **options: Any) -> Any:
        """``component(q, ...)``, with candidates for a ranker (all the documents, per query)."""
        if tags(component).role == RANKER:
            candidates = list(self.documents if documents is None else documents)
            single = isinstance(q, str) or (isinstance(q, np.ndarray) and q.ndim == 1)
            return component(q, documents=candidates if single else [candidates] * len(q), **options)
        return component(q, **options)

    def answers(self, component: Any, documents: Sequence[Mapping] | None = None) -> tuple[list, list]:
        """The queries answered as one batch, and one by one."""
        q = self.query_inputs()
        batch = self.call(component, q, documents)
        single = [self.call(component, q[i], documents) for i in range(len(self.queries))]
        return batch, single


def _same_hits(actual: Any, expected: Any, tolerance: float = _TOLERANCE) -> bool:
    if expected and isinstance(expected[0], list):
        return len(actual) == len(expected) and all(_same_hits(a, e, tolerance) for a, e in zip(actual, expected))
    strip = lambda hits: [{k: v for k, v in hit.items() if k != "similarity"} for hit in hits]  # noqa: E731
    return strip(actual) == strip(expected) and all(
        abs(a["similarity"] - e["similarity"]) <= tolerance for a, e in zip(actual, expected)
    )


def _is_dense(component: Any) -> bool:
    from .index.dense import DenseVectors

    return isinstance(component, DenseVectors)


def _float32_similarities(component: Any) -> bool:
    """Whether similarities are float32 vector products: a dense component, or one that declares it
    (``_float32_similarities = True``: a sharded retriever, whose vectors live in its shards)."""
    return _is_dense(component) or bool(getattr(component, "_float32_similarities", False))


# -- the checks ------------------------------------------------------------------------------------
def check_add_returns_self(case: Case) -> None:
    component = case.make()
    _require(case.add(component) is component, f"{type(component).__name__}.add must return the component itself.")


def check_call_before_add(case: Case) -> None:
    component = case.make()
    name = type(component).__name__
    if tags(component).role == RANKER:
        # Rankers have nothing to rank against: candidates must be known or encodable.
        try:
            batch, _ = case.answers(component)
        except UnknownKeyError as error:
            _require(
                "first" in str(error) and ".add(" in str(error),
                f"{name}: an unknown candidate's error must say to add it first with .add(...): {error}",
            )
            return
        _require(len(batch[0]) == min(case.k, len(case.documents)), f"{name} ranked unknown candidates wrongly.")
        if _is_dense(component):
            _require(len(component) == len(case.documents), f"{name} must keep the candidates it encoded.")
        return
    try:
        case.answers(component)
    except NotIndexedError as error:
        _require(".add(" in str(error), f"{name}: a call before add must say to call .add(...): {error}")
        return
    raise ContractViolation(f"{name} answered before any document was added; it must raise NotIndexedError.")


def check_repr(case: Case) -> None:
    component = case.add(case.make())
    text = repr(component)
    name = type(component).__name__
    _require(text.startswith(f"{name}("), f"repr of {name} must start with its class name, got {text[:80]!r}.")
    if tags(component).role != PIPELINE:
        for parameter in component.get_params():
            if parameter not in ("documents", "embeddings_documents", "models"):  # models: nested lines
                _require(
                    f"{parameter}=" in text, f"repr of {name} must show its parameter {parameter!r}: {text[:200]!r}."
                )


def check_answers(case: Case) -> None:
    component = case.add(case.make())
    name = type(component).__name__
    batch, single = case.answers(component)
    if tags(component).role == RETRIEVER and _float32_similarities(component):
        _require(
            _same_hits(single, batch), f"{name}: a batch must answer as its queries one by one (float32 rounding)."
        )
    else:
        _require(batch == single, f"{name}: a batch must answer exactly as its queries one by one.")
    _require(
        len(batch) == len(case.queries), f"{name} returned {len(batch)} lists of hits for {len(case.queries)} queries."
    )
    keys = {document["id"] for document in case.documents}
    for hits in batch:
        _require(0 < len(hits) <= case.k, f"{name} returned {len(hits)} hits with k={case.k}.")
        scores = [hit["similarity"] for hit in hits]
        _require(scores == sorted(scores, reverse=True), f"{name}: hits must be sorted best first, got {scores}.")
        _require(all(type(score) is float for score in scores), f"{name}: similarities must be Python floats.")
        _require(all(hit["id"] in keys for hit in hits), f"{name} returned a key that was never added.")
    try:
        json.dumps(batch)
    except (TypeError, ValueError) as error:
        raise ContractViolation(f"{name}'s hits are not JSON-serialisable: {error}") from None


def check_pickle_round_trips(case: Case) -> None:
    component = case.add(case.make())
    expected = case.answers(component)
    once = pickle.loads(pickle.dumps(component))
    twice = pickle.loads(pickle.dumps(once, protocol=5))
    name = type(component).__name__
    _require(case.answers(once) == expected, f"{name} answers differently after a pickle round trip.")
    _require(case.answers(twice) == expected, f"{name} answers differently after two pickle round trips.")
    _require(repr(twice) == repr(component), f"{name}'s repr changes through pickling.")


def check_call_time_k(case: Case) -> None:
    component = case.add(case.make())
    q = case.query_inputs()[2] if case.vectors is not None else "capital of Paris, Lyon and Bordeaux"
    name = type(component).__name__
    _require(len(case.call(component, q, k=1)) == 1, f"{name}: k given to the call must win over the constructor's.")
    _require(len(case.call(component, q)) == case.k, f"{name}: without k at call time, the constructor's k applies.")


def check_upserts(case: Case) -> None:
    component = case.add(case.make())
    case.add(component, case.documents[:2])
    name = type(component).__name__
    if tags(component).role != PIPELINE:
        _require(
            len(component) == len(case.documents), f"{name}: adding a key again must replace it, not duplicate it."
        )
    q = case.query_inputs()[0] if case.vectors is not None else "paris tower"
    keys = [hit["id"] for hit in case.call(component, q, k=10)]
    _require(len(keys) == len(set(keys)), f"{name} returned the same key twice after an upsert: {keys}.")


def check_fresh_hits(case: Case) -> None:
    component = case.add(case.make())
    q = case.query_inputs()[0] if case.vectors is not None else "paris tower"
    first = case.call(component, q)
    first[0]["similarity"] = -1.0
    name = type(component).__name__
    _require(
        case.call(component, q)[0]["similarity"] != -1.0,
        f"{name} hands out hits it keeps (mutating one changed the next answer).",
    )
    _require(
        all("similarity" not in document for document in case.documents), f"{name} mutated the documents it was given."
    )


def check_k_must_be_positive(case: Case) -> None:
    component = case.add(case.make())
    q = case.query_inputs()[0] if case.vectors is not None else "paris"
    try:
        case.call(component, q, k=0)
    except InvalidInputError as error:
        _require("k must be a positive integer" in str(error), f"k=0 must be refused clearly: {error}")
        return
    raise ContractViolation(f"{type(component).__name__} accepted k=0.")


def check_vectors_in_faiss(case: Case) -> None:
    """Promise 2: dense components keep embeddings in a FaissIndex, not in Python dicts."""
    from .index import FaissIndex

    component = case.add(case.make())
    for stage in getattr(component, "models", [component]):
        for value in vars(stage).values():
            _require(
                not (isinstance(value, dict) and value and isinstance(next(iter(value.values())), np.ndarray)),
                f"{type(stage).__name__} keeps vectors in a dict; they belong in a FaissIndex.",
            )
        if _is_dense(stage):
            _require(
                isinstance(stage.index, FaissIndex) and len(stage.index) == len(case.documents),
                f"{type(stage).__name__} must hold one vector per document in its FaissIndex.",
            )


def check_safe_save_round_trips(case: Case) -> None:
    """cherche_faiss.save / load: identical answers and repr, twice, and the loaded copy keeps learning."""
    from .persist import load, save

    first, rest = case.documents[:4], case.documents[4:]
    component = case.add(case.make(), first)
    name = type(component).__name__
    with tempfile.TemporaryDirectory() as folder:
        try:
            saved = save(component, Path(folder) / "once")
        except InvalidTypeError as error:
            # Plain Python callables are refused: the safe format never stores code. Nothing is written.
            _require("Python callable" in str(error), f"{name} cannot be saved: {error}")
            _require(not list(Path(folder).iterdir()), f"a refused save of {name} left files behind.")
            return
        expected = case.answers(component, first)
        once = load(saved)
        twice = load(save(once, Path(folder) / "twice"))
        _require(case.answers(once, first) == expected, f"{name} answers differently after a safe-format round trip.")
        _require(
            case.answers(twice, first) == expected, f"{name} answers differently after two safe-format round trips."
        )
        _require(repr(twice) == repr(component), f"{name}'s repr changes through the safe format.")
        # Adding the other documents to the loaded copy gives what adding them to the original gives.
        case.add(component, rest)
        case.add(twice, rest)
        _require(
            case.answers(twice) == case.answers(component), f"a loaded {name} learns differently from the original."
        )


#: Every check, by name.
CHECKS: dict[str, Callable[[Case], None]] = {
    "add_returns_self": check_add_returns_self,
    "call_before_add": check_call_before_add,
    "repr": check_repr,
    "answers": check_answers,
    "pickle_round_trips": check_pickle_round_trips,
    "call_time_k": check_call_time_k,
    "upserts": check_upserts,
    "fresh_hits": check_fresh_hits,
    "k_must_be_positive": check_k_must_be_positive,
    "vectors_in_faiss": check_vectors_in_faiss,
    "safe_save_round_trips": check_safe_save_round_trips,
}


def check_component(make: Callable[[], Any] | Case, **case: Any) -> None:
    """Run every check on the components ``make()`` builds.

    Parameters
    ----------
    make
        Builds a fresh, empty component with ``k=3`` and ``key="id"``, reading the
        fields ``title`` and ``article`` (or a ready :class:`Case`).
    **case
        Passed to :class:`Case`: ``documents``, ``queries``, ``vectors``, ``k``.

    Raises
    ------
    ContractViolation
        The first promise broken, by name.

    Examples
    --------
    >>> from cherche_faiss import retrieve
    >>> check_component(lambda: retrieve.TfIdf(key="id", on=["title", "article"], k=3))
    """
    case_ = make if isinstance(make, Case) else Case(make, **case)
    for name, check in CHECKS.items():
        try:
            check(case_)
        except ContractViolation as error:
            raise ContractViolation(f"{name}: {error}") from None
