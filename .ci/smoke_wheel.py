"""Smoke test of an installed dcbg (a wheel): quick start and ``dcbg methods``

Run it with the Python of the environment that has dcbg installed, from
outside the source tree (cibuildwheel's ``test-command`` and
``.ci/release_check.py`` do)::

    python .ci/smoke_wheel.py [--readme README.md]

It checks that

- dcbg is imported from an installed package that holds compiled kernels
  and no build-only sources (``.pyx``, ``.pxd``, ``.h``, ``.c``), and the
  kernels give numpy's medians;
- the README's quick start works: ``dcbg compute`` on the bundled example
  measurement writes a background whose PPID names the requested method
  and kernel size, one background image per frame, identical to what the
  Python API computes, and that explains the frames (small residual);
- ``dcbg methods`` lists every background method.

With ``--readme``, the quick-start command is taken from the README (the
``dcbg compute ...`` part after ``pip install . &&``) and run by bash, as
a user would paste it; on Windows, where the README's bash syntax does not
apply, and without ``--readme``, the same command is run as an argument
list. Exits with status 1 and a message naming the failed check.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import traceback

#: the bundled example measurement the README's quick start processes
EXAMPLE_NAME = "cytoshot_2024_80x320.rtdc"

#: the quick start's options (README), used where its bash line cannot run
QUICK_START_OPTIONS = ("-o", "example_bg.rtdc", "--method", "sparsemed")
QUICK_START_OPTIONS += ("--kernel-size", "10")

#: files that only a build needs and the installed package must not hold
BUILD_ONLY_SUFFIXES = (".pyx", ".pxd", ".h", ".c")

#: compiled kernel modules the wheel must hold (setup.py's extensions)
COMPILED_KERNELS = ("_rolling_median", "_window_median", "_checksum")

#: mean |image - image_bg - bg_off| (grey levels) above which a background
#: does not explain its frames: frames of the example are dark background
#: plus a few small cells; a correct background leaves ~3 (sensor noise)
MAX_MEAN_RESIDUAL = 5.0

#: seconds one dcbg command may take (the example has 13 frames; the first
#: start of a fresh environment compiles bytecode)
COMMAND_TIMEOUT = 300


class SmokeError(Exception):
    """A check of the installed package failed"""


def check(condition: bool, message: str):
    """Raise :class:`SmokeError` with `message` unless `condition`"""
    if not condition:
        raise SmokeError(message)


def find_dcbg_command() -> str:
    """Path of the ``dcbg`` console script of this environment"""
    scripts = pathlib.Path(sysconfig.get_path("scripts"))
    for name in ("dcbg", "dcbg.exe"):
        if (scripts / name).is_file():
            return str(scripts / name)
    found = shutil.which("dcbg")
    check(found is not None, f"no 'dcbg' console script in {scripts} or on PATH")
    return found


def check_installed_package():
    """dcbg is an installed package with compiled kernels only"""
    import numpy as np

    import dcbg
    from dcbg.kernels import rolling_median, window_median

    package = pathlib.Path(dcbg.__file__).parent
    source_tree = pathlib.Path(__file__).resolve().parents[1]
    check(
        package.resolve() != (source_tree / "dcbg").resolve(),
        f"dcbg was imported from the source tree {package}, not an installation",
    )
    build_only = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*")
        if path.suffix in BUILD_ONLY_SUFFIXES
    )
    check(
        not build_only,
        f"installed package {package} holds build-only sources:"
        f" {', '.join(build_only)}",
    )
    for name in COMPILED_KERNELS:
        compiled = list((package / "kernels").glob(f"{name}.*"))
        check(
            any(path.suffix in (".so", ".pyd") for path in compiled),
            f"installed package {package} has no compiled kernel {name}",
        )
    # The compiled kernels against numpy, on data wider than one block of
    # pixels, where every rank value occurs.
    rng = np.random.default_rng(42)
    stack = rng.integers(0, 256, size=(40, 7, 61), dtype=np.uint8)
    k = 9
    expected = np.stack(
        [np.partition(stack[i : i + k], k // 2, axis=0)[k // 2] for i in range(32)]
    )
    check(
        np.array_equal(rolling_median(stack, k, num_threads=2), expected),
        "compiled rolling median differs from numpy's",
    )
    check(
        np.array_equal(
            window_median(stack, num_threads=2), np.partition(stack, 20, axis=0)[20]
        ),
        "compiled window median differs from numpy's",
    )
    print(f"ok: dcbg {dcbg.__version__} installed in {package}, kernels compiled")


def readme_quick_start(readme: pathlib.Path) -> str:
    """The README's quick-start command without its ``pip install .`` part"""
    text = readme.read_text(encoding="utf-8")
    section = re.search(r"^## Quick start$(.*?)^## ", text, re.MULTILINE | re.DOTALL)
    check(section is not None, f"{readme} has no '## Quick start' section")
    block = re.search(r"```bash\n(.*?)```", section.group(1), re.DOTALL)
    check(block is not None, f"the quick start of {readme} has no bash block")
    command = block.group(1).strip()
    install, sep, rest = command.partition("&&")
    check(
        sep and install.strip() == "pip install .",
        f"the quick start of {readme} no longer starts with 'pip install . &&'"
        f" (got {command!r}); update .ci/smoke_wheel.py",
    )
    return rest.strip()


