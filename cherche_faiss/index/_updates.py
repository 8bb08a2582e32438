"""Changing what a :class:`~cherche_faiss.index.FaissIndex` holds: adding, replacing, removing.

Every change keeps the FAISS index and the key table in step: a key is in the
table exactly when its vector is in FAISS, under the id the table gives it.
A vector replaced is removed, then added under a new id (ids are never
reused). Adding checks its whole input first, so that :meth:`UpdatesMixin.add`
leaves the index unchanged when anything is wrong with it; a stream
(:meth:`UpdatesMixin.add_batches`, see ``_stream``) is checked batch by batch.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.progress import progress
from .._core.validation import as_matrix, check_positive_int
from ..exceptions import IncompatibleStateError, InvalidInputError, UnknownKeyError
from ._keys import KeyTable, check_keys
from ._raw import remove_ids
from ._stream import add_stream

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Self

__all__ = ["UpdatesMixin"]


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

    def prepare(self, vectors: Any, name: str = "queries") -> np.ndarray:
        """Validate ``vectors`` (shape, dimension, finite values) and normalise them as the index does."""
        matrix = as_matrix(vectors, name, self.d if self._index is not None else self.dimension)
        if self.normalize:
            norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))[:, None]
            if not norms.all():  # checked cheaply; the rows are found only to say which
                zero = np.flatnonzero(norms[:, 0] == 0)
                raise InvalidInputError(
                    f"{name} rows {zero[:5].tolist()} are zero vectors, which cannot be normalised "
                    "(cosine similarity is undefined for them). Remove those rows, check the "
                    "encoder's output for empty texts, or use normalize=False."
                )
            matrix = matrix / norms
        return matrix

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
        matrix = self.prepare(vectors, "vectors")
        keys = check_keys(keys, len(matrix))
        return self._add_prepared(matrix, keys, show_progress)

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
        if self._mapped:
            raise InvalidInputError(
                "this index was loaded with mmap=True: its vectors are read from the saved files, "
                "which are never modified in place, so it cannot add or remove vectors. Load it "
                "with cherche_faiss.load(path, mmap=False) to change it, then save it again."
            )

    def _add_prepared(self, matrix: np.ndarray, keys: list[Hashable], show_progress: bool = False) -> Self:
        if not keys:
            return self
        self._check_writable()
        # The last occurrence of a repeated key wins, as in a dict.
        last = {key: row for row, key in enumerate(keys)}
        if len(last) != len(keys):
            rows = np.fromiter(sorted(last.values()), dtype=np.int64)
            matrix, keys = matrix[rows], [keys[row] for row in rows]
        if self._index is None:
            self._build(matrix.shape[1], len(keys))
        self._train_if_needed(matrix, show_progress)
        replaced = [id_ for id_ in map(self._table.id_of, keys) if id_ >= 0]
        if replaced:
            self._remove_ids(np.asarray(replaced, dtype=np.int64), replacing=True)
        start = self._table.next_id
        self._forget_views()
        self._index.add_with_ids(matrix, np.arange(start, start + len(keys), dtype=np.int64))
        self._table.append(keys)  # after FAISS took them: a failed add leaves the table as it was
        return self

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
