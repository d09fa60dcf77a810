"""The dcbg command: methods, compute (options, errors, --force, Ctrl-C), plot"""

import gc
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time

import dclab
import h5py
import numpy as np
import psutil
import pytest
from click.testing import CliRunner

from dcbg import BackgroundRollMed, BackgroundSparseMed
from dcbg.cli import make_cli
from dcbg.feat.feat_background import Background
from dcbg.testing import make_synthetic_measurement


def run_cli(*args):
    """Run the dcbg command in this process (fast)"""
    return CliRunner().invoke(make_cli(), [str(arg) for arg in args])


def run_subprocess(*args, **kwargs):
    """Run ``python -m dcbg`` as the user would"""
    return subprocess.run(
        [sys.executable, "-m", "dcbg", *[str(arg) for arg in args]],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def file_hash(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def read_background(path):
    """image_bg of all frames and bg_off (or None) as dclab sees them"""
    with dclab.new_dataset(path) as ds:
        image_bg = np.asarray(ds["image_bg"][:])
        bg_off = np.asarray(ds["bg_off"][:]) if "bg_off" in ds else None
    return image_bg, bg_off


def test_methods_lists_methods_and_kwargs():
    result = run_cli("methods")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for expected in (
        "copy: Copy the input background data to the output file",
        "rollmed: Rolling median",
        "sparsemed: Sparse median",
        "kernel_size (int, default 100)  --kernel-size",
        "batch_size (int, default 10000)  --batch-size",
        "kernel_size (int, default 200)  --kernel-size",
        "split_time (float, default 1.0)  --split-time",
        "thresh_cleansing (float, default 0)  --thresh-cleansing",
        "frac_cleansing (float, default 0.8)  --frac-cleansing",
        "offset_correction (bool, default on)  "
        "--offset-correction/--no-offset-correction",
        "PPID (defaults): sparsemed:k=200^s=1^t=0^f=0.8^o=1",
        "Fraction in (0, 1] of background images",
    ):
        assert expected in text


def test_new_method_appears_without_cli_changes(cytoshot, tmp_path):
    class BackgroundConstant(Background):
        """Every frame gets the same grey image"""

        @staticmethod
        def check_user_kwargs(*, grey_level: int = 100, smooth: bool = False):
            """Check the keyword arguments

            Parameters
            ----------
            grey_level: int
                Grey level of the background (0..255)
            smooth: bool
                Unused switch
            """
            if not 0 <= grey_level <= 255:
                raise ValueError(f"grey_level must be in 0..255, got {grey_level}")

        def process_approach(self):
            self.output.store_feature(
                "image_bg",
                np.full(
                    (self.image_count, *self.image_shape),
                    self.kwargs["grey_level"],
                    dtype=np.uint8,
                ),
            )
            self.image_proc.value = 1.0

    try:
        listing = run_cli("methods")
        assert "constant: Every frame gets the same grey image" in listing.stdout
        assert "grey_level (int, default 100)  --grey-level" in listing.stdout
        output = tmp_path / "constant.rtdc"
        result = run_cli(
            "compute", cytoshot, "-o", output, "--method", "constant",
            "--grey-level", 7, "--smooth", "-q",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "constant:g=7^s=1" in result.stdout
        assert np.all(read_background(output)[0] == 7)
        # range checks are those of check_user_kwargs: a usage error
        result = run_cli(
            "compute", cytoshot, "--method", "constant", "--grey-level", 300
        )
        assert result.exit_code == 2
        assert "grey_level must be in 0..255" in result.stderr
        assert "'--grey-level'" in result.stderr
    finally:
        del BackgroundConstant, listing, result
        gc.collect()


@pytest.mark.parametrize(
    ("cls", "kwargs", "ppid_text", "options"),
    [
        (
            BackgroundRollMed,
            {"kernel_size": 4, "batch_size": 6},
            "rollmed:k=4^b=6",
            ["--kernel-size", "4", "--batch-size", "6"],
        ),
        (
            BackgroundSparseMed,
            {"kernel_size": 6, "frac_cleansing": 0.9, "offset_correction": True},
            "sparsemed:k=6^f=0.9",
            ["--kernel-size", "6", "--frac-cleansing", "0.9", "--offset-correction"],
        ),
        (
            BackgroundSparseMed,
            {"kernel_size": 10, "offset_correction": False},
            "sparsemed:kernel_size=10^o=0",
            ["--kernel-size", "10", "--no-offset-correction"],
        ),
    ],
)
def test_compute_ppid_and_options_match_api(
    cytoshot, tmp_path, cls, kwargs, ppid_text, options
):
    api_output = tmp_path / "api.rtdc"
    with cls(cytoshot, api_output, **kwargs) as bg:
        bg.process()
        api_ppid = bg.get_ppid()
    expected_bg, expected_off = read_background(api_output)

    by_ppid = tmp_path / "by_ppid.rtdc"
    result = run_cli("compute", cytoshot, "-o", by_ppid, "--ppid", ppid_text)
    assert result.exit_code == 0, result.output
    by_options = tmp_path / "by_options.rtdc"
    result_options = run_cli(
        "compute", cytoshot, "-o", by_options, "--method", cls.get_ppid_code(),
        *options, "--num-cpus", "1", "--no-compress",
    )  # fmt: skip
    assert result_options.exit_code == 0, result_options.output

    for output, res in ((by_ppid, result), (by_options, result_options)):
        image_bg, bg_off = read_background(output)
        assert np.array_equal(image_bg, expected_bg)
        if expected_off is None:
            assert bg_off is None
        else:
            assert np.array_equal(bg_off, expected_off)
        # one summary line: PPID, output path, events, seconds, events/s
        (summary,) = res.stdout.splitlines()
        assert api_ppid in summary
        assert str(output) in summary
        assert " 13 events in " in summary
        # the rate is that of the computation (the progress display's
        # time), not of start-up: "in X s (R events/s; T s in all ..."
        match = re.search(
            r" 13 events in ([0-9.]+) s \(([0-9.]+) events/s; ([0-9.]+) s in all "
            r"with start-up and writing\)$",
            summary,
        )
        assert match, summary
        compute_s, rate, total_s = map(float, match.groups())
        assert compute_s <= total_s
        # the seconds are rounded to 0.01 s, the rate is not
        assert 13 / (compute_s + 0.006) <= rate
        assert compute_s < 0.006 or rate <= 13 / (compute_s - 0.006)
        # progress lines on stderr, as it is not a terminal here
        assert "Progress:   0%" in res.stderr
        assert "Progress: 100% (13/13 events" in res.stderr


def test_quiet_default_output_and_force(cytoshot, tmp_path):
    default_output = tmp_path / "cytoshot_2024_80x320_bg.rtdc"
    result = run_cli("compute", cytoshot, "--ppid", "rollmed:k=4^b=6", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert default_output.exists()
    old_hash = file_hash(default_output)

    # an existing output stays as it is without --force
    result = run_cli("compute", cytoshot, "--method", "sparsemed", "--kernel-size", 4)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: Output file '{default_output}' already exists; use --force to "
        f"replace it"
    ]
    assert file_hash(default_output) == old_hash

    # --force with a failing computation keeps the old output
    result = run_cli("compute", cytoshot, "--ppid", "rollmed:k=20^b=30", "--force")
    assert result.exit_code == 1
    assert "--kernel-size=20 is larger than the number of frames" in result.stderr
    assert "the largest valid --kernel-size is 12" in result.stderr
    assert file_hash(default_output) == old_hash

    # --force replaces the old output by a fresh file
    result = run_cli("compute", cytoshot, "--ppid", "sparsemed:k=4", "--force", "-q")
    assert result.exit_code == 0, result.output
    with h5py.File(default_output) as h5:
        assert "basin_events" in h5  # sparsemed's series
        assert (
            "sparsemed:k=4"
            in h5["basin_events/image_bg"].attrs["dcnum ppid background"]
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cytoshot_2024_80x320.rtdc",
        "cytoshot_2024_80x320_bg.rtdc",
    ]


def test_compute_into_input_needs_force(cytoshot):
    old_hash = file_hash(cytoshot)
    result = run_cli("compute", cytoshot, "-o", cytoshot, "--ppid", "rollmed:k=4")
    assert result.exit_code == 1
    assert "is the input file; use --force" in result.stderr
    assert file_hash(cytoshot) == old_hash
    result = run_cli(
        "compute", cytoshot, "-o", cytoshot, "--ppid", "rollmed:k=4^b=6", "--force"
    )
    assert result.exit_code == 0, result.output
    with h5py.File(cytoshot) as h5:
        assert h5["events/image_bg"].attrs["dcnum ppid background"] == (
            "rollmed:k=4^b=6"
        )
    assert [p.name for p in cytoshot.parent.iterdir()] == [cytoshot.name]


def test_force_does_not_replace_raw_data(cytoshot, legacy_with_bg):
    old_hash = file_hash(legacy_with_bg)
    result = run_cli(
        "compute", cytoshot, "-o", legacy_with_bg, "--method", "copy", "--force"
    )
    assert result.exit_code == 1
    assert "holds raw images" in result.stderr
    assert file_hash(legacy_with_bg) == old_hash


@pytest.fixture
def bad_inputs(tmp_path, empty_measurement, cytoshot):
    text_file = tmp_path / "notes.rtdc"
    text_file.write_text("not HDF5\n")
    no_image = tmp_path / "no_image.rtdc"
    no_image.write_bytes(cytoshot.read_bytes())
    with h5py.File(no_image, "a") as h5:
        del h5["events/image"]
    existing = tmp_path / "existing.rtdc"
    existing.write_bytes(b"")
    return {
        "missing": tmp_path / "missing.rtdc",
        "text": text_file,
        "no_image": no_image,
        "empty": empty_measurement,
        "good": cytoshot,
        "no_folder": tmp_path / "nowhere" / "out.rtdc",
        "existing": existing,
    }


@pytest.mark.parametrize(
    ("input_name", "args", "exit_code", "message"),
    [
        ("missing", [], 1, "Error: Input file '{missing}' does not exist"),
        ("text", [], 1, "Error: Input file '{text}' is not an HDF5 file"),
        ("no_image", [], 1, "Error: Input file '{no_image}' has no 'image' feature"),
        ("empty", [], 1, "has zero frames; there is nothing to compute"),
        ("good", ["-o", "{no_folder}"], 1, "Error: Output folder '"),
        ("good", ["-o", "{existing}"], 1, "'{existing}' already exists; use --force"),
    ],
)
def test_input_errors_give_one_line(bad_inputs, input_name, args, exit_code, message):
    args = [arg.format(**bad_inputs) for arg in args]
    result = run_cli(
        "compute", bad_inputs[input_name], *args, "--ppid", "rollmed:k=4^b=6"
    )
    assert result.exit_code == exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert message.format(**bad_inputs) in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "rollmed", "--kernel-size", "3"], "kernel_size must be an even"),
        (["--method", "rollmed", "--kernel-size", "x"], "'x' is not a valid integer"),
        (["--method", "sparsemed", "--frac-cleansing", "1.5"], "frac_cleansing must"),
        (["--method", "nomethod"], "'nomethod' is not one of"),
        (["--ppid", "rollmed:k=50^zz=3"], "Unknown key 'zz'"),
        (["--ppid", "nomethod:k=3"], "Unknown background method 'nomethod'"),
        (["--ppid", "rollmed-k=3"], "Invalid background PPID"),
        (["--ppid", "rollmed:k=3"], "kernel_size must be an even number"),
        (
            ["--method", "rollmed", "--split-time", "2"],
            "--split-time is not accepted by method 'rollmed'",
        ),
        (
            ["--method", "copy", "--no-offset-correction"],
            "--offset-correction/--no-offset-correction is not accepted by method "
            "'copy' (it accepts no options)",
        ),
        (["--method", "rollmed", "--ppid", "rollmed:"], "mutually exclusive"),
        ([], "Give either --method NAME or --ppid PPID"),
        (
            ["--ppid", "rollmed:", "--kernel-size", "4"],
            "cannot be combined with --ppid",
        ),
        (["--method", "rollmed", "--num-cpus", "0"], "Invalid value for '--num-cpus'"),
    ],
)
def test_usage_errors_exit_2(cytoshot, args, message):
    result = run_cli("compute", cytoshot, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_usage_error_names_the_option(cytoshot):
    result = run_cli("compute", cytoshot, "--method", "rollmed", "--kernel-size", 3)
    assert "Invalid value for '--kernel-size': kernel_size must be an even" in (
        result.stderr
    )
    result = run_cli("compute", cytoshot, "--method", "rollmed", "--batch-size", 50)
    assert "Invalid value for '--batch-size': batch_size must be larger" in (
        result.stderr
    )


def test_sparsemed_warning_is_one_line(cytoshot, tmp_path):
    result = run_cli("compute", cytoshot, "--method", "sparsemed", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "Warning: The kernel size 200 is larger than the number of frames 13; "
        "using all 13 frames"
    ]


def test_compute_warnings_name_options(cytoshot, tmp_path):
    # the API's warnings name keyword arguments (split_time=); compute shows
    # them with the options the user typed, as batch does
    with h5py.File(cytoshot) as h5:
        time_ = h5["events/time"][:]
    split_time = float(f"{(time_[-1] - time_[0]) / 13 / 2:.3g}")  # 2 per frame
    result = run_cli(
        "compute", cytoshot, "-o", tmp_path / "sparse.rtdc", "--method",
        "sparsemed", "--kernel-size", 3, "--split-time", split_time, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Warning: --split-time={split_time} s gives ")
    assert "most of them serve no frame (--split-time >= " in line
    assert "split_time" not in line
    many = os.cpu_count() + 1000
    result = run_cli(
        "compute", cytoshot, "-o", tmp_path / "copy.rtdc", "--method", "copy",
        "--num-cpus", many, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"Warning: --num-cpus={many} is more than ")


def test_compute_copy_without_background_warns_once(tmp_path):
    # dcnum copies nothing from an input without image_bg and ends without
    # an error: so does dcbg, and says so once
    path = make_synthetic_measurement(tmp_path / "raw.rtdc", 12, seed=5)
    result = run_subprocess("compute", path, "--method", "copy", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"Warning: Input file '{path}' has no 'image_bg': the output holds no "
        f"background"
    ]
    assert result.stdout.startswith(f"Wrote {tmp_path / 'raw_bg.rtdc'}: copy:, 12 ")
    with dclab.new_dataset(tmp_path / "raw_bg.rtdc") as ds:
        assert "image_bg" not in ds and len(ds) == 12


def test_debug_shows_traceback(tmp_path):
    missing = tmp_path / "missing.rtdc"
    result = run_subprocess("compute", missing, "--method", "rollmed", "--debug")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert f"FileNotFoundError: Input file '{missing}' does not exist" in result.stderr


def test_readme_quick_start_command(tmp_path):
    """The exact command of the README's quick start, as a subprocess"""
    import dcbg.data

    example = os.path.join(
        os.path.dirname(dcbg.data.__file__), "cytoshot_2024_80x320.rtdc"
    )
    result = run_subprocess(
        "compute", example, "-o", "example_bg.rtdc", "--method", "sparsemed",
        "--kernel-size", "10", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "Wrote example_bg.rtdc: sparsemed:k=10^s=1^t=0^f=0.8^o=1, 13 events in "
    )
    image_bg, bg_off = read_background(tmp_path / "example_bg.rtdc")
    assert image_bg.shape == (13, 80, 320)
    assert bg_off.shape == (13,)


def test_plot_of_input_and_of_output_do_not_collide(cytoshot, tmp_path):
    """`dcbg plot A.rtdc` and `dcbg plot A_bg.rtdc` write two files, and
    `-o` never turns a measurement into a PNG"""
    measurement = tmp_path / "A.rtdc"
    measurement.write_bytes(cytoshot.read_bytes())
    output = tmp_path / "A_bg.rtdc"
    result = run_cli("compute", measurement, "--ppid", "sparsemed:k=6")
    assert result.exit_code == 0, result.output
    for path in (measurement, output):
        result = run_cli("plot", path, "--dpi", 30)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "A_plot.png").is_file()
    assert (tmp_path / "A_bg_plot.png").is_file()
    before = measurement.read_bytes()
    for target in (measurement, output):
        result = run_cli("plot", output, "-o", target, "--force")
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error: Plot file '{target}' must end")
    assert measurement.read_bytes() == before


def test_plot_command_writes_png(cytoshot, tmp_path):
    from PIL import Image

    output = tmp_path / "cyto_bg.rtdc"
    result = run_cli("compute", cytoshot, "-o", output, "--ppid", "sparsemed:k=6")
    assert result.exit_code == 0, result.output
    result = run_cli("plot", output, "--frame", -1)
    assert result.exit_code == 0, result.output
    png = tmp_path / "cyto_bg_plot.png"
    assert result.stdout.strip() == f"Wrote {png}"
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size[0] == 1000
        # four image rows (frame, background, corrected, ghost map) + bg_off
        assert 1100 < image.size[1] < 1700

    custom = tmp_path / "figure.png"
    result = run_cli("plot", output, "-o", custom, "--dpi", 50)
    assert result.exit_code == 0, result.output
    with Image.open(custom) as image:
        assert image.size[0] == 500

    # the default name is taken now; --force replaces that PNG
    result = run_cli("plot", output)
    assert result.exit_code == 1
    assert "already exists; use --force" in result.stderr
    result = run_cli("plot", output, "--frame", 13, "--force")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: Event 13 is out of range for '{output}' with 13 events "
        f"(valid: -13 to 12)"
    )
    result = run_cli("plot", tmp_path / "missing.rtdc")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Input file")


