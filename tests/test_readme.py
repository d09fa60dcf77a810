"""Every code block of the README, run as a user would save and run it

Python blocks are saved as scripts and run with this interpreter in a
fresh folder that holds what the README tells the user to make first
(``measurement.rtdc`` from ``python -m dcbg.data --synthetic``); bash
blocks run in bash with this environment's ``python`` and ``dcbg`` first
on the PATH. The runs of dcnum's pipeline (worker processes, several
seconds each) are behind the slow marker. A block the harness does not
know fails `test_every_block_is_run`: run it here (a new Python block runs
as it is in `test_python_block`), or name why it cannot run in a test in
`NOT_RUN`.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401 (dcnum's logs are Zstandard-compressed)
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: frames of the synthetic ``measurement.rtdc`` the snippets run on: more
#: than every method's default kernel (rollmed 100, sparsemed 200)
MEASUREMENT_FRAMES = 300
#: seconds a snippet may take (dcnum's runner starts worker processes)
SNIPPET_TIMEOUT = 300

#: blocks that cannot run in a test, by a text they start with, and why
NOT_RUN = {
    'pip install -e ".[test]"': "runs this test suite",
    'pip install -e ".[docs]"': "the docs build, checked by .ci/run",
    "python benchmarks/": "benchmarks: measured, not tested (minutes)",
    "dask scheduler": "needs a Dask cluster on several nodes",
    "import pathlib\n\nfrom dask_jobqueue": "needs a SLURM cluster",
}


def readme_blocks(lang: str) -> list[str]:
    """The fenced code blocks of `lang` in the README, in order"""
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def block_with(lang: str, marker: str) -> str:
    found = [block for block in readme_blocks(lang) if marker in block]
    assert len(found) == 1, f"one README {lang} block with {marker!r}: {found}"
    return found[0]


def not_run(block: str) -> bool:
    return any(block.startswith(start) for start in NOT_RUN)


def environment() -> dict:
    """This interpreter's ``python`` and scripts (``dcbg``) first on PATH"""
    env = dict(os.environ)
    bin_dir = str(pathlib.Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONPATH", None)
    return env


def run(argv, cwd, timeout=SNIPPET_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_script(folder: pathlib.Path, name: str, code: str, *args):
    """Save `code` as `name` in `folder` and run ``python name args``"""
    (folder / name).write_text(code, encoding="utf-8")
    return run([sys.executable, name, *args], folder)


def run_bash(folder: pathlib.Path, command: str):
    return run([shutil.which("bash") or "/bin/bash", "-c", command], folder)


@pytest.fixture(scope="module")
def measurement(tmp_path_factory) -> pathlib.Path:
    """``python -m dcbg.data --synthetic N measurement.rtdc``, as the README"""
    folder = tmp_path_factory.mktemp("measurement")
    proc = run(
        [sys.executable, "-m", "dcbg.data", "--synthetic"]
        + [str(MEASUREMENT_FRAMES), "measurement.rtdc"],
        folder,
    )
    assert proc.returncode == 0, proc.stderr
    return folder / "measurement.rtdc"


@pytest.fixture
def folder(tmp_path, measurement) -> pathlib.Path:
    """A fresh folder with the README's ``measurement.rtdc``"""
    shutil.copyfile(measurement, tmp_path / "measurement.rtdc")
    return tmp_path


def python_blocks_run_here() -> list[str]:
    return [block for block in readme_blocks("python") if not not_run(block)]


def test_every_block_is_run():
    """Each bash block is run by a test below or named in NOT_RUN"""
    known_bash = [
        block_with("bash", "pip install . && python -I -m dcbg.data"),
        block_with("bash", "--synthetic 5000"),
    ]
    for block in readme_blocks("bash"):
        assert block in known_bash or not_run(block), (
            f"README bash block not run by tests/test_readme.py: {block!r}"
        )
    # Python blocks all run (test_python_block), these with checks of
    # their results below
    assert len(python_blocks_run_here()) >= 3


def test_quick_start_runs_twice(tmp_path):
    block = block_with("bash", "pip install . && python -I -m dcbg.data")
    install, _, command = block.strip().partition(" && ")
    assert install == "pip install ."  # done: dcbg is installed here
    for attempt in (1, 2):
        proc = run_bash(tmp_path, command)
        assert proc.returncode == 0, f"run {attempt}: {proc.stderr}"
    assert "example.rtdc' is already this measurement; kept" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "example.rtdc",
        "example_bg.rtdc",
    ]
    with h5py.File(tmp_path / "example.rtdc") as h5:
        assert "image_bg" not in h5["events"]  # what the user sees is dcbg's
    with h5py.File(tmp_path / "example_bg.rtdc") as h5:
        assert h5["events/bg_off"].attrs["dcnum ppid background"] == (
            "sparsemed:k=10^s=1^t=0^f=0.8^o=1"
        )


@pytest.mark.slow
def test_synthetic_example_runs_the_defaults(tmp_path):
    block = block_with("bash", "--synthetic 5000")
    # the README's command for a smaller N: same code path, faster
    command = block.strip().replace("--synthetic 5000", "--synthetic 300")
    for attempt in (1, 2):
        proc = run_bash(tmp_path, command)
        assert proc.returncode == 0, f"run {attempt}: {proc.stderr}"
    assert "synthetic_bg.rtdc: rollmed:k=100^b=10000, 300 events" in proc.stdout


@pytest.mark.parametrize("index", range(len(python_blocks_run_here())))
def test_python_block(folder, index):
    """Every Python block runs as a saved script (exit status 0)"""
    block = python_blocks_run_here()[index]
    if "chipstream" in block or "dcnum" in block:
        pytest.importorskip("dcnum", reason="needs dcbg[dcnum]")
    if "chipstream" in block or "DCNumJobRunner" in block:
        # run with their command line or output checks below
        pytest.skip("run by test_chipstream_wrapper / test_dcnum_snippet_*")
    proc = run_script(folder, "snippet.py", block)
    assert proc.returncode == 0, proc.stderr
    if "BackgroundSparseMed(" in block:
        assert proc.stdout == "sparsemed:k=200^s=1^t=0^f=0.8^o=1\n"


def dcnum_block() -> str:
    return block_with("python", "DCNumJobRunner")


@pytest.mark.slow
def test_dcnum_snippet_with_dcbg_writes_its_output(folder):
    pytest.importorskip("dcnum", reason="needs dcbg[dcnum]")
    proc = run_script(folder, "dcnum_dcbg.py", dcnum_block())
    assert proc.returncode == 0, proc.stderr
    with h5py.File(folder / "measurement_dcn.rtdc") as h5:
        assert h5.attrs["pipeline:dcnum background"] == "rollmed:k=100^b=10000"
        log = next(n for n in h5["logs"] if n.startswith("dcnum-log"))
        lines = h5["logs"][log].asstr()[:]
    assert any("Background computed by dcbg" in ln for ln in lines)


def unguarded(block: str) -> str:
    """The snippet as it was before the guard: its body at the top level"""
    lines = block.splitlines()
    guard = next(i for i, ln in enumerate(lines) if ln.startswith("if __name__"))
    body = [ln[4:] if ln.startswith("    ") else ln for ln in lines[guard + 1 :]]
    return "\n".join(lines[:guard] + body) + "\n"


def test_dcnum_snippet_without_guard_fails_loudly(folder):
    """Without the guard, dcnum's workers would run the job again; the
    script must not end with exit status 0 and no output"""
    pytest.importorskip("dcnum", reason="needs dcbg[dcnum]")
    proc = run_script(folder, "dcnum_dcbg.py", unguarded(dcnum_block()))
    assert proc.returncode == 1
    assert "outside 'if __name__ == \"__main__\":'" in proc.stderr
    assert "bootstrapping" not in proc.stderr
    assert not (folder / "measurement_dcn.rtdc").exists()


@pytest.mark.slow
def test_dcnum_snippet_natively(folder):
    """The same snippet without use_dcbg: dcnum's own background"""
    pytest.importorskip("dcnum", reason="needs dcbg[dcnum]")
    block = dcnum_block().replace("use_dcbg(), ", "")
    assert "use_dcbg()" not in block
    proc = run_script(folder, "dcnum_native.py", block)
    assert proc.returncode == 0, proc.stderr
    assert (folder / "measurement_dcn.rtdc").is_file()


@pytest.mark.slow
def test_chipstream_wrapper(folder):
    pytest.importorskip("dcnum", reason="needs dcbg[dcnum]")
    pytest.importorskip("chipstream.cli", reason="needs chipstream[cli]")
    script = block_with("python", "from chipstream.cli import main")
    console = block_with("console", "python chipstream_dcbg.py")
    command = console.strip().removeprefix("$ ").split()
    assert command[:2] == ["python", "chipstream_dcbg.py"]
    proc = run_script(folder, "chipstream_dcbg.py", script, *command[2:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(folder / "measurement_dcn.rtdc") as h5:
        assert h5.attrs["pipeline:dcnum background"] == "rollmed:k=100^b=10000"
        log = next(n for n in h5["logs"] if n.startswith("dcnum-log"))
        lines = h5["logs"][log].asstr()[:]
    assert any("Background computed by dcbg" in ln for ln in lines)


def test_docs_give_the_readme_quick_start():
    """One quick start: the docs' commands are the README's"""
    docs = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    section = docs[docs.index("Quick start\n---") : docs.index("The same from Python")]
    commands = re.findall(r"\.\. code-block:: bash\n\n((?:    .*\n)+)", section)
    commands = [block.strip() for block in commands]
    assert commands == [
        block_with("bash", "pip install . && python -I -m dcbg.data").strip(),
        block_with("bash", "--synthetic 5000").strip(),
    ]
