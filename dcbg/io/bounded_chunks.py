"""Chunk decoding whose memory is bounded by what a chunk may hold

HDF5's filters trust the compressed data: its deflate filter grows its
output buffer until the stream ends, hdf5plugin's Zstandard filter
allocates whatever size a frame header declares. A crafted chunk of a
few KiB can thus inflate to gigabytes (a "decompression bomb"), and
HDF5 then silently keeps only the chunk's first bytes.

Here a chunk never decodes to more than it may legally hold, its shape
times the item size (plus the 4 bytes of each Fletcher-32 checksum):
deflate and Zstandard are decoded with an output limit, and a chunk
that does not decode to exactly its size is refused with an error
naming the data and the chunk. :class:`ChunkDecoder` reads any chunked
dataset whose filters are all among :data:`DECODABLE_FILTERS` this way
(any chunk shape, any fixed-size number type), in place of h5py.
Datasets with other filters (szip, LZF, ...) are decoded by HDF5; for
szip, which allocates the size a chunk's header declares, that size is
checked first (:func:`check_szip_chunks`).
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib

import h5py
import numpy as np
import zstandard

from ..errors import DataReadError
from ..kernels.checksum import fletcher32

#: HDF5 filter ids (HDF5's own, and Zstandard as registered by hdf5plugin)
DEFLATE_FILTER = h5py.h5z.FILTER_DEFLATE
SHUFFLE_FILTER = h5py.h5z.FILTER_SHUFFLE
FLETCHER32_FILTER = h5py.h5z.FILTER_FLETCHER32
ZSTD_FILTER = 32015
SZIP_FILTER = h5py.h5z.FILTER_SZIP

#: filters dcbg undoes itself, with bounded memory
DECODABLE_FILTERS = frozenset(
    {DEFLATE_FILTER, SHUFFLE_FILTER, FLETCHER32_FILTER, ZSTD_FILTER}
)

#: bytes a Fletcher-32 filter appends to a chunk
CHECKSUM_BYTES = 4


class ChecksumError(DataReadError):
    """A chunk's Fletcher-32 checksum does not match its data"""


class ChunkSizeError(DataReadError):
    """A chunk decodes to another size than its shape holds (e.g. a bomb)"""


def get_filters(dataset) -> list[tuple[int, tuple]]:
    """The filter pipeline of `dataset` as ``[(filter id, options), ...]``"""
    dcpl = dataset.id.get_create_plist()
    filters = []
    for index in range(dcpl.get_nfilters()):
        fid, _flags, opts, _name = dcpl.get_filter(index)
        filters.append((int(fid), tuple(opts)))
    return filters


def decode_chunk(
    raw, filter_mask: int, filters, chunk_bytes: int, itemsize: int, where, out=None
):
    """Undo a chunk's filter pipeline without ever exceeding its size

    Parameters
    ----------
    raw: bytes
        The chunk as stored (``read_direct_chunk``)
    filter_mask: int
        HDF5's mask of filters skipped for this chunk (bit i: filter i)
    filters: list of (int, tuple)
        The dataset's pipeline (:func:`get_filters`)
    chunk_bytes: int
        What the chunk holds decoded: its shape times the item size
    itemsize: int
        Bytes per item (for the shuffle filter)
    where: str
        The chunk and the data it belongs to, for messages
    out: writable buffer of `chunk_bytes` bytes, optional
        Where the last decompression step writes (saves a copy)

    Returns
    -------
    data: memoryview
        The decoded chunk (`out` if given), `chunk_bytes` bytes

    Raises
    ------
    ChunkSizeError
        If a step would decode to more than `chunk_bytes` (a bomb) or the
        result has another size
    ChecksumError
        If a Fletcher-32 checksum does not match
    """
    steps = [
        filters[index][0]
        for index in reversed(range(len(filters)))
        if not filter_mask & (1 << index)
    ]
    unknown = [fid for fid in steps if fid not in DECODABLE_FILTERS]
    if unknown:
        raise ValueError(f"dcbg cannot decode HDF5 filter(s) {unknown} of {where}")
    data = memoryview(raw).cast("B")
    for step, fid in enumerate(steps):
        # what a legal chunk holds at this step: its data and the
        # checksums still to be verified after it
        limit = chunk_bytes + CHECKSUM_BYTES * steps[step + 1 :].count(
            FLETCHER32_FILTER
        )
        # only a final decompression writes straight into `out`
        target = out if step == len(steps) - 1 else None
        if fid == FLETCHER32_FILTER:
            data = _verify_fletcher32(data, where)
        elif fid == SHUFFLE_FILTER:
            data = _unshuffle(data, itemsize)
        elif fid == DEFLATE_FILTER:
            data = inflate_bounded(data, limit, where, target)
        else:
            data = zstd_decompress_bounded(data, limit, where, target)
    if len(data) != chunk_bytes:
        raise ChunkSizeError(
            f"{where} decodes to {len(data)} bytes, expected {chunk_bytes}; the "
            f"file is damaged or crafted"
        )
    if out is not None and not (steps and steps[-1] in (DEFLATE_FILTER, ZSTD_FILTER)):
        target = memoryview(out).cast("B")
        target[:] = data
        return target
    return data