def _read_lines(stream, lines):
    for line in stream:
        lines.append(line)


def test_sigint_stops_cleanly(tmp_path):
    source = make_synthetic_measurement(
        tmp_path / "large.rtdc", 12_000, compression=False
    )
    output = tmp_path / "large_bg.rtdc"
    process = subprocess.Popen(
        [sys.executable, "-m", "dcbg", "compute", str(source), "-o", str(output),
         "--method", "rollmed", "--kernel-size", "1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    stderr_lines = []
    reader = threading.Thread(
        target=_read_lines, args=(process.stderr, stderr_lines), daemon=True
    )
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("Progress:" in line for line in stderr_lines):
            assert process.poll() is None, "".join(stderr_lines)
            assert time.monotonic() < deadline, "computation did not start"
            time.sleep(0.05)
        time.sleep(1.0)  # well inside process()
        assert process.poll() is None, "finished before the interrupt"
        children = psutil.Process(process.pid).children(recursive=True)
        assert children == []  # worker threads, no processes
        process.send_signal(signal.SIGINT)
        # "within a few seconds": TimeoutExpired fails the test
        returncode = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    assert returncode == 130
    assert stderr_lines[-1].strip() == (
        "Error: Interrupted; the computation was stopped and its output discarded"
    )
    assert process.stdout.read() == ""
    process.stdout.close()
    process.stderr.close()
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.rtdc"]


def test_interrupt_with_force_keeps_old_output(cytoshot, tmp_path, monkeypatch):
    output = tmp_path / "out.rtdc"
    assert run_cli("compute", cytoshot, "-o", output, "--method", "copy").exit_code == 0
    old_hash = file_hash(output)

    def interrupted_approach(self):
        self.image_proc.value = 0.3
        raise KeyboardInterrupt

    monkeypatch.setattr(BackgroundRollMed, "process_approach", interrupted_approach)
    result = run_cli(
        "compute", cytoshot, "-o", output, "--ppid", "rollmed:k=4^b=6", "--force"
    )
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == (
        "Error: Interrupted; the computation was stopped and its output discarded"
    )
    assert file_hash(output) == old_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == [cytoshot.name, output.name]


def test_progress_display_styles(capsys):
    from dcbg.cli.runtime import ProgressDisplay

    fractions = iter([0.1, 0.3, 0.35, 0.8, 0.9])

    def get_progress():
        return next(fractions, 0.9)

    with ProgressDisplay(get_progress, 200, "lines", poll_interval=0.02):
        time.sleep(0.3)
    lines = capsys.readouterr().err.splitlines()
    percents = [line.split("%")[0].split()[-1] for line in lines]
    assert percents == ["0", "30", "80", "100"]
    assert lines[-1].startswith("Progress: 100% (200/200 events, ")

    with ProgressDisplay(lambda: 0.5, 200, "bar", poll_interval=0.02):
        time.sleep(0.1)
    bar = capsys.readouterr().err
    assert "200/200" in bar and "event" in bar

    with ProgressDisplay(lambda: 0.5, 200, "none"):
        pass
    assert capsys.readouterr().err == ""
