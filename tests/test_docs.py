"""Sphinx hooks of docs/conf.py (the build itself runs in .ci/run:
``sphinx-build -W --keep-going -b html docs docs/_build/html``)"""

import pathlib
import runpy

import pytest

pytest.importorskip("sphinx", reason="needs the docs extras")

CONF = runpy.run_path(
    str(pathlib.Path(__file__).resolve().parents[1] / "docs" / "conf.py")
)


def test_class_passing_its_arguments_on_shows_its_base_signature():
    from dcbg import BackgroundCopy, BackgroundRollMed

    hook = CONF["inherited_signature"]
    signature, _ = hook(
        None,
        "class",
        "dcbg.BackgroundCopy",
        BackgroundCopy,
        {},
        "(*args, **kwargs)",
        None,
    )
    assert signature.startswith(
        "(input_data, output_path, compress=True, num_cpus=None, *, basin_root=None"
    )
    # a class with its own signature keeps it
    assert hook(None, "class", "x", BackgroundRollMed, {}, "(a, b)", None) is None
