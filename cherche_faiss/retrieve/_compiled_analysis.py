"""TfIdf's query analysis compiled: the terms and weights of a batch of queries, with numba.

The pure-Python analysis (``TfIdf._analyse``) takes each distinct word's ``char_wb`` n-grams once a call
and looks each up in the vocabulary dict; with short posting lists scored by compiled code, that
became most of a query's time. Here the same work is done by :mod:`._ngrams_numba`: Python only
splits the queries into words (``str.split``, as scikit-learn) and numbers the distinct ones; the
n-grams, their columns and each query's counts come from compiled loops over a packed copy of the
vocabulary (:class:`PackedVocabulary`). Each query's columns, counts, weights and norm are those of the
Python analysis, operation for operation, so hits are the same bits either way.

It serves the standard settings only: ``analyzer="char_wb"`` whose vocabulary's alphabet packs an
n-gram of ``max_n`` characters into 63 bits (up to 511 distinct characters at ``max_n=7``); otherwise
:meth:`PackedVocabulary.build` answers None and the Python analysis runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._tfidf_analyzers import WordBoundedAnalyzer

__all__ = ["PackedVocabulary"]

_BITS_AVAILABLE = 63


def _codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The code points of ``texts`` one after another (uint32) and each text's length."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    # surrogatepass: a lone surrogate (valid in a Python str) is one code point, as len() counts it.
    joined = "".join(texts).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(joined, dtype=np.uint32), lengths


class PackedVocabulary:
    """A ``char_wb`` vocabulary as an integer hash table, and the analysis of queries against it.

    Build it with :meth:`build`; :meth:`analyse` gives what ``TfIdf._analyse`` gives.
    """

    def __init__(
        self, kernels: Any, analyzer: WordBoundedAnalyzer, code_of: np.ndarray, bits: int, table: tuple, idf: Any
    ) -> None:
        self.kernels, self.analyzer, self.code_of, self.bits = kernels, analyzer, code_of, bits
        self.keys, self.values, self.log_size = table
        self.idf = idf
        self.space = int(code_of[32]) if len(code_of) > 32 else 0

    @classmethod
    def build(cls, kernels: Any, analyzer: Any, vocabulary: Mapping[str, int], idf: Any) -> PackedVocabulary | None:
        """The packed vocabulary, or None when ``analyzer`` is not ``char_wb`` or the alphabet does not pack."""
        if not isinstance(analyzer, WordBoundedAnalyzer) or not vocabulary:
            return None
        terms = list(vocabulary)
        columns = np.fromiter(vocabulary.values(), dtype=np.int64, count=len(terms))
        codepoints, lengths = _codepoints(terms)
        alphabet = np.unique(codepoints)
        bits = len(alphabet).bit_length()  # codes 1..A
        if bits * max(int(lengths.max()), analyzer.max_n) > _BITS_AVAILABLE:
            return None
        code_of = np.zeros(int(alphabet[-1]) + 1, dtype=np.uint64)
        code_of[alphabet] = np.arange(1, len(alphabet) + 1, dtype=np.uint64)
        # Each term's codes, first character in the highest bits: shift, then sum per term (disjoint bits).
        term_of = np.repeat(np.arange(len(terms)), lengths)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        position = np.arange(len(codepoints)) - starts[term_of]
        shifts = ((lengths[term_of] - 1 - position) * bits).astype(np.uint64)
        packed = np.bitwise_or.reduceat(code_of[codepoints] << shifts, starts)
        log_size = max(4, (2 * len(terms) - 1).bit_length())  # at most half the slots used
        table = (*kernels.build_table(packed, columns, log_size), log_size)
        return cls(kernels, analyzer, code_of, bits, table, idf)

    def analyse(self, queries: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Columns (in order of first appearance) and L2-normalised TF-IDF weights of each query."""
        prepare = self.analyzer.prepare
        numbers: dict[str, int] = {}
        query_words: list[int] = []
        query_ptr = [0]
        for query in queries:
            for word in prepare(query).split():
                number = numbers.get(word)
                if number is None:
                    number = numbers[word] = len(numbers)
                query_words.append(number)
            query_ptr.append(len(query_words))
        codepoints, lengths = _codepoints(list(numbers))
        word_ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=word_ptr[1:])
        kernels, analyzer = self.kernels, self.analyzer
        columns, column_ptr = kernels.word_columns(
            codepoints, word_ptr, self.code_of, self.bits, self.keys, self.values, self.log_size,
            analyzer.min_n, analyzer.max_n, self.space,
        )  # fmt: skip
        terms, counts, ptr = kernels.query_terms(
            np.asarray(query_ptr, dtype=np.int64), np.asarray(query_words, dtype=np.int64), columns, column_ptr
        )
        weights = counts.astype(np.float64) * self.idf[terms]
        analysed = []
        bounds = ptr.tolist()
        for start, stop in zip(bounds, bounds[1:]):
            query_weights = weights[start:stop].copy()  # its own array, as the Python analysis makes
            norm = np.sqrt(query_weights @ query_weights)
            analysed.append((terms[start:stop], query_weights / norm if norm > 0 else query_weights))
        return analysed
