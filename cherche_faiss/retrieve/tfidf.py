"""TF-IDF retriever on character n-grams (scikit-learn), with vectorised top-k."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from .._hits import make_hits
from .._validation import as_documents, document_texts
from ..exceptions import InvalidInputError, NotIndexedError
from .base import Retriever

__all__ = ["TfIdf"]


def default_vectorizer() -> Any:
    """Cherche's default: words' character 3- to 7-grams, lower-cased, L2-normalised rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(lowercase=True, analyzer="char_wb", ngram_range=(3, 7), dtype=np.float32)


# Score matrices up to this many cells are ranked densely, in one vectorised pass.
_DENSE_CELLS = 1 << 24


def top_k_sparse(scores: Any, k: int | None) -> tuple[list[list[int]], list[list[float]]]:
    """Columns and values of the ``k`` largest positive entries of each row of a CSR matrix.

    Ties are broken by column number so that results are deterministic. Small
    batches are ranked as a dense matrix with one ``argpartition`` over all
    rows; larger ones row by row, touching only the non-zero entries.
    """
    n_rows, n_columns = scores.shape
    if n_rows * n_columns <= _DENSE_CELLS:
        return _top_k_dense(scores.toarray(), k)
    rows, values = [], []
    indptr, indices, data = scores.indptr, scores.indices, scores.data
    for row in range(n_rows):
        start, end = indptr[row], indptr[row + 1]
        row_data, row_indices = data[start:end], indices[start:end]
        positive = row_data > 0
        if not positive.all():
            row_data, row_indices = row_data[positive], row_indices[positive]
        if k is not None and len(row_data) > k:
            keep = np.argpartition(-row_data, k - 1)[:k]
            row_data, row_indices = row_data[keep], row_indices[keep]
        order = np.lexsort((row_indices, -row_data))
        rows.append(row_indices[order].tolist())
        values.append(row_data[order].tolist())
    return rows, values


