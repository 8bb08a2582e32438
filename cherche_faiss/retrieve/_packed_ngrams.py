"""Character n-grams packed into integers and counted with numpy: the analysis of :class:`NgramVectorizer`.

An n-gram of at most ``max_n`` characters over an alphabet of ``A`` characters is one integer: each
character's code (its rank in the alphabet, 1 to ``A``) in ``bits = A.bit_length()`` bits, first
character highest. Codes start at 1, so n-grams of different lengths never share a value: the packing
is exact. Sorted, packed n-grams come by length, then character by character in code point order;
that order numbers a vocabulary's columns, so looking an n-gram up is a binary search in one array
(``np.searchsorted``), with no dict of strings to build, save or load.

Counting packs each (n-gram, text) pair into one integer too and sorts them: a sort of integers
replaces the per-text dicts of string n-grams that lenlp and scikit-learn build (several times faster
on SciFact). Texts are counted by chunks of about :data:`_CHUNK_CODEPOINTS` characters, which bounds
the memory; every text lies in one chunk, so its counts never depend on the others.

A lenlp-normalised text is ASCII (a few dozen distinct characters, 6 or 7 bits), so 3- to 7-grams
take 42 to 49 bits. An alphabet too large for ``bits * max_n <= 64`` does not pack: the vectorizer
then keeps its terms as strings (:meth:`Alphabet.fits`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["Alphabet", "codepoints", "count_by_term", "count_by_text", "pack_terms"]

# Characters counted at once (each gives up to max_n - min_n + 1 pairs of 16 bytes).
_CHUNK_CODEPOINTS = 1 << 21
_WORD = 64


def codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The code points of ``texts`` one after another (uint32) and each text's length (int64)."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    # surrogatepass: a lone surrogate (valid in a Python str) is one code point, as len() counts it.
    joined = "".join(texts).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(joined, dtype=np.uint32), lengths


class Alphabet:
    """The characters of a vocabulary, sorted by code point: character ``i`` has code ``i + 1``.

    Parameters
    ----------
    characters
        Distinct code points, ascending (uint32).
    """

    __slots__ = ("bits", "characters", "_table")

    def __init__(self, characters: np.ndarray) -> None:
        self.characters = np.asarray(characters, dtype=np.uint32)
        self.bits = len(self.characters).bit_length()
        self._table: np.ndarray | None = None

    @classmethod
    def of(cls, points: np.ndarray) -> Alphabet:
        """The alphabet of these code points."""
        return cls(np.unique(points))

    def fits(self, max_n: int) -> bool:
        """Whether n-grams of up to ``max_n`` characters pack into 64 bits."""
        return self.bits * max_n <= _WORD

    def codes(self, points: np.ndarray) -> np.ndarray:
        """Each code point's code (uint64), 0 for a character outside the alphabet."""
        characters = self.characters
        if not len(characters):
            return np.zeros(len(points), dtype=np.uint64)
        if characters[-1] < 1 << 16:  # a lookup table (ASCII: 128 entries)
            if self._table is None:
                table = np.zeros(int(characters[-1]) + 1, dtype=np.uint64)
                table[characters] = np.arange(1, len(characters) + 1, dtype=np.uint64)
                self._table = table
            table = self._table
            inside = points < len(table)
            return np.where(inside, table[np.where(inside, points, 0)], np.uint64(0))
        rank = np.minimum(np.searchsorted(characters, points), len(characters) - 1)
        return np.where(characters[rank] == points, rank.astype(np.uint64) + np.uint64(1), np.uint64(0))

    def lengths(self, keys: np.ndarray, max_n: int) -> np.ndarray:
        """The number of characters of each packed n-gram, 0 for a key no n-gram of at most ``max_n``
        characters of this alphabet packs into (a code 0 below another, a code past the alphabet)."""
        width, mask = np.uint64(self.bits), np.uint64((1 << self.bits) - 1)
        lengths = np.zeros(len(keys), dtype=np.int64)
        valid = np.ones(len(keys), dtype=bool)
        for position in range(max_n):  # from the last character up
            code = (keys >> (width * np.uint64(position))) & mask
            present = code != 0
            valid &= ~present | (lengths == position)  # every code below a present one is present
            valid &= code <= len(self.characters)
            lengths += present
        if self.bits * max_n < _WORD:
            valid &= (keys >> (width * np.uint64(max_n))) == 0
        lengths[~valid] = 0
        return lengths

    def decode(self, keys: np.ndarray, max_n: int) -> list[str]:
        """The n-grams these packed keys stand for, in the same order."""
        lengths = self.lengths(keys, max_n)
        terms = [""] * len(keys)
        width, mask = np.uint64(self.bits), np.uint64((1 << self.bits) - 1)
        for n in np.unique(lengths[lengths > 0]).tolist():
            rows = np.flatnonzero(lengths == n)
            shifts = width * np.arange(n - 1, -1, -1, dtype=np.uint64)
            codes = (keys[rows, None] >> shifts) & mask
            points = self.characters[(codes - np.uint64(1)).astype(np.int64)].astype("<u4")
            if self.characters[0] != 0:  # numpy drops trailing NULs from its strings: no NUL here
                found = np.ascontiguousarray(points).view(f"<U{n}").ravel().tolist()
            else:
                found = ["".join(map(chr, row)) for row in points.tolist()]
            for row, term in zip(rows.tolist(), found):
                terms[row] = term
        return terms


