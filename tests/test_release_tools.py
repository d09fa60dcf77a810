"""The release check's content checks and the smoke test's README parsing

The release check itself runs in ``.ci/run``; these tests make sure that
its checks fail on the packaging mistakes they exist for.
"""

import importlib.util
import io
import pathlib
import tarfile
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_ci_module(name):
    """Import a script of .ci/ (not a package) by path"""
    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


release_check = load_ci_module("release_check")
smoke_wheel = load_ci_module("smoke_wheel")

#: a package as git would list it: kernels with their build-only sources
PACKAGE_FILES = [
    "dcbg/__init__.py",
    "dcbg/data/example.rtdc",
    "dcbg/kernels/__init__.py",
    "dcbg/kernels/_median.pyx",
    "dcbg/kernels/_histogram.pxd",
    "dcbg/kernels/band.h",
]


def make_sdist(path, names):
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(f"dcbg-0.1.0/{name}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return path


def make_wheel(path, names):
    with zipfile.ZipFile(path, "w") as whl:
        for name in names:
            whl.writestr(name, "x")
    return path


def complete_sdist_files():
    return list(release_check.SDIST_TOP_FILES) + PACKAGE_FILES


def installed_files():
    built = [
        name for name in PACKAGE_FILES if not name.endswith((".pyx", ".pxd", ".h"))
    ]
    return built + ["dcbg/kernels/_median.cpython-311-x86_64-linux-gnu.so"]


def test_sdist_check_accepts_a_complete_sdist(tmp_path):
    sdist = make_sdist(tmp_path / "dcbg-0.1.0.tar.gz", complete_sdist_files())
    release_check.check_sdist(sdist, PACKAGE_FILES)


@pytest.mark.parametrize(
    "missing",
    ["setup.py", "pyproject.toml", "dcbg/kernels/_median.pyx", "dcbg/kernels/band.h"],
)
def test_sdist_check_finds_a_missing_build_file(tmp_path, missing):
    names = [name for name in complete_sdist_files() if name != missing]
    sdist = make_sdist(tmp_path / "dcbg-0.1.0.tar.gz", names)
    with pytest.raises(release_check.ReleaseCheckError, match=missing):
        release_check.check_sdist(sdist, PACKAGE_FILES)


@pytest.mark.parametrize(
    "extra",
    ["dcbg/kernels/_median.c", "dcbg/kernels/_median.cpython-311-x86_64-linux-gnu.so"],
)
def test_sdist_check_finds_generated_files(tmp_path, extra):
    sdist = make_sdist(tmp_path / "dcbg-0.1.0.tar.gz", complete_sdist_files() + [extra])
    with pytest.raises(release_check.ReleaseCheckError, match=extra):
        release_check.check_sdist(sdist, PACKAGE_FILES)


def test_wheel_check_accepts_compiled_kernels_only(tmp_path):
    wheel = make_wheel(tmp_path / "dcbg.whl", installed_files())
    release_check.check_wheel(wheel, PACKAGE_FILES)


@pytest.mark.parametrize(
    "extra",
    [
        "dcbg/kernels/_median.pyx",
        "dcbg/kernels/_histogram.pxd",
        "dcbg/kernels/band.h",
        "dcbg/kernels/_median.c",
    ],
)
def test_wheel_check_finds_build_only_sources(tmp_path, extra):
    wheel = make_wheel(tmp_path / "dcbg.whl", installed_files() + [extra])
    with pytest.raises(release_check.ReleaseCheckError, match=extra):
        release_check.check_wheel(wheel, PACKAGE_FILES)


def test_wheel_check_finds_a_missing_compiled_kernel(tmp_path):
    names = [name for name in installed_files() if not name.endswith(".so")]
    wheel = make_wheel(tmp_path / "dcbg.whl", names)
    with pytest.raises(release_check.ReleaseCheckError, match="_median.pyx"):
        release_check.check_wheel(wheel, PACKAGE_FILES)


def test_wheel_check_finds_missing_package_data(tmp_path):
    names = [name for name in installed_files() if not name.endswith(".rtdc")]
    wheel = make_wheel(tmp_path / "dcbg.whl", names)
    with pytest.raises(release_check.ReleaseCheckError, match="example.rtdc"):
        release_check.check_wheel(wheel, PACKAGE_FILES)


def test_clean_environment_has_only_the_virtualenv_on_its_path(tmp_path):
    env = release_check.clean_environment(tmp_path / "venv")
    assert env["PATH"] in (
        str(tmp_path / "venv" / "bin"),
        str(tmp_path / "venv" / "Scripts"),
    )
    assert "PYTHONPATH" not in env and "CC" not in env


def test_quick_start_command_is_read_from_the_readme():
    command = smoke_wheel.readme_quick_start(ROOT / "README.md")
    assert command.startswith("python -I -m dcbg.data example.rtdc && dcbg compute ")
    assert "pip install" not in command
    assert "-o example_bg.rtdc" in command


def test_quick_start_without_install_step_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "## Quick start\n\n```bash\ndcbg compute x.rtdc\n```\n\n## Next\n"
    )
    with pytest.raises(smoke_wheel.SmokeError, match="pip install"):
        smoke_wheel.readme_quick_start(readme)
