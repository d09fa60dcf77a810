"""Many measurements on a Dask cluster (dcbg.cluster, ``dcbg batch``)

The cluster tests use real Dask components on the loopback interface: a
LocalCluster of worker processes, and a ``dask scheduler`` with two
``dask worker`` processes started here. Outputs are compared frame by
frame with serial processing through the Python API.
"""

import contextlib
import importlib
import json
import os
import pathlib
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time

import dask
import dclab
import distributed
import h5py
import numpy as np
import psutil
import pytest
from click.testing import CliRunner

from dcbg import Background, get_available_background_methods
from dcbg.cli.batch import batch
from dcbg.cluster import (
    BatchInterrupted,
    FileResult,
    _plan,
    canonical_ppid,
    get_output_path,
    local_cluster_size,
    process_file,
    process_many,
    read_output_ppid,
)
from dcbg.testing import make_synthetic_measurement

#: sparse median with a few background images per 300-frame file
SPARSE_PPID = "sparsemed:k=20^s=0.01^t=0^f=0.8^o=1"
#: rolling median over several batches
ROLL_PPID = "rollmed:k=20^b=100"
#: names of the new inputs of the batch tests
NEW_NAMES = ["m0", "m1", "m2", "m3"]

DASK = pathlib.Path(sys.executable).parent / "dask"


def serial(input_path, out_dir, ppid) -> pathlib.Path:
    """Serial reference: the plain Python API, one file at a time"""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = get_output_path(input_path, out_dir)
    cls = get_available_background_methods()[ppid.split(":")[0]]
    with cls(input_path, output, **Background.get_ppkw_from_ppid(ppid)) as bg:
        bg.process()
    return output


def assert_same_background(path, reference):
    """image_bg of every frame and bg_off are identical (read via dclab)"""
    with dclab.new_dataset(path) as ds, dclab.new_dataset(reference) as ref:
        assert len(ds) == len(ref)
        for index in range(len(ref)):
            assert np.array_equal(ds["image_bg"][index], ref["image_bg"][index]), index
        assert ("bg_off" in ds) == ("bg_off" in ref)
        if "bg_off" in ref:
            assert np.array_equal(ds["bg_off"][:], ref["bg_off"][:])


def partial_files(folder) -> list[str]:
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if ".dcbg-" in p.name)


@pytest.fixture(scope="module")
def measurements(tmp_path_factory):
    """Small synthetic measurements: m0..m3, done, long (3000 frames)"""
    folder = tmp_path_factory.mktemp("inputs")
    paths = {}
    for seed, name in enumerate([*NEW_NAMES, "done"]):
        paths[name] = make_synthetic_measurement(
            folder / f"{name}.rtdc", 300 + 20 * seed, seed=seed
        )
    return paths


def make_batch_inputs(measurements, folder, corrupt: str) -> list[pathlib.Path]:
    """6 inputs: 4 new, 1 corrupt (text or truncated HDF5), 1 done"""
    folder.mkdir()
    bad = folder / "corrupt.rtdc"
    if corrupt == "text":
        bad.write_text("this is not an RT-DC measurement\n")
    else:
        data = measurements["m0"].read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    names = ["m0", "m1", "corrupt", "m2", "done", "m3"]
    return [bad if n == "corrupt" else measurements[n] for n in names]


def check_outputs(inputs, out_dir, ppid, ref_dir, done_stamp):
    """4 new outputs identical to serial processing, 1 kept, none for corrupt"""
    paths = {pathlib.Path(p).stem: pathlib.Path(p) for p in inputs}
    for name in NEW_NAMES:
        output = out_dir / f"{name}_bg.rtdc"
        assert read_output_ppid(output)[0] == ppid
        assert_same_background(output, serial(paths[name], ref_dir, ppid))
    stat = (out_dir / "done_bg.rtdc").stat()
    assert (stat.st_mtime_ns, stat.st_size) == done_stamp  # untouched
    assert not (out_dir / "corrupt_bg.rtdc").exists()
    assert partial_files(out_dir) == []


