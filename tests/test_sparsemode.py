"""Sparse mode background (dcbg's own, cell-robust method)

- the window-mode kernel's contract on hand-made cases (ties, equal
  values, k=1, even and odd k, shifts that clip) and its argument checks
  (the random comparison with the slow reference is in test_kernels.py);
- the method against its slow reference, the same for any number of
  threads and any read/task split;
- its defaults on the hard conditions of dcbg.testing's model (small
  sizes): dense cells, a stuck cell, flicker jumps, and no worse than the
  sparse median where that works (1 cell per frame);
- dcnum's job runner computes it under use_dcbg().
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dcbg import BackgroundSparseMed, BackgroundSparseMode
from dcbg.feat.feat_background import bg_sparse_mode
from dcbg.io.input import RtdcMeasurement
from dcbg.kernels import slow, window_modes, window_modes_pixels
from dcbg.testing import SyntheticModel

#: ghost definition of issue 19: more than 6 grey levels off the truth ...
GHOST_LEVELS = 6
#: ... over at least this many pixels of the channel band
GHOST_MIN_PIXELS = 30
#: channel band of 80-row images (dcbg.check.robust.channel_band(80))
BAND = slice(20, 60)
#: frame shape of the condition tests: the model's full 80x320 frames,
#: for which its "cells per frame" are calibrated (in narrower frames the
#: same number of cells would cover the whole channel)
SHAPE = (80, 320)
#: frames of the condition tests: more than the default window of 1,000
#: frames, few enough to stay fast (0.35 s at 3,447.5 frames per second:
#: the defaults give one background image for all frames)
N_FRAMES = 1200
#: frames scored at once (bounds the memory of the float32 truth)
SCORE_BLOCK = 200


def read_background(path):
    measurement = RtdcMeasurement(path)
    try:
        ds = measurement.ds
        image_bg = np.asarray(ds["image_bg"][:], dtype=np.float32)
        bg_off = np.asarray(ds["bg_off"][:]) if "bg_off" in ds else None
    finally:
        measurement.close()
    return image_bg, bg_off


def score(path, model):
    """RMS (channel band) and ghost fraction against the model's truth"""
    image_bg, bg_off = read_background(path)
    if bg_off is not None:
        image_bg += bg_off[:, None, None].astype(np.float32)
    squares, ghosts = 0.0, 0
    for start in range(0, len(image_bg), SCORE_BLOCK):
        stop = start + SCORE_BLOCK
        error = (image_bg[start:stop] - model.true_backgrounds(start, stop))[:, BAND]
        squares += float(np.sum(error.astype(np.float64) ** 2))
        off = np.count_nonzero(np.abs(error) > GHOST_LEVELS, axis=(1, 2))
        ghosts += int(np.count_nonzero(off >= GHOST_MIN_PIXELS))
    pixels = len(image_bg) * (BAND.stop - BAND.start) * image_bg.shape[2]
    return (squares / pixels) ** 0.5, ghosts / len(image_bg)


def run(cls, frames, path, **kwargs):
    with cls(frames, path, **kwargs) as bg:
        bg.process()
    return path


# --- kernel: the contract on hand-made cases ------------------------------


def column(values):
    return np.array(values, dtype=np.uint8).reshape(-1, 1)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([7], 7),  # k=1: the value itself
        ([9, 9, 9, 9], 9),  # all equal
        ([10, 10, 20, 20], 10),  # a tie of two peaks: the lower one
        ([10, 10, 11, 11], 11),  # one peak: mean 10.5 rounds half up
        ([10, 11, 11, 200, 201, 202, 60], 11),  # odd k: 10, 11, 11 densest
        ([0, 0, 255, 255, 255], 255),  # the extremes
        ([50, 90, 91, 92, 130, 170, 210, 250], 91),  # cells spread, bg dense
    ],
)
def test_window_mode_contract(values, expected):
    stack = column(values)
    assert window_modes(stack, len(values), [0])[0, 0] == expected
    assert slow.window_modes(stack, len(values), [0])[0, 0] == expected


