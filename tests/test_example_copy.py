"""``python -m dcbg.data``: the quick start's example and synthetic measurements"""

import subprocess
import sys

import dclab
import h5py
import numpy as np
import pytest

from dcbg.data.__main__ import EXAMPLE, main, synthetic_identifier


def test_example_is_the_bundled_file_without_its_background(tmp_path):
    dest = tmp_path / "example.rtdc"
    assert main([str(dest)]) == 0
    with dclab.new_dataset(dest) as ds, dclab.new_dataset(EXAMPLE) as orig:
        assert "image_bg" in orig and "bg_off" in orig
        # the first background a user opens is the one dcbg computes
        assert "image_bg" not in ds and "bg_off" not in ds
        assert np.array_equal(ds["image"][:], orig["image"][:])
        assert sorted(ds.features_innate) == sorted(
            set(orig.features_innate) - {"image_bg", "bg_off"}
        )
        assert sorted(ds.logs) == sorted(orig.logs)
        assert ds.get_measurement_identifier() == orig.get_measurement_identifier()
    with h5py.File(dest) as h5:
        # no claim of the background it no longer holds
        assert "pipeline:dcnum background" not in h5.attrs
        assert h5.attrs["pipeline:dcnum segmenter"]  # other metadata kept
    # without the left-out data: smaller than the bundled file
    assert dest.stat().st_size < EXAMPLE.stat().st_size


def test_example_command_can_run_twice_and_never_overwrites(tmp_path, capsys):
    dest = tmp_path / "example.rtdc"
    assert main([str(dest)]) == 0
    first = dest.read_bytes()
    # the quick start again: the file is what it would write, kept
    assert main([str(dest)]) == 0
    assert dest.read_bytes() == first
    assert "already this measurement; kept" in capsys.readouterr().out
    # another file is never overwritten
    dest.write_bytes(b"mine")
    assert main([str(dest)]) == 1
    assert dest.read_bytes() == b"mine"
    assert "not overwritten" in capsys.readouterr().err
    # a folder as DEST, and no staged files left behind
    dest.unlink()
    assert main([str(tmp_path)]) == 0
    assert dest.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.rtdc"]
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "a.rtdc"), str(tmp_path / "b.rtdc")])
    assert exc.value.code == 2


def test_synthetic_measurement_runs_every_method_at_its_defaults(tmp_path):
    from dcbg import get_available_background_methods

    dest = tmp_path / "synthetic.rtdc"
    assert main(["--synthetic", "300", str(dest)]) == 0
    with dclab.new_dataset(dest) as ds:
        assert ds["image"].shape == (300, 80, 320)
        assert ds.config["experiment"]["run identifier"] == synthetic_identifier(300)
        assert "image_bg" not in ds
    for code, cls in get_available_background_methods().items():
        if code == "copy":
            continue  # needs a stored background
        out = tmp_path / f"{code}.rtdc"
        with cls(dest, out) as bg:
            bg.process()
        with dclab.new_dataset(out) as ds:
            assert ds["image_bg"].shape == (300, 80, 320)
    # deterministic: the same N anywhere is the same measurement
    other = tmp_path / "other.rtdc"
    assert main(["--synthetic", "300", str(other)]) == 0
    with dclab.new_dataset(dest) as a, dclab.new_dataset(other) as b:
        assert np.array_equal(a["image"][:], b["image"][:])
    # again: kept; another N: refused
    assert main(["--synthetic", "300", str(dest)]) == 0
    assert main(["--synthetic", "301", str(dest)]) == 1


@pytest.mark.parametrize("argv", [["--synthetic", "0"], ["x.txt"]])
def test_bad_arguments_are_usage_errors(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_help_lists_the_bundled_files_without_markup():
    proc = subprocess.run(
        [sys.executable, "-m", "dcbg.data", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    for name in (
        "cytoshot_2024_80x320.rtdc",
        "cytoshot_legacy_with_bg_80x400.rtdc",
        "shapein_empty_80x250.rtdc",
        "--synthetic N",
    ):
        assert name in proc.stdout
    assert "`" not in proc.stdout
    assert "34 grey levels" in proc.stdout  # why the stored one differs


def test_quick_start_output_survives_moving_its_folder(tmp_path):
    # the README's quick start, then the folder moves (or dcbg is
    # reinstalled): the output still finds its input next to it
    work = tmp_path / "work"
    work.mkdir()
    for args in (
        ["-m", "dcbg.data", "example.rtdc"],
        ["-m", "dcbg", "compute", "example.rtdc", "-o", "example_bg.rtdc"]
        + ["--method", "sparsemed", "--kernel-size", "10", "-q"],
    ):
        subprocess.run([sys.executable, *args], cwd=work, check=True)
    moved = tmp_path / "moved"
    work.rename(moved)
    with dclab.new_dataset(moved / "example_bg.rtdc") as ds:
        assert ds["image"].shape == (13, 80, 320)
        assert ds["image_bg"].shape == (13, 80, 320)
