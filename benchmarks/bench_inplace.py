"""Cost of transactional in-place writes: in place vs a new output file

Writing into the input file (``dcbg compute X -o X --force``) stages a
copy of the whole file beside it and moves it over the original in one
step when complete (see :mod:`dcbg.io.transaction`). This measures what
that copy costs: the same computation with a new output file and in
place, alternately, in fresh processes, and a plain copy of the file.

Example::

    python benchmarks/bench_inplace.py --frames 20000 --repeats 5

Prints the median wall time of each mode, the difference, and the time of
``shutil.copy2`` of the input (the staging copy's floor).
"""

import argparse
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from make_dataset import parse_shape


def run(args: list[str]) -> float:
    """Wall time of one ``dcbg compute`` in a fresh process"""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dcbg", "compute", *args, "-q"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--shape", type=parse_shape, default=(80, 320))
    parser.add_argument("--method", default="sparsemed")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dcbg_inplace_") as tmp:
        tmp = pathlib.Path(tmp)
        source = tmp / "measurement.rtdc"
        height, width = args.shape
        subprocess.run(
            [
                sys.executable,
                str(pathlib.Path(__file__).with_name("make_dataset.py")),
                str(source),
                "--frames",
                str(args.frames),
                "--shape",
                f"{height}x{width}",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        size_mib = source.stat().st_size / 2**20
        times = {"new output": [], "in place": [], "copy2 of the input": []}
        for _ in range(args.repeats):
            output = tmp / "measurement_bg.rtdc"
            output.unlink(missing_ok=True)
            times["new output"].append(
                run([str(source), "-o", str(output), "--method", args.method])
            )
            work = tmp / "work.rtdc"
            shutil.copyfile(source, work)
            times["in place"].append(
                run([str(work), "-o", str(work), "--force", "--method", args.method])
            )
            start = time.perf_counter()
            shutil.copy2(source, tmp / "copy.rtdc")
            times["copy2 of the input"].append(time.perf_counter() - start)

    print(
        f"{args.method}, {args.frames} frames {height}x{width}, input "
        f"{size_mib:.1f} MiB, medians of {args.repeats} runs"
    )
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    for mode, value in medians.items():
        print(f"  {mode:<20} {value:7.2f} s")
    extra = medians["in place"] - medians["new output"]
    print(
        f"  in place costs {extra:+.2f} s "
        f"({medians['in place'] / medians['new output']:.2f}x the new output)"
    )


if __name__ == "__main__":
    main()
