"""Decompression bombs, absurd declared sizes and damaged metadata

Each crafted file is run through the CLI in a child process whose peak
resident memory is measured (``os.wait4``): dcbg must refuse it within
seconds, with a one-line error naming the file, using at most
`MAX_CHILD_RSS`. Bombs are made cheaply: a deflate stream of zeros is
one short segment repeated (full flushes make segments identical), and
Zstandard compresses 1 GiB of zeros in a fraction of a second.
"""

import functools
import glob
import os
import pathlib
import resource
import struct
import subprocess
import sys
import threading
import zlib

import h5py
import hdf5plugin
import numpy as np
import pytest
import zstandard

# the CLI tests import nothing new from dcbg: run against an older dcbg
# (PYTHONPATH), they fail by what that dcbg does, not by an ImportError

BUNDLED = pathlib.Path(__file__).resolve().parents[1] / "dcbg" / "data"
CYTOSHOT = BUNDLED / "cytoshot_2024_80x320.rtdc"

#: what a bomb chunk inflates to
BOMB_BYTES = 2**30

#: peak resident memory a child may reach on a bomb (the issue's bound)
MAX_CHILD_RSS = 2**30

#: address-space limit of the child: a safety net so that a regression
#: fails the test instead of exhausting the machine (a normal run needs
#: well below 1 GiB of address space)
CHILD_ADDRESS_SPACE = 4 * 2**30

#: seconds after which a watchdog kills the child as hanging (a hang, not
#: a speed limit: a refused bomb ends in seconds)
CHILD_TIMEOUT = 120

posix_only = pytest.mark.skipif(
    not hasattr(os, "wait4"), reason="measures the child with os.wait4 (POSIX)"
)


