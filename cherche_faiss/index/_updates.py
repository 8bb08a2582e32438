"""Changing what a :class:`~cherche_faiss.index.FaissIndex` holds: adding, replacing, removing.

Every change keeps the FAISS index and the key table in step: a key is in the
table exactly when its vector is in FAISS, under the id the table gives it.
A vector replaced is removed, then added under a new id (ids are never
reused). Adding checks its whole input first, so that :meth:`UpdatesMixin.add`
leaves the index unchanged when anything is wrong with it; a stream
(:meth:`UpdatesMixin.add_batches`, see ``_stream``) is checked batch by batch.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.progress import progress
from .._core.validation import as_matrix, check_finite, check_positive_int, row_squares
from ..exceptions import CherFaissError, IncompatibleStateError, InvalidInputError, UnknownKeyError
from ._keys import KeyTable, check_keys, checked_keys, int_keys
from ._raw import remove_ids
from ._search_params import index_kind
from ._stream import add_stream

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Self

__all__ = ["UpdatesMixin"]

# Bytes of normalised vectors handed to a flat index at once by block adds (a block stays in the CPU's caches).
_BLOCK_BYTES = 1 << 20
# Rows handed to an IVF index at once: the block IndexIVF::add_with_ids splits larger adds into.
_IVF_BLOCK_ROWS = 65_536


class UpdatesMixin:
    """``prepare``, ``add``, ``add_batches`` and ``remove`` of a FaissIndex.

    Mixed into :class:`~cherche_faiss.index.FaissIndex`, whose attributes and
    ``d``, ``factory_used``, ``_build``, ``_train_if_needed`` and
    ``_forget_views`` it uses; it provides what ``_stream.add_stream`` needs.
    """

    _index: Any
    _table: KeyTable
    _device: str
    _mapped: bool
    dimension: int | None
    normalize: bool
    factory: Any
    _choice: Any

    if TYPE_CHECKING:  # provided by FaissIndex and its other mixins

        @property
        def d(self) -> int | None: ...
        @property
        def factory_used(self) -> str: ...
        def __contains__(self, key: Any) -> bool: ...
        def _build(self, dimension: int, size: int | None = None, size_known: bool = True) -> None: ...
        def _build_for_stream(self, dimension: int, buffered: int, total: int | None) -> bool: ...
        def _training_size(self) -> int: ...
        def _train_if_needed(self, matrix: np.ndarray, show_progress: bool = False) -> None: ...
        def _release_freed_heap(self) -> bool: ...
        def _forget_views(self) -> None: ...
        def _own_storage(self) -> None: ...
        def _adds_in_blocks(self) -> bool: ...
        def _reserve_rows(self, n: int) -> None: ...
        def _use_index(self, index: Any) -> None: ...

    def prepare(self, vectors: Any, name: str = "queries") -> np.ndarray:
        """Validate ``vectors`` (shape, dimension, finite values) and normalise them as the index does."""
        matrix, norms = self._validated(vectors, name)
        return matrix if norms is None else matrix / norms[:, None]

    def _validated(self, vectors: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        """``(matrix, norms)``: ``vectors`` checked as :meth:`prepare` checks them, not yet normalised.

        ``norms`` (None without ``normalize``) are what :meth:`prepare` divides the rows by; adding
        divides them batch by batch instead (see ``_add_rows``), so that a large add never holds a
        normalised copy of all its vectors. NaN and infinite values are found from the row
        norms (one pass over the vectors, which normalising needs anyway), or from their sum.
        """
        matrix = as_matrix(vectors, name, self.d if self._index is not None else self.dimension, finite=False)
        if not self.normalize:
            if not math.isfinite(float(matrix.sum())):  # a NaN or an infinity makes the sum one
                check_finite(matrix, name)  # (values so large that their sum overflows pass)
            return matrix, None
        squares = row_squares(matrix)
        if not np.isfinite(squares).all():
            check_finite(matrix, name)  # NaN or infinite values raise; squares that overflowed pass, as before
        norms = np.sqrt(squares)
        if not norms.all():  # checked cheaply; the rows are found only to say which
            zero = np.flatnonzero(norms == 0)
            raise InvalidInputError(
                f"{name} rows {zero[:5].tolist()} are zero vectors, which cannot be normalised "
                "(cosine similarity is undefined for them). Remove those rows, check the "
                "encoder's output for empty texts, or use normalize=False."
            )
        return matrix, norms

    def add(self, vectors: Any, keys: Sequence[Hashable], show_progress: bool = False) -> Self:
        """Add (or replace) one vector per key.

        A key already in the index has its vector replaced; when ``keys``
        repeats a key, its last vector wins. The index is left unchanged when
        anything is wrong with the input. An index that needs training is
        trained on a sample of these vectors (see ``train_size``).

        Parameters
        ----------
        vectors
            Array of shape ``(n, d)`` (or ``(d,)`` for one vector).
        keys
            ``n`` hashable keys.
        show_progress
            Show a progress bar while the index trains.

        Returns
        -------
        FaissIndex
            ``self``, so that calls chain.
        """
        if self._validates_while_adding():
            matrix = as_matrix(vectors, "vectors", self.d if self._index is not None else self.dimension, finite=False)
            try:
                checked, types = checked_keys(keys, len(matrix))
            except CherFaissError:
                self._validated(vectors, "vectors")  # a bad vector is reported before bad keys, as always
                raise
            if self._add_validating(matrix, checked, types):
                return self
            # Keys to replace or repeated, an index to train, or a bad vector (the general way says which).
        matrix, norms = self._validated(vectors, "vectors")
        keys = check_keys(keys, len(matrix))
        return self._add_prepared(matrix, keys, show_progress, norms)

    def _validates_while_adding(self) -> bool:
        """Whether :meth:`add` may check the vectors block by block as they go in (see ``_add_validating``):
        normalised vectors into a writable CPU index that is, or will be (a factory string other than
        ``"auto"``), there."""
        if not self.normalize or self._mapped or self._device != "cpu":
            return False
        return self._index is not None or (isinstance(self.factory, str) and self.factory != "auto")

    def _add_validating(self, matrix: np.ndarray, keys: list[Hashable], types: set[type]) -> bool:
        """Add new keys' vectors, checking and normalising each block just before FAISS takes it; False
        (nothing changed) when the general way must add them.

        The general way reads the vectors twice (their norms for the checks, then again to divide
        them); here each block is checked while it is in the CPU's caches. A bad block takes back
        the blocks added before it and returns False, so that the general way raises its usual
        error (naming the first bad rows of the whole input): the index is left as it was. Only
        keys that are all new and distinct, into a trained index that adds row by row, go this way.
        """
        table = self._table
        if not keys:
            return False
        ints = int_keys(keys, types) if table.int_column or not table.next_id else None
        if not (ints is not None and table.new_keys(ints)):
            if len(set(keys)) != len(keys) or (len(table) and bool((table.ids_of(keys) >= 0).any())):
                return False
        built = self._index is None
        if built:
            try:
                self._build(matrix.shape[1], len(keys))
            except Exception:  # the general way raises it, after any error about the vectors
                self._unbuild()
                return False
        if not (self._index.is_trained and self._adds_in_blocks()):
            if built:
                self._unbuild()
            return False
        self._check_writable()
        self._forget_views()
        n, start = len(matrix), table.next_id
        ids = np.arange(start, start + n, dtype=np.int64)
        step = self._block_rows(matrix.shape[1])
        self._reserve_rows(n)
        buffer = np.empty((min(step, n), matrix.shape[1]), dtype=np.float32)
        done = 0
        try:
            for first in range(0, n, step):
                stop = min(first + step, n)
                rows = matrix[first:stop]
                squares = row_squares(rows)
                if not np.isfinite(squares).all() and not np.isfinite(rows).all():
                    break  # NaN or infinite values (squares that overflowed pass, as in _validated)
                norms = np.sqrt(squares)
                if not norms.all():
                    break  # a zero vector
                block = np.divide(rows, norms[:, None], out=buffer[: stop - first])
                self._index.add_with_ids(block, ids[first:stop])
                done = stop
        except BaseException:
            if done:  # the blocks FAISS took keep their keys: the table and the index stay in step
                table.append(keys[:done], None if ints is None else ints[:done])
            raise
        if done < n:
            self._take_back(ids[:done], built)
            return False
        table.append(keys, ints)
        return True

    def _unbuild(self) -> None:
        """Forget the index built for an add that then went the general way (which builds it again)."""
        self._use_index(None)
        self._choice = None

    def _take_back(self, ids: np.ndarray, built: bool) -> None:
        """Remove the vectors of ``ids`` just added (the last ones), or the index just built for them."""
        if built:
            self._unbuild()
        elif len(ids):
            self._forget_views()
            remove_ids(self._index, ids)

    def _block_rows(self, dimension: int) -> int:
        """Rows handed to FAISS at once by block adds: an IVF index takes them in FAISS's own add
        blocks (each call assigns its rows to lists on every core: small calls cost more than they
        save), a flat one about a MiB that stays in the CPU's caches."""
        if index_kind(self._index) == "ivf":
            return _IVF_BLOCK_ROWS
        return max(1, _BLOCK_BYTES // (4 * dimension))

    def add_batches(
        self,
        batches: Iterable[tuple[Any, Sequence[Hashable]]],
        total: int | None = None,
        show_progress: bool = True,
        description: str = "adding vectors",
    ) -> Self:
        """Add ``(vectors, keys)`` batches from any iterable, e.g. a generator that encodes documents.

        Batches go into the index as they arrive, so memory holds the index
        and one batch, except at the start of an index that needs training:
        the first vectors are kept until there are enough to train it
        (``train_size``), then trained on and added. With ``factory="auto"``
        the index is chosen from ``expected_size``, else ``total``, else the
        vectors seen when the stream ends or :data:`~cherche_faiss.index.auto.EXACT_LIMIT`
        vectors have arrived (whichever comes first; ``repr`` then says the
        size was unknown).

        Unlike :meth:`add`, a stream is not atomic: when a batch is invalid,
        the batches before it stay added.

        Parameters
        ----------
        batches
            Iterable of ``(vectors, keys)`` pairs.
        total
            Number of vectors expected, for the progress bar and ``"auto"``.
        show_progress
            Progress bar with rate and ETA (ETA needs ``total``).
        description
            Label of the progress bar.

        Returns
        -------
        FaissIndex
            ``self``.
        """
        total = check_positive_int(total, "total")
        self._check_writable()
        with progress(total, description, show_progress, unit="vec") as bar:
            add_stream(self, batches, total, show_progress, bar)
        return self

    # What add_stream asks of the index (see _stream.StreamTarget).
    def _takes_vectors(self) -> bool:
        """Whether vectors can go straight in: the index is built and trained."""
        return self._index is not None and self._index.is_trained

    def _needs_training(self) -> bool:
        return not self._index.is_trained

    def _check_writable(self) -> None:
        """Raise for a memory-mapped index; give an index read in place from a pickle memory of its own."""
        if self._mapped:
            raise InvalidInputError(
                "this index was loaded with mmap=True: its vectors are read from the saved files, "
                "which are never modified in place, so it cannot add or remove vectors. Load it "
                "with cherche_faiss.load(path, mmap=False) to change it, then save it again."
            )
        self._own_storage()

    def _add_prepared(
        self, matrix: np.ndarray, keys: list[Hashable], show_progress: bool = False, norms: np.ndarray | None = None
    ) -> Self:
        """Add validated vectors under ``keys`` (checked): normalised already, or to be divided by ``norms``."""
        if not keys:
            return self
        self._check_writable()
        table = self._table
        ints = int_keys(keys) if table.int_column or not table.next_id else None
        fresh = ints is not None and table.new_keys(ints)  # increasing ints above all: no repeat, none held
        if not fresh:
            # The last occurrence of a repeated key wins, as in a dict.
            last = dict(zip(keys, range(len(keys))))
            if len(last) != len(keys):
                rows = np.fromiter(sorted(last.values()), dtype=np.int64)
                matrix, keys = matrix[rows], [keys[row] for row in rows]
                norms = None if norms is None else norms[rows]
                ints = None if ints is None else ints[rows]
        if self._index is None:
            self._build(matrix.shape[1], len(keys))
        if norms is not None and not self._index.is_trained:
            matrix, norms = matrix / norms[:, None], None  # the training sample is drawn from normalised rows
        self._train_if_needed(matrix, show_progress)
        if not fresh and len(table):
            held = table.ids_of(keys)
            replaced = held[held >= 0]
            if len(replaced):
                self._remove_ids(replaced, replacing=True)
        self._forget_views()
        self._add_rows(matrix, norms, keys, ints)
        return self

    def _add_rows(self, matrix: np.ndarray, norms: np.ndarray | None, keys: list[Hashable], ints: Any) -> None:
        """Hand the rows to FAISS under the next ids, then give ``keys`` those ids.

        Rows still to be normalised go in blocks of about a MiB, divided by their norms into one
        reused buffer that FAISS copies from (flat storage reserved first when the index is empty),
        where the index adds rows one by one anyway (flat codes, IVF lists on the CPU): no
        normalised copy of the whole batch, each block read while it is in cache. Other indexes
        (HNSW, GPU ...) get the normalised batch whole, in one call, as they always did.
        """
        n, start = len(matrix), self._table.next_id
        ids = np.arange(start, start + n, dtype=np.int64)
        if norms is not None and not self._adds_in_blocks():
            matrix, norms = matrix / norms[:, None], None
        if norms is None:
            self._index.add_with_ids(matrix, ids)
            self._table.append(keys, ints)  # after FAISS took them: a failed add leaves the table as it was
            return
        self._reserve_rows(n)
        step = self._block_rows(matrix.shape[1])
        buffer = np.empty((min(step, n), matrix.shape[1]), dtype=np.float32)
        done = 0
        try:
            for first in range(0, n, step):
                stop = min(first + step, n)
                block = np.divide(matrix[first:stop], norms[first:stop, None], out=buffer[: stop - first])
                self._index.add_with_ids(block, ids[first:stop])
                done = stop
        except BaseException:
            if done:  # the blocks FAISS took keep their keys: the table and the index stay in step
                self._table.append(keys[:done], None if ints is None else ints[:done])
            raise
        self._table.append(keys, ints)

    def _remove_ids(self, ids: np.ndarray, replacing: bool = False) -> None:
        self._check_writable()
        self._forget_views()
        try:
            removed = remove_ids(self._index, ids)
        except RuntimeError:
            action = "replace existing keys" if replacing else "remove keys"
            raise InvalidInputError(
                f"index {self.factory_used!r} cannot {action}: FAISS does not support removal for it "
                "(HNSW indexes, for instance). Use a Flat or IVF index, or rebuild the index "
                "with the new documents."
            ) from None
        if removed != len(ids):
            raise IncompatibleStateError(
                f"FAISS removed {removed} vectors instead of {len(ids)}; the key table and the "
                "index disagree. Rebuild the index."
            )
        self._table.forget(ids.tolist())

    def remove(self, keys: Iterable[Hashable]) -> Self:
        """Remove the vectors of ``keys``; every key must be present."""
        keys = list(keys)
        missing = [key for key in keys if key not in self]
        if missing:
            raise UnknownKeyError(
                f"cannot remove {len(missing)} key(s) the index does not hold, e.g. {missing[:5]}. "
                "Remove only keys that were added (see FaissIndex.keys())."
            )
        if keys:
            self._remove_ids(np.fromiter({self._table.id_of(key) for key in keys}, dtype=np.int64))
        return self