def run(command, cwd, shell_command=False) -> subprocess.CompletedProcess:
    """Run a command, fail with its output if it fails"""
    if shell_command:
        # bash itself may be outside a PATH stripped of build tools
        bash = shutil.which("bash") or next(
            (path for path in ("/bin/bash", "/usr/bin/bash") if os.path.isfile(path)),
            None,
        )
        check(bash is not None, "bash is needed to run the README's command")
        argv = [bash, "-c", command]
    else:
        argv = list(command)
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    check(
        proc.returncode == 0,
        f"{command!r} failed with exit status {proc.returncode}:\n"
        f"{proc.stdout}{proc.stderr}",
    )
    return proc


def check_quick_start(readme: pathlib.Path | None, workdir: pathlib.Path):
    """The quick start computes a correct background of the example"""
    import dclab
    import numpy as np

    import dcbg.data
    from dcbg import BackgroundSparseMed

    example = pathlib.Path(dcbg.data.__file__).parent / EXAMPLE_NAME
    check(example.is_file(), f"the bundled example {example} is missing")
    if readme is not None and os.name != "nt":
        command = readme_quick_start(readme)
        output_name = re.search(r"-o (\S+)", command).group(1)
        proc = run(command, workdir, shell_command=True)
    else:
        command = [find_dcbg_command(), "compute", str(example), *QUICK_START_OPTIONS]
        output_name = QUICK_START_OPTIONS[1]
        proc = run(command, workdir)
    command_text = command if isinstance(command, str) else " ".join(command)
    method = re.search(r"--method (\S+)", command_text).group(1)
    kernel_size = int(re.search(r"--kernel-size (\d+)", command_text).group(1))
    check(method == "sparsemed", f"the quick start uses {method!r}; update this check")
    output = workdir / output_name
    check(output.is_file(), f"the quick start wrote no {output}:\n{proc.stdout}")

    # the same computation through the Python API, for comparison
    reference = workdir / "api_bg.rtdc"
    with BackgroundSparseMed(example, reference, kernel_size=kernel_size) as bg:
        bg.process()
        ppid = bg.get_ppid()
    check(
        f"{output_name}: {ppid}" in proc.stdout,
        f"the quick start's summary does not name {output_name} and {ppid}:"
        f" {proc.stdout!r}",
    )
    with dclab.new_dataset(output) as ds, dclab.new_dataset(reference) as ref:
        n_frames = len(ds)
        check(n_frames > 0, f"{output} has no events")
        # sparsemed stores the background series in "basin_events" (mapped)
        stored_ppid = ds.h5file["events/bg_off"].attrs.get("dcnum ppid background")
        check(stored_ppid == ppid, f"{output}: PPID {stored_ppid!r}, expected {ppid!r}")
        residuals = []
        for index in range(n_frames):
            image_bg = ds["image_bg"][index]
            check(
                np.array_equal(image_bg, ref["image_bg"][index]),
                f"{output}: image_bg of frame {index} differs from the API's",
            )
            corrected = (
                ds["image"][index].astype(float) - image_bg - ds["bg_off"][index]
            )
            residuals.append(np.abs(corrected).mean())
        check(
            np.array_equal(ds["bg_off"][:], ref["bg_off"][:]),
            f"{output}: bg_off differs from the API's",
        )
    mean_residual = float(np.mean(residuals))
    check(
        mean_residual <= MAX_MEAN_RESIDUAL,
        f"{output}: mean |image - image_bg - bg_off| is {mean_residual:.2f} grey"
        f" levels, more than {MAX_MEAN_RESIDUAL}: the background is wrong",
    )
    print(
        f"ok: quick start wrote {output_name} ({ppid}, {n_frames} frames, mean"
        f" residual {mean_residual:.2f}), identical to the Python API"
    )


def check_methods(workdir: pathlib.Path):
    """``dcbg methods`` lists every method with its default PPID"""
    from dcbg import get_available_background_methods

    proc = run([find_dcbg_command(), "methods"], workdir)
    for name in get_available_background_methods():
        check(
            re.search(rf"^{name}: ", proc.stdout, re.MULTILINE) is not None,
            f"'dcbg methods' does not list {name!r}:\n{proc.stdout}",
        )
        check(
            f"PPID (defaults): {name}" in proc.stdout,
            f"'dcbg methods' shows no default PPID of {name!r}:\n{proc.stdout}",
        )
    print("ok: dcbg methods lists", ", ".join(get_available_background_methods()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--readme", type=pathlib.Path, help="take the quick start from this README"
    )
    args = parser.parse_args(argv)
    try:
        check_installed_package()
        # Windows cannot remove a file that a virus scanner still holds open
        with tempfile.TemporaryDirectory(
            prefix="dcbg-smoke-", ignore_cleanup_errors=True
        ) as tmp:
            check_quick_start(args.readme, pathlib.Path(tmp))
            check_methods(pathlib.Path(tmp))
    except SmokeError as exc:
        print(f"smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print("smoke test FAILED with the exception above", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
