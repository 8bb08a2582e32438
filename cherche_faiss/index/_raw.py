"""Free functions on a raw ``faiss.Index``, in the manner of ``faiss.contrib``.

Each takes the FAISS object itself and knows nothing of keys, devices or
saved states (:class:`~cherche_faiss.index.FaissIndex` does); they hide the
SWIG details: downcasting through ``IndexIDMap2`` and ``IndexHNSW`` wrappers,
zero-copy views of flat storage, direct maps, callback readers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import DimensionMismatchError, InvalidInputError, InvalidTypeError

__all__ = [
    "adds_row_by_row",
    "check_adoptable",
    "faiss_module",
    "flat_storage_view",
    "hnsw_exhaustive_ids",
    "index_from_factory",
    "metric_type",
    "read_index_from",
    "read_index_in_place",
    "reconstruct_batch",
    "remove_ids",
    "reserve_flat_codes",
    "serialize_aligned",
    "with_ids",
]

# Boundary the vectors of a flat index are placed at inside the bytes :func:`serialize_aligned` writes.
ALIGNMENT = 16


def faiss_module() -> Any:
    """The ``faiss`` module, imported on first use: ``import cherche_faiss`` must stay cheap."""
    import faiss

    return faiss


def metric_type(metric: str) -> int:
    """FAISS' metric constant of ``"ip"`` (inner product) or ``"l2"``."""
    faiss = faiss_module()
    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def index_from_factory(dimension: int, factory: str, metric: int) -> Any:
    """``faiss.index_factory(dimension, factory, metric)``, with a clear error for a bad string."""
    try:
        index = faiss_module().index_factory(dimension, factory, metric)
    except RuntimeError as error:
        raise InvalidInputError(
            f"FAISS cannot build an index from factory string {factory!r} "
            f"(dimension {dimension}): {str(error).strip().splitlines()[-1]}. See "
            "https://github.com/facebookresearch/faiss/wiki/The-index-factory for valid strings."
        ) from None
    return index


def check_adoptable(index: Any, metric: str, dimension: int | None) -> None:
    """Raise unless ``index`` is an empty ``faiss.Index`` of ``metric`` (and ``dimension`` when given)."""
    if not isinstance(index, faiss_module().Index):
        raise InvalidTypeError(
            f"factory must be a FAISS factory string or a faiss.Index, got "
            f"{type(index).__name__}. Pass e.g. 'Flat', 'HNSW32', 'IVF1024,Flat' or "
            "faiss.IndexFlatIP(d)."
        )
    if index.ntotal != 0:
        raise InvalidInputError(
            f"the faiss.Index given holds {index.ntotal} vectors without keys. Pass an empty "
            "index and add vectors through FaissIndex.add so that each one has a key."
        )
    if index.metric_type != metric_type(metric):
        raise InvalidInputError(
            f"the faiss.Index given uses metric_type {index.metric_type} but metric="
            f"{metric!r}. Pass metric='ip' for METRIC_INNER_PRODUCT (0) or 'l2' for "
            "METRIC_L2 (1)."
        )
    if dimension is not None and index.d != dimension:
        raise DimensionMismatchError(f"the faiss.Index given has dimension {index.d} but dimension={dimension}.")


def with_ids(index: Any) -> Any:
    """Make ``index`` accept our int64 ids: IVF indexes do natively, others get an IDMap2."""
    faiss = faiss_module()
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return index
    if faiss.try_extract_index_ivf(index) is not None:
        return index
    return faiss.IndexIDMap2(index)


def serialize_aligned(index: Any) -> tuple[np.ndarray, int]:
    """``(data, start)``: ``index`` serialised as ``faiss.serialize_index`` does, after ``start`` padding bytes.

    The padding puts the vectors of an id-mapped ``IndexFlat`` at an offset that is a multiple of
    :data:`ALIGNMENT` (``start`` is 0 for other indexes), so that a buffer of these bytes read back in
    place (:func:`read_index_in_place`) leaves them aligned for NumPy's BLAS. The offset is that of an
    empty index of the same shape: the header is as long, the codes follow it.
    """
    faiss = faiss_module()
    start = 0
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexFlat):
            twin = faiss.IndexIDMap2(faiss.IndexFlat(inner.d, inner.metric_type))
            twin.index.metric_arg = inner.metric_arg
            codes_offset = len(faiss.serialize_index(twin)) - 8  # the empty id map's length follows the codes
            start = -codes_offset % ALIGNMENT
    writer = faiss.VectorIOWriter()
    if start:
        writer.data.resize(start)  # zeros, which FAISS writes after
    faiss.write_index(index, writer)
    return faiss.vector_to_array(writer.data), start


def read_index_in_place(data: np.ndarray) -> Any:
    """Read a serialised index whose large arrays (flat codes, inverted lists, the HNSW graph) stay in ``data``.

    FAISS (1.11 and later: ``faiss.ZeroCopyIOReader``) then views ``data`` instead of copying it:
    nothing is read twice, and ``data`` is kept alive by the index returned (its
    ``referenced_objects``). Such an index must not change size (FAISS aborts when it resizes a
    view): :func:`read_index_from` makes the owning copy it needs first. None when this FAISS
    cannot read in place.
    """
    faiss = faiss_module()
    reader_class = getattr(faiss, "ZeroCopyIOReader", None)
    if reader_class is None:  # pragma: no cover - FAISS before 1.11
        return None
    index = faiss.read_index(reader_class(faiss.swig_ptr(data), data.nbytes))
    faiss.add_to_referenced_objects(index, data)
    return index


