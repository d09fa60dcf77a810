"""What the benchmark scripts share: one timed run in a fresh process

Importing it puts the source checkout on ``sys.path`` when dcbg is not
installed, so the scripts run from a checkout too.

A benchmark script runs each measurement in a new Python process (its
own imports, caches and memory): the parent starts ``<script> --_run
<spec as JSON>`` with :func:`run_measured`, samples the summed RSS of
that process and all of its children (dcnum spawns workers) and reads
the one result line the child prints with :func:`report_result`.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

from make_dataset import parse_shape  # sibling script

#: the checkout the benchmarks belong to
ROOT = pathlib.Path(__file__).resolve().parents[1]
if importlib.util.find_spec("dcbg") is None:
    # allow running from a source checkout without installing dcbg
    sys.path.insert(0, str(ROOT))
#: where the JSON summaries are written
RESULTS_DIR = ROOT / "benchmarks" / "results"
#: the child's result line starts with this (its other output is ignored)
RESULT_MARKER = "BENCH-RESULT "
#: seconds between memory samples of the child process tree: 20 ms sees
#: the peaks of runs that take a second and costs the machine little
SAMPLE_INTERVAL = 0.02
#: bytes per page of /proc/<pid>/statm (4096 where the system cannot say)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def report_result(result: dict) -> None:
    """Print the child's result (a JSON object) for :func:`run_measured`"""
    print(RESULT_MARKER + json.dumps(result), flush=True)


def tree_rss(proc) -> int:
    """Summed RSS (bytes) of psutil process `proc` and all its descendants

    Reads ``/proc`` directly where the kernel lists children there (0.05
    ms per sample); psutil's process-table scan costs ~2.5 ms, which every
    20 ms took ~5 % of a 2-core machine from the process being timed.
    """
    import psutil

    if pathlib.Path(f"/proc/{proc.pid}/task/{proc.pid}/children").exists():
        total = 0
        pending = [proc.pid]
        while pending:
            pid = pending.pop()
            try:
                with open(f"/proc/{pid}/statm", "rb") as fh:
                    total += int(fh.read().split()[1]) * PAGE_SIZE
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children", "rb") as fh:
                        pending.extend(int(child) for child in fh.read().split())
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited while we looked
        return total
    rss = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for pp in procs:
        try:
            rss += pp.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss


def run_measured(script, spec: dict, label: str) -> tuple[dict, float, int]:
    """Run ``script --_run <spec>`` in a fresh process and measure it

    Parameters
    ----------
    script: str or pathlib.Path
        The benchmark script; its ``--_run`` mode does the work and calls
        :func:`report_result`
    spec: dict
        What to run (JSON-serialisable), passed to the child
    label: str
        How errors name the run

    Returns
    -------
    result: dict
        What the child reported
    wall: float
        Seconds from the start of the process to its end
    peak_rss: int
        Peak summed RSS of the process tree in bytes

    Raises
    ------
    RuntimeError
        If the child fails or reports nothing (with its output)
    """
    import psutil

    cmd = [sys.executable, str(pathlib.Path(script).resolve()), "--_run"]
    cmd.append(json.dumps(spec))
    # log files instead of pipes: a full pipe would block the child
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = psutil.Popen(cmd, stdout=out, stderr=err)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc))
            time.sleep(SAMPLE_INTERVAL)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed (exit code {proc.returncode}):\n{stderr}")
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :]), wall, peak
    raise RuntimeError(f"no result from {label}:\n{stdout}\n{stderr}")


def write_summary(name: str, summary: dict) -> pathlib.Path:
    """Write `summary` to ``benchmarks/results/<name>.json`` and say where"""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {path.relative_to(ROOT)}")
    return path


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The synthetic data set's options and the child's hidden ``--_run``"""
    parser.add_argument("--shape", type=parse_shape, default=(80, 320))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--streaks", type=int, default=2)
    parser.add_argument("--_run", help=argparse.SUPPRESS)


def run_if_child(args, run_child) -> bool:
    """In the child process (``--_run``): do the run, return True"""
    if not args._run:
        return False
    run_child(json.loads(args._run))
    return True


def machine_info(load_before) -> dict:
    """Where a benchmark ran: CPUs, versions, load before and after, date"""
    import dcnum
    import numpy as np

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dcnum": dcnum.__version__,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
