"""Speed of the sparse mode against the sparse median and the I/O floor

Side by side on bench_background.py's synthetic measurement (cached in
``benchmarks/_data/``, 80x320 frames at 3,447.5 frames per second):

- ``dcnum sparsemed``: dcnum 0.31.0's sparse median (defaults);
- ``dcbg sparsemed``: dcbg's bit-identical sparse median (defaults);
- ``dcbg sparsemode``: dcbg's cell-robust sparse mode (defaults);
- ``I/O floor``: what any method must at least do, read and decompress
  every frame once with dcbg's reader on the same worker threads (no
  computation, nothing written).

Every run happens in a fresh Python process (as in bench_background.py:
constructor, ``process()`` and context exit timed, imports outside; peak
RSS of the process tree sampled every 20 ms). Besides wall-clock seconds
it reports CPU seconds (all threads and ended child processes): on a
shared machine whose cores are busy with other work, wall-clock times
vary by 2x from run to run, CPU seconds much less. Example::

    python benchmarks/bench_robust.py --frames 30000 --repeats 3

Prints one table and writes ``benchmarks/results/robust_<frames>.json``.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

from _common import report_result, run_measured, write_summary
from bench_background import DATA_DIR, get_input

#: what is run: label -> (tool, method code or "iofloor")
RUNS = {
    "dcnum sparsemed": ("dcnum", "sparsemed"),
    "dcbg sparsemed": ("dcbg", "sparsemed"),
    "dcbg sparsemode": ("dcbg", "sparsemode"),
    "I/O floor": ("dcbg", "iofloor"),
}
#: frames read at once by the I/O floor (at least one chunk): the sparse
#: median's and the sparse mode's read block
IO_BLOCK_FRAMES = 256


def read_all_frames(path: pathlib.Path, num_cpus: int) -> None:
    """Read and decompress every frame once, as the methods read them"""
    from dcbg.io import open_input
    from dcbg.workers import WorkerPool, close_pools, wait_all

    measurement = open_input(path)
    pool = WorkerPool(num_cpus, name="iofloor")
    io = WorkerPool(1, name="iofloor-io")
    try:
        images = measurement.images
        block = max(images.chunk_frames, IO_BLOCK_FRAMES)
        blocks = list(images.iter_blocks(block))
        # one read ahead on the I/O thread, as the methods do
        pending = io.submit(images.read, *blocks[0], None, pool)
        for bi in range(len(blocks)):
            wait_all([pending])
            if bi + 1 < len(blocks):
                pending = io.submit(images.read, *blocks[bi + 1], None, pool)
    finally:
        close_pools(io, pool)
        measurement.close()


def run_child(spec: dict) -> None:
    """One timed run (inside the fresh subprocess)"""
    import importlib

    for name in ("dclab", "hdf5plugin", "scipy.ndimage"):
        importlib.import_module(name)
    if spec["method"] == "iofloor":
        importlib.import_module("dcbg.io")
        cpu0 = os.times()
        t0 = time.perf_counter()
        read_all_frames(pathlib.Path(spec["input"]), spec["num_cpus"])
    else:
        module = importlib.import_module(f"{spec['tool']}.feat.feat_background")
        cls = module.get_available_background_methods()[spec["method"]]
        cpu0 = os.times()
        t0 = time.perf_counter()
        with cls(
            pathlib.Path(spec["input"]),
            pathlib.Path(spec["output"]),
            num_cpus=spec["num_cpus"],
        ) as bg:
            bg.process()
    seconds = time.perf_counter() - t0
    cpu1 = os.times()
    # CPU seconds of all threads, and of child processes that ended (dcnum's
    # workers): on a shared, busy machine the work done, where wall-clock
    # time mostly shows the waiting for a core
    cpu = sum(cpu1[:4]) - sum(cpu0[:4])
    report_result({"seconds": seconds, "cpu": cpu})


def measure(spec: dict) -> dict:
    """Run `spec` in a fresh process; its seconds and peak memory"""
    pathlib.Path(spec["output"]).unlink(missing_ok=True)
    result, _, peak = run_measured(__file__, spec, str(spec))
    result["peak_rss_mib"] = peak / 1024**2
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    parser.add_argument("--only", action="append", choices=sorted(RUNS))
    parser.add_argument("--_run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._run:
        run_child(json.loads(args._run))
        return 0
    # bench_background's input of the same number of frames
    data_args = argparse.Namespace(
        frames=args.frames, shape=(80, 320), seed=0, streaks=2, method="sparsemed"
    )
    source = get_input(data_args)
    out_dir = DATA_DIR / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = args.only or list(RUNS)
    print(f"input: {source.name}, num_cpus={args.num_cpus}")
    seconds = {label: [] for label in labels}
    cpu = {label: [] for label in labels}
    peaks = {label: 0.0 for label in labels}
    # alternate the runs so that load changes hit all alike
    for rep in range(args.repeats):
        for label in labels:
            tool, method = RUNS[label]
            spec = {
                "tool": tool,
                "method": method,
                "input": str(source),
                "output": str(out_dir / f"robust_{method}_{tool}.rtdc"),
                "num_cpus": args.num_cpus,
            }
            result = measure(spec)
            seconds[label].append(result["seconds"])
            cpu[label].append(result["cpu"])
            peaks[label] = max(peaks[label], result["peak_rss_mib"])
            print(
                f"  run {rep + 1} {label}: {result['seconds']:.2f} s, "
                f"CPU {result['cpu']:.2f} s",
                flush=True,
            )
    medians = {label: statistics.median(values) for label, values in seconds.items()}
    cpu_medians = {label: statistics.median(values) for label, values in cpu.items()}
    floor = medians.get("I/O floor")
    cpu_floor = cpu_medians.get("I/O floor")
    print(
        f"\n{'run':<18}{'median s':>10}{'x floor':>9}{'CPU s':>8}{'x floor':>9}"
        f"{'frames/s':>10}{'peak MiB':>10}"
    )
    for label in labels:
        ratio = f"{medians[label] / floor:.2f}" if floor else "-"
        cpu_ratio = f"{cpu_medians[label] / cpu_floor:.2f}" if cpu_floor else "-"
        print(
            f"{label:<18}{medians[label]:>10.2f}{ratio:>9}{cpu_medians[label]:>8.2f}"
            f"{cpu_ratio:>9}{args.frames / medians[label]:>10.0f}"
            f"{peaks[label]:>10.0f}"
        )
    line = ", ".join(
        f"{label} {medians[label]:.2f} s (CPU {cpu_medians[label]:.2f} s)"
        for label in labels
    )
    print(f"\n{args.frames} frames: {line}")
    summary = {
        "frames": args.frames,
        "num_cpus": args.num_cpus,
        "seconds": seconds,
        "median_seconds": medians,
        "cpu_seconds": cpu,
        "median_cpu_seconds": cpu_medians,
        "peak_rss_mib": peaks,
        "loadavg": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_summary(f"robust_{args.frames}", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
