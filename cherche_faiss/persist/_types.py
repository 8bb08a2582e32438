"""Objects of other libraries the safe format stores: FAISS indexes, scikit-learn's
``TfidfVectorizer`` and bm25s models. Each is written in its library's own
pickle-free form and rebuilt from a fixed class, never from a name in the file.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import numpy as np

from ..exceptions import CorruptFileError, IncompatibleStateError, InvalidTypeError
from ._nested import NestedSavesHandler

__all__ = ["handler_for", "handler_named"]


class FaissIndexFile:
    """A ``faiss.Index`` written with ``faiss.write_index``; memory-mapped on request.

    IVF indexes map their inverted lists (``IO_FLAG_MMAP``); flat, PQ, SQ and
    HNSW indexes map their codes (``IO_FLAG_MMAP_IFC``; HNSW's graph is read
    into memory).
    """

    name = "faiss.Index"

    @staticmethod
    def matches(value: Any) -> bool:
        faiss = sys.modules.get("faiss")
        return faiss is not None and isinstance(value, faiss.Index)

    def save(self, index: Any, encoder: Any, where: str, stem: str) -> Any:
        import faiss

        name = encoder.writer.file(stem, lambda path: faiss.write_index(index, str(path)), ".faiss")
        layout = "ivf" if faiss.try_extract_index_ivf(index) is not None else "codes"
        return {"file": name, "layout": layout, "ntotal": int(index.ntotal), "d": int(index.d)}

    def load(self, value: Any, decoder: Any, where: str) -> Any:
        import faiss

        if not isinstance(value, dict) or value.get("layout") not in ("ivf", "codes"):
            raise IncompatibleStateError(f"{where}: the description of its FAISS index is damaged ({value!r:.200}).")
        path = decoder.reader.path(value.get("file"), where)
        flags = 0
        if decoder.reader.mmap:
            flags = faiss.IO_FLAG_MMAP if value["layout"] == "ivf" else faiss.IO_FLAG_MMAP_IFC
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as error:
            raise CorruptFileError(
                f"{where}: FAISS cannot read {value.get('file')} ({str(error).strip().splitlines()[-1]})."
            ) from None
        if index.ntotal != value.get("ntotal") or index.d != value.get("d"):
            raise CorruptFileError(
                f"{where}: {value.get('file')} holds {index.ntotal} vectors of dimension {index.d}, not the "
                f"{value.get('ntotal')} of dimension {value.get('d')} the manifest describes."
            )
        return index


class TfidfVectorizerState:
    """A scikit-learn ``TfidfVectorizer``: its parameters (JSON), vocabulary (terms by column) and idf.

    Loading gives back a :class:`~cherche_faiss.retrieve._deferred_vectorizer.DeferredTfidfVectorizer`
    when the saved parameters are plain values checked completely without scikit-learn (its import
    is slow in a fresh interpreter; ``TfIdf`` builds the real vectorizer when it needs one), else
    a ``TfidfVectorizer`` built and checked by scikit-learn. Both save the same files.
    """

    name = "sklearn.TfidfVectorizer"

    @staticmethod
    def matches(value: Any) -> bool:
        deferred = sys.modules.get("cherche_faiss.retrieve._deferred_vectorizer")
        if deferred is not None and isinstance(value, deferred.DeferredTfidfVectorizer):
            return True
        return type(value).__name__ == "TfidfVectorizer" and type(value).__module__.startswith("sklearn.")

    def save(self, vectorizer: Any, encoder: Any, where: str, stem: str) -> Any:
        params, terms, idf, fixed_vocabulary = self._fitted_state(vectorizer, where)
        state: dict[str, Any] = {"params": encoder.encode(params, f"{where}.params", f"{stem}.params")}
        if terms is not None:
            state["terms"] = encoder.encode(terms, f"{where}.vocabulary_", f"{stem}.terms")
            if idf is not None:
                state["idf"] = encoder.encode(np.asarray(idf), f"{where}.idf_", f"{stem}.idf")
            state["fixed_vocabulary"] = bool(fixed_vocabulary)
        return state

    @staticmethod
    def _fitted_state(vectorizer: Any, where: str) -> tuple[dict[str, Any], list | None, Any, bool]:
        """``(params, terms by column or None, idf or None, fixed_vocabulary)`` of either kind of vectorizer."""
        from ..retrieve._deferred_vectorizer import DeferredTfidfVectorizer

        if isinstance(vectorizer, DeferredTfidfVectorizer):  # holds no callable: from_params admits none
            return vectorizer.params, vectorizer.terms, vectorizer.idf, vectorizer.fixed_vocabulary
        params = vectorizer.get_params()
        for name in ("analyzer", "tokenizer", "preprocessor"):
            if callable(params.get(name)):
                raise InvalidTypeError(
                    f"cannot save {where}: its {name} is a Python callable, which the safe format cannot "
                    "rebuild without running code. Use the built-in analyzers ('word', 'char', 'char_wb'), "
                    "or save a trusted pickle with cherche_faiss.persist.dump_pickle instead."
                )
        if not hasattr(vectorizer, "vocabulary_"):
            return params, None, None, False
        terms = [None] * len(vectorizer.vocabulary_)
        for term, column in vectorizer.vocabulary_.items():
            terms[column] = term
        idf = vectorizer.idf_ if vectorizer.use_idf else None
        return params, terms, idf, bool(vectorizer.fixed_vocabulary_)

    def load(self, value: Any, decoder: Any, where: str) -> Any:
        from ..retrieve._deferred_vectorizer import DeferredTfidfVectorizer

        if not isinstance(value, dict) or not isinstance(value.get("params"), dict):
            raise IncompatibleStateError(f"{where}: the saved TF-IDF vectorizer is damaged ({value!r:.200}).")
        params = decoder.decode(value["params"], f"{where}.params")
        # Plain parameters are checked here as scikit-learn would; anything else goes to scikit-learn.
        deferred = DeferredTfidfVectorizer.from_params(params)
        # The deferred vectorizer or scikit-learn's (untyped); the attributes below are read only from the latter.
        vectorizer: Any = deferred if deferred is not None else self._sklearn_vectorizer(params, where)
        if "terms" not in value:
            return vectorizer
        terms = decoder.decode(value["terms"], f"{where}.vocabulary_")
        idf = decoder.decode(value["idf"], f"{where}.idf_") if "idf" in value else None
        if not isinstance(terms, list) or not all(isinstance(term, str) for term in terms):
            raise IncompatibleStateError(f"{where}: the saved vocabulary of the TF-IDF vectorizer is damaged.")
        use_idf = deferred.params["use_idf"] if deferred is not None else vectorizer.use_idf
        if use_idf != (idf is not None) or (
            idf is not None and (not isinstance(idf, np.ndarray) or idf.shape != (len(terms),) or idf.dtype.kind != "f")
        ):
            raise IncompatibleStateError(f"{where}: the saved vocabulary and idf of the TF-IDF vectorizer disagree.")
        vocabulary = {term: column for column, term in enumerate(terms)}
        if len(vocabulary) != len(terms):
            raise IncompatibleStateError(f"{where}: the saved vocabulary repeats a term.")
        fixed_vocabulary = bool(value.get("fixed_vocabulary", False))
        if deferred is not None:
            # What scikit-learn's setters below would store (they accept these values: no fixed
            # vocabulary parameter, idf of the vocabulary's length); an array of our own, never a map.
            deferred.set_fitted(terms, vocabulary, None if idf is None else np.array(idf), fixed_vocabulary)
            return deferred
        try:
            vectorizer.vocabulary_ = vocabulary
            if idf is not None:
                vectorizer.idf_ = np.array(idf)
        except (ValueError, TypeError) as error:
            raise IncompatibleStateError(
                f"{where}: the saved TF-IDF state does not fit its parameters ({error})."
            ) from None
        vectorizer.fixed_vocabulary_ = fixed_vocabulary
        return vectorizer

    @staticmethod
    def _sklearn_vectorizer(params: Any, where: str) -> Any:
        """A ``TfidfVectorizer`` built from ``params`` and checked by scikit-learn itself."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        try:
            vectorizer = TfidfVectorizer(**params)
            vectorizer._validate_params()  # scikit-learn's own checks of every parameter ...
            vectorizer._validate_ngram_range()  # ... and those it makes only when fitting
            vectorizer.build_analyzer()("probe")  # compiles the token pattern, runs the analyzer once
        except (TypeError, ValueError, AttributeError, re.error) as error:
            raise IncompatibleStateError(f"{where}: the saved TF-IDF parameters are not valid ({error}).") from None
        return vectorizer


