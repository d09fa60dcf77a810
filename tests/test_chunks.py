"""Direct chunk I/O and the Fletcher-32 kernel against HDF5 itself"""

import struct

import h5py
import hdf5plugin
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcbg.io.chunks import ChecksumError, ChunkCodec, read_frames, write_frames
from dcbg.io.images import ImageStack
from dcbg.kernels.checksum import fletcher32
from dcbg.workers import WorkerPool

FILTERS = {
    "zstd+fletcher32": {**hdf5plugin.Zstd(clevel=5), "fletcher32": True},
    "fletcher32": {"fletcher32": True},
    "zstd": dict(hdf5plugin.Zstd(clevel=3)),
    "none": {},
}


@pytest.fixture(scope="module")
def pool():
    workers = WorkerPool(2)
    yield workers
    workers.close()


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=3000))
def test_fletcher32_equals_hdf5(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("f32") / "c.h5"
    with h5py.File(path, "w") as h5:
        arr = np.frombuffer(data, dtype=np.uint8)
        ds = h5.create_dataset("x", data=arr, chunks=(arr.size,), fletcher32=True)
        _, raw = ds.id.read_direct_chunk((0,))
    (stored,) = struct.unpack("<I", raw[-4:])
    assert fletcher32(data) == stored


def make_dataset(h5, name, frames, chunk, filters):
    return h5.create_dataset(
        name,
        data=frames,
        chunks=(chunk, *frames.shape[1:]),
        maxshape=(None, *frames.shape[1:]),
        **FILTERS[filters],
    )


@pytest.mark.parametrize("filters", list(FILTERS))
@pytest.mark.parametrize(("start", "stop"), [(0, 97), (3, 50), (40, 41), (96, 97)])
def test_read_frames_equals_h5py(tmp_path, pool, filters, start, stop):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(97, 12, 17), dtype=np.uint8)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        ds = make_dataset(h5, "img", frames, 10, filters)
        codec = ChunkCodec.for_dataset(ds)
        assert codec is not None
        out = np.empty((stop - start, 12 * 17), np.uint8)
        read_frames(ds, codec, start, stop, out, pool)
        assert np.array_equal(out.reshape(-1, 12, 17), frames[start:stop])
        stack = ImageStack(ds)
        assert stack.codec is not None
        assert np.array_equal(stack.read(start, stop, pool=pool), frames[start:stop])


@pytest.mark.parametrize("filters", list(FILTERS))
@pytest.mark.parametrize(("start", "stop"), [(0, 97), (5, 45), (20, 30), (33, 97)])
def test_write_frames_read_back_by_h5py(tmp_path, pool, filters, start, stop):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(97, 9, 11), dtype=np.uint8)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        ds = make_dataset(h5, "img", np.zeros_like(frames), 10, filters)
        codec = ChunkCodec.for_dataset(ds)
        write_frames(
            ds, codec, start, frames[start:stop].reshape(stop - start, -1), pool
        )
    with h5py.File(tmp_path / "d.h5") as h5:
        result = h5["img"][:]  # HDF5 verifies checksums and decompresses
    expected = np.zeros_like(frames)
    expected[start:stop] = frames[start:stop]
    assert np.array_equal(result, expected)


def test_corrupt_chunk_raises(tmp_path, pool):
    frames = np.arange(20 * 4 * 5, dtype=np.uint8).reshape(20, 4, 5)
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as h5:
        ds = make_dataset(h5, "img", frames, 10, "fletcher32")
        offset = ds.id.get_chunk_info(1).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with h5py.File(path) as h5:
        stack = ImageStack(h5["img"], name="test stack")
        with pytest.raises(ChecksumError, match="checksum mismatch"):
            stack.read(0, 20, pool=pool)


@pytest.mark.parametrize("filters", list(FILTERS))
def test_decode_into_buffer_equals_decode(tmp_path, filters):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(20, 6, 7), dtype=np.uint8)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        ds = make_dataset(h5, "img", frames, 10, filters)
        codec = ChunkCodec.for_dataset(ds)
        mask, raw = ds.id.read_direct_chunk((10, 0, 0))
    out = np.zeros((10, 42), dtype=np.uint8)
    assert codec.decode(raw, mask, out=out) is out
    np.testing.assert_array_equal(out.reshape(10, 6, 7), frames[10:])
    np.testing.assert_array_equal(codec.decode(raw, mask), frames[10:].ravel())


@pytest.mark.parametrize("filters", ["zstd", "zstd+fletcher32"])
@pytest.mark.parametrize("frames_in_chunk", [9, 11])
def test_decode_wrong_size_raises(tmp_path, filters, frames_in_chunk):
    """A chunk that decodes to more or fewer bytes than a chunk holds"""
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        ds = make_dataset(h5, "img", np.zeros((20, 6, 7), np.uint8), 10, filters)
        codec = ChunkCodec.for_dataset(ds)
        other = np.ones((frames_in_chunk, 6, 7), dtype=np.uint8)
        codec_other = ChunkCodec.for_dataset(ds)
        codec_other.chunk_bytes = other.size
        raw = codec_other.encode(other)
    # too few bytes, or more than a chunk holds (never decoded past that)
    expected = r"decodes to \d+ bytes, expected 420|more than the 420 bytes"
    for out in (None, np.zeros((10, 42), dtype=np.uint8)):
        with pytest.raises(OSError, match=expected):
            codec.decode(raw, 0, out=out)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"compression": "gzip"},
        {"chunks": (5, 2, 5)},  # chunks that split frames
        {"chunks": None},
    ],
)
def test_other_layouts_fall_back_to_h5py(tmp_path, pool, kwargs):
    frames = np.arange(30 * 4 * 5, dtype=np.uint8).reshape(30, 4, 5)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        opts = {"chunks": (10, 4, 5), **kwargs}
        ds = h5.create_dataset("img", data=frames, **opts)
        assert ChunkCodec.for_dataset(ds) is None
        stack = ImageStack(ds)
        assert stack.codec is None
        assert np.array_equal(stack.read(3, 27, pool=pool), frames[3:27])


def test_unwritten_chunks_are_an_error(tmp_path):
    """Declared but unstored frames would be read as fill values (issue 13)"""
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        ds = h5.create_dataset(
            "img", shape=(30, 4, 5), dtype=np.uint8, chunks=(10, 4, 5)
        )
        ds[:10] = 7
        with pytest.raises(ValueError, match="stores only 1 of its 3 chunks"):
            ImageStack(ds)


@pytest.mark.parametrize("filters", list(FILTERS))
@pytest.mark.parametrize(
    ("start", "stop", "rows"), [(0, 97, 5), (13, 61, 20), (90, 97, 1)]
)
def test_sum_top_rows_equals_numpy(tmp_path, pool, filters, start, stop, rows):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(97, 12, 17), dtype=np.uint8)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        stack = ImageStack(make_dataset(h5, "img", frames, 10, filters))
        expected = frames[start:stop, :rows].sum(axis=(1, 2), dtype=np.int64)
        assert np.array_equal(
            stack.sum_top_rows(start, stop, rows, pool=pool), expected
        )
        assert np.array_equal(stack.sum_top_rows(start, stop, rows), expected)