def run_measured(*args, timeout=CHILD_TIMEOUT):
    """Run ``python -m dcbg *args``; exit status, stderr, hung, peak RSS (bytes)

    ``hung`` tells whether the watchdog had to kill the child.
    """

    def limit():
        resource.setrlimit(
            resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE)
        )

    with (
        open(os.devnull, "wb") as null,
        subprocess.Popen(
            [sys.executable, "-m", "dcbg", *map(str, args)],
            stdout=null,
            stderr=subprocess.PIPE,
            preexec_fn=limit,
        ) as proc,
    ):
        stderr = []
        reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()))
        reader.start()
        hung = threading.Event()

        def kill():
            hung.set()
            proc.kill()

        killer = threading.Timer(timeout, kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join()
    # ru_maxrss: KiB on Linux, bytes on macOS
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return proc.returncode, stderr[0].decode(errors="replace"), hung.is_set(), rss


def assert_refused(
    path, out, *phrases, method=("--method", "rollmed", "--kernel-size", "4")
):
    code, stderr, hung, rss = run_measured("compute", path, "-o", out, *method)
    assert not hung, f"killed after {CHILD_TIMEOUT} s: {stderr}"
    assert rss <= MAX_CHILD_RSS, f"peak RSS {rss / 2**20:.0f} MiB: {stderr}"
    lines = [line for line in stderr.splitlines() if not line.startswith("Progress")]
    assert code == 1, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    assert f"'{path}'" in lines[0]
    for phrase in phrases:
        assert phrase in lines[0]
    assert not out.exists()
    return lines[0]


def gzip_bomb(size: int) -> bytes:
    """A zlib stream (HDF5's deflate filter) of `size` zero bytes, cheaply"""
    block = bytes(2**20)
    compressor = zlib.compressobj(1)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    # Adler-32 of n zero bytes: a stays 1, b counts the bytes
    adler = ((size % 65521) << 16) | 1
    final_block = b"\x03\x00"  # an empty last block with fixed codes
    count = size // len(block)
    return first + segment * (count - 1) + final_block + struct.pack(">I", adler)


@functools.cache
def zstd_bomb(content_size: bool) -> bytes:
    """A Zstandard frame of `BOMB_BYTES` zeros (size declared or not)"""
    compressor = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    return compressor.compress(bytes(BOMB_BYTES))


def measurement_with_images(path, **create_kwargs):
    """A copy of the bundled example whose 'image' is an empty new dataset"""
    path.write_bytes(CYTOSHOT.read_bytes())
    with h5py.File(path, "a") as h5:
        del h5["events/image"]
        h5["events"].create_dataset("image", dtype=np.uint8, **create_kwargs)
    return path


@posix_only
def test_gzip_bomb_is_refused_in_bounded_memory(tmp_path):
    """Chunks of 256 KB that inflate to 1 GiB each (HDF5 decoded 4 GB, cut)"""
    inp = measurement_with_images(
        tmp_path / "gzip.rtdc",
        shape=(13, 80, 320),
        chunks=(10, 80, 320),
        compression="gzip",
    )
    bomb = gzip_bomb(BOMB_BYTES)
    with h5py.File(inp, "a") as h5:
        for c0 in (0, 10):
            h5["events/image"].id.write_direct_chunk((c0, 0, 0), bomb)
    assert_refused(
        inp,
        tmp_path / "out.rtdc",
        "'image' feature",
        "more than the 256000 bytes its shape holds",
        "decompression bomb",
    )


@posix_only
@pytest.mark.parametrize(
    ("chunks", "content_size"),
    [((1, 40, 320), True), ((13, 80, 320), False)],
)
def test_zstd_bomb_is_refused_in_bounded_memory(tmp_path, chunks, content_size):
    """Zstandard chunks declaring (or streaming) 1 GiB

    Chunks of part frames were decoded by hdf5plugin (7.9 GB from a
    259 KB file), chunks of whole frames by dcbg's own codec.
    """
    inp = measurement_with_images(
        tmp_path / "zstd.rtdc", shape=(13, 80, 320), chunks=chunks, **hdf5plugin.Zstd()
    )
    bomb = zstd_bomb(content_size)
    with h5py.File(inp, "a") as h5:
        dataset = h5["events/image"]
        for c0 in range(0, 13, chunks[0]):
            for y0 in range(0, 80, chunks[1]):
                dataset.id.write_direct_chunk((c0, y0, 0), bomb)
    holds = int(np.prod(chunks))
    assert_refused(
        inp,
        tmp_path / "out.rtdc",
        "'image' feature",
        f"more than the {holds} bytes its shape holds",
    )


@posix_only
def test_gzip_bomb_in_a_scalar_feature(tmp_path):
    """The frame times the sparse median reads: decoded bounded too"""
    inp = tmp_path / "time.rtdc"
    inp.write_bytes(CYTOSHOT.read_bytes())
    with h5py.File(inp, "a") as h5:
        times = h5["events/time"][:]
        del h5["events/time"]
        dataset = h5["events"].create_dataset(
            "time",
            shape=times.shape,
            dtype=times.dtype,
            chunks=(13,),
            compression="gzip",
        )
        dataset.id.write_direct_chunk((0,), gzip_bomb(BOMB_BYTES))
    assert_refused(
        inp,
        tmp_path / "out.rtdc",
        "'time' feature",
        "more than the 104 bytes its shape holds",
        method=("--method", "sparsemed", "--kernel-size", "4"),
    )


@posix_only
def test_huge_declared_image_shape_is_refused_up_front(tmp_path):
    """10 frames of 20000x20000 in a small file (took 10.7 GB, named no file)"""
    inp = measurement_with_images(
        tmp_path / "huge.rtdc",
        shape=(13, 20000, 20000),
        chunks=(1, 4000, 4000),
        **hdf5plugin.Zstd(),
    )
    raw = zstandard.ZstdCompressor().compress(bytes(4000 * 4000))
    with h5py.File(inp, "a") as h5:
        dataset = h5["events/image"]
        for frame in range(13):
            for y0 in range(0, 20000, 4000):
                for x0 in range(0, 20000, 4000):
                    dataset.id.write_direct_chunk((frame, y0, x0), raw)
    assert inp.stat().st_size < 2 * 2**20
    assert_refused(
        inp,
        tmp_path / "out.rtdc",
        "'image' feature",
        "declares images of 20000x20000 pixels",
        "expected at most 4096x4096",
    )


@posix_only
def test_damaged_root_attribute_ends_in_seconds(tmp_path):
    """One flipped bit in the heap of the root attributes (issue 17.3)

    An object size in the global heap of the text attributes becomes
    530: HDF5's walk over the heap then lands on zeroed free space and
    loops forever (more than 90 s inside dclab's metadata parser).
    """
    data = bytearray(CYTOSHOT.read_bytes())
    data[2321] ^= 1 << 1
    inp = tmp_path / "flipped.rtdc"
    inp.write_bytes(data)
    line = assert_refused(
        inp, tmp_path / "out.rtdc", "root attributes", method=("--method", "copy")
    )
    assert "damaged" in line


@posix_only
def test_damaged_root_attribute_of_an_existing_output(tmp_path):
    """--force reads the identifier of the file it would replace"""
    data = bytearray(CYTOSHOT.read_bytes())
    data[2321] ^= 1 << 1
    out = tmp_path / "damaged_out.rtdc"
    out.write_bytes(data)
    code, stderr, _, rss = run_measured(
        "compute", CYTOSHOT, "-o", out, "--force", "--method", "copy"
    )
    lines = [line for line in stderr.splitlines() if not line.startswith("Progress")]
    assert code == 1, stderr
    assert lines == [
        f"Error: The root attributes of '{out}' are damaged: the heap of attribute "
        f"'experiment:date' has an object of size 0 at byte 2864; the file is "
        f"damaged or crafted"
    ]
    assert rss <= MAX_CHILD_RSS
    assert out.read_bytes() == data


def test_damaged_root_attribute_api(tmp_path):
    from dcbg.io import open_input
    from dcbg.io.attributes import DamagedAttributeError, check_root_attributes

    data = bytearray(CYTOSHOT.read_bytes())
    data[2321] ^= 1 << 1
    inp = tmp_path / "flipped.rtdc"
    inp.write_bytes(data)
    with pytest.raises(DamagedAttributeError, match=f"'{inp}'.*size 0"):
        check_root_attributes(inp)
    with pytest.raises(ValueError, match=f"root attributes of '{inp}'"):
        open_input(inp)


def test_string_longer_than_its_heap_object_is_refused(tmp_path):
    """A declared value length beyond the heap object: HDF5 would allocate it"""
    from dcbg.io.attributes import DamagedAttributeError, check_root_attributes

    path = tmp_path / "long.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["setup:medium"] = "water"
    data = bytearray(path.read_bytes())
    # the attribute stores (length, heap address, index) after its name
    # and type; "water" has length 5
    address = struct.pack("<Q", data.find(b"GCOL"))
    at = data.find(struct.pack("<I", 5) + address)
    assert at > 0
    data[at : at + 4] = struct.pack("<I", 2**31)
    path.write_bytes(data)
    with pytest.raises(DamagedAttributeError, match="declares a value of 2147483648"):
        check_root_attributes(path)


@pytest.mark.parametrize(
    "create",
    [
        {"compression": "gzip", "shuffle": True, "fletcher32": True},
        {"compression": "gzip"},
        {"shuffle": True, **hdf5plugin.Zstd()},
        {"fletcher32": True, **hdf5plugin.Zstd()},
        {},
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, ">u2", np.float32])
def test_bounded_decoder_equals_hdf5(tmp_path, create, dtype):
    from dcbg.io.bounded_chunks import ChunkDecoder

    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(23, 9, 14)).astype(dtype)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        ds = h5.create_dataset("x", data=data, chunks=(4, 5, 6), **create)
        decoder = ChunkDecoder.for_dataset(ds, "test data")
        assert decoder is not None
        for start, stop in [(0, 23), (3, 9), (22, 23), (5, 5)]:
            np.testing.assert_array_equal(decoder.read(start, stop), ds[start:stop])


