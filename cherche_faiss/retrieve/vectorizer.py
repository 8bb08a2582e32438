"""Cherche's text vectorizers (lenlp's ``TfidfVectorizer``, ``BM25Vectorizer``, ``CountVectorizer``) on numpy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._core.component import Component
from ..exceptions import IncompatibleStateError, InvalidInputError, NotIndexedError
from ._lenlp_text import ANALYZERS, char_ngrams, prepare, word_ngrams
from ._packed_ngrams import Alphabet, codepoints, count_by_term, count_by_text
from ._sparse import accelerated

__all__ = ["NgramVectorizer", "term_order"]

WEIGHTINGS = ("tfidf", "bm25", "count")


def term_order(term: str) -> tuple[int, str]:
    """The vocabulary's order of terms: by length, then character by character (code point order),
    the order of packed n-grams."""
    return len(term), term


def _number(value: Any, name: str, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (upper is not None and value > upper):
        bounds = f"between 0 and {upper}" if upper is not None else "a finite number >= 0"
        raise InvalidInputError(f"{name} must be {bounds}, got {value!r}.")
    return value


class NgramVectorizer(Component):
    """Texts to sparse vectors exactly as Cherche's ``TfIdf`` and ``BM25`` make them (lenlp's vectorizers).

    Each text is prepared as lenlp prepares it (``normalize``: transliterated to ASCII, lower-cased,
    ASCII punctuation removed, trimmed; then ``stop_words`` removed), then cut into n-grams: with
    ``"char_wb"`` or ``"char"`` every window of ``n`` characters of the whole text (lenlp 1.1 takes
    no word boundaries: ``"char_wb"`` is ``"char"``), with ``"word"`` every window of ``n`` words.
    Rows are the n-grams' counts, weighted as lenlp weights them and L2-normalised:

    * ``"tfidf"``: count x idf, idf = ln((n + 1) / (df + 1)) + 1 (scikit-learn's smooth idf);
    * ``"bm25"``: (count (k1 + 1) / (count + k1 (1 - b + b length / average length)) + epsilon) x idf,
      idf = ln((n - df + 0.5) / (df + 0.5) + 1); queries are weighted as documents, their length
      against the documents' average;
    * ``"count"``: raw counts, not normalised (lenlp's ``CountVectorizer``).

    The vocabulary is every n-gram of the fitted texts; its columns are ordered by length, then
    character by character (code point order). Loading a save needs neither lenlp nor scikit-learn;
    lenlp's normaliser (a core dependency) runs on the texts themselves.

    Parameters
    ----------
    analyzer
        ``"char_wb"`` (Cherche's setting), ``"char"`` or ``"word"``.
    ngram_range
        Smallest and largest ``n``.
    normalize
        Prepare texts with lenlp's normaliser.
    stop_words
        Words removed after normalisation (then words are joined by single spaces), or None.
    weighting
        ``"tfidf"``, ``"bm25"`` or ``"count"``.
    k1, b, epsilon
        BM25's term-frequency saturation, length normalisation and smoothing (``"bm25"`` only).

    Examples
    --------
    >>> from cherche_faiss.retrieve import NgramVectorizer
    >>> vectorizer = NgramVectorizer(ngram_range=(3, 4)).fit(["Paris, France", "Montréal"])
    >>> vectorizer.n_terms, list(vectorizer.vocabulary)[:4]
    (30, [' fr', 'anc', 'ari', 'eal'])
    >>> rows = vectorizer.transform(["MONTRÉAL!"])
    >>> rows.shape, rows.nnz, round(float(rows.multiply(rows).sum()), 5)
    ((1, 30), 11, 1.0)
    """

    def __init__(
        self,
        analyzer: str = "char_wb",
        ngram_range: tuple[int, int] = (3, 7),
        normalize: bool = True,
        stop_words: Sequence[str] | None = None,
        weighting: str = "tfidf",
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.0,
    ) -> None:
        if type(analyzer) is not str or analyzer not in ANALYZERS:
            raise InvalidInputError(f"analyzer must be one of {ANALYZERS}, got {analyzer!r}.")
        if (
            not isinstance(ngram_range, (tuple, list))
            or len(ngram_range) != 2
            or not all(type(n) is int for n in ngram_range)
            or not 1 <= ngram_range[0] <= ngram_range[1]
        ):
            raise InvalidInputError(f"ngram_range must be (min, max) with 1 <= min <= max, got {ngram_range!r}.")
        if type(normalize) is not bool:
            raise InvalidInputError(f"normalize must be True or False, got {normalize!r}.")
        if stop_words is not None and (
            not isinstance(stop_words, (list, tuple, set, frozenset))
            or not all(isinstance(word, str) for word in stop_words)
        ):
            raise InvalidInputError(f"stop_words must be a list of words or None, got {stop_words!r:.80}.")
        if type(weighting) is not str or weighting not in WEIGHTINGS:
            raise InvalidInputError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}.")
        self.analyzer = analyzer
        self.ngram_range = (ngram_range[0], ngram_range[1])
        self.normalize = normalize
        if isinstance(stop_words, (set, frozenset)):  # sorted: saves and repr never depend on hash order
            stop_words = sorted(stop_words)
        self.stop_words = None if stop_words is None else list(stop_words)
        self.weighting = weighting
        self.k1 = _number(k1, "k1")
        self.b = _number(b, "b", upper=1.0)
        self.epsilon = _number(epsilon, "epsilon")
        # The fitted vocabulary: packed n-grams (sorted) over an alphabet, or terms as strings.
        self._alphabet: np.ndarray | None = None  # uint32 code points, ascending
        self._keys: np.ndarray | None = None  # uint64 packed n-grams, ascending: column j is _keys[j]
        self._terms: list[str] | None = None  # the terms by column, when they do not pack
        self.idf: np.ndarray | None = None  # float64 per column ("tfidf", "bm25")
        self.average_len: float | None = None  # the fitted documents' mean length in n-grams ("bm25")
        self._packer: Alphabet | None = None  # derived from _alphabet
        self._index: dict[str, int] | None = None  # derived from _terms
        self._table: tuple | None = None  # derived from _keys: the compiled analysis's hash table

    # -- the vocabulary --------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """Whether a vocabulary was fitted."""
        return self._keys is not None or self._terms is not None

    @property
    def n_terms(self) -> int:
        """Number of columns (0 before fitting)."""
        if self._keys is not None:
            return len(self._keys)
        return len(self._terms) if self._terms is not None else 0

    @property
    def vocabulary(self) -> dict[str, int]:
        """``{n-gram: column}`` (lenlp's attribute; built at each access)."""
        if self._keys is not None:
            terms = self._alphabet_packer().decode(self._keys, self.ngram_range[1])
        else:
            terms = self._terms or []
        return {term: column for column, term in enumerate(terms)}

    def _alphabet_packer(self) -> Alphabet:
        if self._packer is None:
            self._packer = Alphabet(self._alphabet)  # type: ignore[arg-type]
        return self._packer

    def _sizes(self) -> range:
        return range(self.ngram_range[0], self.ngram_range[1] + 1)

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        stop_words = None if self.stop_words is None else frozenset(self.stop_words)
        return prepare(list(texts), self.normalize, stop_words)

    # -- counting ------------------------------------------------------------------------------------
    def _count(self, texts: Sequence[str], fit: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(row, column, count)`` of every distinct n-gram of each text found in the vocabulary
        (fitted on these texts first when ``fit``), sorted by row then column."""
        prepared = self._prepare(texts)
        if fit:
            self._alphabet = self._keys = self._terms = self._packer = self._index = self._table = None
            if self.analyzer != "word":
                points, lengths = codepoints(prepared)
                alphabet = Alphabet.of(points)
                if alphabet.fits(self.ngram_range[1]):
                    self._alphabet, self._packer = alphabet.characters, alphabet
                    return self._count_packed(alphabet.codes(points), lengths, fit=True)
            return self._count_listed(prepared, fit=True)
        if not self.fitted:
            raise NotIndexedError("this NgramVectorizer is not fitted: call fit(texts) first.")
        if self._keys is None:
            return self._count_listed(prepared, fit=False)
        alphabet = self._alphabet_packer()
        points, lengths = codepoints(prepared)
        return self._count_packed(alphabet.codes(points), lengths, fit=False)

    def _count_packed(
        self, codes: np.ndarray, lengths: np.ndarray, fit: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import scipy.sparse as sp

        low, high = self.ngram_range
        bits = self._alphabet_packer().bits
        chunks = list(count_by_term(codes, lengths, low, high, bits))
        if fit:
            found = np.unique(np.concatenate([chunk[1] for chunk in chunks])) if chunks else np.zeros(0, np.uint64)
            if not len(found):
                raise InvalidInputError("no n-gram in these texts: the vectorizer cannot be fitted on them.")
            self._keys = found
        vocabulary: np.ndarray = self._keys  # type: ignore[assignment]  # fitted: set just above, or checked by _count
        rows, columns, counts = [], [], []
        for first, distinct, key_of, text_of, count in chunks:
            column_of_key = np.minimum(np.searchsorted(vocabulary, distinct), len(vocabulary) - 1)
            known = vocabulary[column_of_key] == distinct
            kept = known[key_of]
            rows.append(text_of[kept] + first)
            columns.append(column_of_key[key_of[kept]])
            counts.append(count[kept])
        # The entries come by column; scipy's COO to CSR orders them by row, columns ascending in each.
        matrix = sp.coo_matrix(
            (np.concatenate(counts or [np.zeros(0)]), (np.concatenate(rows or [[]]), np.concatenate(columns or [[]]))),
            shape=(len(lengths), len(vocabulary)),
        ).tocsr()
        matrix.sort_indices()
        return np.repeat(np.arange(len(lengths)), np.diff(matrix.indptr)), matrix.indices.astype(np.int64), matrix.data

    def _count_listed(self, prepared: list[str], fit: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grams = word_ngrams if self.analyzer == "word" else char_ngrams
        sizes = self._sizes()
        counters = [Counter(grams(text, sizes)) for text in prepared]
        if fit:
            terms = sorted(set().union(*counters), key=term_order)  # the packed vocabulary's order
            if not terms:
                raise InvalidInputError("no n-gram in these texts: the vectorizer cannot be fitted on them.")
            self._terms, self._index = terms, None
        if self._index is None:
            self._index = {term: column for column, term in enumerate(self._terms or [])}
        get = self._index.get
        rows, columns, counts = [], [], []
        for row, counter in enumerate(counters):
            found = sorted(
                (column, count)
                for column, count in ((get(term), n) for term, n in counter.items())
                if column is not None
            )
            rows += [row] * len(found)
            columns += [column for column, _ in found]
            counts += [count for _, count in found]
        return np.asarray(rows, dtype=np.int64), np.asarray(columns, dtype=np.int64), np.asarray(counts, dtype=np.int64)

    # -- weighting -------------------------------------------------------------------------------
    def _set_weights(self, rows: np.ndarray, columns: np.ndarray, counts: np.ndarray, n_texts: int) -> None:
        """The idf (and BM25's average length) of a vocabulary just fitted on ``n_texts`` texts."""
        frequency = np.bincount(columns, minlength=self.n_terms).astype(np.float64)  # documents per term
        if self.weighting == "tfidf":
            self.idf = np.log((n_texts + 1.0) / (frequency + 1.0)) + 1.0
        elif self.weighting == "bm25":
            self.idf = np.log((n_texts - frequency + 0.5) / (frequency + 0.5) + 1.0)
            self.average_len = float(counts.sum()) / n_texts
        else:
            self.idf = None

    def _weigh(self, rows: np.ndarray, columns: np.ndarray, counts: np.ndarray, n_texts: int) -> np.ndarray:
        """Each entry's weight (float64). Every sum runs over one row's entries in order, so a row's
        weights never depend on the other rows (a query scores the same alone or in a batch)."""
        values = counts.astype(np.float64)
        if self.weighting == "count":
            return values
        idf = self.idf[columns]  # type: ignore[index]
        if self.weighting == "tfidf":
            weights = values * idf
        else:
            lengths = np.bincount(rows, weights=values, minlength=n_texts)
            average = self.average_len or 1.0
            regularization = self.k1 * (1.0 - self.b + self.b * lengths / average)
            weights = (values * (self.k1 + 1.0) / (values + regularization[rows]) + self.epsilon) * idf
        norms = np.sqrt(np.bincount(rows, weights=weights * weights, minlength=n_texts))
        return weights / np.where(norms > 0, norms, 1.0)[rows]

    # -- lenlp's API -----------------------------------------------------------------------------
    def fit(self, raw_documents: Sequence[str]) -> NgramVectorizer:
        """Learn the vocabulary (and idf) of ``raw_documents``.

        Returns
        -------
        NgramVectorizer
            ``self``.
        """
        self.fit_transform(raw_documents)
        return self

    def fit_transform(self, raw_documents: Sequence[str]) -> Any:
        """:meth:`fit`, then the rows of ``raw_documents`` (CSR, float32)."""
        texts = list(raw_documents)
        rows, columns, counts = self._count(texts, fit=True)
        self._set_weights(rows, columns, counts, len(texts))
        return self._matrix(rows, columns, counts, len(texts))

    def transform(self, raw_documents: Sequence[str]) -> Any:
        """The rows of ``raw_documents`` (CSR, float32): their n-grams of the vocabulary, weighted."""
        texts = list(raw_documents)
        return self._matrix(*self._count(texts, fit=False), len(texts))

    def _matrix(self, rows: np.ndarray, columns: np.ndarray, counts: np.ndarray, n_texts: int) -> Any:
        import scipy.sparse as sp

        weights = self._weigh(rows, columns, counts, n_texts).astype(np.float32)
        indptr = np.zeros(n_texts + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_texts), out=indptr[1:])
        return sp.csr_matrix((weights, columns, indptr), shape=(n_texts, self.n_terms))

    def _analyse(self, queries: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Columns (ascending) and float64 weights of each query: what :meth:`transform` gives, before
        its rounding to float32. Counted by numpy, or by one compiled call once the sparse scoring is
        compiled (:mod:`._packed_ngrams_numba`): the same counts, hence the same weights."""
        if self._keys is not None:
            alphabet = self._alphabet_packer()
            points, lengths = codepoints(self._prepare(queries))
            codes, (low, high) = alphabet.codes(points), self.ngram_range
            if accelerated():  # one compiled call instead of a few dozen array operations
                from . import _packed_ngrams_numba

                kernels: Any = _packed_ngrams_numba  # numba's dispatchers take any arguments
                if self._table is None:
                    self._table = kernels.lookup_table(self._keys)
                ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
                np.cumsum(lengths, out=ptr[1:])
                columns, counts, found = kernels.text_columns(codes, ptr, *self._table, alphabet.bits, low, high)
                rows = np.repeat(np.arange(len(queries)), np.diff(found))
            else:
                rows, keys, counts = count_by_text(codes, lengths, low, high, alphabet.bits)
                columns = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
                known = self._keys[columns] == keys
                rows, columns, counts = rows[known], columns[known], counts[known]
        else:
            rows, columns, counts = self._count(queries, fit=False)
        weights = self._weigh(rows, columns, counts, len(queries))
        bounds = np.searchsorted(rows, np.arange(len(queries) + 1)).tolist()
        return [(columns[a:b].copy(), weights[a:b].copy()) for a, b in zip(bounds, bounds[1:])]

    # -- state -----------------------------------------------------------------------------------
    def _repr_extra(self) -> dict[str, Any]:
        return {"terms": self.n_terms} if self.fitted else {}

    def _get_state(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_packer"], state["_index"], state["_table"]  # derived: rebuilt on first use
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state({**state, "_packer": None, "_index": None, "_table": None})

    def _check_loaded(self) -> None:
        keys, terms, alphabet, idf = self._keys, self._terms, self._alphabet, self.idf
        if keys is not None:
            if terms is not None or not isinstance(alphabet, np.ndarray) or alphabet.dtype != np.uint32:
                raise IncompatibleStateError("the saved vocabulary of this NgramVectorizer is damaged.")
            if alphabet.ndim != 1 or not len(alphabet) or (np.diff(alphabet.astype(np.int64)) <= 0).any():
                raise IncompatibleStateError("the saved alphabet of this NgramVectorizer is not sorted and distinct.")
            packer, (low, high) = Alphabet(alphabet), self.ngram_range
            if not isinstance(keys, np.ndarray) or keys.dtype != np.uint64 or keys.ndim != 1 or not packer.fits(high):
                raise IncompatibleStateError("the saved n-grams of this NgramVectorizer are damaged.")
            lengths = packer.lengths(keys, high)
            if (keys[1:] <= keys[:-1]).any() or ((lengths < low) | (lengths > high)).any():
                raise IncompatibleStateError(
                    f"the saved n-grams of this NgramVectorizer are not distinct, sorted {low}- to {high}-grams."
                )
        elif terms is not None:
            if not isinstance(terms, list) or not all(isinstance(term, str) for term in terms):
                raise IncompatibleStateError("the saved terms of this NgramVectorizer are not a list of strings.")
            if len(set(terms)) != len(terms) or alphabet is not None:
                raise IncompatibleStateError("the saved terms of this NgramVectorizer repeat a term.")
        fitted, size = self.fitted, self.n_terms
        weighted = fitted and self.weighting != "count"
        if weighted != (idf is not None) or (
            idf is not None
            and (
                not isinstance(idf, np.ndarray)
                or idf.shape != (size,)
                or idf.dtype != np.float64
                or not np.isfinite(idf).all()
            )
        ):
            raise IncompatibleStateError(f"the saved idf of this NgramVectorizer does not fit its {size} terms.")
        average = self.average_len
        if (fitted and self.weighting == "bm25") != (average is not None) or (
            average is not None and (type(average) is not float or not np.isfinite(average) or average <= 0)
        ):
            raise IncompatibleStateError(f"the saved average length of this NgramVectorizer is wrong ({average!r}).")
