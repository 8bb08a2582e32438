"""BM25 retriever backed by bm25s (sparse, scipy-based), word or character tokens."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .._core.candidates import Candidates, KeyList
from .._core.validation import as_documents, document_texts
from ..exceptions import IncompatibleStateError, InvalidInputError, MissingDependencyError
from ._deferred_vectorizer import DEFAULT_PARAMS
from ._sparse import Postings, Queries, search
from ._tfidf_analyzers import WordBoundedAnalyzer, query_analyzer
from .base import ListedKeys, Retriever

__all__ = ["BM25"]

_TOKENIZERS = ("word", "char")
_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError:  # pragma: no cover - a core dependency
        raise MissingDependencyError("retrieve.BM25 needs bm25s: `pip install bm25s`.") from None
    return bm25s


def _check_bm25s_scores(model: Any, documents: int) -> None:
    """The score matrix of a loaded bm25s model is well formed (its compiled search trusts it)."""
    # Anything a damaged save holds (None included): what cannot be indexed is caught below as not well formed.
    scores: Any = getattr(model, "scores", None)
    try:
        data, indices, indptr = (np.asarray(scores[name]) for name in ("data", "indices", "indptr"))
        well_formed = (
            scores["num_docs"] == documents
            and data.ndim == indices.ndim == indptr.ndim == 1
            and len(data) == len(indices)
            and indptr.dtype.kind in "iu"
            and indices.dtype.kind in "iu"
            and len(indptr) >= 1
            and indptr[0] == 0
            and indptr[-1] == len(data)
            and not (np.diff(indptr) < 0).any()
            and (not len(indices) or (indices.min() >= 0 and indices.max() < documents))
            and np.isfinite(data).all()
        )
    except (TypeError, KeyError, ValueError, IndexError):
        well_formed = False
    if not well_formed:
        raise IncompatibleStateError(
            f"the saved bm25s score matrix of this BM25 is damaged or does not index {documents} documents."
        )


# bm25s.tokenize's default token pattern (scikit-learn's).
_TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")


def _word_tokenizer(
    stopwords: frozenset[str], stem: Callable[[list[str]], list[str]] | None
) -> Callable[[list[str]], list[list[str]]]:
    """``bm25s.tokenize(texts, stopwords=..., stemmer=..., return_ids=False)``, token for token, without
    its progress bars (three per call, which cost more than tokenizing one query): lower-cased words
    of two characters or more, stop words removed, then each distinct word stemmed once."""
    findall = _TOKEN_PATTERN.findall

    def tokenize(texts: list[str]) -> list[list[str]]:
        tokenized = [[token for token in findall(text.lower()) if token not in stopwords] for text in texts]
        if stem is None:
            return tokenized
        distinct = list(dict.fromkeys(token for tokens in tokenized for token in tokens))
        stems = dict(zip(distinct, stem(distinct)))
        return [[stems[token] for token in tokens] for tokens in tokenized]

    return tokenize


def _char_tokenizer(ngram_range: tuple[int, ...]) -> Callable[[list[str]], list[list[str]]]:
    """scikit-learn's ``char_wb`` analyzer, lower-cased (as ``TfidfVectorizer(analyzer="char_wb")``
    builds it), without importing scikit-learn; each distinct word's n-grams taken once a call."""
    analyzer = query_analyzer({**DEFAULT_PARAMS, "analyzer": "char_wb", "ngram_range": ngram_range})
    if not isinstance(analyzer, WordBoundedAnalyzer):  # pragma: no cover - query_analyzer takes these settings
        from sklearn.feature_extraction.text import TfidfVectorizer

        built = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range, lowercase=True).build_analyzer()
        return lambda texts: [built(text) for text in texts]
    words = analyzer

    def tokenize(texts: list[str]) -> list[list[str]]:
        known: dict[str, list[str]] = {}
        tokenized = []
        for text in texts:
            grams: list[str] = []
            for word in words.prepare(text).split():
                of_word = known.get(word)
                if of_word is None:
                    of_word = known[word] = words.word_ngrams(word)
                grams += of_word
            tokenized.append(grams)
        return tokenized

    return tokenize


