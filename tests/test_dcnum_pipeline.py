"""dcnum's pipeline on dcbg: `dcbg.dcnum.use_dcbg` and dcbg's pipeline metadata

A real `DCNumJobRunner` run with dcbg's background engines must write the
same file as a native dcnum run, and a later dcnum run must reuse a
background that dcbg computed with the same PPID and recompute one with
another PPID. The runs use dcnum's debug mode (threads instead of spawned
processes) to stay small; the background step is the same code either way.
"""

import contextlib
import json
import logging
import pathlib
import re
import shutil

import h5py
import numpy as np
import pytest

pytest.importorskip("dcnum", reason="dcnum is an optional dependency (dcbg[dcnum])")

from dcnum.feat import feat_background as dcnum_bg  # noqa: E402
from dcnum.logic import DCNumJobRunner, DCNumPipelineJob  # noqa: E402
from dcnum.logic import ctrl as dcnum_ctrl  # noqa: E402
from dcnum.logic import job as dcnum_job  # noqa: E402

import dcbg  # noqa: E402
from dcbg.dcnum import is_active, use_dcbg  # noqa: E402
from dcbg.testing import make_synthetic_measurement  # noqa: E402

DATA = pathlib.Path(dcbg.__file__).parent / "data" / "cytoshot_2024_80x320.rtdc"

