"""Tests for the synthetic measurement generator in :mod:`dcbg.testing`"""

import json

import dclab
import h5py
import hdf5plugin  # noqa: F401 - registers the Zstd filter for h5py
import numpy as np
import pytest
from dcnum.read import HDF5Data

from dcbg.testing import (
    SyntheticModel,
    fit_background,
    make_basin_variants,
    make_synthetic_measurement,
    make_synthetic_stack,
)

N_FRAMES = 300


@pytest.fixture(scope="module")
def measurement(tmp_path_factory):
    """Default synthetic measurement shared by read-only tests"""
    path = tmp_path_factory.mktemp("synthetic") / "default.rtdc"
    return make_synthetic_measurement(path, N_FRAMES, seed=7)


def read_images(path):
    with h5py.File(path, "r") as h5:
        return h5["events/image"][:]


def test_opens_in_dclab_and_dcnum(measurement):
    with dclab.new_dataset(measurement) as ds:
        assert len(ds) == N_FRAMES
        assert ds.config["experiment"]["event count"] == N_FRAMES
        assert ds["image"].shape == (N_FRAMES, 80, 320)
        assert ds["image"][0].dtype == np.uint8
    with HDF5Data(measurement) as hd:
        assert len(hd) == N_FRAMES
        assert hd.image.shape == (N_FRAMES, 80, 320)
        assert np.array_equal(hd.image[123], read_images(measurement)[123])


def test_image_storage_like_dclab(measurement):
    with h5py.File(measurement, "r") as h5:
        ds = h5["events/image"]
        assert ds.dtype == np.uint8
        # 1 MiB chunks, as dclab's writer chooses them
        assert ds.chunks == (40, 80, 320)
        assert ds.fletcher32
        assert "32015" in ds._filters  # Zstandard
        assert ds.attrs["CLASS"] == b"IMAGE"
        assert ds.attrs["IMAGE_VERSION"] == b"1.2"
        assert ds.attrs["IMAGE_SUBCLASS"] == b"IMAGE_GRAYSCALE"
        attrs = h5.attrs
        assert attrs["imaging:roi size x"] == 320
        assert attrs["imaging:roi size y"] == 80
        # copied from the real measurement
        assert attrs["setup:channel width"] == 20
        assert attrs["imaging:pixel size"] == pytest.approx(0.2645)
        assert not any(key.startswith("pipeline:") for key in attrs)
        params = json.loads(attrs["user:dcbg synthetic"])
        assert params["seed"] == 7


def test_deterministic_and_chunk_independent(tmp_path, measurement):
    again = make_synthetic_measurement(tmp_path / "again.rtdc", N_FRAMES, seed=7)
    images = read_images(measurement)
    assert np.array_equal(images, read_images(again))
    # in-memory stack: same frames, also when rendered in pieces
    assert np.array_equal(images, make_synthetic_stack(N_FRAMES, seed=7))
    model = SyntheticModel(N_FRAMES, seed=7)
    assert np.array_equal(model.frames(37, 91), images[37:91])
    other = make_synthetic_stack(N_FRAMES, seed=8)
    assert not np.array_equal(images, other)


def test_run_identifier_unique(tmp_path, measurement):
    paths = [
        make_synthetic_measurement(tmp_path / "a.rtdc", 20, seed=1),
        make_synthetic_measurement(tmp_path / "b.rtdc", 20, seed=1),
        make_synthetic_measurement(tmp_path / "c.rtdc", 20, seed=2),
        measurement,
    ]
    ids = set()
    for path in paths:
        with h5py.File(path, "r") as h5:
            ids.add(h5.attrs["experiment:run identifier"])
    assert len(ids) == len(paths)


@pytest.mark.parametrize("time_source", ["time", "frame", "rate", "none"])
def test_time_source(tmp_path, time_source):
    path = make_synthetic_measurement(
        tmp_path / "m.rtdc",
        400,
        seed=3,
        time_source=time_source,
        frame_rate=2000.0,
        frame_gap_probability=0.05,
        cell_probability=0,
    )
    with h5py.File(path, "r") as h5:
        feats = set(h5["events"].keys())
        rate = h5.attrs.get("imaging:frame rate")
    with HDF5Data(path) as hd:
        assert len(hd) == 400
        has_time = "time" in hd
        has_frame = "frame" in hd
        time_data = hd["time"] if has_time else None
        frame_data = hd["frame"] if has_frame else None
    assert feats >= {"image"}
    if time_source == "none":
        assert rate is None
    else:
        assert rate == 2000.0
    assert has_time == (time_source == "time")
    assert has_frame == (time_source in ("time", "frame"))
    if time_source == "time":
        # nonzero start, constant 1/frame_rate steps
        assert time_data[0] > 0
        assert np.allclose(np.diff(time_data), 1 / 2000, rtol=0, atol=1e-9)
        assert np.allclose(time_data, frame_data / 2000)
    if time_source == "frame":
        steps = np.diff(frame_data.astype(np.int64))
        assert frame_data[0] > 0
        assert steps.min() >= 1
        assert 1 <= np.sum(steps > 1) <= 50  # occasional gaps
        # dclab derives the time from frame and frame rate
        with dclab.new_dataset(path) as ds:
            assert np.allclose(ds["time"], frame_data / 2000)


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="time_source"):
        make_synthetic_measurement(tmp_path / "x.rtdc", 10, time_source="clock")
    with pytest.raises(ValueError, match="n_frames"):
        make_synthetic_measurement(tmp_path / "y.rtdc", 0)