def test_bounded_decompressors_stop_at_the_limit():
    from dcbg.io.bounded_chunks import (
        ChunkSizeError,
        inflate_bounded,
        zstd_decompress_bounded,
    )

    bomb = gzip_bomb(64 * 2**20)
    with pytest.raises(ChunkSizeError, match="more than the 1000 bytes"):
        inflate_bounded(bomb, 1000, "chunk x")
    assert len(inflate_bounded(zlib.compress(bytes(1000)), 1000, "chunk x")) == 1000
    frames = zstandard.ZstdCompressor().compress(bytes(600)) * 2  # two frames
    assert len(zstd_decompress_bounded(frames, 1200, "chunk x")) == 1200
    with pytest.raises(ChunkSizeError, match="more than the 1000 bytes"):
        zstd_decompress_bounded(frames, 1000, "chunk x")


def test_szip_chunk_declaring_more_than_it_holds(tmp_path):
    """HDF5's szip filter allocates the size a chunk's header declares"""
    from dcbg.io.images import ImageStack

    frames = (np.arange(6 * 10 * 100) % 7).astype(np.uint8).reshape(6, 10, 100)
    with h5py.File(tmp_path / "szip.h5", "w") as h5:
        dataset = h5.create_dataset(
            "image", data=frames, chunks=(2, 10, 100), compression="szip"
        )
        _, raw = dataset.id.read_direct_chunk((2, 0, 0))
        assert struct.unpack_from("<I", raw)[0] == 2000
        dataset.id.write_direct_chunk((2, 0, 0), struct.pack("<I", 2**31) + raw[4:])
        stack = ImageStack(dataset, name="'image' of 'szip.h5'")
        assert stack.decoder is None  # szip: HDF5 decodes
        np.testing.assert_array_equal(stack.read(0, 2), frames[:2])
        with pytest.raises(OSError, match="declares 2147483648 bytes of szip data"):
            stack.read(0, 6)


def corpus_files() -> list[pathlib.Path]:
    """.rtdc files of dcnum's and dclab's test data, if extracted in the cache"""
    cache = os.environ.get("DCBG_TEST_CACHE", "~/.cache/dcbg-tests")
    root = pathlib.Path(cache).expanduser()
    files = sorted(glob.glob(str(root / "*" / "corpus" / "*" / "*.rtdc")))
    return [pathlib.Path(f) for f in files] + sorted(BUNDLED.glob("*.rtdc"))


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_real_measurements_pass_the_bounds(path):
    """Every real measurement: attributes accepted, images read as HDF5 does"""
    from dcbg.io.attributes import check_root_attributes
    from dcbg.io.images import ImageStack
    from dcbg.workers import WorkerPool

    check_root_attributes(path)
    with h5py.File(path) as h5:
        for name in ("image", "image_bg", "mask"):
            if name not in h5.get("events", {}):
                continue
            dataset = h5["events"][name]
            stack = ImageStack(dataset, name=f"'{name}' of '{path}'")
            expected = dataset[:].astype(np.uint8)
            np.testing.assert_array_equal(stack.read(0, len(stack)), expected)
            pool = WorkerPool(2)
            try:
                got = stack.read(0, len(stack), pool=pool)
            finally:
                pool.close()
            np.testing.assert_array_equal(got, expected)
