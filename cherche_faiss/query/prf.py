"""Pseudo-relevance feedback: expand a query with the top terms of the documents it matches best."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._core.validation import check_positive_int, keyless_texts
from ..exceptions import IncompatibleStateError, InvalidInputError, NotIndexedError
from ..retrieve._deferred_vectorizer import DeferredTfidfVectorizer
from .base import Query

__all__ = ["PRF"]


def _feature_names(vectorizer: Any) -> list[str]:
    """The term of each column: scikit-learn's ``get_feature_names_out``, or a ``vocabulary_`` /
    ``vocabulary`` mapping of terms to columns (lenlp's vectorizers have only the latter)."""
    names = getattr(vectorizer, "get_feature_names_out", None)
    if callable(names):
        return [str(name) for name in names()]
    for attribute in ("vocabulary_", "vocabulary"):
        vocabulary = getattr(vectorizer, attribute, None)
        if isinstance(vocabulary, Mapping):
            terms = [""] * len(vocabulary)
            for term, column in vocabulary.items():
                terms[int(column)] = str(term)
            return terms
    raise InvalidInputError(
        f"tf ({type(vectorizer).__name__}) gives no names of its columns: it needs get_feature_names_out() "
        "or a vocabulary_ mapping of terms to columns, as scikit-learn's vectorizers have."
    )


class PRF(Query):
    """Pseudo (blind) relevance feedback: add to each query the top terms of its best documents.

    The documents are vectorised with ``tf``; a query's ``nb_docs`` most
    similar documents (cosine similarity) each give their ``nb_terms_per_doc``
    heaviest terms, and those the query lacks are appended to it. Put it in
    front of a retriever: ``query.PRF(...) + retriever``.

    Cherche's ``query.PRF`` was broken: its default ``tf`` is lenlp's
    ``TfidfVectorizer``, which has no ``get_feature_names_out``, so building a
    PRF without ``tf`` raised ``AttributeError`` (and that one default object
    was shared, refitted, by every PRF). Here the default is a new
    scikit-learn ``TfidfVectorizer`` per PRF, and a vectorizer with only a
    vocabulary mapping (lenlp's) works too. Also fixed: documents that share
    no term with the query give no terms (Cherche took them anyway when
    fewer documents matched than ``nb_docs``, and failed when there were
    fewer documents than ``nb_docs``); terms a document does not hold are never
    taken (Cherche filled up ``nb_terms_per_doc`` with arbitrary ones); a term
    is added once, and not when the query already has it in any case; a query
    nothing is added to is returned unchanged (no trailing space).

    Parameters
    ----------
    on
        Field(s) of the documents to learn terms from (a missing field reads as empty).
    documents
        The documents (required, as in Cherche, unless the PRF is being loaded).
    tf
        A fitted-on-``documents`` vectorizer with scikit-learn's API (``fit_transform``,
        ``transform``, ``get_feature_names_out``); default: scikit-learn's
        ``TfidfVectorizer()``.
    nb_docs
        Number of best documents to take terms from.
    nb_terms_per_doc
        Number of terms taken from each of them.

    Examples
    --------
    >>> from cherche_faiss import data, query
    >>> prf = query.PRF(on=["title", "article"], documents=data.load_towns(), nb_docs=2, nb_terms_per_doc=2)
    >>> prf("aircraft")
    'aircraft montreal a220 airport nantes'
    >>> prf(["aircraft", "zzz"])  # nothing matches "zzz": it stays as it is
    ['aircraft montreal a220 airport nantes', 'zzz']
    """

    def __init__(
        self,
        on: Any,
        documents: Sequence[Mapping] | None = None,
        tf: Any = None,
        nb_docs: int = 5,
        nb_terms_per_doc: int = 3,
    ) -> None:
        super().__init__(on=on)
        self.nb_docs = check_positive_int(nb_docs, "nb_docs", allow_none=False)
        self.nb_terms_per_doc = check_positive_int(nb_terms_per_doc, "nb_terms_per_doc", allow_none=False)
        if tf is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            tf = TfidfVectorizer()
        elif isinstance(tf, DeferredTfidfVectorizer):
            tf = tf.build()  # what a save gives back for scikit-learn's TfidfVectorizer: build the real one
        self.tf = tf
        self._matrix: Any = None  # (documents, terms) CSR, as tf gives it
        self._terms: list[str] = []
        if documents is not None:
            self._fit(keyless_texts(documents, self.on))

    def _fit(self, texts: list[str]) -> None:
        import scipy.sparse as sp

        try:
            matrix = self.tf.fit_transform(texts)
        except ValueError as error:
            raise InvalidInputError(f"cannot learn terms from these {len(texts)} documents: {error}.") from None
        self._matrix = sp.csr_matrix(matrix)
        self._terms = _feature_names(self.tf)

    def _repr_extra(self) -> dict[str, Any]:
        return {"documents": 0 if self._matrix is None else self._matrix.shape[0]}

    def _rewrite(self, queries: list[str]) -> list[str]:
        import scipy.sparse as sp
        from sklearn.preprocessing import normalize

        if self._matrix is None:
            raise NotIndexedError("this PRF holds no document: build it with documents=[...].")
        documents = normalize(self._matrix, copy=True)
        similarities = (documents @ normalize(sp.csr_matrix(self.tf.transform(queries))).T).toarray()
        analyzer = self.tf.build_analyzer() if callable(getattr(self.tf, "build_analyzer", None)) else None
        expanded = []
        for column, query in enumerate(queries):
            scores = similarities[:, column]
            best = [row for row in np.argsort(-scores, kind="stable")[: self.nb_docs].tolist() if scores[row] > 0]
            known = set(analyzer(query)) if analyzer is not None else set()
            known.update(query.lower().split())
            added: list[str] = []
            for row in best:
                for term in self._top_terms(row):
                    if term.lower() not in known:
                        known.add(term.lower())
                        added.append(term)
            expanded.append(" ".join([query, *added]) if added else query)
        return expanded

    def _top_terms(self, row: int) -> list[str]:
        """The ``nb_terms_per_doc`` heaviest terms of document ``row`` (ties: first column first)."""
        start, end = self._matrix.indptr[row], self._matrix.indptr[row + 1]
        columns, weights = self._matrix.indices[start:end], self._matrix.data[start:end]
        order = np.lexsort((columns, -weights))[: self.nb_terms_per_doc]
        return [self._terms[columns[i]] for i in order.tolist() if weights[i] > 0]

    def _check_loaded(self) -> None:
        import scipy.sparse as sp

        matrix, terms = self._matrix, self._terms
        if matrix is None:
            return
        if not sp.isspmatrix_csr(matrix) or not isinstance(terms, list) or matrix.shape[1] != len(terms):
            raise IncompatibleStateError("the saved document matrix of this PRF does not fit its terms.")
        try:
            matrix.check_format(full_check=True)
        except ValueError as error:
            raise IncompatibleStateError(f"the saved document matrix of this PRF is damaged ({error}).") from None