@pytest.mark.parametrize("shape", [(1, 1), (8, 16), (80, 250), (100, 800)])
def test_shapes(tmp_path, shape):
    path = make_synthetic_measurement(tmp_path / "s.rtdc", 25, shape=shape, seed=4)
    with dclab.new_dataset(path) as ds:
        assert ds["image"].shape == (25,) + shape
        assert ds.config["imaging"]["roi size x"] == shape[1]
        assert ds.config["imaging"]["roi size y"] == shape[0]
    with HDF5Data(path) as hd:
        assert hd.image[24].shape == shape


def test_fit_background_keeps_walls_at_borders():
    bg = SyntheticModel(1).background  # 80x320 real background
    tall = fit_background(bg, (100, 800))
    assert tall.shape == (100, 800)
    # channel walls (dark rows) stay near the top and bottom border
    profile = tall.mean(axis=1)
    assert np.argmin(profile[:50]) < 10
    assert np.argmin(profile[50:]) + 50 > 90
    # mirror tiling: no seam along x
    assert np.abs(np.diff(tall, axis=1)).max() <= np.abs(np.diff(bg, axis=1)).max()
    assert fit_background(bg, (1, 1)).shape == (1, 1)


def test_float64_images(tmp_path):
    path = make_synthetic_measurement(
        tmp_path / "f.rtdc", 30, seed=5, image_dtype=np.float64
    )
    with h5py.File(path, "r") as h5:
        ds = h5["events/image"]
        assert ds.dtype == np.float64
        assert ds.chunks[0] == 10  # 200 kB frames: dclab's minimum of 10
        data = ds[:]
    assert np.array_equal(data, np.rint(data))
    assert np.array_equal(data, make_synthetic_stack(30, seed=5))
    with HDF5Data(path) as hd:
        assert hd.image[3].dtype == np.float64


def test_with_image_bg(tmp_path):
    path = make_synthetic_measurement(
        tmp_path / "bg.rtdc", 60, seed=6, with_image_bg=True
    )
    model = SyntheticModel(60, seed=6)
    with dclab.new_dataset(path) as ds:
        assert np.array_equal(ds["image_bg"][:], model.backgrounds())
        assert np.allclose(ds["bg_off"], model.flicker)


def test_parallel_compression_identical(tmp_path):
    # 50 frames: two chunks, the second one a partial edge chunk
    path = make_synthetic_measurement(tmp_path / "p.rtdc", 50, seed=7, num_workers=1)
    assert np.array_equal(read_images(path), make_synthetic_stack(50, seed=7))
    with dclab.new_dataset(path) as ds:
        assert len(ds) == 50


def test_noise_flicker_and_drift_levels():
    n = 400
    model = SyntheticModel(
        n, seed=9, cell_probability=0, drift_amplitude=0, flicker_sigma=0
    )
    resid = model.frames().astype(float) - model.background
    # uniform rounding error (1/12) adds to the variance of the noise
    assert np.sqrt(resid.var() - 1 / 12) == pytest.approx(2.0, rel=0.05)
    assert abs(resid.mean()) < 0.05

    model = SyntheticModel(n, seed=9, cell_probability=0, noise_sigma=0.5)
    frame_mean = (model.frames().astype(float) - model.background).mean(axis=(1, 2))
    assert np.std(frame_mean - model.drift) == pytest.approx(0.7, rel=0.15)
    # slow drift of a few grey levels that reaches its amplitude
    assert np.abs(model.drift).max() == pytest.approx(3.0)
    assert np.abs(np.diff(model.drift)).max() < 0.1


def test_cells_near_channel_centre():
    n = 1000
    model = SyntheticModel(n, seed=10, cell_probability=0.3, noise_sigma=0)
    assert model.has_cell.mean() == pytest.approx(0.3, abs=0.05)
    assert not model.streak_frames.any()
    frames = model.frames().astype(float)
    resid = frames - model.background - model.offsets[:, None, None]
    # cells are dark and lie in the channel centre, not at the walls
    dark = (resid < -15).mean(axis=0)
    assert dark[30:50].mean() > 10 * dark[:15].mean()
    # frames without cells have no dark spots
    assert resid[~model.has_cell].min() > -3