def read_index_from(data: np.ndarray) -> Any:
    """Read a serialised index from ``data`` into memory of its own (``data`` may be dropped after).

    ``faiss.deserialize_index`` first copies the bytes into a zero-filled
    vector of its own, then reads the index from there; a buffered reader
    over ``data`` (a callback reader before FAISS 1.11) hands FAISS slices of
    it instead, which loads as fast as ``faiss.read_index`` from a file.
    """
    faiss = faiss_module()
    if hasattr(faiss, "ZeroCopyIOReader"):
        # The zero-copy reader hands out views; behind a buffered reader FAISS copies what it reads.
        source = faiss.ZeroCopyIOReader(faiss.swig_ptr(data), data.nbytes)
        return faiss.read_index(faiss.BufferedIOReader(source, 1 << 22))
    # ndarray.data is memoryview(data); numpy's stubs give ndarray no __buffer__ before Python 3.12.
    view = data.data.cast("B")
    position = 0

    def read(n: int) -> bytes:
        nonlocal position
        chunk = view[position : position + n]
        position += n
        return chunk.tobytes()

    return faiss.read_index(faiss.PyCallbackIOReader(read, 1 << 22))


def _flat_codes(index: Any) -> Any:
    """The ``IndexFlatCodes`` holding the vectors of a flat or HNSW index (through an id map), else None."""
    faiss = faiss_module()
    core = faiss.downcast_index(index)
    if isinstance(core, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        core = faiss.downcast_index(core.index)
    if isinstance(core, faiss.IndexHNSW):
        core = faiss.downcast_index(core.storage)
    return core if isinstance(core, faiss.IndexFlatCodes) else None


def adds_row_by_row(index: Any) -> bool:
    """Whether ``index`` adds each vector on its own, so that vectors added in several calls build the
    same index as in one: flat codes behind an id map (flat, PQ, SQ), IVF indexes. Graphs (HNSW) link
    each batch as a whole, and other indexes are not known to."""
    faiss = faiss_module()
    if faiss.try_extract_index_ivf(index) is not None:
        return True
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return isinstance(faiss.downcast_index(index.index), faiss.IndexFlatCodes)
    return False


def reserve_flat_codes(index: Any, total: int) -> None:
    """Allocate the flat storage of an empty CPU flat or HNSW index for ``total`` vectors.

    FAISS grows that storage as a ``std::vector``: each reallocation copies
    it, so streaming vectors in batches would briefly need twice the index in
    memory. Resizing up and back down keeps the capacity. Other indexes (IVF
    lists, GPU indexes) are left as they are.
    """
    codes = _flat_codes(index)
    if codes is not None and codes.ntotal == 0:
        codes.codes.resize(int(total) * int(codes.code_size))
        codes.codes.resize(0)


def flat_storage_view(index: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(vectors, ids)`` of an id-mapped inner-product ``IndexFlat`` on the CPU, else None.

    ``vectors`` is a zero-copy ``(n, d)`` view of FAISS' storage and ``ids``
    the id map (a copy): the view is valid only until FAISS reallocates that
    storage, i.e. until the next add, removal or reservation. An empty index
    gives ``(0, d)`` and ``(0,)`` arrays.
    """
    faiss = faiss_module()
    if not isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return None
    inner = faiss.downcast_index(index.index)
    if not isinstance(inner, faiss.IndexFlat) or inner.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    n, d = int(inner.ntotal), int(inner.d)
    if n == 0:
        return np.empty((0, d), dtype=np.float32), np.empty(0, dtype=np.int64)
    vectors = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
    return vectors, faiss.vector_to_array(index.id_map)


def raw_storage_view(index: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(vectors, ids)`` of an id-mapped ``IndexFlat`` (either metric) or ``IndexHNSWFlat`` on the CPU, else
    None: a zero-copy view of the raw float32 vectors FAISS stores and the id map (a copy), valid until the
    next add, removal or reservation (see :func:`flat_storage_view`)."""
    faiss = faiss_module()
    if not isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return None
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    if type(inner) not in (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexFlatL2):
        return None
    n, d = int(inner.ntotal), int(inner.d)
    if n == 0:
        return None
    return faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d), faiss.vector_to_array(index.id_map)


def reconstruct_batch(index: Any, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``ids`` (all present), for any index that can reconstruct."""
    faiss = faiss_module()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
        # Custom ids need the hashtable flavour of the direct map.
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index.reconstruct_batch(ids)


def remove_ids(index: Any, ids: np.ndarray) -> int:
    """Remove the vectors of ``ids``; returns how many FAISS removed (``RuntimeError`` when it cannot)."""
    return int(index.remove_ids(faiss_module().IDSelectorBatch(ids)))


def hnsw_exhaustive_ids(index: Any, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` nearest vectors of an id-mapped HNSW index, by an exact scan of its storage.

    The graph is skipped: its flat storage is searched directly and the
    storage positions found are mapped to ids (``-1`` padded).
    """
    faiss = faiss_module()
    core = faiss.downcast_index(index.index)
    storage = faiss.downcast_index(core.storage)
    _, positions = storage.search(queries, k)
    id_map = faiss.vector_to_array(index.id_map)
    return np.where(positions >= 0, id_map[np.maximum(positions, 0)], -1)