def test_window_mode_beats_the_median_where_cells_cover_most_frames():
    # 40 % background (100 +- 1), 60 % cell values spread over 40 levels
    rng = np.random.default_rng(4)
    values = np.concatenate([100 + rng.integers(-1, 2, 40), rng.integers(20, 60, 60)])
    stack = column(rng.permutation(values))
    assert abs(int(window_modes(stack, 100, [0])[0, 0]) - 100) <= 1
    assert np.median(values) < 60


def test_window_mode_shifts_clip_and_slide():
    stack = column([5, 250, 100, 100, 100, 40])
    shifts = np.array([10, -10, 0, 0, 0, 0])
    # shifted: 0 (clipped), 255 (clipped), 100, 100, 100, 40
    assert window_modes(stack, 1, [0, 1], shifts).ravel().tolist() == [0, 255]
    # windows that slide (1 -> 2) and one counted afresh (0 -> 3)
    result = window_modes(stack, 3, [0, 1, 2, 3], shifts).ravel().tolist()
    assert result == slow.window_modes(stack, 3, [0, 1, 2, 3], shifts).ravel().tolist()
    assert result[2] == 100


def test_window_mode_same_for_any_threads_and_pixel_split():
    rng = np.random.default_rng(5)
    stack = rng.integers(90, 110, (60, 300), dtype=np.uint8)
    stack[rng.random(stack.shape) < 0.6] = 30
    starts = [0, 3, 3, 20, 40]
    shifts = rng.integers(-4, 5, 60)
    one = window_modes(stack, 20, starts, shifts)
    np.testing.assert_array_equal(
        window_modes(stack, 20, starts, shifts, num_threads=3), one
    )
    out = np.zeros_like(one)
    for pixels in [(0, 7), (7, 200), slice(200, None)]:
        window_modes_pixels(stack, 20, starts, shifts, out, pixels)
    np.testing.assert_array_equal(out, one)
    np.testing.assert_array_equal(one, slow.window_modes(stack, 20, starts, shifts))


@settings(max_examples=60, deadline=None)
@given(
    stack=hnp.arrays(
        np.uint8,
        st.tuples(st.integers(1, 30), st.integers(1, 12)),
        elements=st.integers(20, 200),
    ),
    data=st.data(),
)
def test_window_mode_properties(stack, data):
    """Order of the frames does not matter; a constant offset moves it along"""
    n_frames = stack.shape[0]
    k = data.draw(st.integers(1, n_frames), label="k")
    shifts = np.array(
        data.draw(st.lists(st.integers(-5, 5), min_size=n_frames, max_size=n_frames))
    )
    result = window_modes(stack, k, [0], shifts)
    order = data.draw(st.permutations(range(k)), label="order")
    permuted = stack.copy()
    permuted[:k] = stack[:k][order]
    moved = shifts.copy()
    moved[:k] = shifts[:k][order]
    np.testing.assert_array_equal(window_modes(permuted, k, [0], moved), result)
    # no value clips (20..200, shifts of 5, offsets of 20): exact translation
    offset = data.draw(st.integers(-10, 20), label="offset")
    np.testing.assert_array_equal(
        window_modes(stack + np.uint8(offset + 10) - np.uint8(10), k, [0], shifts),
        result.astype(np.int64) + offset,
    )
    # the result lies within the range of the window's shifted values
    values = stack[:k].astype(np.int64) - shifts[:k, None]
    assert np.all(result >= values.min(axis=0)) and np.all(result <= values.max(axis=0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"starts": [3, 1]}, "starts must be sorted"),
        ({"starts": [9]}, r"starts must lie in 0\.\.8"),
        ({"starts": [-1]}, "starts must lie in"),
        ({"starts": [0.5]}, "starts must hold integers"),
        ({"shifts": [0] * 5}, r"one value per frame \(10\), got 5"),
        ({"shifts": [256] + [0] * 9}, r"shifts must lie in -255\.\.255"),
        ({"shifts": [0.0] * 10}, "shifts must hold integers"),
        ({"kernel_size": 11}, "kernel_size must not exceed"),
    ],
)
def test_window_mode_argument_errors(kwargs, message):
    call = {"stack": np.zeros((10, 4), np.uint8), "kernel_size": 2, "starts": [0]}
    call.update(kwargs)
    with pytest.raises(ValueError, match=message):
        window_modes(**call)