class BM25sModel:
    """A bm25s ``BM25`` model, written with its own pickle-free ``save`` (JSON and ``.npy``)."""

    name = "bm25s.BM25"

    @staticmethod
    def matches(value: Any) -> bool:
        return type(value).__name__ == "BM25" and type(value).__module__.split(".")[0] == "bm25s"

    def save(self, model: Any, encoder: Any, where: str, stem: str) -> Any:
        name = encoder.writer.file(
            stem, lambda path: model.save(str(path), corpus=None, allow_pickle=False, show_progress=False)
        )
        return {"folder": name, "documents": int(model.scores["num_docs"])}

    def load(self, value: Any, decoder: Any, where: str) -> Any:
        import bm25s

        if not isinstance(value, dict):
            raise IncompatibleStateError(f"{where}: the saved bm25s model is damaged ({value!r:.200}).")
        folder = decoder.reader.folder_of(value.get("folder"), where)
        try:
            model = bm25s.BM25.load(
                str(folder), load_corpus=False, mmap=decoder.reader.mmap, allow_pickle=False, show_progress=False
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CorruptFileError(f"{where}: bm25s cannot read its saved model ({error}).") from None
        if model.scores.get("num_docs") != value.get("documents"):
            raise CorruptFileError(f"{where}: the saved bm25s model does not hold {value.get('documents')} documents.")
        return model


class FilterColumnsState:
    """The filter columns of a component (:mod:`cherche_faiss.filters`): their arrays and lists, as values."""

    name = "cherche_faiss.filter_columns"

    @staticmethod
    def matches(value: Any) -> bool:
        from ..filters._columns import FieldColumns

        return isinstance(value, FieldColumns)

    def save(self, columns: Any, encoder: Any, where: str, stem: str) -> Any:
        from ..filters._host import KeyedColumns

        state = {**columns.state(), "keyed": isinstance(columns, KeyedColumns)}
        return encoder.encode(state, where, stem)

    def load(self, value: Any, decoder: Any, where: str) -> Any:
        from ..filters._columns import FieldColumns
        from ..filters._host import KeyedColumns

        state = decoder.decode(value, where)
        if not isinstance(state, dict):
            raise IncompatibleStateError(f"{where}: the saved filter columns are damaged ({state!r:.200}).")
        return (KeyedColumns if state.pop("keyed", False) else FieldColumns).from_state(state)


_HANDLERS = (FaissIndexFile(), TfidfVectorizerState(), BM25sModel(), NestedSavesHandler(), FilterColumnsState())


def handler_for(value: Any) -> Any:
    """The handler that saves ``value``, or None."""
    return next((handler for handler in _HANDLERS if handler.matches(value)), None)


def handler_named(name: str) -> Any:
    """The handler that rebuilds objects saved under ``name``, or None."""
    return next((handler for handler in _HANDLERS if handler.name == name), None)