#: background settings per method, small enough for 13 and 300 frames
#: (several background images of the sparse median series, several
#: rolling-median batches)
CASES = {
    "rollmed": {"kernel_size": 4, "batch_size": 8},
    "sparsemed": {"kernel_size": 5, "split_time": 0.002},
}
#: log lines of the background step (dcnum's or dcbg's background loggers,
#: and dcbg's line that it computed the background)
BACKGROUND_LOGGERS = re.compile(r"(dcnum|dcbg)\.feat\.feat_background\.|dcbg\.dcnum:")
#: log lines that report timings or worker start-up, which differ per run
TIMING_LINE = re.compile(
    r"time: [\d.]+s|Run (start|stop|duration)|spawn time|worker|Worker"
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """300-frame realistic synthetic measurement (cells, flicker, drift)"""
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.rtdc"
    return make_synthetic_measurement(path, 300, seed=3, streaks=1)


def run_dcnum(path_in, path_out, code, kwargs, with_dcbg):
    """Run dcnum's pipeline (threads) and return the output path"""
    job = DCNumPipelineJob(
        path_in=path_in,
        path_out=path_out,
        background_code=code,
        background_kwargs=dict(kwargs),
        num_procs=1,
        debug=True,
    )
    context = use_dcbg() if with_dcbg else contextlib.nullcontext()
    with context, DCNumJobRunner(job=job) as runner:
        runner.run()
    assert runner.error_tb is None, runner.error_tb
    return path_out


def read_basins(h5):
    basins = []
    for key in sorted(h5.get("basins", {})):
        text = " ".join(h5["basins"][key].asstr()[:])
        basins.append(json.loads(text))
    return sorted(basins, key=lambda bn: json.dumps(bn, sort_keys=True))


def read_logs(h5) -> dict:
    """Logs by name, timestamps of the names and lines removed"""
    logs = {}
    for name in h5["logs"]:
        key = re.sub(r"-\d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d$", "", name)
        lines = list(h5["logs"][name].asstr()[:])
        logs[key] = [re.sub(r"^\d\d:\d\d:\d\d ", "", ln) for ln in lines]
    return logs


def job_log(lines: list[str]) -> dict:
    """dcnum's job record, without the output path (differs per run)"""
    record = json.loads("\n".join(lines))
    record["job"].pop("path_out")
    return record


def assert_same_datasets(ga, gb, where):
    assert sorted(ga) == sorted(gb), where
    for name in ga:
        da, db = ga[name], gb[name]
        assert da.shape == db.shape, f"{where}/{name}"
        assert da.dtype == db.dtype, f"{where}/{name}"
        assert np.array_equal(da[()], db[()]), f"{where}/{name} differs"
        assert dict(da.attrs) == dict(db.attrs), f"attributes of {where}/{name}"


def assert_same_output(native: pathlib.Path, ours: pathlib.Path):
    """Compare two dcnum outputs feature by feature (logs: see below)"""
    with h5py.File(native) as ha, h5py.File(ours) as hb:
        assert_same_datasets(ha["events"], hb["events"], "events")
        assert ("basin_events" in ha) == ("basin_events" in hb)
        if "basin_events" in ha:
            assert_same_datasets(ha["basin_events"], hb["basin_events"], "bn")
        attrs_a, attrs_b = dict(ha.attrs), dict(hb.attrs)
        assert attrs_a.keys() == attrs_b.keys()
        for key in attrs_a:
            assert np.array_equal(attrs_a[key], attrs_b[key]), key
        assert any(key.startswith("pipeline:") for key in attrs_a)
        assert read_basins(ha) == read_basins(hb)
        for grp in ("tables",):
            assert sorted(ha.get(grp, {})) == sorted(hb.get(grp, {}))
        logs_a, logs_b = read_logs(ha), read_logs(hb)
    assert logs_a.keys() == logs_b.keys()
    for key in logs_a:
        if key == "dcnum-job":
            a, b = job_log(logs_a[key]), job_log(logs_b[key])
            assert a == b
        elif key != "dcnum-log":
            assert logs_a[key] == logs_b[key], key
    # dcnum's run log: the same lines apart from timings and the
    # background step, whose lines come from dcbg's loggers with dcbg
    run_a = [ln for ln in logs_a["dcnum-log"] if not TIMING_LINE.search(ln)]
    run_b = [ln for ln in logs_b["dcnum-log"] if not TIMING_LINE.search(ln)]
    steps_a = sorted(ln for ln in run_a if not BACKGROUND_LOGGERS.search(ln))
    steps_b = sorted(ln for ln in run_b if not BACKGROUND_LOGGERS.search(ln))
    assert steps_a == steps_b
    dcbg_lines = [ln for ln in logs_b["dcnum-log"] if "dcbg.feat.feat_background" in ln]
    assert any("Background computation time" in ln for ln in dcbg_lines), dcbg_lines
    assert not any("dcnum.feat.feat_background" in ln for ln in logs_b["dcnum-log"])
    return logs_a["dcnum-log"], logs_b["dcnum-log"]


@pytest.mark.parametrize("code", sorted(CASES))
@pytest.mark.parametrize(
    # the 300-frame runs take 9-18 s (dcnum's native rolling median)
    "source",
    ["bundled", pytest.param("synthetic", marks=pytest.mark.slow)],
)
def test_runner_with_dcbg_writes_native_output(tmp_path, code, source, synthetic):
    src = DATA if source == "bundled" else synthetic
    path_in = tmp_path / "measurement.rtdc"
    shutil.copyfile(src, path_in)
    (tmp_path / "native").mkdir()
    (tmp_path / "dcbg").mkdir()
    native = run_dcnum(
        path_in, tmp_path / "native" / "out.rtdc", code, CASES[code], False
    )
    ours = run_dcnum(path_in, tmp_path / "dcbg" / "out.rtdc", code, CASES[code], True)
    log_native, log_dcbg = assert_same_output(native, ours)
    with h5py.File(ours) as h5:
        expected = dcnum_bg.get_available_background_methods()[code]
        ppid = expected.get_ppid_from_ppkw(CASES[code])
        assert h5.attrs["pipeline:dcnum background"] == ppid
    if code == "sparsemed":
        # the same cleansing decision, reported the same way
        def cleansed(lines):
            return [ln.split(": ", 1)[1] for ln in lines if "Cleansed" in ln]

        assert cleansed(log_dcbg) == cleansed(log_native) != []


def test_use_dcbg_patches_and_restores():
    originals = (
        dcnum_ctrl.get_available_background_methods,
        dcnum_job.get_available_background_methods,
        dcnum_bg.get_available_background_methods,
    )
    logger = logging.getLogger("dcbg")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    assert not is_active()
    with use_dcbg():
        # the runner constructs dcbg's class on a file made as dcnum makes it
        method = dcnum_ctrl.get_available_background_methods()["rollmed"]
        assert method.cls is dcbg.BackgroundRollMed
        assert method.get_ppid_from_ppkw({"kernel_size": 4}) == "rollmed:k=4^b=10000"
        with use_dcbg():  # nested
            assert dcnum_job.get_available_background_methods()["sparsemed"] is (
                dcbg.BackgroundSparseMed
            )
        assert is_active()
        assert dcnum_bg.get_available_background_methods()["copy"] is (
            dcbg.BackgroundCopy
        )
    assert not is_active()
    assert (
        dcnum_ctrl.get_available_background_methods,
        dcnum_job.get_available_background_methods,
        dcnum_bg.get_available_background_methods,
    ) == originals
    assert dcnum_ctrl.get_available_background_methods()["rollmed"] is (
        dcnum_bg.BackgroundRollMed
    )
    assert (logger.level, logger.handlers, logger.propagate) == (
        level,
        handlers,
        propagate,
    )


def test_use_dcbg_restores_after_error():
    original = dcnum_ctrl.get_available_background_methods
    with pytest.raises(KeyError), use_dcbg():
        raise KeyError("boom")
    assert dcnum_ctrl.get_available_background_methods is original
    assert not is_active()


def test_dcbg_log_lines_reach_dcnum_handlers_only_while_active():
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Collect(level=logging.INFO)
    dcnum_logger = logging.getLogger("dcnum")
    old_level = dcnum_logger.level
    dcnum_logger.addHandler(handler)
    dcnum_logger.setLevel(logging.INFO)
    try:
        logger = logging.getLogger("dcbg.feat.feat_background.BackgroundRollMed")
        with use_dcbg():
            logger.info("inside")
        logger.info("outside")
    finally:
        dcnum_logger.removeHandler(handler)
        dcnum_logger.setLevel(old_level)
    assert records == ["inside"]


# --- pipeline metadata: dcnum's runner reuses or recomputes dcbg's background


def background_task_ran(path) -> bool:
    """Whether dcnum's job recomputed the background (from its job log)"""
    with h5py.File(path) as h5:
        name = next(n for n in h5["logs"] if n.startswith("dcnum-job"))
        record = json.loads("\n".join(h5["logs"][name].asstr()[:]))
    return record["tasks"]["background"]


def pipeline_attrs(path) -> dict:
    with h5py.File(path) as h5:
        return {k: v for k, v in h5.attrs.items() if k.startswith("pipeline:")}


@pytest.fixture
def rollmed_bg(tmp_path):
    """dcbg's rolling median of the bundled file (which claims sparsemed)"""
    path_in = shutil.copyfile(DATA, tmp_path / "measurement.rtdc")
    assert pipeline_attrs(path_in)["pipeline:dcnum background"].startswith("sparsemed:")
    bg_path = tmp_path / "measurement_bg.rtdc"
    with dcbg.BackgroundRollMed(path_in, bg_path, **CASES["rollmed"]) as bg:
        bg.process()
    return bg_path


def test_output_claims_the_background_it_holds(rollmed_bg):
    attrs = pipeline_attrs(rollmed_bg)
    assert attrs["pipeline:dcnum background"] == "rollmed:k=4^b=8"
    assert attrs["pipeline:dcnum generation"] == "13"
    # what dcnum's job computes for this file
    job = DCNumPipelineJob(path_in=rollmed_bg)
    assert attrs["pipeline:dcnum data"] == job.get_ppid(ret_dict=True)[1]["dat_id"]
    assert attrs["pipeline:dcnum data"] == "hdf:p=0.2645^i=0"


def test_dcnum_reuses_dcbg_background_with_same_ppid(rollmed_bg, tmp_path):
    with h5py.File(rollmed_bg) as h5:
        image_bg = h5["events/image_bg"][:]
    out = run_dcnum(
        rollmed_bg, tmp_path / "same.rtdc", "rollmed", CASES["rollmed"], False
    )
    assert not background_task_ran(out)
    with h5py.File(out) as h5:
        assert h5.attrs["pipeline:dcnum background"] == "rollmed:k=4^b=8"
        # dcbg's background went into dcnum's output unchanged
        frames = h5["events/basinmap0"][:]
        assert np.array_equal(h5["events/image_bg"][:], image_bg[frames])


def test_dcnum_recomputes_dcbg_background_with_other_ppid(rollmed_bg, tmp_path):
    kwargs = dict(CASES["rollmed"], kernel_size=6)
    out = run_dcnum(rollmed_bg, tmp_path / "other.rtdc", "rollmed", kwargs, False)
    assert background_task_ran(out)
    with h5py.File(out) as h5:
        assert h5.attrs["pipeline:dcnum background"] == "rollmed:k=6^b=8"


def test_sparse_median_output_claims_no_background(tmp_path):
    """dcnum 0.31.0 cannot reuse a background in an internal basin

    Its runner would retry reading "image_bg" forever (also for its own
    outputs), so the output makes no claim and dcnum recomputes.
    """
    path_in = shutil.copyfile(DATA, tmp_path / "measurement.rtdc")
    bg_path = tmp_path / "measurement_bg.rtdc"
    with dcbg.BackgroundSparseMed(path_in, bg_path, **CASES["sparsemed"]) as bg:
        bg.process()
    attrs = pipeline_attrs(bg_path)
    for key in ("background", "generation", "data"):
        assert f"pipeline:dcnum {key}" not in attrs
    # the input's other pipeline attributes stay (its hash no longer fits)
    assert attrs["pipeline:dcnum segmenter"] == "thresh:t=-6:cle=1^f=1^clo=2"
    out = run_dcnum(
        bg_path, tmp_path / "same.rtdc", "sparsemed", CASES["sparsemed"], False
    )
    assert background_task_ran(out)


def test_copy_keeps_the_claims_of_the_copied_background(rollmed_bg, tmp_path):
    out = tmp_path / "copy.rtdc"
    with dcbg.BackgroundCopy(rollmed_bg, out) as bg:
        bg.process()
    claims = {k: v for k, v in pipeline_attrs(rollmed_bg).items()}
    copied = pipeline_attrs(out)
    for key in ("background", "generation", "data"):
        key = f"pipeline:dcnum {key}"
        assert copied[key] == claims[key]


def test_unfinished_output_claims_no_background(tmp_path):
    """Manual batches kept on a clean exit are no finished background"""
    path_in = shutil.copyfile(DATA, tmp_path / "measurement.rtdc")
    out = tmp_path / "partial.rtdc"
    with dcbg.BackgroundRollMed(path_in, out, kernel_size=2, batch_size=4) as bg:
        bg.process_next_batch()
    attrs = pipeline_attrs(out)
    assert "pipeline:dcnum background" not in attrs
    assert "pipeline:dcnum generation" not in attrs


def test_array_input_claims_nothing(tmp_path):
    frames = np.tile(np.arange(35, dtype=np.uint8).reshape(1, 5, 7), (30, 1, 1))
    out = tmp_path / "out.rtdc"
    with dcbg.BackgroundRollMed(frames, out, kernel_size=4, batch_size=8) as bg:
        bg.process()
    assert "pipeline:dcnum background" not in pipeline_attrs(out)


# --- scripts without the main guard, and the job log's dcbg line


def test_job_log_says_dcbg_computed_the_background(tmp_path):
    path_in = shutil.copyfile(DATA, tmp_path / "measurement.rtdc")
    ours = run_dcnum(path_in, tmp_path / "dcbg.rtdc", "rollmed", CASES["rollmed"], True)
    native = run_dcnum(
        path_in, tmp_path / "native.rtdc", "rollmed", CASES["rollmed"], False
    )
    line = (
        f"dcbg.dcnum: Background computed by dcbg {dcbg.__version__} "
        "(dcbg.feat.feat_background.bg_roll_median.BackgroundRollMed, "
        "rollmed:k=4^b=8, pipeline generation 13) in place of dcnum 0.31.0's"
    )
    with h5py.File(ours) as h5:
        assert sum(line in ln for ln in read_logs(h5)["dcnum-log"]) == 1
    with h5py.File(native) as h5:
        assert not any("dcbg" in ln for ln in read_logs(h5)["dcnum-log"])


UNGUARDED = """\
from dcbg.dcnum import use_dcbg

with use_dcbg():
    print("ran")
"""


@pytest.mark.parametrize(
    "script, guarded",
    [
        (UNGUARDED, False),
        # the call at the top level, the use in a function: still unguarded
        ("from dcbg.dcnum import use_dcbg\n\ndef main():\n    with use_dcbg():\n"
         "        print('ran')\n\nmain()\n", False),
        ('from dcbg.dcnum import use_dcbg\n\nif __name__ == "__main__":\n'
         "    with use_dcbg():\n        print('ran')\n", True),
        ("from dcbg.dcnum import use_dcbg\n\ndef main():\n    with use_dcbg():\n"
         "        print('ran')\n\nif '__main__' == __name__:\n    main()\n", True),
    ],
)  # fmt: skip
def test_use_dcbg_refuses_top_level_code_of_a_script(tmp_path, script, guarded):
    """dcnum's spawned workers import the main script again: without the
    guard they would rerun the job (the runner then ended without output
    and without an error); use_dcbg fails at once instead"""
    import subprocess
    import sys

    (tmp_path / "job.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, "job.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if guarded:
        assert (proc.returncode, proc.stdout) == (0, "ran\n"), proc.stderr
    else:
        assert proc.returncode == 1
        assert proc.stdout == ""
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(
            f"RuntimeError: dcbg.dcnum.use_dcbg() runs from top-level code of the "
            f"script '{tmp_path / 'job.py'}' (line "
        )
        assert "under 'if __name__ == \"__main__\":'" in last


def test_use_dcbg_refuses_to_run_in_a_starting_worker(monkeypatch):
    """A worker that imports an unguarded script fails before the job"""
    import multiprocessing

    monkeypatch.setattr(
        multiprocessing.current_process(), "_inheriting", True, raising=False
    )
    with pytest.raises(RuntimeError, match="while a worker process imported"):
        with use_dcbg():
            pass
    assert not is_active()


def test_use_dcbg_in_interactive_code_is_not_judged(tmp_path):
    """``python -c`` (as Jupyter, a REPL) has no script to import again"""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", UNGUARDED],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (0, "ran\n"), proc.stderr
