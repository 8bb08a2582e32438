"""BM25 retriever backed by bm25s (sparse, scipy-based), word or character tokens; or Cherche's BM25."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .._core.candidates import Candidates, KeyList
from .._core.validation import as_documents, document_texts
from ..exceptions import IncompatibleStateError, InvalidInputError, InvalidTypeError
from ._bm25_tokens import bm25s_module, check_bm25s_scores, check_settings, make_tokenizer
from ._sparse import Postings, Queries, search
from .base import ListedKeys, Retriever
from .tfidf import TfIdf

__all__ = ["BM25"]

# The settings of bm25s's scoring, which a count_vectorizer replaces.
_BM25S_SETTINGS = ("tokenizer", "stopwords", "stemmer", "ngram_range", "method", "k1", "b", "delta")


def _check_count_vectorizer(count_vectorizer: Any, settings: dict[str, Any]) -> None:
    if not (
        callable(getattr(count_vectorizer, "fit", None)) and callable(getattr(count_vectorizer, "transform", None))
    ):
        hint = (
            f" k is BM25's fifth argument, as in Cherche: pass k={count_vectorizer!r} by name."
            if isinstance(count_vectorizer, int)
            else ""
        )
        raise InvalidTypeError(
            "count_vectorizer must be a vectorizer: lenlp's BM25Vectorizer (as Cherche passes it), "
            f"NgramVectorizer(weighting='bm25') or scikit-learn's TfidfVectorizer; got "
            f"{type(count_vectorizer).__name__} {count_vectorizer!r:.60}.{hint}"
        )
    defaults = {name: parameter.default for name, parameter in inspect.signature(BM25.__init__).parameters.items()}
    changed = sorted(name for name in _BM25S_SETTINGS if settings[name] != defaults[name])
    if changed:
        raise InvalidInputError(
            f"{', '.join(changed)} set bm25s's scoring, which count_vectorizer replaces (it makes the tokens and "
            "weights): pass either."
        )


class BM25(ListedKeys, Retriever):
    """Okapi BM25 over words (stop words removed, stemmed) or character n-grams; or Cherche's BM25.

    By default bm25s scores the documents: BM25's statistics (document
    frequencies, average length) are global, so each :meth:`add` re-indexes
    the whole corpus from the token ids it keeps; add documents in large
    batches. Adding a key again replaces its document.

    With a ``count_vectorizer`` (Cherche's argument), it scores as Cherche's
    ``BM25`` does: documents and queries are made BM25-weighted, L2-normalised
    vectors by the vectorizer, and a hit's score is their dot product; the
    vectorizer is fitted on the first documents and kept (a :class:`TfIdf`
    with that vectorizer does the work). Cherche's own setting is
    ``count_vectorizer=NgramVectorizer(weighting="bm25", ngram_range=(3, 5))``,
    equal to lenlp's ``BM25Vectorizer(normalize=True, ngram_range=(3, 5),
    analyzer="char_wb")``, which is accepted as well.

    Parameters
    ----------
    key
        Field holding each document's unique id.
    on
        Field(s) whose text is indexed, joined by spaces.
    documents
        Documents to index right away.
    count_vectorizer
        None (bm25s's scoring), or a vectorizer that makes documents and queries vectors:
        :class:`NgramVectorizer`, lenlp's ``BM25Vectorizer`` (read into an equal
        :class:`NgramVectorizer`) or any vectorizer :class:`TfIdf` takes.
    k
        Default number of hits; ``None`` returns every document with a positive score.
    batch_size
        Number of queries scored at once.
    fit
        Fit the ``count_vectorizer`` on the first documents; False for one already fitted.
    tokenizer
        ``"word"`` (bm25s' word tokenizer with ``stopwords`` and ``stemmer``),
        ``"char"`` (scikit-learn's ``char_wb`` n-grams: each word padded with
        spaces; see ``ngram_range``), or a picklable callable ``str -> list[str]``.
        Keyword-only, as every bm25s setting after it.
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
    >>> cherches = retrieve.BM25(
    ...     key="id",
    ...     on=["title", "article"],
    ...     documents=documents,
    ...     count_vectorizer=retrieve.NgramVectorizer(weighting="bm25", ngram_range=(3, 5)),
    ... )
    >>> [hit["id"] for hit in cherches("wines")]
    [1]
    """

    _arrays = True

    def __init__(
        self,
        key: str,
        on: Any,
        documents: Sequence[Mapping] | None = None,
        count_vectorizer: Any = None,
        k: int | None = None,
        batch_size: int = 1024,
        fit: bool = True,
        *,
        tokenizer: str | Callable[[str], list[str]] = "word",
        stopwords: str | list[str] | None = "en",
        stemmer: str | None = "english",
        ngram_range: tuple[int, int] = (3, 5),
        method: str = "lucene",
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
        filter_fields: Any = None,
    ) -> None:
        super().__init__(key=key, on=on, k=k, batch_size=batch_size, filter_fields=filter_fields)
        check_settings(tokenizer, stopwords, stemmer, ngram_range, method, k1, b, delta)
        self._vectors: TfIdf | None = None  # Cherche's BM25: a TfIdf with the count_vectorizer
        if count_vectorizer is not None:
            settings: dict[str, Any] = dict(tokenizer=tokenizer, stopwords=stopwords, stemmer=stemmer)
            settings.update(ngram_range=ngram_range, method=method, k1=k1, b=b, delta=delta)
            _check_count_vectorizer(count_vectorizer, settings)
            self._vectors = TfIdf(key=key, on=on, tfidf=count_vectorizer, k=k, batch_size=batch_size, fit=fit)
        elif not fit:
            raise InvalidInputError(
                "fit=False applies to a fitted count_vectorizer; without one, bm25s fits on the documents."
            )
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
        return len(self._keys) if self._vectors is None else len(self._vectors)

    @property
    def count_vectorizer(self) -> Any:
        """The vectorizer of Cherche's BM25, or None (bm25s's scoring)."""
        return None if self._vectors is None else self._vectors.tfidf

    @property
    def fit(self) -> bool:
        """Whether the ``count_vectorizer`` is fitted on the first documents."""
        return True if self._vectors is None else self._vectors.fit

    # -- tokens ---------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        if self._tokenize_cache is None:
            self._tokenize_cache = self._make_tokenizer()
        return self._tokenize_cache(texts)

    def _make_tokenizer(self) -> Callable[[list[str]], list[list[str]]]:
        return make_tokenizer(self.tokenizer, self.stopwords, self.stemmer, tuple(self.ngram_range))

    # -- indexing -------------------------------------------------------------------------
    def add(self, documents: Sequence[Mapping], **kwargs: Any) -> BM25:
        """Index ``documents`` (replacing those whose key is already indexed).

        Returns
        -------
        BM25
            ``self``.
        """
        if self._vectors is not None:
            self._vectors.add(documents, **kwargs)
            self._keyed_columns().upsert(as_documents(documents, self.key, self.on), self.key)
            return self
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
        self._keyed_columns().upsert(documents, self.key)
        return self

    def _index(self, token_ids: list[np.ndarray], vocabulary: dict[str, int]) -> Any:
        bm25s = bm25s_module()
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
        if self._vectors is not None:
            return self._vectors._search_arrays(queries, k, **options)
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
        super()._set_state({"_vectors": None, **state})  # states written before Cherche's BM25 have no _vectors
        self._postings = self._space = None  # derived: never taken from a state

    def _check_loaded(self) -> None:
        keys, token_ids, vocabulary = self._keys, self._token_ids, self._vocabulary
        if self._vectors is not None:
            if type(self._vectors) is not TfIdf or keys or token_ids or vocabulary or self._model is not None:
                raise IncompatibleStateError("the saved state of this BM25 mixes Cherche's scoring with bm25s's.")
            return
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
            check_bm25s_scores(self._model, len(keys))
