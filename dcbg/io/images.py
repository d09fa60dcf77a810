"""Uniform, validated block access to an image stack

Background kernels need uint8 frames in contiguous blocks. The images
may come from an HDF5 dataset (possibly in another file), from a mapped
basin (dclab's ``BasinProxyFeature``), or from any array-like object.
:class:`ImageStack` hides these differences and checks that the data are
grey images that fit into uint8.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os

import h5py
import numpy as np

from ..errors import DataReadError, StoredDataError, one_line
from .bounded_chunks import ChunkDecoder, check_szip_chunks
from .chunks import ChecksumError, ChunkCodec, read_frames, sum_top_rows
from .conventions import ensure_hdf5_filters

#: read about this many bytes at once when the source is not chunked
DEFAULT_BLOCK_BYTES = 8 * 1024**2

#: largest HDF5 chunk (decoded bytes) that dcbg reads: dclab and dcnum
#: write image chunks of a few MiB, and every worker thread holds one
#: decoded chunk, so a crafted chunk shape must not decide the memory used
MAX_CHUNK_BYTES = 256 * 1024**2

#: largest image height and width (pixels) read from a file. RT-DC
#: cameras record a region of interest around the channel (80x250 to
#: 100x1010 pixels in dcnum's and dclab's test data) of sensors at most
#: 1280x1024 pixels wide; 4096 leaves room for any camera of the next
#: years while a crafted file declaring e.g. 20000x20000 images (400 MB
#: each, gigabytes per block of frames) is refused before any read
MAX_IMAGE_SIDE = 4096

#: errors of h5py, HDF5 filters and the chunk decoder while reading data
#: (Zstandard errors are not OSErrors; ValueError covers h5py's "Invalid
#: selection" and friends on corrupt metadata)
READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError)


class ImageStack:
    """Read-only view of an image stack as uint8 frames

    Parameters
    ----------
    source: h5py.Dataset, dclab BasinProxyFeature or array-like
        Image stack; the first axis enumerates frames, the other two are
        the image height and width in pixels.
    name: str
        What to call the stack in error messages, e.g. the file and
        feature it was read from.

    Raises
    ------
    TypeError
        If `source` has no shape/dtype or a dtype that cannot hold grey values
    ValueError
        If `source` is not a stack of 2-D images, or an HDF5 dataset that
        does not store the frames it declares (see :func:`check_storage`)
    """

    def __init__(self, source, name: str | None = None):
        ensure_hdf5_filters()  # an h5py source may be compressed
        if name is None:
            name = "input image stack"
            if isinstance(source, h5py.Dataset):
                name = f"image stack '{source.name}' of '{source.file.filename}'"
        self.name = name
        if isinstance(source, (list, tuple)):
            source = np.asarray(source)
        if not hasattr(source, "shape") or not hasattr(source, "__getitem__"):
            raise TypeError(
                f"The {name} must be an array-like image stack with a "
                f"'shape' (frames, height, width), got {type(source).__name__}"
            )
        shape = tuple(int(s) for s in source.shape)
        if len(shape) != 3:
            raise ValueError(
                f"The {name} must be a stack of 2-D images with shape "
                f"(frames, height, width), got shape {shape}"
            )
        if shape[1] == 0 or shape[2] == 0:
            raise ValueError(f"The {name} has empty images of shape {shape[1:]}")
        dtype = getattr(source, "dtype", None)
        if dtype is None:
            # only array-likes without a dtype are read for it (an HDF5
            # dataset has one: its first chunk is not decoded here)
            dtype = np.asarray(source[:1]).dtype
        dtype = np.dtype(dtype)
        if dtype.kind not in "uif":
            raise TypeError(
                f"The {name} must hold grey values (uint8 or numbers that "
                f"are integers in 0..255), got dtype {dtype}"
            )
        self.source = source
        self.shape = shape
        self.dtype = dtype
        self.frame_shape = shape[1:]
        self.frame_size = shape[1] * shape[2]
        #: the h5py dataset behind `source`, if reads can go there directly
        self.h5dataset = source if isinstance(source, h5py.Dataset) else None
        feat_obj = getattr(source, "feat_obj", None)
        for dataset in (self.h5dataset, feat_obj):
            if isinstance(dataset, h5py.Dataset):
                # before any computation: a file that declares more
                # frames than it stores would be read as fill values
                check_storage(dataset, name)
                check_image_size(shape, name)
        #: bounded decoders of the datasets behind `source` (None: HDF5
        #: decodes, see :mod:`dcbg.io.bounded_chunks`)
        self.decoder = ChunkDecoder.for_dataset(self.h5dataset, name)
        self.basin_decoder = ChunkDecoder.for_dataset(feat_obj, name)
        #: frames per HDF5 chunk (reads aligned to it avoid decompressing twice)
        self.chunk_frames = self._get_chunk_frames()
        #: direct chunk decoder for parallel reads (None: read through h5py)
        self.codec = None
        if self.h5dataset is not None and _all_chunks_stored(self.h5dataset):
            self.codec = ChunkCodec.for_dataset(self.h5dataset)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"<ImageStack {self.name} {self.shape} {self.dtype}>"

    def _get_chunk_frames(self) -> int:
        dataset = self.h5dataset
        if dataset is None:
            feat_obj = getattr(self.source, "feat_obj", None)
            if isinstance(feat_obj, h5py.Dataset):
                dataset = feat_obj
        if dataset is not None and dataset.chunks is not None:
            return int(dataset.chunks[0])
        return max(1, DEFAULT_BLOCK_BYTES // max(1, self.frame_size))

    def __getitem__(self, index):
        """Frames as uint8; an integer gives one image, a slice a stack"""
        if isinstance(index, numbers.Integral):
            index = int(index)
            if index < 0:
                index += len(self)
            if not 0 <= index < len(self):
                raise IndexError(
                    f"Frame index {index} out of range for {len(self)} frames"
                )
            return self.read(index, index + 1)[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self.read(start, max(start, stop))[::step]
            return self.read(start, max(start, stop))
        if isinstance(index, tuple) and index and isinstance(index[0], slice):
            start, stop, _ = index[0].indices(len(self))
            return self.read(start, max(start, stop))[(slice(None), *index[1:])]
        raise TypeError(f"Unsupported index {index!r} for {self.name}")

    def read(
        self, start: int, stop: int, out: np.ndarray | None = None, pool=None
    ) -> np.ndarray:
        """Read frames ``start:stop`` as uint8

        Parameters
        ----------
        start, stop: int
            Frame range (half-open)
        out: np.ndarray, optional
            C-contiguous uint8 array of shape (stop - start, height, width)
            or (stop - start, height * width) to read into
        pool: dcbg.workers.WorkerPool, optional
            Worker threads that decompress HDF5 chunks in parallel

        Returns
        -------
        frames: np.ndarray
            uint8 array of shape (stop - start, height, width), `out`
            reshaped if it was given
        """
        count = stop - start
        if out is None:
            out = np.empty((count, *self.frame_shape), dtype=np.uint8)
        else:
            out = out.reshape(count, *self.frame_shape)
        if count == 0:
            return out
        with self._read_errors_named(start, stop):
            return self._read(start, stop, count, out, pool)

    @contextlib.contextmanager
    def _read_errors_named(self, start: int, stop: int):
        """Errors of h5py and the decoders name the stack and the frames"""
        try:
            yield
        except DataReadError as exc:
            # dcbg's decoders (ImageReadError, ChecksumError, ChunkSizeError):
            # a checksum error stays one (callers may tell it apart), a
            # chunk of the wrong size (a bomb) is an ImageReadError
            kind = ChecksumError if isinstance(exc, ChecksumError) else ImageReadError
            if exc.source == self.name:
                if type(exc) is kind:
                    raise
                raise kind(str(exc), source=self.name) from exc
            raise kind(
                f"Cannot read frames {start}..{stop - 1} of the {self.name}: "
                f"{one_line(exc)}",
                source=self.name,
            ) from exc
        except READ_ERRORS as exc:
            if isinstance(exc, StoredDataError) and exc.source == self.name:
                raise  # our own message (grey values out of range, ...)
            text = one_line(exc)
            if not isinstance(exc, StoredDataError):
                # h5py's and HDF5's words: say what they mean for the user
                text += "; the file is damaged or not a valid .rtdc file"
            raise ImageReadError(
                f"Cannot read frames {start}..{stop - 1} of the {self.name}: {text}",
                source=self.name,
            ) from exc
        except Exception as exc:
            # e.g. zstandard.ZstdError of a corrupt compressed chunk
            if type(exc).__module__.split(".")[0] not in ("zstandard", "h5py"):
                raise
            raise ImageReadError(
                f"Cannot read frames {start}..{stop - 1} of the {self.name}: "
                f"{one_line(exc)}; the file is damaged",
                source=self.name,
            ) from exc

    def _read(self, start, stop, count, out, pool) -> np.ndarray:
        if self.codec is not None and pool is not None:
            read_frames(
                self.h5dataset, self.codec, start, stop, out.reshape(count, -1), pool
            )
            return out
        if self.decoder is not None and self.dtype == np.uint8:
            return self.decoder.read(start, stop, out)
        if self.h5dataset is not None:
            check_szip_chunks(self.h5dataset, start, stop, self.name)
        if self.h5dataset is not None and self.dtype == np.uint8:
            self.h5dataset.read_direct(out, np.s_[start:stop], np.s_[0:count])
            return out
        data = self._read_source(start, stop)
        if data.dtype != np.uint8:
            data = self._to_uint8(data, start)
        out[...] = data
        return out

    def sum_top_rows(self, start: int, stop: int, rows: int, pool=None) -> np.ndarray:
        """Exact per-frame sums (int64) of the top `rows` pixel rows

        With a chunk decoder and `pool`, chunks are decoded and summed on
        the worker threads without copying the frames out.
        """
        if self.codec is not None and pool is not None:
            with self._read_errors_named(start, stop):
                return sum_top_rows(self.h5dataset, self.codec, start, stop, rows, pool)
        top = self.read(start, stop, pool=pool)[:, :rows]
        return top.sum(axis=(1, 2), dtype=np.int64)

    def _read_source(self, start, stop) -> np.ndarray:
        basinmap = getattr(self.source, "basinmap", None)
        feat_obj = getattr(self.source, "feat_obj", None)
        if basinmap is not None and feat_obj is not None:
            # dclab's mapped-basin proxy reads frame by frame; read the
            # covered range of the basin once and index it in memory.
            indices = np.asarray(basinmap[start:stop])
            lo, hi = int(indices.min()), int(indices.max()) + 1
            read = feat_obj.__getitem__
            if isinstance(feat_obj, h5py.Dataset):
                check_szip_chunks(feat_obj, lo, hi, self.name)
            if self.basin_decoder is not None:
                read = self.basin_decoder.read_slice
            if hi - lo <= 4 * (stop - start) + self.chunk_frames:
                return np.asarray(read(slice(lo, hi)))[indices - lo]
            return np.stack([np.asarray(read(slice(ii, ii + 1)))[0] for ii in indices])
        if self.decoder is not None:
            return self.decoder.read(start, stop)
        return np.asarray(self.source[start:stop])

    def _to_uint8(self, data: np.ndarray, start: int) -> np.ndarray:
        if data.dtype.kind == "f":
            bad = ~np.isfinite(data) | (data != np.round(data))
            if np.any(bad):
                frame = start + int(np.argwhere(bad)[0][0])
                raise StoredDataError(
                    self.name,
                    f"The {self.name} holds non-integer grey values (dtype "
                    f"{data.dtype}, e.g. in frame {frame}); expected uint8 "
                    f"or integers in 0..255",
                )
        if data.size and (data.min() < 0 or data.max() > 255):
            raise StoredDataError(
                self.name,
                f"The {self.name} holds grey values outside 0..255 "
                f"(min {data.min()}, max {data.max()}, frames {start}.."
                f"{start + len(data) - 1}); expected uint8 data",
            )
        return data.astype(np.uint8)

    def iter_blocks(self, block_frames: int | None = None, start=0, stop=None):
        """Yield ``(start, stop)`` ranges aligned to the source's chunks"""
        stop = len(self) if stop is None else stop
        block = block_frames or self.chunk_frames
        block = max(1, block // self.chunk_frames) * self.chunk_frames
        pos = start
        while pos < stop:
            end = min(stop, (pos // block + 1) * block)
            yield pos, end
            pos = end


class ImageReadError(DataReadError):
    """Frames of an image stack could not be read (damaged file)"""


def check_storage(dataset: h5py.Dataset, name: str):
    """Raise ValueError unless `dataset` stores, in its own file, what it declares

    An HDF5 dataset declares its shape in its header; the data are stored
    in chunks, in one contiguous block, or elsewhere. Reading a declared
    but unstored region yields fill values without any error, so a small
    crafted file could make dcbg compute for hours on nothing. Checked:

    - the data live in the file (no virtual dataset, no external raw
      files: those could make dcbg read any file on the system);
    - chunked: every chunk of the declared shape is stored, and one
      decoded chunk is at most `MAX_CHUNK_BYTES`;
    - contiguous: the whole block is allocated and lies inside the file.

    Parameters
    ----------
    dataset: h5py.Dataset
        The dataset to check (metadata only: this is fast)
    name: str
        What to call the data in messages, e.g. "'image' feature of 'a.rtdc'"

    Raises
    ------
    ValueError
        If the dataset does not store the data it declares
    """
    try:
        shape = dataset.shape
        dcpl = dataset.id.get_create_plist()
        layout = dcpl.get_layout()
        external = dcpl.get_external_count()
        itemsize = dataset.dtype.itemsize
        vlen = h5py.check_vlen_dtype(dataset.dtype) is not None
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise StoredDataError(
            name, f"Cannot read the layout of the {name}: {exc}; the file is damaged"
        ) from exc
    if shape is None:
        raise StoredDataError(name, f"The {name} has no shape (empty dataspace)")
    if layout == h5py.h5d.VIRTUAL:
        raise StoredDataError(
            name,
            f"The {name} is an HDF5 virtual dataset (its data are mapped from "
            f"other files); expected data stored in the file itself",
        )
    if external:
        raise StoredDataError(
            name,
            f"The {name} keeps its data in {external} external raw file(s); "
            f"expected data stored in the file itself",
        )
    if layout == h5py.h5d.CHUNKED:
        chunks = dataset.chunks
        chunk_bytes = math.prod(chunks) * itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise StoredDataError(
                name,
                f"The {name} has HDF5 chunks of {chunk_bytes} bytes "
                f"(shape {chunks}); expected at most {MAX_CHUNK_BYTES} bytes",
            )
        expected = math.prod(
            -(-size // chunk) for size, chunk in zip(shape, chunks, strict=True)
        )
        try:
            stored = dataset.id.get_num_chunks()
        except (AttributeError, RuntimeError):  # HDF5 < 1.10.5: cannot tell
            return
        except OSError as exc:
            raise StoredDataError(
                name,
                f"Cannot read the chunk index of the {name}: {exc}; the file is "
                f"damaged",
            ) from exc
        if stored < expected:
            raise StoredDataError(
                name,
                f"The {name} declares shape {shape}, but its file stores only "
                f"{stored} of its {expected} chunks; expected all data to be "
                f"stored (the file is truncated, unfinished or crafted)",
            )
    elif layout == h5py.h5d.CONTIGUOUS and not vlen:
        needed = math.prod(shape) * itemsize
        if needed == 0:
            return
        try:
            allocated = dataset.id.get_storage_size()
            offset = dataset.id.get_offset()
            # a file open for writing may hold data not yet on disk
            file_size = (
                os.path.getsize(dataset.file.filename)
                if dataset.file.mode == "r"
                else math.inf
            )
        except (OSError, RuntimeError) as exc:
            raise StoredDataError(
                name,
                f"Cannot read the storage of the {name}: {exc}; the file is damaged",
            ) from exc
        if allocated < needed or offset is None or offset + needed > file_size:
            stored = 0 if offset is None else max(0, min(allocated, file_size - offset))
            raise StoredDataError(
                name,
                f"The {name} declares shape {shape} ({needed} bytes), but its "
                f"file stores only {stored} bytes of it; expected all data to "
                f"be stored (the file is truncated, unfinished or crafted)",
            )


def check_image_size(shape: tuple, name: str):
    """Raise ValueError if images of `shape` (frames, height, width) are absurd

    See `MAX_IMAGE_SIDE`: checked before any frame is read, so a few
    bytes of crafted metadata cannot make dcbg allocate gigabytes.
    """
    height, width = shape[1:]
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        raise StoredDataError(
            name,
            f"The {name} declares images of {height}x{width} pixels; expected "
            f"at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} (RT-DC cameras record "
            f"far smaller regions; the file is damaged or crafted)",
        )


def _all_chunks_stored(dataset: h5py.Dataset) -> bool:
    """Whether every chunk exists on disk (unwritten ones hold fill values)"""
    if dataset.chunks is None:
        return False
    expected = -(-dataset.shape[0] // dataset.chunks[0])
    try:
        return dataset.id.get_num_chunks() == expected
    except (AttributeError, RuntimeError):  # HDF5 < 1.10.5
        return False
