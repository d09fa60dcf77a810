"""BackgroundSparseMed: equality with dcnum 0.31.0 and the spec's properties"""

import warnings

import dclab
import h5py
import numpy as np
import pytest
from dcnum.feat.feat_background import BackgroundSparseMed as DcnumSparseMed

from dcbg import BackgroundSparseMed
from dcbg.feat.feat_background.bg_sparse_median import assign_background_index
from dcbg.kernels import slow
from dcbg.testing import make_basin_variants, make_synthetic_measurement


def series_info(bg) -> dict:
    """Copies of the series attributes dcnum and dcbg both expose"""
    return {
        name: getattr(bg, name).copy() for name in ("step_times", "time", "bg_images")
    }


def run_both(inp, tmp_path, tag, **kwargs):
    ours = tmp_path / f"{tag}_ours.rtdc"
    ref = tmp_path / f"{tag}_dcnum.rtdc"
    with warnings.catch_warnings(record=True) as ours_warnings:
        warnings.simplefilter("always")
        with BackgroundSparseMed(inp, ours, num_cpus=2, **kwargs) as bg:
            bg.process()
            ours_info = series_info(bg)
    with DcnumSparseMed(inp, ref, num_cpus=2, **kwargs) as bg:
        bg.process()
        ref_info = series_info(bg)
    return ours, ref, ours_info, ref_info, ours_warnings


def assert_same_result(ours, ref, ours_info, ref_info):
    assert np.array_equal(ours_info["time"], ref_info["time"])
    assert np.array_equal(ours_info["step_times"], ref_info["step_times"])
    assert np.array_equal(ours_info["bg_images"], ref_info["bg_images"])
    with dclab.new_dataset(ours) as a, dclab.new_dataset(ref) as b:
        assert len(a) == len(b)
        assert np.array_equal(a["image_bg"][:], b["image_bg"][:])
        assert ("bg_off" in a) == ("bg_off" in b)
        if "bg_off" in b:
            assert np.allclose(a["bg_off"][:], b["bg_off"][:], rtol=0, atol=1e-9)
    with h5py.File(ours) as h5o, h5py.File(ref) as h5r:
        # same series and same mapping, stored as a mapped internal basin
        assert np.array_equal(
            h5o["basin_events/image_bg"][:], h5r["basin_events/image_bg"][:]
        )
        assert np.array_equal(h5o["events/basinmap0"][:], h5r["events/basinmap0"][:])


@pytest.fixture(scope="module")
def streaky(tmp_path_factory):
    """Realistic measurement with flicker and two dense cell streaks"""
    path = tmp_path_factory.mktemp("syn") / "streaky.rtdc"
    return make_synthetic_measurement(path, 2400, seed=11, streaks=2)


def test_real_data(cytoshot, tmp_path):
    for tag, kwargs in {
        "default": {"kernel_size": 5, "split_time": 0.002},
        "thresh": {"kernel_size": 4, "split_time": 0.001, "thresh_cleansing": 1},
    }.items():
        assert_same_result(*run_both(cytoshot, tmp_path, tag, **kwargs)[:4])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 200, "split_time": 0.03},
        {"kernel_size": 151, "split_time": 0.0237},  # odd k, uneven split
        {"kernel_size": 100, "split_time": 0.05, "thresh_cleansing": 2.5},
        {"kernel_size": 80, "split_time": 0.02, "frac_cleansing": 1},
        {"kernel_size": 120, "split_time": 0.04, "offset_correction": False},
        {"kernel_size": 300, "split_time": 0.01, "frac_cleansing": 0.5},  # overlap
    ],
)
def test_synthetic_with_streaks(streaky, tmp_path, kwargs):
    result = run_both(streaky, tmp_path, "syn", **kwargs)
    assert_same_result(*result[:4])
    if kwargs.get("offset_correction") is False:
        with dclab.new_dataset(result[0]) as ds:
            assert "bg_off" not in ds


def test_fallback_warning(streaky, tmp_path, caplog):
    ours, ref, oi, ri, caught = run_both(
        streaky, tmp_path, "fb", kernel_size=100, split_time=0.03, thresh_cleansing=1e6
    )
    assert_same_result(ours, ref, oi, ri)
    messages = [str(w.message) for w in caught]
    assert any("frac_cleansing=0.8 is enforced" in m for m in messages), messages