class BM25(ListedKeys, Retriever):
    """Okapi BM25 over words (stop words removed, stemmed) or character n-grams.

    BM25's statistics (document frequencies, average length) are global, so
    each :meth:`add` re-indexes the whole corpus from the token ids it keeps;
    add documents in large batches. Adding a key again replaces its document.

    Parameters
    ----------
    key
        Field holding each document's unique id.
    on
        Field(s) whose text is indexed, joined by spaces.
    documents
        Documents to index right away.
    k
        Default number of hits; ``None`` returns every document with a positive score.
    batch_size
        Number of queries scored at once.
    tokenizer
        ``"word"`` (bm25s' word tokenizer with ``stopwords`` and ``stemmer``),
        ``"char"`` (character n-grams within word boundaries, as Cherche's
        retrievers use; see ``ngram_range``), or a picklable callable
        ``str -> list[str]``.
    stopwords
        Language of the stop-word list for ``"word"`` (``"en"``), a list of words, or None.
    stemmer
        Snowball stemmer language for ``"word"`` (``"english"``; needs
        PyStemmer), or None.
    ngram_range
        Smallest and largest n-gram for ``"char"``.
    method, k1, b, delta
        The BM25 variant and its parameters (bm25s: ``"lucene"``,
        ``"robertson"``, ``"atire"``, ``"bm25l"``, ``"bm25+"``).

    Examples
    --------
    >>> from cherche_faiss import retrieve
    >>> documents = [
    ...     {"id": 0, "title": "Paris", "article": "The Eiffel tower is in Paris."},
    ...     {"id": 1, "title": "Bordeaux", "article": "Bordeaux wines are aged in oak barrels."},
    ... ]
    >>> retriever = retrieve.BM25(key="id", on=["title", "article"], documents=documents)
    >>> [hit["id"] for hit in retriever("wine barrel")]
    [1]
    """

    _arrays = True

    def __init__(
        self,
        key: str,
        on: Any,
        documents: Sequence[Mapping] | None = None,
        k: int | None = None,
        batch_size: int = 1024,
        tokenizer: str | Callable[[str], list[str]] = "word",
        stopwords: str | list[str] | None = "en",
        stemmer: str | None = "english",
        ngram_range: tuple[int, int] = (3, 5),
        method: str = "lucene",
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
    ) -> None:
        super().__init__(key=key, on=on, k=k, batch_size=batch_size)
        if not callable(tokenizer) and tokenizer not in _TOKENIZERS:
            raise InvalidInputError(
                f"tokenizer must be 'word', 'char' or a callable str -> list[str], got {tokenizer!r}."
            )
        if (
            stopwords is not None
            and not isinstance(stopwords, str)
            and not (isinstance(stopwords, (list, tuple)) and all(isinstance(word, str) for word in stopwords))
        ):
            raise InvalidInputError(
                f"stopwords must be a language such as 'en', a list of words, or None; got {stopwords!r}."
            )
        if stemmer is not None and not isinstance(stemmer, str):
            raise InvalidInputError(f"stemmer must be a Snowball language such as 'english', or None; got {stemmer!r}.")
        if (
            not isinstance(ngram_range, (tuple, list))
            or len(ngram_range) != 2
            or not all(type(n) is int for n in ngram_range)
            or not 1 <= ngram_range[0] <= ngram_range[1]
        ):
            raise InvalidInputError(f"ngram_range must be (min, max) with 1 <= min <= max, got {ngram_range!r}.")
        if method not in _METHODS:
            raise InvalidInputError(f"method must be one of {_METHODS}, got {method!r}.")
        for name, value in (("k1", k1), ("b", b), ("delta", delta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise InvalidInputError(f"{name} must be a non-negative number, got {value!r}.")
        self.tokenizer = tokenizer
        self.stopwords = stopwords
        self.stemmer = stemmer
        self.ngram_range = tuple(ngram_range)
        self.method = method
        self.k1 = float(k1)
        self.b = float(b)
        self.delta = float(delta)
        self._keys: list[Hashable] = []
        self._token_ids: list[np.ndarray] = []  # per document, ids into _vocabulary
        self._vocabulary: dict[str, int] = {}
        self._model: Any = None
        self._postings: Postings | None = None  # the model's posting lists, cached for searches
        self._space: KeyList | None = None  # _keys as the key space of candidates, see _key_list
        self._tokenize_cache: Callable[[list[str]], list[list[str]]] | None = None
        if documents is not None:
            self.add(documents)

    def __len__(self) -> int:
        return len(self._keys)

    # -- tokens ---------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        if self._tokenize_cache is None:
            self._tokenize_cache = self._make_tokenizer()
        return self._tokenize_cache(texts)

    def _make_tokenizer(self) -> Callable[[list[str]], list[list[str]]]:
        if callable(self.tokenizer):
            function = self.tokenizer
            return lambda texts: [list(function(text)) for text in texts]
        if self.tokenizer == "char":
            return _char_tokenizer(tuple(self.ngram_range))
        bm25s = _bm25s()
        stemmer = None
        if self.stemmer is not None:
            try:
                import Stemmer
            except ImportError:
                raise MissingDependencyError(
                    f"stemmer={self.stemmer!r} needs PyStemmer: `pip install PyStemmer`, or pass stemmer=None."
                ) from None
            stemmer = Stemmer.Stemmer(self.stemmer).stemWords
        infer_stopwords = getattr(bm25s.tokenization, "_infer_stopwords", None)
        if infer_stopwords is None:  # pragma: no cover - another bm25s: its own tokenizer
            return lambda texts: bm25s.tokenize(
                texts, stopwords=self.stopwords or [], stemmer=stemmer, return_ids=False, show_progress=False
            )
        return _word_tokenizer(frozenset(infer_stopwords(self.stopwords or [])), stemmer)

    # -- indexing -------------------------------------------------------------------------
    def add(self, documents: Sequence[Mapping], **kwargs: Any) -> BM25:
        """Index ``documents`` (replacing those whose key is already indexed).

        Returns
        -------
        BM25
            ``self``.
        """
        documents = as_documents(documents, self.key, self.on)
        if not documents:
            return self
        last = {document[self.key]: document for document in documents}
        # on=None passes check_component and then fails here (TypeError); rejecting it earlier changes behaviour.
        new_tokens = self._tokenize(document_texts(list(last.values()), self.on))  # type: ignore[arg-type]
        vocabulary = dict(self._vocabulary)
        new_ids = [
            np.fromiter(
                (vocabulary.setdefault(token, len(vocabulary)) for token in tokens), dtype=np.int32, count=len(tokens)
            )
            for tokens in new_tokens
        ]
        kept = [(key, ids) for key, ids in zip(self._keys, self._token_ids) if key not in last]
        keys = [key for key, _ in kept] + list(last)
        token_ids = [ids for _, ids in kept] + new_ids
        model = self._index(token_ids, vocabulary)
        self._keys, self._token_ids, self._vocabulary, self._model = keys, token_ids, vocabulary, model
        self._postings = None
        return self

    def _index(self, token_ids: list[np.ndarray], vocabulary: dict[str, int]) -> Any:
        bm25s = _bm25s()
        model = bm25s.BM25(method=self.method, k1=self.k1, b=self.b, delta=self.delta)
        tokenized = bm25s.tokenization.Tokenized(ids=[ids.tolist() for ids in token_ids], vocab=vocabulary)
        try:
            model.index(tokenized, show_progress=False)
        except (ValueError, ZeroDivisionError) as error:
            raise InvalidInputError(
                f"bm25s could not index these documents ({error}). Check that the fields {self.on} hold text."
            ) from None
        return model

    def _search_arrays(self, queries: list[str], k: int | None, **options: Any) -> Candidates:
        """Every query tokenized, then all scored at once on bm25s's score matrix (see :mod:`._sparse`).

        The arithmetic is bm25s's ``retrieve``: each query token's precomputed scores added in
        float32, token after token (a repeated token counts again), then the non-occurrence score
        of ``"bm25l"`` and ``"bm25+"``; the top k are the best positive scores, ties broken by
        document order.
        """
        model = self._model
        if self._postings is None:
            scores = model.scores
            self._postings = Postings(scores["indptr"], scores["indices"], scores["data"], len(self._keys))
        postings = self._postings
        get = model.vocab_dict.get
        nonoccurrence: np.ndarray | None = getattr(model, "nonoccurrence_array", None)
        offsets = None if nonoccurrence is None else np.zeros(len(queries), dtype=nonoccurrence.dtype)
        parts = []
        for row, tokens in enumerate(self._tokenize(queries)):
            ids = [token_id for token_id in map(get, tokens) if token_id is not None]
            terms = np.asarray(ids, dtype=np.int64)
            terms = terms[terms < postings.n_terms]  # an id past the score matrix has no scores
            if nonoccurrence is not None and offsets is not None and ids:  # bm25s's sum, in its dtype
                offsets[row] = nonoccurrence[np.asarray(ids, dtype=np.dtype(model.int_dtype))].sum()
            parts.append(terms)
        sizes = [len(terms) for terms in parts]
        ptr = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum(sizes, out=ptr[1:])
        terms = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        batch = Queries(ptr, terms, np.ones(len(terms)), wide=np.zeros(len(queries), dtype=bool), offsets=offsets)
        columns, similarities = search(postings, batch, k)
        return Candidates(self._key_list(), columns, similarities)

    # -- pickling -------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tokenize_cache"] = None  # holds a C stemmer, rebuilt on first use
        state.pop("_postings", None)  # derived, and not in the layout of earlier saves
        state.pop("_space", None)
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._postings = self._space = None  # derived: never taken from a state

    def _check_loaded(self) -> None:
        keys, token_ids, vocabulary = self._keys, self._token_ids, self._vocabulary
        if not isinstance(keys, list) or len(set(keys)) != len(keys):
            raise IncompatibleStateError("the saved keys of this BM25 are not a list of distinct keys.")
        if (
            not isinstance(token_ids, list)
            or len(token_ids) != len(keys)
            or not all(isinstance(ids, np.ndarray) and ids.ndim == 1 and ids.dtype.kind in "iu" for ids in token_ids)
        ):
            raise IncompatibleStateError("the saved token ids of this BM25 do not give one integer array per document.")
        if not isinstance(vocabulary, dict) or not all(
            isinstance(token, str) and type(i) is int for token, i in vocabulary.items()
        ):
            raise IncompatibleStateError("the saved vocabulary of this BM25 is not a dict of tokens to ids.")
        if any(ids.size and (ids.min() < 0 or ids.max() >= len(vocabulary)) for ids in token_ids):
            raise IncompatibleStateError("the saved token ids of this BM25 fall outside its vocabulary.")
        if (self._model is None) != (not keys):
            raise IncompatibleStateError(
                f"the saved bm25s model of this BM25 does not index its {len(keys)} documents."
            )
        if self._model is not None:
            _check_bm25s_scores(self._model, len(keys))
