"""Start-up time: ``import dcbg`` and the command's help, next to dcnum's module

A command that takes a second to show its help feels broken. ``dcbg
--help`` imports no command module (the group knows the commands' names
and summaries, see :mod:`dcbg.cli.commands`): target under 0.15 s. A
command's help imports that command and the methods whose keyword
arguments are its options (numpy, h5py), never dclab, scipy, matplotlib
or Dask: target under 0.4 s for ``dcbg compute --help``. This prints the
median wall time of fresh interpreter runs and the total of ``python -X
importtime``.

Example::

    python benchmarks/bench_startup.py --repeats 7
"""

import argparse
import re
import statistics
import subprocess
import sys
import time

#: what is timed: label -> arguments of the Python interpreter
COMMANDS = {
    "python (nothing imported)": ["-c", "pass"],
    "import dcbg": ["-c", "import dcbg"],
    "dcbg --help": ["-m", "dcbg", "--help"],
    "dcbg compute --help": ["-m", "dcbg", "compute", "--help"],
    "dcbg batch --help": ["-m", "dcbg", "batch", "--help"],
    "import dcbg.feat.feat_background": ["-c", "import dcbg.feat.feat_background"],
    "import dcnum.feat.feat_background": ["-c", "import dcnum.feat.feat_background"],
}


def wall_time(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def importtime_total(args: list[str]) -> float:
    """Seconds of all imports according to ``-X importtime``"""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    total = 0
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) == 1:  # top-level imports only
            total += int(match.group(1))
    return total / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'command':<36} {'median wall':>12} {'importtime':>11}")
    for label, command in COMMANDS.items():
        try:
            times = [wall_time(command) for _ in range(args.repeats)]
        except subprocess.CalledProcessError:
            print(f"{label:<36} {'(not installed)':>12}")
            continue
        print(
            f"{label:<36} {statistics.median(times):>10.3f} s "
            f"{importtime_total(command):>9.3f} s"
        )


if __name__ == "__main__":
    main()
