"""TF-IDF retriever on character n-grams (Cherche's by default, or scikit-learn's), with vectorised top-k."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .._core.candidates import Candidates, KeyList
from .._core.validation import as_documents, document_texts
from ..exceptions import IncompatibleStateError, InvalidInputError, NotIndexedError
from ._compiled_analysis import PackedVocabulary
from ._deferred_vectorizer import DeferredTfidfVectorizer, direct_query_plan, is_fitted, vocabulary_of
from ._lenlp_convert import from_lenlp
from ._sparse import Postings, Queries, accelerated, concatenate, query_work, search, top_k_dense
from ._tfidf_analyzers import WordBoundedAnalyzer
from .base import ListedKeys, Retriever
from .vectorizer import NgramVectorizer

__all__ = ["TfIdf", "top_k_dense"]


def default_vectorizer() -> NgramVectorizer:
    """Cherche's default: lenlp-normalised texts' character 3- to 7-grams, L2-normalised TF-IDF rows."""
    return NgramVectorizer(analyzer="char_wb", ngram_range=(3, 7), normalize=True, weighting="tfidf")


def sklearn_vectorizer() -> Any:
    """The default before Cherche's: scikit-learn's ``char_wb`` 3- to 7-grams (each word padded with
    spaces), lower-cased, L2-normalised TF-IDF rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(lowercase=True, analyzer="char_wb", ngram_range=(3, 7), dtype=np.float32)


# A query whose terms' posting lists hold up to this many entries in all is scored in float64, a
# longer one in float32 (see _sparse). Decided per query, so a query scores the same alone or in a batch.
_BINCOUNT_POSTINGS = 1 << 15