# --- the method against its reference -------------------------------------


@pytest.fixture(scope="module")
def small_stack():
    """600 small frames, 4 cells per frame, flicker with jumps"""
    model = SyntheticModel(
        600,
        shape=(30, 40),
        seed=8,
        cells_per_frame=4,
        flicker_jump_fraction=0.1,
    )
    return model.frames()


@pytest.mark.parametrize("offset_correction", [True, False])
@pytest.mark.parametrize("num_cpus", [1, 2])
def test_method_equals_reference(small_stack, tmp_path, num_cpus, offset_correction):
    # array input: 600 frames last 0.25 s (guessed frame rate), so a split
    # time of 0.02 s gives 13 overlapping windows of 101 frames
    with BackgroundSparseMode(
        small_stack,
        tmp_path / "out.rtdc",
        kernel_size=101,
        split_time=0.02,
        offset_correction=offset_correction,
        num_cpus=num_cpus,
    ) as bg:
        bg.process()
        starts, images, index = bg.distinct_starts, bg.distinct_images, bg.step_index
        ppid_text = bg.get_ppid()
    assert ppid_text == f"sparsemode:k=101^s=0.02^o={int(offset_correction)}"
    assert starts.size > 5
    rows = bg_sparse_mode.OFFSET_ROWS if offset_correction else 0
    expected = slow.sparsemode_series(small_stack, 101, starts, rows)
    np.testing.assert_array_equal(images, expected)
    image_bg, bg_off = read_background(tmp_path / "out.rtdc")
    # every frame's background is one of the series images
    flat = image_bg.reshape(len(image_bg), 1, -1)
    assert np.all(
        np.any(np.all(flat == images.reshape(1, len(images), -1), axis=2), axis=1)
    )
    if offset_correction:
        # bg_off: the top rows' mean of the frame minus that of its image
        np.testing.assert_allclose(
            bg_off, slow.sparsemed_offset(small_stack, image_bg, 20), atol=1e-9
        )
    else:
        assert bg_off is None
    assert index.max() == starts.size - 1


