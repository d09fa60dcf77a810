"""Benchmark ``dcbg batch`` on a LocalCluster against a serial loop

Processes the same realistic synthetic measurements (generated once into
``benchmarks/_data/cluster/``) with the same PPID

- serially: a loop over the files with the Python API, each file with
  all CPUs (``num_cpus=None``), and
- with :func:`dcbg.cluster.process_many` on a LocalCluster of
  single-threaded worker processes (one file per worker at a time).

The cluster is started and warmed up (dcbg imported, kernels loaded)
once; its start-up is reported separately. Times are medians over the
repeats, each repeat into a fresh output folder. The scheduling overhead
per task is the worker time not spent computing, per task::

    (wall time * workers - sum of task compute times) / tasks

and, for comparison, the wall time per task of trivial tasks (a no-op
function, and a batch of complete outputs that are all skipped).

Usage::

    python benchmarks/bench_cluster.py [--files 8] [--frames 4000] [--repeats 3]

A JSON summary is written to ``benchmarks/results/cluster_<files>x<frames>.json``.
"""

import argparse
import os
import pathlib
import platform
import shutil
import statistics
import sys
import tempfile
import time

import distributed
import h5py
import numpy as np
from _common import write_summary  # sibling script

from dcbg import Background, get_available_background_methods
from dcbg.cluster import canonical_ppid, get_output_path, process_many
from dcbg.local_cluster import start_local_cluster
from dcbg.run_options import cpu_count
from dcbg.testing import make_synthetic_measurement

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "benchmarks" / "_data" / "cluster"

#: default PPIDs of the two median methods
DEFAULT_PPIDS = ("rollmed:k=100^b=10000", "sparsemed:k=200^s=1^t=0^f=0.8^o=1")


def make_inputs(n_files: int, n_frames: int) -> list[pathlib.Path]:
    """The benchmark measurements, generated if missing"""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n_files):
        path = DATA_DIR / f"cluster_{n_frames}_{index}.rtdc"
        complete = False
        if path.exists():
            with h5py.File(path, "r") as h5:
                complete = h5["events/image"].shape[0] == n_frames
        if not complete:
            print(f"generating {path.name}", file=sys.stderr)
            make_synthetic_measurement(path, n_frames, seed=1000 + index)
        paths.append(path)
    return paths


def run_serial(inputs, out_dir: pathlib.Path, ppid: str) -> float:
    """Wall time of a plain loop over the files (all CPUs per file)"""
    cls = get_available_background_methods()[ppid.split(":")[0]]
    kwargs = Background.get_ppkw_from_ppid(ppid)
    t0 = time.perf_counter()
    for path in inputs:
        with cls(path, get_output_path(path, out_dir), **kwargs) as bg:
            bg.process()
    return time.perf_counter() - t0


def run_cluster(inputs, out_dir: pathlib.Path, ppid: str, client):
    """Wall time of process_many and the sum of its task compute times"""
    t0 = time.perf_counter()
    results = process_many(inputs, out_dir, ppid, client=client)
    wall = time.perf_counter() - t0
    bad = [r for r in results if r.status != "done"]
    if bad:
        raise RuntimeError(f"cluster run did not compute everything: {bad}")
    return wall, sum(r.seconds for r in results)


def background_arrays(path: pathlib.Path) -> list[np.ndarray]:
    """The stored image_bg (and bg_off) datasets of an output"""
    with h5py.File(path, "r") as h5:
        group = h5["events"] if "image_bg" in h5["events"] else h5["basin_events"]
        arrays = [group["image_bg"][:]]
        if "bg_off" in h5["events"]:
            arrays.append(h5["events/bg_off"][:])
    return arrays


def assert_identical(inputs, dir_a: pathlib.Path, dir_b: pathlib.Path):
    for path in inputs:
        a = background_arrays(get_output_path(path, dir_a))
        b = background_arrays(get_output_path(path, dir_b))
        if len(a) != len(b) or not all(
            np.array_equal(x, y) for x, y in zip(a, b, strict=False)
        ):
            raise AssertionError(f"serial and cluster outputs differ for {path}")


