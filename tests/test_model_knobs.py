"""The background-quality knobs of :class:`dcbg.testing.SyntheticModel`

Each knob does what its docstring says, the ground truth
(:meth:`~dcbg.testing.SyntheticModel.true_backgrounds`) is what the frames
are made of, and the file written for a knob holds the model's frames.
"""

import h5py
import hdf5plugin  # noqa: F401 - registers the Zstd filter for h5py
import numpy as np
import pytest

from dcbg.testing import SyntheticModel, make_synthetic_measurement

#: small sizes keep these tests fast
N_FRAMES = 120
SHAPE = (40, 120)


def model(**kwargs):
    return SyntheticModel(N_FRAMES, shape=SHAPE, seed=3, **kwargs)


@pytest.mark.parametrize("count", [0, 1, 4, 6])
def test_cells_per_frame_exact(count):
    m = model(cells_per_frame=count)
    assert np.all(m.cell_counts == count)
    assert m.cell_frame.size == count * N_FRAMES


def test_truth_is_frames_without_noise_and_cells():
    m = model(cells_per_frame=0, noise_sigma=0.0, flicker_jump_fraction=0.3)
    frames = m.frames().astype(np.float32)
    truth = m.true_backgrounds()
    assert truth.dtype == np.float32
    # no cells, no noise: frames are the rounded truth
    assert np.abs(frames - truth).max() <= 0.5 + 1e-4
    # without the flicker: the drift-only truth, whose rounding is backgrounds()
    drift_only = m.true_backgrounds(with_flicker=False)
    assert np.array_equal(
        m.backgrounds(), np.clip(drift_only + 0.5, 0, 255.99).astype(np.uint8)
    )
    assert np.allclose(truth - drift_only, m.flicker[:, None, None], atol=1e-4)
    assert np.array_equal(m.true_backgrounds(5, 9), truth[5:9])


def test_cells_darken_the_truth_where_they_are():
    m = model(cells_per_frame=2, noise_sigma=0.0, flicker_sigma=0.0)
    diff = m.frames().astype(np.float32) - m.true_backgrounds()
    # every frame shows its cells: a clearly dark region (cells absorb)
    assert np.all(diff.reshape(N_FRAMES, -1).min(axis=1) < -20)


def test_flicker_jumps():
    plain = SyntheticModel(3000, shape=SHAPE, seed=1, flicker_sigma=0.5)
    jumpy = SyntheticModel(
        3000,
        shape=SHAPE,
        seed=1,
        flicker_sigma=0.5,
        flicker_jump_fraction=0.1,
        flicker_jump_levels=(4, 6),
    )
    # the Gaussian part is the same stream; the jumps come on top
    extra = jumpy.flicker - plain.flicker
    jumped = extra != 0
    assert 0.08 < jumped.mean() < 0.12
    assert np.all((np.abs(extra[jumped]) >= 4) & (np.abs(extra[jumped]) <= 6))
    assert 0.3 < (extra[jumped] > 0).mean() < 0.7
    # the rest of the model is unchanged
    assert np.array_equal(plain.drift, jumpy.drift)
    assert np.array_equal(plain.cell_x, jumpy.cell_x)


def test_stuck_cell_sits_still():
    m = model(cells_per_frame=1, stuck_cells=[(20, 50)])
    stuck = m.cell_is_stuck
    assert stuck.sum() == 50
    assert np.array_equal(m.cell_frame[stuck], np.arange(20, 70))
    assert np.unique(m.cell_x[stuck]).size == 1
    assert np.unique(m.cell_y[stuck]).size == 1
    assert np.unique(m.cell_sprite[stuck]).size == 1
    counts = m.cell_counts
    assert np.all(counts[20:70] == 2) and np.all(counts[:20] == 1)


def test_drift_amplitude():
    m = model(drift_amplitude=5.0)
    assert np.abs(m.drift).max() == pytest.approx(5.0)
    assert np.abs(model(drift_amplitude=0.0).drift).max() == 0


def test_store_per_event_repeats_frames():
    cam = model(cells_per_frame=None, cell_probability=0.5)
    per_event = model(cells_per_frame=None, cell_probability=0.5, store_per_event=True)
    counts = np.bincount(cam.cell_frame, minlength=N_FRAMES)
    assert per_event.n_camera_frames == N_FRAMES
    assert per_event.n_frames == np.maximum(counts, 1).sum() > N_FRAMES
    rows = per_event.event_camera_frame
    assert np.array_equal(per_event.frames(), cam.frames()[rows])
    assert np.array_equal(per_event.frame_numbers, cam.frame_numbers[rows])
    assert np.array_equal(per_event.true_backgrounds(), cam.true_backgrounds()[rows])
    assert np.array_equal(per_event.cell_counts, counts[rows])


def test_invalid_knobs_are_named():
    with pytest.raises(ValueError, match="cells_per_frame"):
        model(cells_per_frame=-1)
    with pytest.raises(ValueError, match="flicker_jump_fraction"):
        model(flicker_jump_fraction=2)
    with pytest.raises(ValueError, match="flicker_jump_levels"):
        model(flicker_jump_levels=(6, 4))
    with pytest.raises(ValueError, match="stuck_cells"):
        model(stuck_cells=[(5, 0)])


def test_file_holds_the_model(tmp_path):
    kwargs = dict(
        shape=SHAPE,
        seed=5,
        cells_per_frame=3,
        stuck_cells=[(10, 30)],
        flicker_jump_fraction=0.2,
        store_per_event=True,
    )
    path = make_synthetic_measurement(
        tmp_path / "knobs.rtdc", 60, with_image_bg=True, **kwargs
    )
    m = SyntheticModel(60, **kwargs)
    with h5py.File(path, "r") as h5:
        assert np.array_equal(h5["events/image"][:], m.frames())
        assert np.array_equal(h5["events/frame"][:], m.frame_numbers)
        image_bg = h5["events/image_bg"][:].astype(np.float32)
        bg_off = h5["events/bg_off"][:]
    # a perfect background: image_bg + bg_off is the truth up to rounding
    err = image_bg + bg_off[:, None, None] - m.true_backgrounds()
    assert np.abs(err).max() <= 0.5 + 1e-4