def _top_k_dense(dense: np.ndarray, k: int | None) -> tuple[list[list[int]], list[list[float]]]:
    n_columns = dense.shape[1]
    if k is not None and k < n_columns:
        columns = np.sort(np.argpartition(-dense, k - 1, axis=1)[:, :k], axis=1)
    else:
        columns = np.broadcast_to(np.arange(n_columns), dense.shape)
    values = np.take_along_axis(dense, columns, axis=1)
    # Columns are sorted, so a stable sort on the values breaks ties by column number.
    order = np.argsort(-values, axis=1, kind="stable")
    columns = np.take_along_axis(columns, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    found = (values > 0).sum(axis=1).tolist()
    return (
        [row[:n] for row, n in zip(columns.tolist(), found)],
        [row[:n] for row, n in zip(values.tolist(), found)],
    )


class TfIdf(Retriever):
    """TF-IDF retriever: cosine similarity of character n-gram TF-IDF vectors.

    The vectorizer is fitted on the documents given to the constructor (or on
    the first :meth:`add`); later additions are transformed with that
    vocabulary, as in Cherche. Adding a key again replaces its document.

    Parameters
    ----------
    key
        Field holding each document's unique id.
    on
        Field(s) whose text is matched against the query, joined by spaces.
    documents
        Documents to index right away.
    tfidf
        A scikit-learn ``TfidfVectorizer``; by default character n-grams 3 to 7
        within word boundaries.
    k
        Default number of hits; ``None`` returns every document that shares an
        n-gram with the query.
    batch_size
        Number of queries scored at once.
    fit
        Fit the vectorizer on the first documents; set to False when passing a
        vectorizer that is already fitted.

    Examples
    --------
    >>> from cherche_faiss import retrieve
    >>> documents = [
    ...     {"id": 0, "title": "Paris", "article": "Eiffel tower"},
    ...     {"id": 1, "title": "Montreal", "article": "Montreal is in Canada."},
    ... ]
    >>> retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents)
    >>> [hit["id"] for hit in retriever("canada")]
    [1]
    >>> [[hit["id"] for hit in hits] for hits in retriever(["paris", "montreal"], k=1)]
    [[0], [1]]
    """

    def __init__(
        self,
        key: str,
        on: Any,
        documents: list[Mapping] | None = None,
        tfidf: Any = None,
        k: int | None = None,
        batch_size: int = 1024,
        fit: bool = True,
    ) -> None:
        super().__init__(key=key, on=on, k=k, batch_size=batch_size)
        self.tfidf = tfidf if tfidf is not None else default_vectorizer()
        self.fit = bool(fit)
        self._keys: list[Hashable] = []
        self._rows: dict[Hashable, int] = {}
        self._matrix: Any = None  # CSR (documents, vocabulary), float32
        self._matrix_t: Any = None  # its transpose, cached for searches
        self._fast: tuple | None = None  # see _fast_transform
        if documents is not None:
            self.add(documents)

    def __len__(self) -> int:
        return len(self._keys)

    def _is_fitted(self) -> bool:
        return hasattr(self.tfidf, "vocabulary_")

    def add(self, documents: list[Mapping], batch_size: int | None = None, **kwargs: Any) -> "TfIdf":
        """Index ``documents`` (replacing those whose key is already indexed).

        Returns
        -------
        TfIdf
            ``self``.
        """
        import scipy.sparse as sp

        documents = as_documents(documents, self.key, self.on)
        if not documents:
            return self
        last = {document[self.key]: document for document in documents}
        keys, documents = list(last), list(last.values())
        texts = document_texts(documents, self.on)
        if not self._is_fitted():
            if not self.fit:
                raise NotIndexedError(
                    "fit=False but the vectorizer given is not fitted. Fit it first, or pass fit=True."
                )
            try:
                self.tfidf.fit(texts)
            except ValueError as error:
                raise InvalidInputError(
                    f"cannot fit the TF-IDF vectorizer on these {len(texts)} documents: {error}. "
                    f"Check that the fields {self.on} hold text."
                ) from None
        new_rows = sp.csr_matrix(self.tfidf.transform(texts), dtype=np.float32)
        matrix, old_keys = self._matrix, self._keys
        if matrix is not None and any(key in self._rows for key in keys):
            keep = np.fromiter((key not in last for key in old_keys), dtype=bool, count=len(old_keys))
            matrix = matrix[keep]
            old_keys = [key for key, kept in zip(old_keys, keep) if kept]
        self._matrix = new_rows if matrix is None else sp.vstack([matrix, new_rows], format="csr")
        self._keys = old_keys + keys
        self._rows = {key: row for row, key in enumerate(self._keys)}
        self._matrix_t = None
        self._fast = None
        return self

    def _query_matrix(self, queries: list[str]) -> Any:
        """TF-IDF rows of ``queries``, the same as ``self.tfidf.transform`` gives.

        scikit-learn's ``transform`` validates its input at every call, which
        costs more than the work for a single short query; for the standard
        settings this computes the rows directly (counts, times idf, L2 norm).
        """
        import scipy.sparse as sp

        fast = self._fast_transform()
        if fast is None:
            return sp.csr_matrix(self.tfidf.transform(queries), dtype=np.float32)
        analyzer, vocabulary, idf = fast
        indptr, indices, data = [0], [], []
        for query in queries:
            counts: dict[int, int] = {}
            for gram in analyzer(query):
                column = vocabulary.get(gram)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            columns = np.fromiter(sorted(counts), dtype=np.int32, count=len(counts))
            weights = np.fromiter((counts[c] for c in columns.tolist()), dtype=np.float64, count=len(counts)) * idf[columns]
            norm = np.sqrt(weights @ weights)
            indices.append(columns)
            data.append((weights / norm if norm > 0 else weights).astype(np.float32))
            indptr.append(indptr[-1] + len(columns))
        return sp.csr_matrix(
            (np.concatenate(data), np.concatenate(indices), np.asarray(indptr)),
            shape=(len(queries), len(vocabulary)),
        )

    def _fast_transform(self) -> tuple[Any, dict, np.ndarray] | None:
        """``(analyzer, vocabulary, idf)`` when the direct path matches the vectorizer's settings."""
        if self._fast is not None:
            return self._fast or None
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = self.tfidf
        standard = (
            type(vectorizer) is TfidfVectorizer
            and vectorizer.norm == "l2"
            and vectorizer.use_idf
            and not vectorizer.sublinear_tf
            and not vectorizer.binary
        )
        if standard:
            self._fast = (vectorizer.build_analyzer(), vectorizer.vocabulary_, np.asarray(vectorizer.idf_, dtype=np.float64))
        else:
            self._fast = ()
        return self._fast or None

    def _search(self, queries: list[str], k: int | None) -> list[list[dict]]:
        if self._matrix_t is None:
            self._matrix_t = self._matrix.T.tocsr()
        scores = (self._query_matrix(queries) @ self._matrix_t).tocsr()
        rows, values = top_k_sparse(scores, k)
        keys = self._keys
        return [
            make_hits(self.key, [keys[row] for row in row_ids], similarities)
            for row_ids, similarities in zip(rows, values)
        ]

    def _get_state(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_matrix_t"] = None  # derived; rebuilt on the first search
        state["_rows"] = None
        state["_fast"] = None
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._rows = {key: row for row, key in enumerate(self._keys)}