def _bomb(where, limit) -> ChunkSizeError:
    return ChunkSizeError(
        f"{where} decompresses to more than the {limit} bytes its shape holds; "
        f"the file is damaged or crafted (a decompression bomb)"
    )


def inflate_bounded(data, limit: int, where: str, out=None) -> memoryview:
    """Inflate a zlib stream to at most `limit` bytes (HDF5's deflate filter)"""
    decompressor = zlib.decompressobj()
    try:
        result = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ChunkSizeError(
            f"{where} cannot be inflated ({exc}); the file is damaged"
        ) from exc
    if len(result) > limit:
        raise _bomb(where, limit)
    if not decompressor.eof:
        raise ChunkSizeError(
            f"{where} holds an incomplete deflate stream; the file is damaged"
        )
    return _into(result, out)


def zstd_decompress_bounded(data, limit: int, where: str, out=None) -> memoryview:
    """Decode Zstandard frames to at most `limit` bytes

    Frames are read one after another (like hdf5plugin's filter), with
    or without a declared content size; a declared size is not trusted.
    """
    target = memoryview(out).cast("B") if out is not None else None
    if target is None or len(target) > limit + 1:
        buffer = bytearray(limit + 1)
    else:
        buffer = None
    view = memoryview(buffer) if buffer is not None else target
    size = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(
            data, read_across_frames=True
        ) as reader:
            while size < len(view):
                count = reader.readinto(view[size:])
                if not count:
                    break
                size += count
            if size == len(view) and buffer is None and reader.read(1):
                size += 1  # `out` is full and more follows
    except zstandard.ZstdError as exc:
        raise ChunkSizeError(
            f"{where} cannot be decompressed ({exc}); the file is damaged"
        ) from exc
    if size > limit:
        raise _bomb(where, limit)
    if buffer is None:
        return target[:size]
    return _into(memoryview(buffer)[:size], out)


def _into(data, out) -> memoryview:
    if out is None:
        return memoryview(data).cast("B")
    target = memoryview(out).cast("B")
    if len(data) == len(target):
        target[:] = data
        return target
    return memoryview(data).cast("B")  # wrong size: the caller reports it


def _verify_fletcher32(data: memoryview, where: str) -> memoryview:
    if len(data) < CHECKSUM_BYTES:
        raise ChunkSizeError(f"{where} is too short for its checksum; damaged")
    (stored,) = struct.unpack("<I", data[-CHECKSUM_BYTES:])
    data = data[:-CHECKSUM_BYTES]
    if fletcher32(data) != stored:
        raise ChecksumError(
            f"Fletcher-32 checksum mismatch in {where}; the file is corrupt"
        )
    return data


def _unshuffle(data: memoryview, itemsize: int) -> memoryview:
    """Undo HDF5's byte shuffle (bytes of each item stored plane by plane)"""
    if itemsize <= 1:
        return data
    count = len(data) // itemsize
    planes = np.frombuffer(data, dtype=np.uint8, count=count * itemsize)
    result = np.empty(len(data), dtype=np.uint8)
    result[: count * itemsize] = planes.reshape(itemsize, count).T.reshape(-1)
    result[count * itemsize :] = np.frombuffer(data, np.uint8)[count * itemsize :]
    return memoryview(result)


