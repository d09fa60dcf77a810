"""``python -m dcbg.data``: the quick start's copy of the bundled example"""

import subprocess
import sys

import dclab

from dcbg.data.__main__ import EXAMPLE, main


def test_copies_the_example_once(tmp_path, capsys):
    dest = tmp_path / "example.rtdc"
    assert main([str(dest)]) == 0
    assert dest.read_bytes() == EXAMPLE.read_bytes()
    # an existing file is never overwritten
    dest.write_bytes(b"mine")
    assert main([str(dest)]) == 1
    assert dest.read_bytes() == b"mine"
    assert "not overwritten" in capsys.readouterr().err
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2


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