def check_results(results, inputs, out_dir):
    """Results in input order: 4 done, 1 skipped, 1 failed (one line)"""
    assert [r.input_path for r in results] == [pathlib.Path(p) for p in inputs]
    assert [r.output_path for r in results] == [
        out_dir / f"{pathlib.Path(p).stem}_bg.rtdc" for p in inputs
    ]
    by_name = {r.input_path.stem: r for r in results}
    for name in NEW_NAMES:
        result = by_name[name]
        assert result.status == "done", result
        assert result.error is None and result.seconds > 0
        with dclab.new_dataset(result.input_path) as ds:
            assert result.frames == len(ds)
    skipped = by_name["done"]
    assert skipped.status == "skipped" and skipped.error is None
    assert skipped.frames == 380
    failed = by_name["corrupt"]
    assert failed.status == "failed"
    assert "corrupt.rtdc" in failed.error and "\n" not in failed.error


def earlier_run(measurements, out_dir, ppid):
    """Output of "done" as an earlier batch left it; returns its stamp"""
    out_dir.mkdir(exist_ok=True)
    result = process_file(
        measurements["done"], get_output_path(measurements["done"], out_dir), ppid
    )
    assert result.status == "done", result
    stat = result.output_path.stat()
    return stat.st_mtime_ns, stat.st_size


# --- single files, no cluster ---------------------------------------------


def test_canonical_ppid():
    assert canonical_ppid("rollmed:k=50") == "rollmed:k=50^b=10000"
    assert canonical_ppid("sparsemed:k=200") == "sparsemed:k=200^s=1^t=0^f=0.8^o=1"
    for bad in ("rollmed", "nomethod:k=1", "rollmed:k=-4", "rollmed:zz=1"):
        with pytest.raises(ValueError):
            canonical_ppid(bad)


