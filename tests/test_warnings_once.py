"""A warning of dcbg is printed once: from the API, the command line and
dcnum's job runner under `dcbg.dcnum.use_dcbg`

Each case runs as a user would run it, in a fresh interpreter, and counts
the warning's text on stderr. dcbg issues a warning as a Python warning and
a log record of the same text (`dcbg.run_options.warn`); the
record goes to configured handlers (dcnum's job log) but is not printed a
second time by Python's last-resort handler.
"""

import pathlib
import subprocess
import sys
import textwrap

import pytest

import dcbg

DATA = pathlib.Path(dcbg.__file__).parent / "data" / "cytoshot_2024_80x320.rtdc"
#: the warning every case provokes: the default sparse-median kernel (200)
#: is larger than the 13 frames of the bundled measurement
WARNING = "The kernel size 200 is larger than the number of frames 13"


def run_script(tmp_path, code: str) -> subprocess.CompletedProcess:
    """Save `code` as a script in `tmp_path` and run it there"""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_api_prints_a_warning_once(tmp_path):
    proc = run_script(
        tmp_path,
        f"""
        from dcbg import BackgroundSparseMed

        with BackgroundSparseMed({str(DATA)!r}, "out.rtdc") as bg:
            bg.process()
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(WARNING) == 1, proc.stderr
    # shown as a Python warning, pointing to the user's script
    assert "script.py:" in proc.stderr and "UserWarning" in proc.stderr


def test_api_warning_is_still_a_log_record_and_a_python_warning(tmp_path, caplog):
    from dcbg import BackgroundSparseMed

    with (
        pytest.warns(UserWarning, match=WARNING),
        BackgroundSparseMed(DATA, tmp_path / "out.rtdc") as bg,
    ):
        bg.process()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{WARNING}; using all 13 frames"
    ]


def test_cli_prints_a_warning_once(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dcbg", "compute", str(DATA), "-o", "out.rtdc"]
        + ["--method", "sparsemed", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(WARNING) == 1, proc.stderr


#: dcnum's job runner (threads: debug mode, to stay small) with dcbg's
#: background; {setup} configures logging as the application does
RUNNER_SCRIPT = """
import logging
import h5py
import hdf5plugin
from dcnum.logic import DCNumJobRunner, DCNumPipelineJob
from dcbg.dcnum import use_dcbg

if __name__ == "__main__":
    {setup}
    job = DCNumPipelineJob(path_in={path!r}, path_out="out.rtdc",
                           background_code="sparsemed", debug=True)
    with use_dcbg(), DCNumJobRunner(job=job) as runner:
        runner.run()
    with h5py.File("out.rtdc") as h5:
        name = next(n for n in h5["logs"] if n.startswith("dcnum-log"))
        print("\\n".join(h5["logs"][name].asstr()[:]))
"""


@pytest.mark.parametrize(
    "setup",
    [
        # a plain script (4 s: dcnum's pipeline in a fresh interpreter)
        pytest.param("pass", marks=pytest.mark.slow),
        # chipstream-cli: a stream handler on the root logger
        "logging.getLogger().addHandler(logging.StreamHandler())",
    ],
    ids=["plain", "root-handler"],
)
def test_dcnum_runner_prints_a_warning_once(tmp_path, setup):
    pytest.importorskip("dcnum", reason="dcnum is an optional dependency")
    proc = run_script(tmp_path, RUNNER_SCRIPT.format(setup=setup, path=str(DATA)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(WARNING) == 1, proc.stderr
    # pointing to where dcnum's runner constructs the method, not into dcbg
    assert "dcbg/dcnum.py" not in proc.stderr.replace("\\", "/")
    # and once in the job's log
    assert proc.stdout.count(WARNING) == 1, proc.stdout


@pytest.mark.slow
def test_batch_prints_a_warning_once(tmp_path):
    # a local Dask cluster: several seconds to start
    proc = subprocess.run(
        [sys.executable, "-m", "dcbg", "batch", str(DATA), "--out-dir", "out"]
        + ["--method", "sparsemed", "--workers", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout + proc.stderr).count(WARNING) == 1, proc.stderr