class TfIdf(ListedKeys, Retriever):
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
        The vectorizer: by default Cherche's (lenlp's ``TfidfVectorizer(normalize=True,
        ngram_range=(3, 7), analyzer="char_wb")``, as :class:`NgramVectorizer`: texts
        transliterated to ASCII, lower-cased, without punctuation, then every 3- to
        7-character window of the whole text). A lenlp vectorizer (``TfidfVectorizer``,
        ``BM25Vectorizer``, ``CountVectorizer``) is read into an equal
        :class:`NgramVectorizer`; a scikit-learn ``TfidfVectorizer`` is used as it is
        (:func:`sklearn_vectorizer`, the default before, pads each word with spaces).
    k
        Default number of hits; ``None`` returns every document that shares an
        n-gram with the query.
    batch_size
        Number of queries scored at once.
    fit
        Fit the vectorizer on the first documents; set to False when passing a
        vectorizer that is already fitted.

    Notes
    -----
    A retriever loaded by :func:`cherche_faiss.load` answers queries without
    importing scikit-learn: :class:`NgramVectorizer` never needs it, and a
    scikit-learn vectorizer with the standard settings (built-in analyzers
    without stop words, L2-normalised counts times idf) is rebuilt from the
    save only when first needed (:attr:`tfidf`, ``repr``, pickling, :meth:`add`).

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

    _arrays = True

    def __init__(
        self,
        key: str,
        on: Any,
        documents: Sequence[Mapping] | None = None,
        tfidf: Any = None,
        k: int | None = None,
        batch_size: int = 1024,
        fit: bool = True,
        filter_fields: Any = None,
    ) -> None:
        super().__init__(key=key, on=on, k=k, batch_size=batch_size, filter_fields=filter_fields)
        if tfidf is None:
            tfidf = default_vectorizer()
        else:  # lenlp's vectorizers, as Cherche users pass them: read into an equal NgramVectorizer
            tfidf = from_lenlp(tfidf, fitted=not fit) or tfidf
        # Set directly (not through the property) to keep the attributes in their saved order.
        self._tfidf = tfidf
        self.fit = bool(fit)
        self._keys: list[Hashable] = []
        self._rows: dict[Hashable, int] = {}
        self._matrix: Any = None  # CSR (documents, vocabulary), float32
        self._matrix_t: Any = None  # its transpose, cached for searches
        self._postings: Postings | None = None  # the transpose's posting lists, cached for searches
        self._space: KeyList | None = None  # _keys as the key space of candidates, see _key_list
        self._fast: tuple | None = None  # see _fast_transform
        self._packed: PackedVocabulary | bool | None = None  # see _packed_vocabulary
        if documents is not None:
            self.add(documents)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def tfidf(self) -> Any:
        """The vectorizer (scikit-learn's ``TfidfVectorizer`` is rebuilt from a save on first access)."""
        if isinstance(self._tfidf, DeferredTfidfVectorizer):
            # The same vocabulary and idf: the direct query path cached in _fast stays valid.
            self._tfidf = self._tfidf.build()
        return self._tfidf

    @tfidf.setter
    def tfidf(self, vectorizer: Any) -> None:
        self._tfidf = vectorizer
        self._fast = self._packed = None

    def _is_fitted(self) -> bool:
        vectorizer = self._tfidf
        return vectorizer.fitted if isinstance(vectorizer, NgramVectorizer) else is_fitted(vectorizer)

    def _transform(self, texts: list[str]) -> Any:
        """The rows of ``texts``, the vectorizer fitted on them first when it is not yet."""
        vectorizer = self._tfidf
        fitting = not self._is_fitted()
        if fitting and not self.fit:
            raise NotIndexedError("fit=False but the vectorizer given is not fitted. Fit it first, or pass fit=True.")
        try:
            if isinstance(vectorizer, NgramVectorizer):
                return vectorizer.fit_transform(texts) if fitting else vectorizer.transform(texts)
            if fitting:
                self.tfidf.fit(texts)
        except ValueError as error:  # InvalidInputError included
            raise InvalidInputError(
                f"cannot fit the TF-IDF vectorizer on these {len(texts)} documents: {str(error).rstrip('.')}. "
                f"Check that the fields {self.on} hold text."
            ) from None
        return self.tfidf.transform(texts)

    def add(self, documents: Sequence[Mapping], batch_size: int | None = None, **kwargs: Any) -> TfIdf:
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
        # on=None passes check_component and then fails here (TypeError); rejecting it earlier changes behaviour.
        texts = document_texts(documents, self.on)  # type: ignore[arg-type]
        new_rows = sp.csr_matrix(self._transform(texts), dtype=np.float32)
        matrix, old_keys = self._matrix, self._keys
        if matrix is not None and any(key in self._rows for key in keys):
            keep = np.fromiter((key not in last for key in old_keys), dtype=bool, count=len(old_keys))
            matrix = matrix[keep]
            old_keys = [key for key, kept in zip(old_keys, keep) if kept]
        self._matrix = new_rows if matrix is None else sp.vstack([matrix, new_rows], format="csr")
        self._keys = old_keys + keys
        self._rows = {key: row for row, key in enumerate(self._keys)}
        self._matrix_t = None
        self._postings = None
        self._fast = self._packed = None
        self._keyed_columns().upsert(documents, self.key)
        return self

    def _query_terms(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """Columns (in order of first appearance) and L2-normalised TF-IDF weights of ``query``,
        as ``self.tfidf.transform`` computes them."""
        return self._analyse([query])[0]

    def _analyse(self, queries: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`_query_terms` of each query.

        :class:`NgramVectorizer` analyses the whole batch with numpy. scikit-learn's ``transform``
        validates its input at every call, which costs more than the work for a few short queries;
        for the standard settings this computes each row directly: counts, times idf, L2 norm. With
        ``char_wb`` n-grams the n-grams of a word and their columns are looked up once per call,
        however many queries use the word.
        """
        if isinstance(self._tfidf, NgramVectorizer):
            return self._tfidf._analyse(queries)
        fast = self._fast_transform()
        if fast is not None and accelerated():
            packed = self._packed_vocabulary(fast)
            if packed is not None:
                return packed.analyse(queries)
        if fast is None:
            rows = self.tfidf.transform(queries).tocsr()  # row by row, as one query at a time
            bounds = rows.indptr.tolist()
            return [
                (rows.indices[a:b].astype(np.int64), rows.data[a:b].astype(np.float64))
                for a, b in zip(bounds, bounds[1:])
            ]
        analyzer, vocabulary, idf = fast
        get = vocabulary.get
        analysed = []
        known: dict[str, list[int]] = {}  # a word's known n-grams' columns, in order
        for query in queries:
            if isinstance(analyzer, WordBoundedAnalyzer):
                sequence: list[int] = []
                for word in analyzer.prepare(query).split():
                    columns_of_word = known.get(word)
                    if columns_of_word is None:
                        grams = analyzer.word_ngrams(word)
                        columns_of_word = known[word] = [c for c in map(get, grams) if c is not None]
                    sequence += columns_of_word
                counts = Counter(sequence)
            else:
                counts = Counter(c for c in map(get, analyzer(query)) if c is not None)
            columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
            weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) * idf[columns]
            norm = np.sqrt(weights @ weights)
            analysed.append((columns, weights / norm if norm > 0 else weights))
        return analysed

    def _packed_vocabulary(self, fast: tuple[Any, Mapping, np.ndarray]) -> PackedVocabulary | None:
        """The vocabulary packed for the compiled analysis (:mod:`._compiled_analysis`), made once;
        None for settings it does not serve."""
        if self._packed is None:
            from . import _ngrams_numba

            analyzer, vocabulary, idf = fast
            self._packed = PackedVocabulary.build(_ngrams_numba, analyzer, vocabulary, idf) or False
        return self._packed if isinstance(self._packed, PackedVocabulary) else None

    def _fast_transform(self) -> tuple[Any, Mapping, np.ndarray] | None:
        """``(analyzer, vocabulary, idf)`` when the direct path matches the vectorizer's settings
        (without scikit-learn for a vectorizer loaded from a save), else None."""
        if self._fast is None:
            self._fast = direct_query_plan(self._tfidf) or ()
        return self._fast or None

    def _search_arrays(self, queries: list[str], k: int | None, **options: Any) -> Candidates:
        """Every query analysed, then all scored at once (see :mod:`._sparse`).

        A query whose terms' posting lists are short (up to ``_BINCOUNT_POSTINGS`` entries) is
        accumulated in float64 in its terms' order of first appearance; a longer one in float32
        over its columns in ascending order. Both are the arithmetic of the query-at-a-time
        scoring this replaces, so hits are the same bits as before, alone or in a batch.
        """
        if self._postings is None:
            if self._matrix_t is None:
                self._matrix_t = self._matrix.T.tocsr()
            matrix_t = self._matrix_t
            self._postings = Postings(matrix_t.indptr, matrix_t.indices, matrix_t.data, len(self._keys), matrix_t)
        postings = self._postings
        analysed = self._analyse(queries)
        ptr, terms, weights = concatenate(analysed)
        batch = Queries(ptr, terms, weights, wide=np.ones(len(queries), dtype=bool))
        work = query_work(postings, batch)
        batch.wide = work <= _BINCOUNT_POSTINGS
        for row in np.flatnonzero(~batch.wide).tolist():  # float32 queries: columns in ascending order
            a, b = ptr[row], ptr[row + 1]
            order = np.argsort(terms[a:b]) + a
            terms[a:b], weights[a:b] = terms[order], weights[order]
        columns, similarities = search(postings, batch, k, work)
        return Candidates(self._key_list(), columns, similarities)

    def _state(self, vectorizer: Any) -> dict[str, Any]:
        # The vectorizer is stored as "tfidf", the layout of the pickles and saves written before it
        # became a property; the derived attributes are rebuilt on load and on the first search.
        state = {"tfidf" if name == "_tfidf" else name: value for name, value in self.__dict__.items()}
        state.update(tfidf=vectorizer, _matrix_t=None, _rows=None, _fast=None)
        state.pop("_postings", None)  # derived, and not in the layout of earlier saves
        state.pop("_space", None)
        state.pop("_packed", None)
        return state

    def _get_state(self) -> dict[str, Any]:
        return self._state(self.tfidf)  # a pickle holds scikit-learn's vectorizer, as before

    def _save_state(self) -> dict[str, Any]:
        # The safe format writes a deferred vectorizer as the files scikit-learn's gives: no need to build it.
        return self._state(self._tfidf)

    def _set_state(self, state: dict[str, Any]) -> None:
        renamed = {"_tfidf" if name == "tfidf" else name: value for name, value in state.items()}
        # Derived: never taken from a state, which a damaged file could have set to anything.
        renamed.update(_matrix_t=None, _postings=None, _space=None, _fast=None, _packed=None)
        super()._set_state(renamed)
        self._rows = {key: row for row, key in enumerate(self._keys)}

    def _check_loaded(self) -> None:
        import scipy.sparse as sp

        matrix, keys = self._matrix, self._keys
        if len(self._rows) != len(keys):
            raise IncompatibleStateError("the saved keys of this TfIdf repeat a key.")
        if matrix is None:
            if keys:
                raise IncompatibleStateError(f"this TfIdf has {len(keys)} saved keys but no document matrix.")
            return
        vectorizer = self._tfidf
        if isinstance(vectorizer, NgramVectorizer):
            terms = vectorizer.n_terms if vectorizer.fitted else None
        else:
            vocabulary = vocabulary_of(vectorizer)
            terms = None if vocabulary is None else len(vocabulary)
        if (
            not sp.isspmatrix_csr(matrix)
            or matrix.dtype != np.float32
            or matrix.shape[0] != len(keys)
            or terms is None
            or matrix.shape[1] != terms
        ):
            raise IncompatibleStateError(
                f"the saved document matrix of this TfIdf ({getattr(matrix, 'shape', None)}) does not fit its "
                f"{len(keys)} keys and its vectorizer's vocabulary."
            )
        try:
            # Out-of-range indices would make scipy's compiled code read outside the arrays.
            matrix.check_format(full_check=True)
        except ValueError as error:
            raise IncompatibleStateError(f"the saved document matrix of this TfIdf is damaged ({error}).") from None
        if not np.isfinite(matrix.data).all():
            raise IncompatibleStateError("the saved document matrix of this TfIdf holds NaN or infinite values.")