def test_local_cluster_size():
    cpus = len(os.sched_getaffinity(0))
    assert local_cluster_size() == (cpus, 1)
    assert local_cluster_size(n_workers=1) == (1, cpus)
    assert local_cluster_size(threads_per_worker=cpus) == (1, cpus)
    assert local_cluster_size(3, 2) == (3, 2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            local_cluster_size(n_workers=bad)


def test_process_file_skip_and_force(measurements, tmp_path):
    inp = measurements["m1"]
    out = get_output_path(inp, tmp_path)
    first = process_file(inp, out, "sparsemed:k=20^s=0.01")
    assert first.status == "done" and first.ppid == SPARSE_PPID
    assert read_output_ppid(out) == (SPARSE_PPID, 320)

    again = process_file(inp, out, SPARSE_PPID)
    assert again.status == "skipped" and again.frames == 320
    assert again.seconds is None

    other = process_file(inp, out, ROLL_PPID)
    assert other.status == "failed"
    assert "exists with another PPID" in other.error
    assert SPARSE_PPID in other.error and "force" in other.error
    assert read_output_ppid(out)[0] == SPARSE_PPID  # untouched

    forced = process_file(inp, out, ROLL_PPID, force=True, num_cpus=1)
    assert forced.status == "done"
    assert read_output_ppid(out)[0] == ROLL_PPID
    # a fresh file, nothing inherited from the sparse-median output
    with h5py.File(out) as h5:
        assert "basin_events" not in h5
    assert_same_background(out, serial(inp, tmp_path / "ref", ROLL_PPID))
    assert partial_files(tmp_path) == []

    recomputed = process_file(inp, out, ROLL_PPID, force=True)
    assert recomputed.status == "done"


def test_process_file_copy_output_is_skipped_when_done(tmp_path):
    """A copy output keeps the copied background's PPID on image_bg (as
    dcnum's copy does): a rerun still sees it is complete and skips it"""
    inp = make_synthetic_measurement(
        tmp_path / "with_bg.rtdc", 40, seed=3, with_image_bg=True
    )
    out = get_output_path(inp, tmp_path / "out")
    out.parent.mkdir()
    first = process_file(inp, out, "copy:")
    assert first.status == "done", first.error
    assert read_output_ppid(out) == ("copy:", 40)
    again = process_file(inp, out, "copy:")
    assert again.status == "skipped", again.error
    assert again.frames == 40
    other = process_file(inp, out, SPARSE_PPID)
    assert other.status == "failed"
    assert "exists with another PPID (copy:" in other.error


def test_process_file_foreign_outputs(measurements, tmp_path):
    inp = measurements["m2"]
    out = get_output_path(inp, tmp_path)
    out.write_text("junk")
    result = process_file(inp, out, SPARSE_PPID)
    assert result.status == "failed"
    assert "not a readable .rtdc file" in result.error and "force" in result.error
    # forcing writes only background features, which a file that is not
    # HDF5 cannot take; it is left as it is
    result = process_file(inp, out, SPARSE_PPID, force=True)
    assert result.status == "failed" and "not a readable HDF5 file" in result.error
    assert out.read_text() == "junk"
    out.unlink()
    assert process_file(inp, out, SPARSE_PPID, force=True).status == "done"

    # an HDF5 file without a dcbg background (e.g. a raw measurement)
    shutil.copyfile(measurements["m0"], out)
    result = process_file(inp, out, SPARSE_PPID)
    assert result.status == "failed" and "holds no background" in result.error
    result = process_file(inp, out, SPARSE_PPID, force=True)
    assert result.status == "failed" and "raw images" in result.error
    assert out.read_bytes() == measurements["m0"].read_bytes()


def test_process_file_errors_are_results(tmp_path):
    missing = tmp_path / "missing.rtdc"
    result = process_file(missing, tmp_path / "missing_bg.rtdc", SPARSE_PPID)
    assert result.status == "failed"
    assert result.error == f"Input file '{missing}' does not exist"
    result = process_file(missing, tmp_path / "x.rtdc", "nomethod:k=1")
    assert result.status == "failed" and "nomethod" in result.error


def test_process_file_results_name_the_parameters(cytoshot, tmp_path):
    """An error or warning about a keyword argument says which one (dcbg
    batch words it with its option), also after a Dask worker sent it"""
    failed = process_file(cytoshot, tmp_path / "roll.rtdc", "rollmed:k=20^b=30")
    assert failed.status == "failed"
    assert "kernel_size=20 is larger than the number of frames" in failed.error
    assert failed.error_parameter == "kernel_size"
    with h5py.File(cytoshot) as h5:
        time_ = h5["events/time"][:]
    split_time = float(f"{(time_[-1] - time_[0]) / 13 / 2:.3g}")  # 2 per frame
    done = process_file(
        cytoshot, tmp_path / "sparse.rtdc", f"sparsemed:k=3^s={split_time}", num_cpus=1
    )
    assert done.status == "done", done.error
    assert done.error is None and done.error_parameter is None
    (warning,) = done.warnings
    assert warning.startswith(f"split_time={split_time} s gives ")
    assert done.warning_parameters == [("split_time",)]
    # what a worker sends back is a pickled copy
    assert pickle.loads(pickle.dumps(done)) == done


def test_stale_partials(measurements, tmp_path):
    inp = measurements["m3"]
    out = get_output_path(inp, tmp_path)
    stale = [
        tmp_path / f".{out.name}.deadbeef.dcbg-partial",
        tmp_path / f".{out.name}.0badc0de.dcbg-replace",
        tmp_path / f"..{out.name}.0badc0de.dcbg-replace.12345678.dcbg-partial",
    ]
    unrelated = [
        tmp_path / ".other_bg.rtdc.deadbeef.dcbg-partial",
        tmp_path / f".x{out.name}.deadbeef.dcbg-partial",
    ]
    for path in stale + unrelated:
        path.write_bytes(b"\x89HDF\r\n\x1a\n")
    # a partial is never taken for a complete output
    result = process_file(inp, out, SPARSE_PPID)
    assert result.status == "done"
    assert partial_files(tmp_path) == sorted(p.name for p in unrelated)


def test_plan_conflicts(tmp_path):
    """Outputs that collide are failed up front, the first one is kept"""
    out = tmp_path / "out"
    inputs = [
        tmp_path / "a" / "x.rtdc",
        tmp_path / "b" / "x.rtdc",
        out / "y_bg.rtdc",
        out / "y.rtdc",
    ]
    paths, outputs, errors = _plan(inputs, out)
    assert paths == inputs
    assert outputs == [out / "x_bg.rtdc", out / "x_bg.rtdc", out / "y_bg_bg.rtdc"] + [
        out / "y_bg.rtdc"
    ]
    assert errors[0] is None and errors[2] is None
    assert "also the output of" in errors[1] and str(inputs[0]) in errors[1]
    assert "would overwrite the input measurement" in errors[3]


def test_process_many_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="Invalid background PPID"):
        process_many([], tmp_path, "rollmed")
    with pytest.raises(ValueError, match="not both"):
        process_many([], tmp_path, SPARSE_PPID, client=object(), scheduler_address="x")
    with pytest.raises(ValueError, match="LocalCluster"):
        process_many([], tmp_path, SPARSE_PPID, scheduler_address="x", n_workers=2)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        process_many([], tmp_path / "file", SPARSE_PPID)
    assert process_many([], tmp_path / "new", SPARSE_PPID) == []
    assert (tmp_path / "new").is_dir()


