"""``dcbg check`` and :func:`dcbg.check.check_background`

Files with a known truth from :mod:`dcbg.testing`'s model: dcnum's
backgrounds of dense samples hold ghosts, sparse backgrounds of one cell
per frame do not, frames with brightness jumps flicker. The CLI and JSON
contract (exit 0 pass, 1 problem, 2 usage or input error), and no false
alarm on the bundled real measurements.
"""

import functools
import json
import pathlib
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from dcbg import BackgroundRollMed, BackgroundSparseMed
from dcbg.check import check_background, result_to_dict, robust
from dcbg.cli import make_cli
from dcbg.testing import make_synthetic_measurement

DATA = pathlib.Path(__file__).resolve().parents[1] / "dcbg" / "data"
#: bundled real measurements that hold image_bg (good backgrounds)
BUNDLED_WITH_BG = ("cytoshot_2024_80x320.rtdc", "cytoshot_legacy_with_bg_80x400.rtdc")
#: small sizes: the check needs some hundred frames for its reference
N_FRAMES = 400
ROLLMED = (BackgroundRollMed, {"kernel_size": 50})
SPARSEMED = (BackgroundSparseMed, {"kernel_size": 50, "split_time": 0.05})
#: no flicker at all unless a test asks for it
QUIET = {"flicker_sigma": 0.0}


def computed(folder, name, method, **model):
    source = make_synthetic_measurement(
        folder / f"{name}.rtdc", N_FRAMES, seed=11, **(QUIET | model)
    )
    cls, kwargs = method
    output = folder / f"{name}_bg.rtdc"
    with cls(source, output, **kwargs) as bg:
        bg.process()
    return output


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("check")
    return {
        "dense_rollmed": computed(folder, "dense_r", ROLLMED, cells_per_frame=4),
        "dense_sparsemed": computed(folder, "dense_s", SPARSEMED, cells_per_frame=4),
        "clean_sparsemed": computed(folder, "clean_s", SPARSEMED, cells_per_frame=1),
        "clean_rollmed": computed(folder, "clean_r", ROLLMED, cells_per_frame=1),
        "jumps_rollmed": computed(
            folder, "jumps_r", ROLLMED, cells_per_frame=1, flicker_jump_fraction=0.1
        ),
        "jumps_sparsemed": computed(
            folder, "jumps_s", SPARSEMED, cells_per_frame=1, flicker_jump_fraction=0.1
        ),
        "stuck_rollmed": computed(
            folder, "stuck_r", ROLLMED, cells_per_frame=1, stuck_cells=[(150, 100)]
        ),
    }


@functools.lru_cache
def checked(path):
    """The check of a (read-only) test file, computed once"""
    return check_background(path)


def run_cli(*args):
    return CliRunner().invoke(make_cli(), ["check", *map(str, args)])


@pytest.mark.parametrize("name", ["dense_rollmed", "dense_sparsemed"])
def test_ghosts_of_dense_samples_found(files, name):
    result = checked(files[name])
    # truth: every background of dcnum's methods holds a ghost at 4 cells
    assert result.ghost_fraction >= 0.5
    assert result.ghosts_found and not result.passed
    assert not result.flicker


@pytest.mark.parametrize("name", ["clean_sparsemed", "clean_rollmed"])
def test_clean_backgrounds_pass(files, name):
    result = checked(files[name])
    assert result.ghosts_judged
    assert result.ghost_fraction <= 0.05
    assert not result.flicker and result.flicker_corrected
    assert result.passed


def test_stuck_cell_ghost_in_its_time_range(files):
    result = checked(files["stuck_rollmed"])
    ghosts = result.events.index[result.events.ghost]
    # the cell sits in frames 150-249; rollmed's window (the following 50
    # frames) holds it from frame ~125 on, in more than half its frames
    assert ghosts.size > 50
    assert ghosts.min() >= 100 and ghosts.max() < 260
    (item,) = result_to_dict(result)["ghost_ranges"]
    assert item["first_event"] == ghosts.min() and item["last_event"] == ghosts.max()
    assert item["start_s"] < item["stop_s"]


def test_flicker_found_and_whether_corrected(files):
    rollmed = checked(files["jumps_rollmed"])
    sparsemed = checked(files["jumps_sparsemed"])
    clean = checked(files["clean_rollmed"])
    # 10 % of the frames jump by 4-6 grey levels
    assert rollmed.flicker and sparsemed.flicker and not clean.flicker
    assert 0.05 < rollmed.flicker_fraction < 0.15
    # rollmed writes no bg_off: the corrected images jump; sparsemed's follow
    assert not rollmed.flicker_corrected and not rollmed.passed
    assert sparsemed.flicker_corrected and sparsemed.passed
    assert rollmed.ghost_fraction == 0


@pytest.mark.parametrize("name", BUNDLED_WITH_BG)
def test_no_false_alarm_on_bundled_examples(tmp_path, name):
    path = shutil.copy(DATA / name, tmp_path / name)
    result = check_background(path)
    assert result.passed
    assert result.ghost_fraction == 0 and not result.flicker
    outcome = run_cli(path)
    assert outcome.exit_code == 0, outcome.output
    assert outcome.output.splitlines()[1].startswith("PASS")


def test_bundled_dcnum_example_is_judged(tmp_path):
    # 13 events of 10 distinct frames: enough for a reference
    result = check_background(shutil.copy(DATA / BUNDLED_WITH_BG[0], tmp_path))
    assert result.ghosts_judged and result.judged_fraction == 1