def pack_terms(terms: list[str], alphabet: Alphabet) -> np.ndarray:
    """The packed keys of ``terms`` (each non-empty, every character in ``alphabet``, short enough to pack)."""
    points, lengths = codepoints(terms)
    codes = alphabet.codes(points)
    starts = np.zeros(len(terms), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    term_of = np.repeat(np.arange(len(terms)), lengths)
    position = np.arange(len(points)) - starts[term_of]
    shifts = ((lengths[term_of] - 1 - position) * alphabet.bits).astype(np.uint64)
    return np.bitwise_or.reduceat(codes << shifts, starts) if len(terms) else np.zeros(0, dtype=np.uint64)


def _pairs(codes: np.ndarray, lengths: np.ndarray, min_n: int, max_n: int, bits: int) -> tuple[np.ndarray, ...]:
    """Each text's n-grams (``n`` from ``min_n`` to ``max_n``, every window inside the text, none
    holding a character outside the alphabet) as ``(text number, packed key)`` arrays."""
    total = len(codes)
    ends = np.cumsum(lengths)
    text_of = np.repeat(np.arange(len(lengths)), lengths)
    remaining = ends[text_of] - np.arange(total)  # characters from each position to its text's end
    unknown = codes == 0
    any_unknown = bool(unknown.any())
    key = np.zeros(total, dtype=np.uint64)
    outside = np.zeros(total, dtype=bool)
    width = np.uint64(bits)
    texts, keys = [], []
    for n in range(1, min(max_n, total) + 1):
        windows = total - n + 1
        key[:windows] <<= width
        key[:windows] |= codes[n - 1 :]
        if any_unknown:
            outside[:windows] |= unknown[n - 1 :]
        if n >= min_n:
            kept = remaining[:windows] >= n
            if any_unknown:
                kept &= ~outside[:windows]
            found = np.flatnonzero(kept)
            texts.append(text_of[found])
            keys.append(key[found])
    if not keys:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    return np.concatenate(texts), np.concatenate(keys)


def _chunks(lengths: np.ndarray, text_limit: int) -> Iterator[tuple[int, int]]:
    """``(first, stop)`` text ranges of about :data:`_CHUNK_CODEPOINTS` characters and at most
    ``text_limit`` texts (one text at least)."""
    first, count = 0, len(lengths)
    bounds = np.cumsum(lengths)
    while first < count:
        before = int(bounds[first - 1]) if first else 0
        stop = int(np.searchsorted(bounds, before + _CHUNK_CODEPOINTS, side="right"))
        stop = min(max(stop, first + 1), first + text_limit, count)
        yield first, stop
        first = stop


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and how many times each appears."""
    if not len(values):
        return values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    return values[starts], np.diff(np.append(starts, len(values)))


def _sorted_pairs(
    codes: np.ndarray, lengths: np.ndarray, min_n: int, max_n: int, bits: int, by_term: bool
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk of texts: its first text and its distinct (text, n-gram) pairs with their counts,
    sorted by n-gram then text (``by_term``) or by text then n-gram."""
    key_bits = bits * max_n
    text_limit = 1 << (_WORD - key_bits)  # texts whose numbers pack beside a key
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    for first, stop in _chunks(lengths, text_limit):
        texts, keys = _pairs(codes[starts[first] : starts[stop]], lengths[first:stop], min_n, max_n, bits)
        text_bits = (stop - first - 1).bit_length()
        low, high = (texts.astype(np.uint64), keys) if by_term else (keys, texts.astype(np.uint64))
        low_bits = np.uint64(text_bits if by_term else key_bits)
        pairs, counts = _runs(np.sort((high << low_bits) | low if text_bits else keys))
        low_values = pairs & ((np.uint64(1) << low_bits) - np.uint64(1)) if low_bits < _WORD else pairs
        high_values = pairs >> low_bits if low_bits < _WORD else np.zeros(len(pairs), dtype=np.uint64)
        if not text_bits:  # one text in the chunk: the pairs are its keys
            keys, texts = pairs, np.zeros(len(pairs), dtype=np.uint64)
        elif by_term:
            keys, texts = high_values, low_values
        else:
            keys, texts = low_values, high_values
        yield first, texts.astype(np.int64), keys, counts


def count_by_term(
    codes: np.ndarray, lengths: np.ndarray, min_n: int, max_n: int, bits: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk: ``(first text, distinct keys, key number of each entry, text of each entry, count)``,
    the entries sorted by key then text (a vocabulary of distinct keys maps to columns once per key)."""
    for first, texts, keys, counts in _sorted_pairs(codes, lengths, min_n, max_n, bits, by_term=True):
        distinct, per_key = _runs(keys)
        yield first, distinct, np.repeat(np.arange(len(distinct)), per_key), texts, counts


def count_by_text(
    codes: np.ndarray, lengths: np.ndarray, min_n: int, max_n: int, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(text, key, count)`` of every distinct n-gram of each text, sorted by text then key."""
    parts = [
        (texts + first, keys, counts)
        for first, texts, keys, counts in _sorted_pairs(codes, lengths, min_n, max_n, bits, by_term=False)
    ]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return tuple(np.concatenate(column) for column in zip(*parts))  # type: ignore[return-value]