def test_streaks():
    # low frame rate and longer streaks keep the test small
    frame_rate = 1000.0
    n = 3000  # three seconds
    model = SyntheticModel(
        n, seed=11, streaks=2, frame_rate=frame_rate, streak_duration=0.25
    )
    assert len(model.streak_intervals) == 2
    for t0, t1 in model.streak_intervals:
        # streaks start at whole seconds (the sparse-median step times)
        assert t0 == int(t0)
        assert t1 - t0 == pytest.approx(0.25)
    inside = np.zeros(n, dtype=bool)
    for t0, t1 in model.streak_intervals:
        inside |= (model.time_rel >= t0) & (model.time_rel < t1)
    # almost every frame in a streak interval has the streak cell
    assert model.streak_frames[inside].mean() > 0.9
    assert not model.streak_frames[~inside].any()

    frames = model.frames()
    empty = frames[~model.has_cell]
    for (t0, t1), (sy, sx) in zip(
        model.streak_intervals, model.streak_positions, strict=True
    ):
        sel = (model.time_rel >= t0) & (model.time_rel < t1)
        roi = (slice(None), slice(sy - 3, sy + 4), slice(sx - 5, sx + 6))
        streak_mean = frames[sel][roi].mean()
        empty_mean = empty[roi].mean()
        # the cell is dark at the streak position in most streak frames
        assert streak_mean < empty_mean - 20
        # so the median over a kernel inside the streak contains the cell
        median = np.median(frames[sel][:200][roi], axis=0)
        assert median.mean() < empty_mean - 20


def test_explicit_streak_intervals():
    model = SyntheticModel(3000, seed=12, streaks=[(0.2, 0.3)], frame_rate=3000)
    assert model.streak_intervals == [(0.2, 0.3)]
    idx = np.flatnonzero(model.streak_frames)
    assert idx.min() >= 600 and idx.max() < 900


def test_noise_comes_from_a_bank():
    # Drawing fresh normals for every pixel would dominate the runtime of
    # 200k-frame benchmark files: the noise is a window of a fixed bank,
    # whose size does not grow with the number of frames (the speed itself
    # is printed by benchmarks/make_dataset.py, not asserted here).
    small = SyntheticModel(200, seed=13)
    large = SyntheticModel(20000, seed=13)
    assert small._noise.size == large._noise.size
    assert large._noise.size < 20000 * 80 * 320 / 10


@pytest.fixture(scope="module")
def basin_variants(tmp_path_factory):
    root = tmp_path_factory.mktemp("basins")
    src = make_synthetic_measurement(root / "source.rtdc", 150, seed=14)
    variants = make_basin_variants(src, root / "variants", seed=1)
    return src, variants


def get_basin_dicts(path):
    with h5py.File(path, "r") as h5:
        return [
            json.loads("\n".join(s.decode() for s in h5["basins"][key][:].tolist()))
            for key in h5["basins"]
        ]


def expected_indices(path, n_src):
    with h5py.File(path, "r") as h5:
        if "basinmap0" in h5["events"]:
            return h5["events/basinmap0"][:]
    return np.arange(n_src)


@pytest.mark.parametrize(
    "name", ["file_absolute", "file_relative", "internal_mapped", "file_mapped"]
)
def test_basin_variant_images(basin_variants, name):
    src, variants = basin_variants
    path = variants[name]
    source = read_images(src)
    idx = expected_indices(path, len(source))
    with h5py.File(path, "r") as h5:
        assert "image" not in h5["events"]
    with dclab.new_dataset(path) as ds:
        assert "image" in ds
        assert len(ds) == idx.size
        for ii in range(len(ds)):
            assert np.array_equal(ds["image"][ii], source[idx[ii]])
    with HDF5Data(path) as hd:
        assert len(hd) == idx.size
        for ii in range(len(hd)):
            assert np.array_equal(hd.image[ii], source[idx[ii]])


def test_basin_variant_definitions(basin_variants):
    src, variants = basin_variants
    (absolute,) = get_basin_dicts(variants["file_absolute"])
    assert absolute["paths"] == [str(src)]
    # dcnum 0.31.0 ignores basins with the "same" mapping dclab writes
    assert "mapping" not in absolute
    (relative,) = get_basin_dicts(variants["file_relative"])
    assert relative["paths"] == ["../source.rtdc"]

    (internal,) = get_basin_dicts(variants["internal_mapped"])
    assert internal["type"] == "internal"
    assert internal["mapping"] == "basinmap0"
    with h5py.File(variants["internal_mapped"], "r") as h5:
        mapping = h5["events/basinmap0"][:]
        assert h5["basin_events/image"].shape[0] == 150
        # sorted, all source frames, some of them repeated
        assert np.all(np.diff(mapping) >= 0)
        assert np.array_equal(np.unique(mapping), np.arange(150))
        assert mapping.size == 150 + 150 // 5
        time_src = SyntheticModel(150, seed=14).time
        assert np.allclose(h5["events/time"][:], time_src[mapping])

    (mapped,) = get_basin_dicts(variants["file_mapped"])
    assert mapped["type"] == "file"
    assert mapped["mapping"] == "basinmap0"
    with h5py.File(variants["file_mapped"], "r") as h5:
        subset = h5["events/basinmap0"][:]
    assert subset.size == 150 * 3 // 4
    assert np.all(np.diff(subset) > 0)