def test_method_independent_of_read_and_task_split(small_stack, tmp_path, monkeypatch):
    kwargs = {"kernel_size": 64, "split_time": 0.01}
    run(BackgroundSparseMode, small_stack, tmp_path / "a.rtdc", **kwargs)
    # tiny read blocks and tasks: other buffers, other slides and recounts
    monkeypatch.setattr(bg_sparse_mode, "READ_BLOCK_FRAMES", 7)
    plan = bg_sparse_mode.plan_windows
    monkeypatch.setattr(
        bg_sparse_mode, "plan_windows", lambda starts, k, span: plan(starts, k, 3)
    )
    run(BackgroundSparseMode, small_stack, tmp_path / "b.rtdc", num_cpus=1, **kwargs)
    first, second = (read_background(tmp_path / f"{n}.rtdc") for n in "ab")
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_kernel_size_beyond_the_frames_uses_all(small_stack, tmp_path):
    with BackgroundSparseMode(small_stack[:50], tmp_path / "out.rtdc") as bg:
        assert bg.kernel_size == 50
        assert bg.get_ppid() == "sparsemode:k=1000^s=1^o=1"
        bg.process()
        np.testing.assert_array_equal(
            bg.distinct_images, slow.sparsemode_series(small_stack[:50], 50, [0])
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 0}, "kernel_size must be positive"),
        ({"kernel_size": 2.5}, "kernel_size must be an integer"),
        ({"split_time": 0}, "split_time must be > 0"),
        ({"offset_correction": 2}, "offset_correction must be True or False"),
    ],
)
def test_bad_kwargs(small_stack, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BackgroundSparseMode(small_stack, tmp_path / "out.rtdc", **kwargs)
    assert list(tmp_path.iterdir()) == []


# --- defaults on the model's hard conditions ------------------------------


def condition(tmp_path, **knobs):
    """Model, and the sparse mode's (defaults) RMS and ghost fraction"""
    model = SyntheticModel(N_FRAMES, shape=SHAPE, seed=11, **knobs)
    frames = model.frames()
    path = run(BackgroundSparseMode, frames, tmp_path / "mode.rtdc")
    return model, frames, score(path, model)


def test_defaults_dense_cells(tmp_path):
    model, frames, (rms, ghosts) = condition(
        tmp_path, cells_per_frame=4, flicker_sigma=0.0
    )
    assert ghosts <= 0.05 and rms <= 1.0, (rms, ghosts)
    # the condition is hard: the sparse median shows the cells
    path = run(BackgroundSparseMed, frames, tmp_path / "med.rtdc", split_time=0.1)
    assert score(path, model)[1] > 0.5


def test_defaults_stuck_cell(tmp_path):
    # the cell sits in frames 400..699 of the window of 1,000 frames
    _, _, (rms, ghosts) = condition(
        tmp_path, cells_per_frame=1, flicker_sigma=0.0, stuck_cells=[(400, 300)]
    )
    assert ghosts <= 0.01, (rms, ghosts)


def test_defaults_flicker_jumps(tmp_path):
    _, _, (rms, ghosts) = condition(
        tmp_path,
        cells_per_frame=1,
        flicker_sigma=0.0,
        flicker_jump_fraction=0.1,
        flicker_jump_levels=(4, 6),
    )
    assert rms <= 0.8 and ghosts == 0, (rms, ghosts)


def test_defaults_one_cell_no_worse_than_sparse_median(tmp_path):
    model, frames, (rms, ghosts) = condition(
        tmp_path, cells_per_frame=1, flicker_sigma=0.0
    )
    path = run(BackgroundSparseMed, frames, tmp_path / "med.rtdc", split_time=0.1)
    rms_median = score(path, model)[0]
    assert rms <= 1.1 * rms_median and ghosts == 0, (rms, rms_median)


# --- dcnum's job runner ---------------------------------------------------


def test_dcnum_runner_computes_sparse_mode_with_use_dcbg(cytoshot, tmp_path):
    pytest.importorskip("dcnum")
    import h5py
    from dcnum.logic import DCNumJobRunner, DCNumPipelineJob

    from dcbg.dcnum import use_dcbg

    out = tmp_path / "out.rtdc"
    with use_dcbg():
        job = DCNumPipelineJob(
            path_in=cytoshot,
            path_out=out,
            background_code="sparsemode",
            background_kwargs={"kernel_size": 5, "split_time": 0.002},
            num_procs=1,
            debug=True,
        )
        with DCNumJobRunner(job=job) as runner:
            runner.run()
    assert runner.error_tb is None, runner.error_tb
    with h5py.File(out) as h5:
        assert h5.attrs["pipeline:dcnum background"] == "sparsemode:k=5^s=0.002^o=1"
        assert "bg_off" in h5["events"]
        assert "image_bg" in h5["basin_events"]


# --- command line ---------------------------------------------------------


def test_cli_methods_and_compute(cytoshot, tmp_path):
    from click.testing import CliRunner

    from dcbg.cli import make_cli

    def cli(*args):
        result = CliRunner().invoke(make_cli(), [str(arg) for arg in args])
        assert result.exit_code == 0, result.output
        return result

    listing = cli("methods").stdout
    assert "sparsemode: Sparse mode background" in listing
    assert "PPID (defaults): sparsemode:k=1000^s=1^o=1" in listing
    api = run(BackgroundSparseMode, cytoshot, tmp_path / "api.rtdc", kernel_size=8)
    by_options = tmp_path / "options.rtdc"
    cli("compute", cytoshot, "-o", by_options, "--method", "sparsemode",
        "--kernel-size", "8", "--num-cpus", "1")  # fmt: skip
    by_ppid = tmp_path / "ppid.rtdc"
    summary = cli("compute", cytoshot, "-o", by_ppid, "--ppid", "sparsemode:k=8").stdout
    assert "sparsemode:k=8^s=1^o=1" in summary
    expected = read_background(api)
    for path in (by_options, by_ppid):
        image_bg, bg_off = read_background(path)
        np.testing.assert_array_equal(image_bg, expected[0])
        np.testing.assert_array_equal(bg_off, expected[1])
