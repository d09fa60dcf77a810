"""One source of the version: dcbg/_version.py, read by pyproject.toml"""

import ast
import importlib.metadata
import pathlib
import re
import subprocess
import sys
import tomllib

from click.testing import CliRunner

import dcbg
from dcbg._version import __version__
from dcbg.cli import make_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: a release version as PEP 440 writes it (N.N.N with an optional suffix)
VERSION_PATTERN = r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?"


def test_version_is_a_plain_literal_setuptools_can_read():
    """pyproject reads the version statically from dcbg/_version.py"""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "dcbg._version.__version__"
    # setuptools parses a literal assignment without importing the package
    tree = ast.parse((ROOT / "dcbg" / "_version.py").read_text())
    literals = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [target.id for target in node.targets] == ["__version__"]
        and isinstance(node.value, ast.Constant)
    ]
    assert literals == [__version__]
    assert re.fullmatch(VERSION_PATTERN, __version__)


def test_installed_metadata_has_the_same_version():
    """The installed distribution was built from the same version string

    Fails after a change of dcbg/_version.py until the package is
    reinstalled (``pip install -e .``).
    """
    assert importlib.metadata.version("dcbg") == __version__
    assert dcbg.__version__ == __version__


def test_cli_version_option():
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(make_cli(), [flag])
        assert result.exit_code == 0, result.output
        assert result.output == f"dcbg, version {__version__}\n"


def test_cli_version_as_the_user_runs_it():
    """``python -m dcbg --version`` prints the version and exits 0"""
    proc = subprocess.run(
        [sys.executable, "-m", "dcbg", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"dcbg, version {__version__}\n"


def test_changelog_names_the_current_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (\S+)", changelog, flags=re.MULTILINE)
    assert headings, "CHANGELOG.md has no '## <version>' sections"
    assert headings[0] == __version__
