"""The scoring of ``benchmarks/bench_quality.py`` against the model's truth

A background that is the truth (rounded) scores no ghost and an RMS of
the rounding only; one with a cell pasted in scores a ghost on the events
that hold it. The whole benchmark on small sizes is a slow test.
"""

import importlib.util
import json
import pathlib

import h5py
import numpy as np
import pytest

from dcbg.testing import SyntheticModel, make_synthetic_measurement

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py"
N_FRAMES = 60


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def truth_file(tmp_path):
    kwargs = {"cells_per_frame": 2, "flicker_jump_fraction": 0.2, "seed": 2}
    path = make_synthetic_measurement(
        tmp_path / "truth.rtdc", N_FRAMES, with_image_bg=True, **kwargs
    )
    return path, SyntheticModel(N_FRAMES, **kwargs)


def test_truth_scores_no_ghost(bench, truth_file):
    path, model = truth_file
    found = bench.score(path, model)
    assert found["ghost_fraction"] == 0
    # only the rounding of image_bg to integers: uniform on +-0.5
    assert 0.2 < found["rms"] < 0.32


def test_pasted_cell_scores_a_ghost(bench, truth_file):
    path, model = truth_file
    with h5py.File(path, "a") as h5:
        image_bg = h5["events/image_bg"]
        frames = image_bg[10:20]
        frames[:, 35:45, 100:120] -= 30  # a dark blob of 200 px in the band
        image_bg[10:20] = frames
    found = bench.score(path, model)
    assert found["ghost_fraction"] == pytest.approx(10 / N_FRAMES)
    assert found["rms"] > 1


def test_conditions_are_model_knobs(bench):
    for name, (label, knobs) in bench.CONDITIONS.items():
        kwargs = bench.model_kwargs(knobs, 900)
        model = SyntheticModel(30, **kwargs)
        assert label and model.n_frames >= 30, name
    stuck = bench.model_kwargs(bench.CONDITIONS["stuck"][1], 900)
    assert stuck["stuck_cells"] == [(300, bench.STUCK_FRAMES)]


@pytest.mark.slow
def test_benchmark_runs_and_check_agrees(bench, tmp_path, capsys):
    out = tmp_path / "quality.json"
    bench.main(
        ["--frames", "400", "--conditions", "1cell", "4cells", "--json", str(out)]
    )
    rows = {row["condition"]: row for row in json.loads(out.read_text())["rows"]}
    assert "| 4 cells per frame (dense blood) |" in capsys.readouterr().out
    for code in ("rollmed", "sparsemed"):
        assert rows["1cell"]["methods"][code]["ghost_fraction"] <= 0.05
        for row in rows.values():
            found = row["methods"][code]
            # what the check flags without the truth is close to the truth
            assert abs(found["check_ghost_fraction"] - found["ghost_fraction"]) < 0.1
    assert rows["4cells"]["methods"]["rollmed"]["ghost_fraction"] >= 0.9
    assert not np.any([row["frames_flicker"] for row in rows.values()])
