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

        name, path = encoder.writer.reserve(stem, ".faiss")
        faiss.write_index(index, str(path))
        encoder.writer.wrote(name)
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
    """A scikit-learn ``TfidfVectorizer``: its parameters (JSON), vocabulary (terms by column) and idf."""

    name = "sklearn.TfidfVectorizer"

    @staticmethod
    def matches(value: Any) -> bool:
        return type(value).__name__ == "TfidfVectorizer" and type(value).__module__.startswith("sklearn.")

    def save(self, vectorizer: Any, encoder: Any, where: str, stem: str) -> Any:
        params = vectorizer.get_params()
        for name in ("analyzer", "tokenizer", "preprocessor"):
            if callable(params.get(name)):
                raise InvalidTypeError(
                    f"cannot save {where}: its {name} is a Python callable, which the safe format cannot "
                    "rebuild without running code. Use the built-in analyzers ('word', 'char', 'char_wb'), "
                    "or save a trusted pickle with cherche_faiss.persist.dump_pickle instead."
                )
        state: dict[str, Any] = {"params": encoder.encode(params, f"{where}.params", f"{stem}.params")}
        if hasattr(vectorizer, "vocabulary_"):
            terms = [None] * len(vectorizer.vocabulary_)
            for term, column in vectorizer.vocabulary_.items():
                terms[column] = term
            state["terms"] = encoder.encode(terms, f"{where}.vocabulary_", f"{stem}.terms")
            if vectorizer.use_idf:
                state["idf"] = encoder.encode(np.asarray(vectorizer.idf_), f"{where}.idf_", f"{stem}.idf")
            state["fixed_vocabulary"] = bool(vectorizer.fixed_vocabulary_)
        return state

    def load(self, value: Any, decoder: Any, where: str) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not isinstance(value, dict) or not isinstance(value.get("params"), dict):
            raise IncompatibleStateError(f"{where}: the saved TF-IDF vectorizer is damaged ({value!r:.200}).")
        params = decoder.decode(value["params"], f"{where}.params")
        try:
            vectorizer = TfidfVectorizer(**params)
            vectorizer._validate_params()  # scikit-learn's own checks of every parameter ...
            vectorizer._validate_ngram_range()  # ... and those it makes only when fitting
            vectorizer.build_analyzer()("probe")  # compiles the token pattern, runs the analyzer once
        except (TypeError, ValueError, AttributeError, re.error) as error:
            raise IncompatibleStateError(f"{where}: the saved TF-IDF parameters are not valid ({error}).") from None
        if "terms" not in value:
            return vectorizer
        terms = decoder.decode(value["terms"], f"{where}.vocabulary_")
        idf = decoder.decode(value["idf"], f"{where}.idf_") if "idf" in value else None
        if not isinstance(terms, list) or not all(isinstance(term, str) for term in terms):
            raise IncompatibleStateError(f"{where}: the saved vocabulary of the TF-IDF vectorizer is damaged.")
        if vectorizer.use_idf != (idf is not None) or (
            idf is not None and (not isinstance(idf, np.ndarray) or idf.shape != (len(terms),) or idf.dtype.kind != "f")
        ):
            raise IncompatibleStateError(f"{where}: the saved vocabulary and idf of the TF-IDF vectorizer disagree.")
        vocabulary = {term: column for column, term in enumerate(terms)}
        if len(vocabulary) != len(terms):
            raise IncompatibleStateError(f"{where}: the saved vocabulary repeats a term.")
        try:
            vectorizer.vocabulary_ = vocabulary
            if idf is not None:
                vectorizer.idf_ = np.array(idf)
        except (ValueError, TypeError) as error:
            raise IncompatibleStateError(f"{where}: the saved TF-IDF state does not fit its parameters ({error}).") from None
        vectorizer.fixed_vocabulary_ = bool(value.get("fixed_vocabulary", False))
        return vectorizer


class BM25sModel:
    """A bm25s ``BM25`` model, written with its own pickle-free ``save`` (JSON and ``.npy``)."""

    name = "bm25s.BM25"

    @staticmethod
    def matches(value: Any) -> bool:
        return type(value).__name__ == "BM25" and type(value).__module__.split(".")[0] == "bm25s"

    def save(self, model: Any, encoder: Any, where: str, stem: str) -> Any:
        name, path = encoder.writer.reserve(stem)
        model.save(str(path), corpus=None, allow_pickle=False, show_progress=False)
        encoder.writer.wrote(name)
        return {"folder": name, "documents": int(model.scores["num_docs"])}

    def load(self, value: Any, decoder: Any, where: str) -> Any:
        import bm25s

        if not isinstance(value, dict):
            raise IncompatibleStateError(f"{where}: the saved bm25s model is damaged ({value!r:.200}).")
        folder = decoder.reader.folder_of(value.get("folder"), where)
        try:
            model = bm25s.BM25.load(str(folder), load_corpus=False, mmap=decoder.reader.mmap, allow_pickle=False,
                                    show_progress=False)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CorruptFileError(f"{where}: bm25s cannot read its saved model ({error}).") from None
        if model.scores.get("num_docs") != value.get("documents"):
            raise CorruptFileError(f"{where}: the saved bm25s model does not hold {value.get('documents')} documents.")
        return model


_HANDLERS = (FaissIndexFile(), TfidfVectorizerState(), BM25sModel())


def handler_for(value: Any) -> Any:
    """The handler that saves ``value``, or None."""
    return next((handler for handler in _HANDLERS if handler.matches(value)), None)


def handler_named(name: str) -> Any:
    """The handler that rebuilds objects saved under ``name``, or None."""
    return next((handler for handler in _HANDLERS if handler.name == name), None)