@pytest.mark.parametrize("time_source", ["frame", "rate", "none"])
def test_time_axis_sources(tmp_path, time_source):
    path = make_synthetic_measurement(
        tmp_path / f"{time_source}.rtdc", 1500, seed=4, time_source=time_source
    )
    with dclab.new_dataset(path) as ds:
        assert ("time" in ds.features_innate) is False
    result = run_both(path, tmp_path, time_source, kernel_size=60, split_time=0.05)
    assert_same_result(*result[:4])


def test_array_input(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(100, 120, size=(4000, 20, 30), dtype=np.uint8)
    ours = tmp_path / "ours.rtdc"
    ref = tmp_path / "ref.rtdc"
    with BackgroundSparseMed(stack, ours, kernel_size=99, split_time=0.1) as bg:
        bg.process()
        ours_images = bg.bg_images.copy()
    with DcnumSparseMed(stack, ref, kernel_size=99, split_time=0.1, num_cpus=1) as bg:
        bg.process()
        assert np.array_equal(ours_images, bg.bg_images)
    with h5py.File(ours) as a, h5py.File(ref) as b:
        assert np.array_equal(a["events/basinmap0"][:], b["events/basinmap0"][:])
        assert np.array_equal(
            a["basin_events/image_bg"][:], b["basin_events/image_bg"][:]
        )
        assert np.allclose(
            a["events/bg_off"][:], b["events/bg_off"][:], atol=1e-9, rtol=0
        )


def test_kernel_larger_than_data(cytoshot, tmp_path):
    ours, ref, oi, ri, caught = run_both(
        cytoshot, tmp_path, "big", kernel_size=200, split_time=0.001
    )
    assert_same_result(ours, ref, oi, ri)
    assert any("larger than the number of frames 13" in str(w.message) for w in caught)
    with h5py.File(ours) as h5:
        # the PPID keeps the requested kernel size
        assert (
            h5["basin_events/image_bg"]
            .attrs["dcnum ppid background"]
            .startswith("sparsemed:k=200^")
        )


@pytest.mark.parametrize("count", [1, 3])
def test_single_frame_or_zero_duration(tmp_path, count):
    # dcnum crashes here; one background image serves all frames
    rng = np.random.default_rng(count)
    stack = rng.integers(0, 256, size=(count, 8, 9), dtype=np.uint8)
    path = tmp_path / "in.rtdc"
    with dclab.RTDCWriter(path) as hw:
        hw.store_metadata({"experiment": {"sample": "s", "run index": 1}})
        hw.store_feature("image", stack)
        hw.store_feature("time", np.zeros(count))
    out = tmp_path / "out.rtdc"
    with BackgroundSparseMed(path, out, kernel_size=5) as bg:
        bg.process()
        assert bg.bg_images.shape == (1, 8, 9)
    with dclab.new_dataset(out) as ds:
        median = slow.window_median(stack, count // 2)
        for ii in range(count):
            assert np.array_equal(ds["image_bg"][ii], median)


def test_offset_only_frames_are_fully_corrected(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.integers(60, 190, size=(30, 50)).astype(np.int16)
    offsets = rng.integers(-5, 6, size=3000)
    # a "bright streak": a period in which every frame is 12 levels brighter
    offsets[1200:1500] += 12
    stack = (base[np.newaxis] + offsets[:, np.newaxis, np.newaxis]).astype(np.uint8)
    out = tmp_path / "out.rtdc"
    with BackgroundSparseMed(stack, out, kernel_size=101, split_time=0.1) as bg:
        bg.process()
    with dclab.new_dataset(out) as ds:
        image_bg = ds["image_bg"][:].astype(float)
        bg_off = ds["bg_off"][:]
    corrected = stack - image_bg - bg_off[:, np.newaxis, np.newaxis]
    assert np.abs(corrected).max() < 1e-9
    # frames in the bright period get the shifted background
    shifted = image_bg[1300] + bg_off[1300]
    assert np.allclose(shifted, base + offsets[1300])


def test_cell_streaks_are_cleansed(tmp_path):
    # a dense streak of dark "cells" in frames 1000..1399 (10% of the series)
    rng = np.random.default_rng(5)
    base = np.full((40, 60), 150, dtype=np.uint8)
    stack = np.repeat(base[np.newaxis], 4000, axis=0)
    stack = (stack + rng.integers(-2, 3, size=stack.shape)).astype(np.uint8)
    stack[1000:1400, 15:25, 20:30] = 60
    out = tmp_path / "out.rtdc"
    ref = tmp_path / "ref.rtdc"
    kwargs = {"kernel_size": 100, "split_time": 0.05}
    with BackgroundSparseMed(stack, out, **kwargs) as bg:
        bg.process()
        dark = bg.bg_images[:, 20, 25] < 100
        assert dark.any(), "the streak shows in the raw series"
        streak_times = bg.step_times[dark]
    with DcnumSparseMed(stack, ref, num_cpus=1, **kwargs) as bg:
        bg.process()
    with dclab.new_dataset(out) as ds, dclab.new_dataset(ref) as dr:
        assert np.array_equal(ds["image_bg"][:], dr["image_bg"][:])
        # every frame, also inside the streak, gets a clean background
        assert np.all(ds["image_bg"][:][:, 20, 25] > 140)
    assert streak_times.size


def test_assign_background_index():
    time = np.arange(10) * 0.1
    idx = assign_background_index(time, np.array([0.0, 0.4]), 0.4)
    # image 0 up to the frame closest to 0.2 s, image 1 for the rest
    assert idx.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]


def test_process_second_and_attributes(cytoshot, tmp_path):
    with BackgroundSparseMed(cytoshot, tmp_path / "o.rtdc", kernel_size=5) as bg:
        assert bg.kernel_size == 5 and bg.split_time == 1
        assert bg.duration == pytest.approx(bg.time[-1])
        assert bg.shared_input.shape == (5, 80 * 320)
        bg.process_second(0, 0.0)
        expected = slow.window_median(bg.input_data[0:5], 2)
        assert np.array_equal(bg.bg_images[0], expected)
        assert 0 < bg.get_progress() <= 1


@pytest.fixture(scope="module")
def basin_variants(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    src = make_synthetic_measurement(folder / "src.rtdc", 1200, seed=8)
    return src, make_basin_variants(src, folder / "variants")


@pytest.mark.parametrize(
    "variant", ["file_absolute", "file_relative", "internal_mapped", "file_mapped"]
)
def test_images_from_basins(basin_variants, tmp_path, variant):
    src, variants = basin_variants
    path = variants[variant]
    kwargs = {"kernel_size": 50, "split_time": 0.05}
    ours = tmp_path / "ours.rtdc"
    with BackgroundSparseMed(path, ours, **kwargs) as bg:
        bg.process()
    with dclab.new_dataset(path) as ds:
        frames = ds["image"][:]
    with dclab.new_dataset(ours) as ds:
        image_bg = ds["image_bg"][:]
        bg_off = ds["bg_off"][:]
        assert np.array_equal(ds["image"][:], frames)
    # bg_off by its definition (dcnum's top 20 rows), from the frames the
    # basin provides
    expected_off = slow.sparsemed_offset(frames, image_bg, rows=20)
    assert np.allclose(bg_off, expected_off, rtol=0, atol=1e-9)
    # dcnum 0.31.0 crashes with offset correction on mapped images;
    # without it, it computes the same series and mapping
    ref = tmp_path / "ref.rtdc"
    with DcnumSparseMed(path, ref, num_cpus=1, offset_correction=False, **kwargs) as bg:
        bg.process()
    with dclab.new_dataset(ref) as ds:
        assert np.array_equal(ds["image_bg"][:], image_bg)


# the series by distinct windows (issue 17) ------------------------------------


def loop_nearest(time, seconds):
    """dcnum's per-step choice of a window's first frame"""
    return np.array([np.argmin(np.abs(s - time)) for s in seconds])


def loop_switches(time, step_times, split_time):
    """dcnum's per-step frame where the mapping switches images"""
    return np.array(
        [np.argmin(np.abs(time - t1 - split_time / 2)) for t1 in step_times]
    )


def time_axes():
    rng = np.random.default_rng(17)
    steady = np.arange(500) / 3447.5
    dup = np.repeat(np.sort(rng.uniform(0, 2, 200)), rng.integers(1, 4, 200))
    coarse = np.round(np.sort(rng.uniform(0, 5, 300)), 2)  # many equal times
    huge = 1e9 + np.arange(300) * 1e-7  # rounding makes distances equal
    return {
        "steady": steady - steady[0],
        "duplicates": dup - dup[0],
        "coarse": coarse - coarse[0],
        "huge_offset": huge,
        "float32": (np.sort(rng.uniform(0, 3, 400)).astype(np.float32)),
        "unsorted": rng.uniform(0, 2, 150),
        "unsorted_ties": rng.permutation(np.round(rng.uniform(0, 3, 400), 1)),
        "unsorted_huge": rng.permutation(huge),
        "one_frame": np.zeros(1),
    }


@pytest.mark.parametrize("name", list(time_axes()))
def test_nearest_and_switch_frames_match_dcnums_argmin(name):
    from dcbg.feat.feat_background.sparse_series import nearest_frames, switch_frames

    time = time_axes()[name]
    span = float(np.max(time) - np.min(time)) or 1.0
    for split in (span / 7, span / 997, 0.01, 1.0):
        steps = np.arange(0, span, split)
        # also exactly the frame times and midpoints between them
        queries = np.concatenate([steps, time[:50], (time[:-1] + time[1:])[:50] / 2])
        queries = queries.astype(time.dtype) if name == "float32" else queries
        assert np.array_equal(
            nearest_frames(time, queries), loop_nearest(time, queries)
        )
        assert np.array_equal(
            switch_frames(time, steps, split), loop_switches(time, steps, split)
        )


def test_assign_background_index_matches_dcnums_loop():
    def loop(time, step_times, split_time):
        bg_idx = np.zeros(time.size, dtype=int)
        idx0, idx1, ii = 0, None, 0
        for ii, t1 in enumerate(step_times):
            idx1 = np.argmin(np.abs(time - t1 - split_time / 2))
            bg_idx[idx0:idx1] = ii
            idx0 = idx1
        if idx1 is not None:
            bg_idx[idx1:] = ii
        return bg_idx

    for name, time in time_axes().items():
        span = float(np.max(time) - np.min(time)) or 1.0
        for split in (span / 5, span / 333, span * 2):
            steps = np.arange(0, span, split)
            for used in (steps, steps[::2], steps[1::3]):
                if used.size:
                    got = assign_background_index(time, used, split)
                    assert np.array_equal(got, loop(time, used, split)), name


def test_exact_column_median_is_numpys():
    from dcbg.feat.feat_background.sparse_series import exact_column_median

    rng = np.random.default_rng(3)
    for rows, cols in [(1, 5), (2, 7), (9, 30), (40, 80)]:
        values = rng.integers(0, 256, size=(rows, cols), dtype=np.uint8)
        values[: rows // 2, : cols // 3] = 7  # ties
        for counts in (
            np.ones(rows, int),
            rng.integers(0, 5, rows) + (np.arange(rows) == 0),
        ):
            expected = np.median(np.repeat(values, counts, axis=0), axis=0)
            got = exact_column_median(values, counts)
            assert got.dtype == expected.dtype and np.array_equal(got, expected)


@pytest.mark.parametrize(
    "thresh,frac", [(0, 0.8), (1, 0.8), (2.5, 0.5), (1e6, 0.8), (0, 1), (0, 0.3)]
)
def test_cleansing_from_distinct_profiles_is_cleansing_the_series(thresh, frac):
    import logging

    from dcbg.feat.feat_background.bg_sparse_median import cleanse_background_series
    from dcbg.feat.feat_background.sparse_series import cleanse_profiles

    rng = np.random.default_rng(int(thresh * 10 + frac * 100))
    distinct = rng.integers(90, 110, size=(23, 60, 50), dtype=np.uint8)
    distinct[5:9, 20:40, 10:30] = 40  # "cells" in a few images
    # a series of steps that reuse images, in runs, as a slow sample does
    step_index = np.repeat(np.arange(23), rng.integers(1, 9, 23))
    logger = logging.getLogger("test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = cleanse_background_series(distinct[step_index], thresh, frac, logger)
        got = cleanse_profiles(
            np.ptp(distinct, axis=2), step_index, thresh, frac, logger
        )
    assert np.array_equal(got, expected)


def test_series_images_view():
    from dcbg.feat.feat_background.sparse_series import SeriesImages

    distinct = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    index = np.array([0, 0, 2, 1, 1, 1])
    view = SeriesImages(distinct, index)
    full = distinct[index]
    assert len(view) == 6 and view.shape == full.shape and view.dtype == np.uint8
    assert np.array_equal(np.asarray(view), full) and np.array_equal(view.copy(), full)
    for item in (3, slice(1, 5), np.array([5, 0]), (slice(None), 2), (4, 1, 3)):
        assert np.array_equal(view[item], full[item])


def slow_sample(path, frames, seconds, **kwargs):
    """A realistic measurement of `frames` events spread over `seconds`"""
    return make_synthetic_measurement(
        path, frames, frame_rate=(frames - 1) / seconds, seed=23, **kwargs
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # defaults: kernel 200 > 60 frames, 150 series images
        {"kernel_size": 10, "thresh_cleansing": 1},  # rolling over 51 windows
        pytest.param(
            {"kernel_size": 7, "split_time": 1.5, "frac_cleansing": 0.6},
            marks=pytest.mark.slow,
        ),
    ],
)
def test_slow_sample_equals_dcnum(tmp_path, kwargs):
    # 60 events over 150 s: 2.5 series images per frame at the defaults;
    # dcbg used to refuse 4 per frame and computed every image
    path = slow_sample(tmp_path / "slow.rtdc", 60, 150, shape=(40, 60))
    ours, ref, oi, ri, caught = run_both(path, tmp_path, "slow", **kwargs)
    assert_same_result(ours, ref, oi, ri)
    # the warning counts the images dcnum makes (whole images), once
    steps = len(ri["step_times"])
    messages = [str(w.message) for w in caught if "serve no frame" in str(w.message)]
    assert messages == [
        m for m in messages if f"gives {steps} background images for the 60" in m
    ]
    assert len(messages) == 1


def test_issue_17_examples_equal_a_numpy_reference(tmp_path):
    """dcbg computes what it refused before (dcnum agrees: corpus, slow run)"""
    # the wide-channel shape of dclab's test file: 16 events over 256 s
    path = slow_sample(tmp_path / "wide.rtdc", 16, 256, shape=(100, 800))
    out = tmp_path / "out.rtdc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with BackgroundSparseMed(path, out, num_cpus=2) as bg:
            bg.process()
            steps, time_ = bg.step_times.copy(), bg.time.copy()
    assert steps.size >= 255  # 256 s at 1 s (up to rounding of the times)
    with dclab.new_dataset(path) as ds:
        frames = ds["image"][:]
    # numpy reference: dcnum's series, cleansing and mapping, step by step
    # the kernel (200) is reduced to the 16 frames, so every step's window
    # holds all frames
    image = slow.window_median(frames, len(frames) // 2)
    series = np.repeat(image[np.newaxis], steps.size, axis=0)
    used = np.ones(steps.size, dtype=bool)  # equal images: none stands out
    idx = assign_background_index(time_, steps[used], 1.0)
    with dclab.new_dataset(out) as ds:
        assert np.array_equal(ds["image_bg"][:], series[used][idx])
        expected_off = slow.sparsemed_offset(frames, ds["image_bg"][:], rows=20)
        assert np.allclose(ds["bg_off"][:], expected_off, rtol=0, atol=1e-12)
    with h5py.File(out) as h5:
        assert h5["basin_events/image_bg"].shape == (steps.size, 100, 800)


def series_peak_bytes(path, tmp_path, tag) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with BackgroundSparseMed(
                path, tmp_path / f"{tag}.rtdc", kernel_size=20, num_cpus=1
            ) as bg:
                bg.process()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_series_memory_grows_with_frames_not_duration(tmp_path):
    # 200 frames of 80x320 over 200 s and over 2,000 s: 200 and 2,000
    # series images of 25.6 kB at the default split time; the series needs
    # at most 181 distinct window images either way
    short = slow_sample(tmp_path / "short.rtdc", 200, 200)
    long = slow_sample(tmp_path / "long.rtdc", 200, 2000)
    peak_short = series_peak_bytes(short, tmp_path, "short")
    peak_long = series_peak_bytes(long, tmp_path, "long")
    image_bytes = 80 * 320
    # 1,800 more steps cost their per-step values (BYTES_PER_SERIES_STEP),
    # not 1,800 images (46 MB, as when every step had its image)
    assert peak_long - peak_short < 100 * image_bytes, (peak_short, peak_long)
    assert peak_long < 1.25 * peak_short, (peak_short, peak_long)