class ChunkDecoder:
    """Reads a chunked dataset through :func:`decode_chunk` instead of HDF5

    Parameters
    ----------
    dataset: h5py.Dataset
        A chunked dataset of fixed-size numbers whose filters are all in
        :data:`DECODABLE_FILTERS`; use :meth:`for_dataset` to check
    name: str
        What to call the data in messages, e.g. "'image' feature of 'a.rtdc'"
    """

    def __init__(self, dataset: h5py.Dataset, name: str):
        self.dataset = dataset
        self.name = name
        self.filters = get_filters(dataset)
        self.chunks = tuple(int(c) for c in dataset.chunks)
        self.dtype = dataset.dtype
        self.chunk_bytes = math.prod(self.chunks) * self.dtype.itemsize

    @classmethod
    def for_dataset(cls, dataset, name: str) -> ChunkDecoder | None:
        """A decoder for `dataset`, or None if HDF5 must read it"""
        if not isinstance(dataset, h5py.Dataset) or dataset.chunks is None:
            return None
        if dataset.dtype.kind not in "biuf" or dataset.ndim < 1:
            return None
        try:
            filters = get_filters(dataset)
        except (OSError, RuntimeError, ValueError):
            return None
        if any(fid not in DECODABLE_FILTERS for fid, _ in filters):
            return None
        return cls(dataset, name)

    def read(self, start: int, stop: int, out: np.ndarray | None = None):
        """Entries ``start:stop`` (along the first axis) as an array

        `out`, if given, must be C-contiguous with the dataset's dtype and
        shape ``(stop - start, *shape[1:])``.
        """
        shape = self.dataset.shape
        if out is None:
            out = np.empty((stop - start, *shape[1:]), dtype=self.dtype)
        if stop <= start:
            return out
        first = self.chunks[0]
        # chunk origins along the other axes
        grids = [
            range(0, size, chunk)
            for size, chunk in zip(shape[1:], self.chunks[1:], strict=True)
        ]
        for c0 in range(start // first * first, stop, first):
            lo, hi = max(c0, start), min(c0 + first, stop)
            for rest in itertools.product(*grids):
                origin = (c0, *rest)
                chunk = self._read_chunk(origin)
                source = [slice(lo - c0, hi - c0)]
                target = [slice(lo - start, hi - start)]
                for axis, offset in enumerate(rest, start=1):
                    end = min(offset + self.chunks[axis], shape[axis])
                    source.append(slice(0, end - offset))
                    target.append(slice(offset, end))
                out[tuple(target)] = chunk[tuple(source)]
        return out

    def read_slice(self, index: slice) -> np.ndarray:
        """``dataset[index]`` for a slice with step 1, read like :meth:`read`"""
        start, stop, _ = index.indices(self.dataset.shape[0])
        return self.read(start, max(start, stop))

    def _read_chunk(self, origin: tuple) -> np.ndarray:
        # callers name the data (ImageStack: "Cannot read frames ... of ...")
        where = f"chunk {origin}"
        try:
            filter_mask, raw = self.dataset.id.read_direct_chunk(origin)
        except RuntimeError:
            if self.dataset.id.get_chunk_info_by_coord(origin).byte_offset is not None:
                raise
            # not stored: HDF5 reads fill values there
            chunk = np.empty(self.chunks, dtype=self.dtype)
            chunk[...] = self.dataset.fillvalue
            return chunk
        data = decode_chunk(
            raw, filter_mask, self.filters, self.chunk_bytes, self.dtype.itemsize, where
        )
        return np.frombuffer(data, dtype=self.dtype).reshape(self.chunks)


def read_whole(data, name: str) -> np.ndarray:
    """All of `data` (an h5py dataset or array-like), chunks decoded bounded

    Parameters
    ----------
    data: h5py.Dataset or array-like
        Read through :class:`ChunkDecoder` where it can decode the
        dataset's filters, else as ``data[:]``
    name: str
        What to call the data in messages
    """
    decoder = ChunkDecoder.for_dataset(data, name)
    if decoder is None:
        return data[:]
    return decoder.read(0, data.shape[0])


def check_szip_chunks(dataset, start: int, stop: int, name: str):
    """Refuse szip chunks of entries ``start:stop`` declaring more than they hold

    HDF5's szip filter allocates the decoded size stored in the first 4
    bytes of a chunk before decoding. Only a pipeline whose outermost
    filter is szip (possibly inside a Fletcher-32 checksum) is checked;
    other datasets are left alone.

    Raises
    ------
    ChunkSizeError
        If a chunk declares more than its shape holds; names `name`
    """
    if not isinstance(dataset, h5py.Dataset) or dataset.chunks is None:
        return
    filters = [fid for fid, _ in get_filters(dataset)]
    outer = [fid for fid in reversed(filters) if fid != FLETCHER32_FILTER][:1]
    if outer != [SZIP_FILTER] or stop <= start:
        return
    chunks = dataset.chunks
    limit = math.prod(chunks) * dataset.dtype.itemsize
    limit += CHECKSUM_BYTES * filters[: filters.index(SZIP_FILTER)].count(
        FLETCHER32_FILTER
    )
    grids = [
        range(0, size, chunk)
        for size, chunk in zip(dataset.shape[1:], chunks[1:], strict=True)
    ]
    first = chunks[0]
    for c0 in range(start // first * first, stop, first):
        for rest in itertools.product(*grids):
            try:
                filter_mask, raw = dataset.id.read_direct_chunk((c0, *rest))
            except RuntimeError:
                continue  # not stored (fill values) or unreadable: HDF5 says
            if filter_mask & (1 << filters.index(SZIP_FILTER)) or len(raw) < 4:
                continue
            (declared,) = struct.unpack_from("<I", raw)
            if declared > limit:
                raise ChunkSizeError(
                    f"Chunk {(c0, *rest)} of the {name} declares {declared} bytes "
                    f"of szip data, but its shape holds {limit}; the file is "
                    f"damaged or crafted (a decompression bomb)",
                    source=name,
                )