def noop(index):
    return index


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--frames", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=cpu_count())
    parser.add_argument("--ppid", nargs="+", default=list(DEFAULT_PPIDS))
    args = parser.parse_args()

    inputs = make_inputs(args.files, args.frames)
    summary = {
        "files": args.files,
        "frames": args.frames,
        "repeats": args.repeats,
        "workers": args.workers,
        "cpus": cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "distributed": distributed.__version__,
        "ppids": {},
    }
    work = pathlib.Path(tempfile.mkdtemp(prefix="dcbg-bench-cluster-"))
    try:
        t0 = time.perf_counter()
        # the cluster dcbg batch starts (process_many without a client)
        cluster, client = start_local_cluster(args.workers, 1)
        with cluster, client:
            client.wait_for_workers(args.workers)
            summary["cluster_start_s"] = time.perf_counter() - t0
            # warm-up: import dcbg and load the kernels on every worker
            warm = work / "warm"
            warm.mkdir()
            make_synthetic_measurement(warm / "w.rtdc", 300)
            for ppid in args.ppid:
                client.run(_warm_up, warm / "w.rtdc", ppid)
            summary["cluster_start_and_warm_up_s"] = time.perf_counter() - t0

            # trivial tasks: scheduling alone
            n_noop = 200
            noop_times = []
            for _ in range(args.repeats):
                t1 = time.perf_counter()
                client.gather(client.map(noop, range(n_noop), pure=False))
                noop_times.append((time.perf_counter() - t1) / n_noop)
            summary["noop_task_wall_s"] = statistics.median(noop_times)

            for ppid in args.ppid:
                ppid = canonical_ppid(ppid)
                serial_times, cluster_times, overheads, skip_times = [], [], [], []
                for repeat in range(args.repeats):
                    serial_dir = work / f"serial-{repeat}"
                    cluster_dir = work / f"cluster-{repeat}"
                    serial_dir.mkdir()
                    serial_times.append(run_serial(inputs, serial_dir, ppid))
                    wall, compute = run_cluster(inputs, cluster_dir, ppid, client)
                    cluster_times.append(wall)
                    overheads.append((wall * args.workers - compute) / len(inputs))
                    # all outputs complete: every task is a quick skip
                    t1 = time.perf_counter()
                    skipped = process_many(inputs, cluster_dir, ppid, client=client)
                    skip_times.append((time.perf_counter() - t1) / len(inputs))
                    assert all(r.status == "skipped" for r in skipped), skipped
                    assert_identical(inputs, serial_dir, cluster_dir)
                    print(
                        f"{ppid} repeat {repeat}: serial {serial_times[-1]:.2f} s, "
                        f"cluster {wall:.2f} s (tasks computed {compute:.2f} s)",
                        file=sys.stderr,
                    )
                    shutil.rmtree(serial_dir)
                    shutil.rmtree(cluster_dir)
                summary["ppids"][ppid] = {
                    "serial_s": statistics.median(serial_times),
                    "cluster_s": statistics.median(cluster_times),
                    "speedup": statistics.median(serial_times)
                    / statistics.median(cluster_times),
                    "overhead_per_task_s": statistics.median(overheads),
                    "skip_task_wall_s": statistics.median(skip_times),
                    "serial_all_s": serial_times,
                    "cluster_all_s": cluster_times,
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{args.files} files x {args.frames} frames, {args.workers} workers x 1 "
        f"thread vs serial loop with {cpu_count()} threads per file, median of "
        f"{args.repeats}"
    )
    print(
        f"cluster start-up {summary['cluster_start_s']:.1f} s "
        f"(+ warm-up: {summary['cluster_start_and_warm_up_s']:.1f} s), "
        f"no-op task {summary['noop_task_wall_s'] * 1e3:.1f} ms wall per task"
    )
    header = f"{'PPID':<36} {'serial':>9} {'cluster':>9} {'speedup':>8} "
    print(header + f"{'overhead/task':>14} {'skip/task':>10}")
    for ppid, row in summary["ppids"].items():
        print(
            f"{ppid:<36} {row['serial_s']:>8.2f}s {row['cluster_s']:>8.2f}s "
            f"{row['speedup']:>7.2f}x {row['overhead_per_task_s'] * 1e3:>11.0f} ms "
            f"{row['skip_task_wall_s'] * 1e3:>7.0f} ms"
        )
    write_summary(f"cluster_{args.files}x{args.frames}", summary)


def _warm_up(input_path, ppid):
    """One small computation (loads dcbg and its kernels in the worker)"""
    output_path = input_path.with_name(f"warm_{os.getpid()}.rtdc")
    cls = get_available_background_methods()[ppid.split(":")[0]]
    with cls(input_path, output_path, **Background.get_ppkw_from_ppid(ppid)) as bg:
        bg.process()
    os.remove(output_path)


if __name__ == "__main__":
    main()