def test_exit_status_and_report(files):
    problem = run_cli(files["dense_rollmed"])
    assert problem.exit_code == 1
    assert "PROBLEM: ghosts in" in problem.output
    assert "Advice:" in problem.output and "ghosts: events" in problem.output
    flicker = run_cli(files["jumps_rollmed"])
    assert flicker.exit_code == 1 and "flicker NOT corrected" in flicker.output
    assert "bg_off" in flicker.output
    passed = run_cli(files["jumps_sparsemed"])
    assert passed.exit_code == 0 and "PASS" in passed.output
    assert "flicker corrected by bg_off" in passed.output


def test_json_contract(files):
    outcome = run_cli("--json", files["dense_rollmed"])
    assert outcome.exit_code == 1
    data = json.loads(outcome.output)
    assert 0.5 <= data["ghost_fraction"] <= 1
    assert data["flicker"] is False
    assert data["verdict"] == "problem" and data["problems"] == ["ghosts"]
    events = data["events"]
    assert len(events["index"]) == data["events_checked"] == N_FRAMES
    for key in ("judged", "ghost", "ghost_pixels", "max_deviation", "time"):
        assert len(events[key]) == N_FRAMES
    assert sum(events["ghost"]) == data["ghost_events"]
    assert data["thresholds"]["ghost_levels"] == 6
    # the same as the Python function's result
    assert data == json.loads(
        json.dumps(result_to_dict(checked(files["dense_rollmed"])))
    )
    clean = result_to_dict(checked(files["jumps_sparsemed"]))
    assert clean["verdict"] == "pass" and clean["flicker"] is True
    assert 0 <= clean["ghost_fraction"] <= 0.05


def test_max_events_samples_evenly(files):
    result = check_background(files["dense_rollmed"], max_events=50)
    assert result.events.index.size == 50
    assert result.events.index[0] == 0 and result.events.index[-1] == N_FRAMES - 1
    assert result.ghost_fraction >= 0.5


def test_frames_stored_once_per_event(tmp_path):
    # copies of a frame are one frame for the reference (else a cell in
    # a frame stored four times would look like the background)
    output = computed(
        tmp_path, "per_event", SPARSEMED, cells_per_frame=1, store_per_event=True
    )
    result = check_background(output)
    assert result.ghost_fraction <= 0.05 and result.passed


def test_input_errors_exit_2(tmp_path, files):
    assert run_cli(tmp_path / "missing.rtdc").exit_code == 2
    # a measurement without image_bg
    empty = shutil.copy(DATA / "shapein_empty_80x250.rtdc", tmp_path)
    outcome = run_cli(empty)
    assert outcome.exit_code == 2 and "image_bg" in outcome.output
    raw = make_synthetic_measurement(tmp_path / "raw.rtdc", 20)
    outcome = run_cli(raw)
    assert outcome.exit_code == 2 and "'image_bg'" in outcome.output
    not_hdf5 = tmp_path / "text.rtdc"
    not_hdf5.write_text("not a measurement")
    assert run_cli(not_hdf5).exit_code == 2
    assert run_cli("--max-events", "0", files["clean_rollmed"]).exit_code == 2
    assert run_cli("--bogus", files["clean_rollmed"]).exit_code == 2
    with pytest.raises(ValueError, match="max_events"):
        check_background(files["clean_rollmed"], max_events=0)


def test_bad_bg_off_is_an_input_error(tmp_path):
    import h5py

    path = make_synthetic_measurement(
        tmp_path / "nan.rtdc", 40, with_image_bg=True, cells_per_frame=1
    )
    with h5py.File(path, "a") as h5:
        h5["events/bg_off"][3] = np.nan
    outcome = run_cli(path)
    assert outcome.exit_code == 2
    assert "'bg_off'" in outcome.output and "not finite" in outcome.output


def test_basin_root_confines_file_basins(tmp_path, files):
    # the output's image is in its input, a file basin outside the root
    root = tmp_path / "root"
    root.mkdir()
    outcome = run_cli("--basin-root", root, files["clean_rollmed"])
    assert outcome.exit_code == 2
    assert "image" in outcome.output


def test_shorth_mode_against_brute_force():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 40, size=(23, 3, 4)).astype(np.float32)
    offsets = rng.normal(0, 1, 23)
    mode, width = robust.shorth_mode(frames, offsets)
    keep = max(robust.MIN_MODE_FRAMES, int(np.ceil(robust.MODE_FRACTION * 23)))
    values = (frames - offsets.astype(np.float32)[:, None, None]).reshape(23, -1)
    for pixel in range(values.shape[1]):
        column = np.sort(values[:, pixel])
        widths = [column[i + keep - 1] - column[i] for i in range(23 - keep + 1)]
        best = int(np.argmin(widths))
        assert width.flat[pixel] == pytest.approx(widths[best])
        assert mode.flat[pixel] == pytest.approx(column[best : best + keep].mean())


def test_shorth_mode_holds_background_under_dense_cells():
    rng = np.random.default_rng(1)
    # background 100 in 35 % of the frames, cells spread over 30-90
    frames = np.where(
        rng.random((300, 1, 50)) < 0.35,
        100 + rng.normal(0, 2, (300, 1, 50)),
        rng.uniform(30, 90, (300, 1, 50)),
    )
    mode, _ = robust.shorth_mode(frames)
    assert np.abs(mode - 100).max() < 1.5
    # the median is a cell value
    assert np.all(np.median(frames, axis=0) < 95)


def test_running_median_and_jumps():
    values = np.linspace(0, 5, 200)
    values[[20, 90, 150]] += [4, -5, 3]
    expected = np.array(
        [np.median(values[max(0, i - 5) : i + 6]) for i in range(values.size)]
    )
    assert np.allclose(robust.running_median(values, 11), expected)
    assert np.flatnonzero(robust.jump_mask(values, 11, 2.5)).tolist() == [20, 90, 150]