@pytest.mark.parametrize(
    "args, message",
    [
        (["x.rtdc", "--method", "rollmed"], "Missing option '-o' / '--out-dir'"),
        (["x.rtdc", "-o", "out"], "Give either --method NAME or --ppid PPID"),
        (["-o", "out", "--method", "rollmed"], "Missing argument 'INPUT...'"),
        (["x.rtdc", "-o", "out", "--ppid", "rollmed:q=1"], "--ppid"),
        (
            ["x.rtdc", "-o", "out", "--method", "rollmed", "--split-time", "2"],
            "not accepted by method 'rollmed'",
        ),
        (
            ["x.rtdc", "-o", "out", "--method", "rollmed", "--scheduler", "tcp://h:1"]
            + ["--workers", "2"],
            "cannot be combined with --scheduler",
        ),
    ],
)
def test_cli_usage_errors(args, message):
    result = CliRunner().invoke(batch, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_unreachable_scheduler(measurements, tmp_path):
    import socket

    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [str(measurements["m0"]), "-o", str(tmp_path), "--method", "sparsemed"]
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = CliRunner().invoke(
            batch, [*args, "--scheduler", f"tcp://127.0.0.1:{port}"]
        )
    assert result.exit_code == 1
    assert f"Error: Cannot connect to the Dask scheduler 'tcp://127.0.0.1:{port}'" in (
        result.stderr
    )
    assert partial_files(tmp_path) == []


def test_cli_registered():
    from dcbg.cli import make_cli

    assert "batch" in make_cli().commands


# --- real clusters on the loopback interface --------------------------------


@pytest.mark.timeout(300)
def test_local_cluster_batch(measurements, tmp_path):
    """process_many on its own LocalCluster of 2 worker processes"""
    inputs = make_batch_inputs(measurements, tmp_path / "in", corrupt="truncated")
    out_dir = tmp_path / "out"
    done_stamp = earlier_run(measurements, out_dir, SPARSE_PPID)
    seen = []
    results = process_many(
        inputs,
        out_dir,
        "sparsemed:k=20^s=0.01",
        n_workers=2,
        threads_per_worker=1,
        progress=seen.append,
    )
    assert sorted(r.input_path.name for r in seen) == sorted(p.name for p in inputs)
    assert all(isinstance(r, FileResult) for r in results)
    check_results(results, inputs, out_dir)
    check_outputs(inputs, out_dir, SPARSE_PPID, tmp_path / "ref", done_stamp)
    assert {r.worker for r in results}.isdisjoint({None})


def _stop(process: subprocess.Popen):
    """Stop a process and its children (own session), reliably"""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.fixture
def dask_scheduler(tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1

    Yields the scheduler address and its scheduler file.
    """
    scheduler_file = tmp_path / "scheduler.json"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    processes = []

    def start(name, *args):
        with open(logs / f"{name}.log", "wb") as log:
            processes.append(
                subprocess.Popen(
                    [str(DASK), *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=tmp_path,
                    start_new_session=True,  # to stop its children too
                )
            )

    try:
        start(
            "scheduler",
            "scheduler",
            "--host=127.0.0.1",
            "--port=0",
            "--no-dashboard",
            f"--scheduler-file={scheduler_file}",
        )
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.stat().st_size:
            assert processes[0].poll() is None, (logs / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "scheduler did not start"
            time.sleep(0.1)
        time.sleep(0.1)  # the file is written in one go; let it be closed
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for index in range(2):
            start(
                f"worker{index}",
                "worker",
                address,
                "--host=127.0.0.1",
                "--nworkers=1",
                "--nthreads=1",
                "--no-dashboard",
            )
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
        yield address, scheduler_file
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.mark.timeout(300)
def test_cli_batch_on_scheduler(measurements, tmp_path, dask_scheduler):
    """``dcbg batch --scheduler tcp://127.0.0.1:PORT`` with dask CLI workers"""
    inputs = make_batch_inputs(measurements, tmp_path / "in", corrupt="text")
    out_dir = tmp_path / "out"
    done_stamp = earlier_run(measurements, out_dir, ROLL_PPID)
    address, scheduler_file = dask_scheduler
    args = [*map(str, inputs), "--out-dir", str(out_dir)]
    run = CliRunner().invoke(
        batch,
        [*args, "--scheduler", address, "--method", "rollmed", "--kernel-size", "20"]
        + ["--batch-size", "100"],
    )
    assert run.exit_code == 1, run.output
    assert not run.exception or isinstance(run.exception, SystemExit)
    table = run.stdout.splitlines()
    assert table[0].split() == ["STATUS", "EVENTS", "SECONDS", "INPUT"]
    rows = dict(zip([str(p) for p in inputs], table[1:7], strict=True))
    assert all(row.endswith(path) or f"{path}: " in row for path, row in rows.items())
    for name in NEW_NAMES:
        assert rows[str(measurements[name])].startswith("done")
    assert rows[str(measurements["done"])].startswith("skipped")
    assert rows[str(inputs[2])].startswith("failed")
    assert "is not an HDF5 file" in rows[str(inputs[2])]
    assert table[7].startswith("4 done, 1 skipped, 1 failed of 6 files")
    assert "[6/6]" in run.stderr  # progress (one line per file, not a tty)

    check_outputs(inputs, out_dir, ROLL_PPID, tmp_path / "ref", done_stamp)

    # run again: everything is there (resume); the same PPID given in full,
    # the scheduler given by its scheduler file
    again = CliRunner().invoke(
        batch, [*args, "--scheduler", str(scheduler_file), "--ppid", ROLL_PPID, "-q"]
    )
    assert again.exit_code == 1
    assert again.stdout == ""
    assert again.stderr.strip().splitlines() == [
        f"failed: {inputs[2]}: Input file '{inputs[2]}' is not an HDF5 file; "
        f"expected an .rtdc measurement with the 'image' feature"
    ]


@pytest.mark.timeout(300)
def test_worker_killed_mid_task(measurements, tmp_path):
    """SIGKILL the worker process running a task: it is run again elsewhere"""
    long_input = make_synthetic_measurement(tmp_path / "long.rtdc", 3000, seed=7)
    inputs = [long_input, measurements["m0"], measurements["m1"]]
    out_dir = tmp_path / "out"
    ppid = "rollmed:k=100^b=500"
    long_output = get_output_path(long_input, out_dir)
    results = []
    failure = []

    def run_batch(client):
        try:
            results.extend(process_many(inputs, out_dir, ppid, client=client))
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    def executing(dask_worker):
        return os.getpid(), [str(ts.key) for ts in dask_worker.state.executing]

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=90)
        # import dcbg everywhere first, so that the long task computes soon
        client.run(importlib.import_module, "dcbg.cluster")
        thread = threading.Thread(target=run_batch, args=(client,))
        thread.start()
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and thread.is_alive():
            assert time.monotonic() < deadline, "the long task never ran"
            for address, (pid, keys) in client.run(executing).items():
                running = any(key.startswith("dcbg-long-") for key in keys)
                # its partial output exists: the task is mid-way
                if running and any(
                    name.startswith(f".{long_output.name}.")
                    for name in partial_files(out_dir)
                ):
                    psutil.Process(pid).kill()
                    killed = address
                    break
            time.sleep(0.05)
        thread.join(timeout=240)
        assert not thread.is_alive()
        assert killed not in client.scheduler_info()["workers"]
    assert not failure, failure
    assert killed is not None, "the long task finished before it could be killed"
    assert [r.status for r in results] == ["done"] * 3, results
    assert results[0].worker != killed  # run again by another worker process
    for result in results:
        assert read_output_ppid(result.output_path)[0] == ppid
        assert_same_background(
            result.output_path, serial(result.input_path, tmp_path / "ref", ppid)
        )
    assert long_output.exists()
    assert partial_files(out_dir) == []


@pytest.mark.timeout(300)
def test_interrupted_batch_reports_what_is_on_disk(measurements, tmp_path):
    """Ctrl-C in a batch: each file is either complete or left as it was"""
    inputs = [measurements[name] for name in ("m0", "m1", "m2", "m3")]
    out_dir = tmp_path / "out"

    def interrupt_after_first(result):
        raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as info:
        process_many(
            inputs,
            out_dir,
            SPARSE_PPID,
            n_workers=1,
            threads_per_worker=1,
            progress=interrupt_after_first,
        )
    results = info.value.results
    assert [r.input_path for r in results] == [p.resolve() for p in inputs]
    statuses = [r.status for r in results]
    assert statuses.count("done") >= 1 and set(statuses) <= {"done", "stopped"}
    for result in results:
        if result.status == "done":
            assert read_output_ppid(result.output_path)[0] == SPARSE_PPID
        else:
            assert not result.output_path.exists()
    done = statuses.count("done")
    assert str(info.value) == (
        f"Interrupted; {done} of 4 outputs complete, {4 - done} not computed and "
        f"left as they were (run the same command again to resume)"
    )
    # a rerun completes the rest and removes what killed tasks left
    rerun = process_many(
        inputs, out_dir, SPARSE_PPID, n_workers=1, threads_per_worker=1
    )
    assert [r.status for r in rerun] == [
        "skipped" if status == "done" else "done" for status in statuses
    ]
    assert partial_files(out_dir) == []


def test_batch_takes_a_folder_recursively(monkeypatch, tmp_path):
    """``dcbg batch FOLDER`` processes the .rtdc files below FOLDER: not the
    hidden ones (dcbg's staged files), not the output folder's, not other
    files, and not through linked folders"""
    import dcbg.cluster

    folder = tmp_path / "data"
    wanted = [folder / "a" / "x.rtdc", folder / "b" / "c" / "Y.RTDC", folder / "z.rtdc"]
    left_out = [
        folder / ".hidden" / "h.rtdc",
        folder / ".x.rtdc.1234abcd.dcbg-partial",
        folder / ".w.rtdc",
        folder / "notes.txt",
        folder / "results" / "x_bg.rtdc",  # the output folder: earlier outputs
    ]
    for path in wanted + left_out:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.rtdc").write_bytes(b"")
    (folder / "link").symlink_to(outside, target_is_directory=True)

    seen = {}

    def fake_process_many(input_paths, out_dir, ppid, **kwargs):
        seen["inputs"] = list(input_paths)
        return [
            FileResult(input_path=p, output_path=None, ppid=ppid, status="done")
            for p in input_paths
        ]

    monkeypatch.setattr(dcbg.cluster, "process_many", fake_process_many)
    single = tmp_path / "single.rtdc"
    single.write_bytes(b"")
    run = CliRunner().invoke(
        batch,
        [str(folder), str(single), "-o", str(folder / "results"), "--method", "copy"],
    )
    assert run.exit_code == 0, run.output
    assert seen["inputs"] == sorted(wanted) + [single]
    # four empty files: the local cluster would cost more than it saves
    assert run.stderr.startswith("Note: 4 file(s) of 0.0 MiB in all; starting")

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    run = CliRunner().invoke(
        batch, [str(empty), "-o", str(tmp_path / "r"), "--method", "copy"]
    )
    assert run.exit_code == 2
    assert f"Folder '{empty}' holds no .rtdc file" in run.output


def test_batch_copy_without_background_is_done_with_its_warning(monkeypatch, tmp_path):
    # dcnum copies nothing from an input without image_bg and ends without
    # an error: the batch lists the file as done, with dcbg's warning
    import dcbg.cluster

    raw = make_synthetic_measurement(tmp_path / "raw.rtdc", 12, seed=4)

    def serial_process_many(input_paths, out_dir, ppid, **kwargs):
        # each file as a worker runs it (process_file), without a cluster
        pathlib.Path(out_dir).mkdir(exist_ok=True)
        return [
            process_file(path, get_output_path(path, out_dir), ppid)
            for path in input_paths
        ]

    monkeypatch.setattr(dcbg.cluster, "process_many", serial_process_many)
    run = CliRunner().invoke(
        batch, [str(raw), "-o", str(tmp_path / "out"), "--method", "copy"]
    )
    assert run.exit_code == 0, run.output
    assert run.stderr.splitlines()[-1] == (
        f"Warning: {raw}: Input file '{raw}' has no 'image_bg': the output "
        f"holds no background"
    )
    assert run.stderr.count("has no 'image_bg'") == 1
    lines = run.stdout.splitlines()
    assert lines[1].split()[:2] == ["done", "12"] and lines[1].endswith(str(raw))
    assert lines[-1].startswith("1 done, 0 skipped, 0 failed of 1 files")
    with dclab.new_dataset(tmp_path / "out" / "raw_bg.rtdc") as ds:
        assert "image_bg" not in ds and len(ds) == 12


def test_compute_on_a_folder_points_to_batch(tmp_path):
    from dcbg.cli import make_cli

    run = CliRunner().invoke(make_cli(), ["compute", str(tmp_path), "--method", "copy"])
    assert run.exit_code == 1
    assert run.stderr.strip() == (
        f"Error: Input path '{tmp_path}' is a directory, expected an .rtdc file; "
        f"to compute the backgrounds of all measurements in a folder, use "
        f"'dcbg batch {tmp_path} -o OUT_DIR'"
    )
