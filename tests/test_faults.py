"""Fault injection: ``dcbg compute`` stopped at random moments (issue 11)

Real ``python -m dcbg compute`` processes on a measurement large enough
to take a few seconds get SIGINT, SIGTERM, SIGKILL or two SIGINTs at a
random moment; every run is then checked against the invariants of issue
11 ("Nothing lost"):

- SIGINT/SIGTERM end the run within 3 s with status 130/143 (0 if it got
  through), a second SIGINT ends it at once; no process is left behind.
- New output: the input stays byte-identical; the output path holds
  nothing unless the run exited 0, and then the complete background of an
  uninterrupted run.
- In place (``-o INPUT --force``): the file opens in h5py and dclab, every
  other dataset and attribute is unchanged, and ``image_bg``/``bg_off``
  are exactly the previous ones or exactly the new ones, every chunk
  readable (the new ones if the run exited 0).
- A rerun of the same command succeeds and leaves nothing in the folder
  but the input and the output (no temporary or lock files).

Further tests: a full disk (``RLIMIT_FSIZE``), two writers of one file,
SIGKILL and rerun.

On dcbg's main before issue 11 was fixed, in-place runs lose data (copy
in place deletes the background even when it succeeds, an interrupted
run deletes the previous one, SIGKILL leaves it half written), a full
disk in place crashes (SIGSEGV) and its message does not name the output,
concurrent writers both "succeed" and reruns leave the temporary files of
killed runs. Those tests fail there on purpose. (Issue 11 also saw some
SIGINT/SIGTERM runs hang; none did in this harness's runs of that code.)

Replay: the moments come from a seeded RNG; every failure message names
the seed, the moment and the signal. Run with ``DCBG_FAULT_SEED=<seed>``
to draw the same moments again, ``-m slow`` for the large budget, and
``DCBG_FAULT_LOG=<file>`` to append one JSON line per run (for hang and
data-loss rates: ``python tests/faults.py <file>`` prints them per case).
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import resource
import shutil
import signal
import time

import h5py
import pytest
from faults import (
    SIGNAL_KINDS,
    FileSnapshot,
    background_state,
    dcbg_command,
    file_digest,
    folder_listing,
    run_dcbg,
    signal_violations,
)

from dcbg.testing import make_synthetic_measurement

#: frames of the test measurement: with 2 worker threads, rollmed and
#: sparsemed (split time below) compute for ~1.5 s after ~1 s of start-up
#: on an idle 2-core machine (3-6 s in all on a busy one), long enough to
#: hit every phase of a run, short enough for the default budget (~25 runs)
#: to take about a minute
N_FRAMES = 20_000
#: seed of the synthetic measurement (its content, not the moments)
DATA_SEED = 11
#: method options; sparsemed's default split time of 1 s gives only 6
#: median images here and ~0.4 s of work, 0.05 s gives ~120 and ~1.5 s
METHOD_ARGS = {
    "rollmed": ["--method", "rollmed"],
    "sparsemed": ["--method", "sparsemed", "--split-time", "0.05"],
    "copy": ["--method", "copy"],
}
#: the CI machines have 2 cores (DCBG_FAULT_NUM_CPUS for other counts,
#: e.g. 1, where issue 11 saw sparsemed hang most often)
NUM_CPUS_ARGS = ["--num-cpus", os.environ.get("DCBG_FAULT_NUM_CPUS", "2")]
#: (method, mode) cases; the signal kinds rotate over the moments of a case
#: starting at the case's index, so the default budget sends every kind,
#: and the slow budget every kind to every case
CASES = [
    (method, mode) for method in ("rollmed", "sparsemed", "copy")
    for mode in ("new", "inplace")
]  # fmt: skip
KINDS = list(SIGNAL_KINDS)
#: random moments per case in the default run and in the slow run (issue
#: 11 asks for at least 20 per method and mode; 24 gives each kind 6). The
#: default run is a smoke test within the suite's ~3 minute budget on 2
#: cores: one moment for each method, new output and in place alternating,
#: the kinds by the case's index (SIGINT, SIGINTx2, SIGTERM; SIGKILL has
#: test_sigkill_then_rerun); CI's slow run has the full budget.
DEFAULT_MOMENTS = 1
DEFAULT_CASES = [("rollmed", "new"), ("sparsemed", "inplace"), ("copy", "inplace")]
SLOW_MOMENTS = 24
#: seed of the moments: DCBG_FAULT_SEED to replay a failure, else new
SEED = int(os.environ.get("DCBG_FAULT_SEED", random.SystemRandom().randrange(10**6)))
#: disk full: a file-size limit of this many bytes (new output), or this
#: much below the size of the file an uninterrupted run writes (in place),
#: makes a run fail part-way through writing its background (a tenth or
#: less of what it writes for N_FRAMES frames: rollmed's image_bg ~35 MB,
#: sparsemed's ~120 background images ~0.8 MB, copy's image_bg ~6 MB)
DISK_FULL_MARGIN = {"rollmed": 4 * 1024**2, "sparsemed": 96 * 1024, "copy": 1024**2}
#: how long a start-up may take before the harness gives up waiting for a
#: progress line (a loaded 2-core machine)
PROGRESS_TIMEOUT_S = 60.0
#: a second writer of a file must fail at once; one that has not ended
#: after this long (a slow start-up is ~2 s) waits for the first writer
SECOND_WRITER_TIMEOUT_S = 30.0

INPUT_NAME = "measurement.rtdc"
OUTPUT_NAME = "measurement_bg.rtdc"


class FaultData:
    """The test measurements, their reference results and run durations

    - ``raw``: a measurement without background (input of new outputs)
    - ``with_bg``: the same frames with a ground-truth ``image_bg`` and
      ``bg_off`` (input of "copy", and the file of in-place runs, whose
      previous background must survive)

    Reference results are computed by uninterrupted runs on first use.
    """

    def __init__(self, root: pathlib.Path):
        self.root = root
        master = root / "master"
        master.mkdir()
        self.with_bg = make_synthetic_measurement(
            master / "with_bg.rtdc", N_FRAMES, seed=DATA_SEED, with_image_bg=True
        )
        self.raw = master / "raw.rtdc"
        with h5py.File(self.with_bg, "r") as src, h5py.File(self.raw, "w") as dst:
            dst.attrs.update(src.attrs)
            events = dst.create_group("events")
            for name in src["events"]:
                if name not in ("image_bg", "bg_off"):
                    # copies the stored chunks, no recompression
                    src.copy(src["events"][name], events, name)
        self.digest = {
            self.raw: file_digest(self.raw),
            self.with_bg: file_digest(self.with_bg),
        }
        self.snapshot = FileSnapshot(self.with_bg)
        self.old_state = background_state(self.with_bg)
        assert self.old_state.image_bg is not None
        assert self.old_state.bg_off is not None
        self._references = {}
        self._baselines = {}
        #: (method, mode) -> size of the file an uninterrupted run wrote
        self.result_size = {}
        self._count = 0

    def workdir(self, label: str) -> pathlib.Path:
        self._count += 1
        path = self.root / "runs" / f"{self._count:04d}-{label}"
        path.mkdir(parents=True)
        return path

    def log_prefix(self, label: str) -> pathlib.Path:
        return self.root / "logs" / f"{self._count:04d}-{label}"

    def source(self, method: str, mode: str) -> pathlib.Path:
        """The master file a case starts from"""
        if mode == "inplace" or method == "copy":
            return self.with_bg
        return self.raw

    def reference(self, method: str, source: pathlib.Path):
        """Background state and duration of an uninterrupted new-output run"""
        key = (method, source)
        if key not in self._references:
            folder = self.workdir(f"reference-{method}-{source.stem}")
            out = folder / OUTPUT_NAME
            cmd = dcbg_command(source, out, METHOD_ARGS[method] + NUM_CPUS_ARGS)
            outcome = run_dcbg(cmd, folder, self.log_prefix("reference"))
            assert outcome.returncode == 0, outcome.describe()
            assert file_digest(source) == self.digest[source]
            self._references[key] = (background_state(out), outcome.duration)
            shutil.rmtree(folder)
        return self._references[key]

    def new_state(self, method: str, mode: str):
        """Background an uninterrupted run of the case leaves"""
        return self.reference(method, self.source(method, mode))[0]

    def baseline(self, method: str, mode: str):
        """Duration and violations of one uninterrupted run of the case"""
        key = (method, mode)
        if key not in self._baselines:
            if mode == "new":
                state, duration = self.reference(method, self.source(method, mode))
                problems = []
            else:
                outcome, problems = run_case(
                    self, method, mode, None, None, "baseline", rerun=False
                )
                duration = outcome.duration
            self._baselines[key] = (duration, problems)
        return self._baselines[key]


@pytest.fixture(scope="session")
def fault_data(tmp_path_factory):
    return FaultData(tmp_path_factory.mktemp("faults"))


def _state_label(state, data: FaultData, new) -> str:
    """ "new", "old" or what is wrong with a background state"""
    if state == new:  # first: for "copy" the new background is the old one
        return "new"
    if state == data.old_state:
        return "old"
    parts = []
    for field in ("frames", "image_bg", "bg_off"):
        mine = getattr(state, field)
        if mine is None and getattr(new, field) is not None:
            parts.append(f"{field} absent")
        elif mine not in (getattr(data.old_state, field), getattr(new, field)):
            parts.append(f"{field} neither old nor new")
    return "mixed (" + ", ".join(parts or ["old and new features mixed"]) + ")"


def run_case(data: FaultData, method, mode, kind, moment, label="moment", rerun=True):
    """One run of a case (signalled if `kind`), its checks and a rerun

    The rerun (if `rerun`) is the same command, with --force if an output
    exists; it must succeed and leave the folder clean.

    Returns
    -------
    outcome: faults.Outcome
        The (first) run
    problems: list of str
        Violated invariants, each starting with its category
        (hang, late, exit-code, stray, data-loss, partial-output,
        leftover, rerun)
    """
    source = data.source(method, mode)
    folder = data.workdir(f"{method}-{mode}-{label}")
    inp = folder / INPUT_NAME
    shutil.copyfile(source, inp)
    out = inp if mode == "inplace" else folder / OUTPUT_NAME
    new = data.new_state(method, mode)
    args = METHOD_ARGS[method] + NUM_CPUS_ARGS
    cmd = dcbg_command(inp, out, args, force=mode == "inplace")
    outcome = run_dcbg(
        cmd, folder, data.log_prefix(f"{method}-{mode}"), kind=kind, moment=moment
    )
    problems = signal_violations(outcome)
    if kind is None and outcome.returncode != 0:
        problems.append(f"exit-code: uninterrupted run exited {outcome.returncode}")
    if kind is None and out.exists():
        data.result_size[(method, mode)] = out.stat().st_size
    problems += check_files(
        data, mode, inp, out, source, new, outcome.returncode, outcome.signalled
    )

    if rerun:
        # the same command again (--force if an output is there now) must
        # succeed and clean up after whatever happened
        cmd = dcbg_command(inp, out, args, force=mode == "inplace" or out.exists())
        second = run_dcbg(cmd, folder, data.log_prefix(f"{method}-{mode}-rerun"))
        if second.returncode != 0 or second.hung or second.strays:
            problems.append(f"rerun: {second.describe()}")
        else:
            after = check_files(data, mode, inp, out, source, new, 0)
            problems += [f"rerun: {p}" for p in after]
    expected = sorted({INPUT_NAME, out.name})
    if folder_listing(folder) != expected:
        extra = sorted(set(folder_listing(folder)) - set(expected))
        problems.append(f"leftover: at the end the folder also holds {extra}")
    shutil.rmtree(folder)
    return outcome, problems


def check_files(
    data, mode, inp, out, source, new, returncode, signalled=False
) -> list[str]:
    """The file invariants after a run that exited with `returncode`

    New output: the output path holds nothing unless the run exited 0,
    and then the complete new output. The one exception: a signal that
    came after the complete output was moved into place (SIGKILL cannot be
    deferred; this happens today, in the instant before the process ends)
    may leave the complete output; never a partial one.
    """
    problems = []
    if mode == "new":
        if file_digest(inp) != data.digest[source]:
            problems.append("data-loss: the input file changed")
        if not out.exists():
            if returncode == 0:
                problems.append(f"data-loss: exit 0 but no '{out.name}'")
            return problems
        if returncode != 0 and not signalled:
            problems.append(
                f"partial-output: '{out.name}' exists after exit {returncode}"
            )
            return problems
    else:
        problems += data.snapshot.violations(inp)
    try:
        state = background_state(out)
    except Exception as exc:
        return problems + [
            f"data-loss: background of '{out.name}' unreadable: "
            f"{type(exc).__name__}: {exc}"
        ]
    label = _state_label(state, data, new)
    if returncode == 0 and label != "new":
        problems.append(f"data-loss: exit 0 but the background is {label}")
    elif mode == "new" and label != "new":
        problems.append(
            f"partial-output: '{out.name}' exists after exit {returncode} "
            f"and its background is {label}"
        )
    elif mode == "inplace" and label not in ("old", "new"):
        problems.append(f"data-loss: the background is {label}")
    return problems


def _record(entry: dict):
    path = os.environ.get("DCBG_FAULT_LOG")
    if path:
        with open(path, "a") as fd:
            fd.write(json.dumps(entry) + "\n")


@pytest.mark.parametrize(
    ("method", "mode", "budget"),
    [
        pytest.param(method, mode, DEFAULT_MOMENTS, id=f"{method}-{mode}-default")
        for method, mode in DEFAULT_CASES
    ]
    + [
        # each moment is two runs of a few seconds, a hang adds 20 s
        pytest.param(
            method,
            mode,
            SLOW_MOMENTS,
            id=f"{method}-{mode}-slow",
            marks=[pytest.mark.slow, pytest.mark.timeout(3600)],
        )
        for method, mode in CASES
    ],
)
def test_signal_at_random_moments(fault_data, method, mode, budget):
    """Every invariant of issue 11 after signals at random moments"""
    duration, baseline_problems = fault_data.baseline(method, mode)
    failures = [
        f"[seed {SEED}] {method}/{mode} uninterrupted run: {p}"
        for p in baseline_problems
    ]
    rng = random.Random(f"{SEED}:{method}:{mode}")
    offset = CASES.index((method, mode))
    for index in range(budget):
        kind = KINDS[(offset + index) % len(KINDS)]
        # uniform over the whole run: start-up, reading, computing, writing
        moment = rng.uniform(0, duration)
        outcome, problems = run_case(fault_data, method, mode, kind, moment)
        _record(
            {
                "seed": SEED,
                "method": method,
                "mode": mode,
                "index": index,
                "kind": kind,
                "moment": round(moment, 4),
                "expected_duration": round(duration, 3),
                "returncode": outcome.returncode,
                "signalled": outcome.signalled,
                "exit_delay": outcome.exit_delay,
                "hung": outcome.hung,
                "problems": problems,
            }
        )
        failures += [
            f"[seed {SEED}] {method}/{mode} #{index} {kind} at {moment:.3f} s: {p}"
            f" -- {outcome.describe()}"
            for p in problems
        ]
    assert not failures, f"{len(failures)} violations:\n" + "\n".join(failures)


def _wait_for_progress(err_path: pathlib.Path, proc, lines: int = 1):
    """Wait until the run's stderr shows `lines` progress lines

    The first line (0 %) comes when the computation starts, the next ones
    at 25, 50, 75 and 100 % (or the progress reached when it passed them).
    """
    deadline = time.monotonic() + PROGRESS_TIMEOUT_S
    while err_path.read_text(errors="replace").count("Progress:") < lines:
        assert proc.poll() is None, f"ended early: {err_path.read_text()}"
        assert time.monotonic() < deadline, "no progress line on stderr"
        time.sleep(0.02)


def _limit_file_size(limit: int):
    def preexec():
        # EFBIG instead of death by SIGXFSZ, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.parametrize(
    ("method", "mode"),
    [
        ("rollmed", "new"),
        ("rollmed", "replace"),
        ("rollmed", "inplace"),
        ("sparsemed", "inplace"),
        ("copy", "new"),
    ],
)
def test_disk_full(fault_data, method, mode):
    """Issue 11 points 2 and 3: a full disk is a one-line error, nothing lost

    Fails before issue 11 in place: the previous background is deleted
    and rollmed crashes (SIGSEGV).
    """
    source = fault_data.source(method, mode)
    folder = fault_data.workdir(f"diskfull-{method}-{mode}")
    inp = folder / INPUT_NAME
    shutil.copyfile(source, inp)
    out = inp if mode == "inplace" else folder / OUTPUT_NAME
    old_output = None
    if mode == "replace":
        # a previous output of another method, to be replaced with --force
        cmd = dcbg_command(inp, out, METHOD_ARGS["sparsemed"] + NUM_CPUS_ARGS)
        first = run_dcbg(cmd, folder, fault_data.log_prefix("diskfull-first"))
        assert first.returncode == 0, first.describe()
        old_output = file_digest(out)
    if mode == "inplace":
        # Below the size of the result of an uninterrupted run, whatever
        # the design (writing into the file, or a staged copy of it that
        # leaves the old background out): the last part of the background
        # does not fit.
        fault_data.baseline(method, mode)
        limit = fault_data.result_size[(method, mode)] - DISK_FULL_MARGIN[method]
    else:
        limit = DISK_FULL_MARGIN[method]
    cmd = dcbg_command(
        inp, out, METHOD_ARGS[method] + NUM_CPUS_ARGS, force=mode != "new"
    )
    outcome = run_dcbg(
        cmd,
        folder,
        fault_data.log_prefix(f"diskfull-{method}-{mode}"),
        preexec_fn=_limit_file_size(limit),
    )
    lines = [ln for ln in outcome.stderr.splitlines() if ln.strip()]
    assert outcome.returncode == 1, outcome.describe()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("Error: "), lines
    assert out.name in lines[0], lines
    if mode == "inplace":
        assert fault_data.snapshot.violations(inp) == []
        assert background_state(inp) == fault_data.old_state
        assert folder_listing(folder) == [INPUT_NAME]
    else:
        assert file_digest(inp) == fault_data.digest[source]
        if mode == "replace":
            assert file_digest(out) == old_output
            assert folder_listing(folder) == sorted([INPUT_NAME, OUTPUT_NAME])
        else:
            assert folder_listing(folder) == [INPUT_NAME]
    shutil.rmtree(folder)


def _second_writer(fault_data, first_err, cmd, folder, results):
    """on_started callback: run `cmd` while the first run is held mid-way

    The first run is stopped (SIGSTOP) once it computes, so it holds the
    output for as long as the second one takes, however slow the machine;
    a second writer that waits for the first one instead of failing hangs
    and is killed after :data:`SECOND_WRITER_TIMEOUT_S`.
    """

    def start(proc):
        _wait_for_progress(first_err, proc)
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            results["second"] = run_dcbg(
                cmd,
                folder,
                fault_data.log_prefix("second"),
                timeout=SECOND_WRITER_TIMEOUT_S,
            )
        finally:
            os.killpg(proc.pid, signal.SIGCONT)
        results["first_pid"] = proc.pid

    return start


@pytest.mark.parametrize("mode", ["inplace", "new"])
def test_second_writer_fails_at_once(fault_data, mode):
    """Issue 11 point 6: one writer per output file

    A second run writing the same file (in place, or the same new output
    without --force, with another method) fails while the first one is
    still computing, naming the file and the first writer's process; the
    first one completes. Fails before issue 11: both runs "succeed" and
    in place leave ``image_bg`` partly unreadable.
    """
    method = "rollmed"
    source = fault_data.source(method, mode)
    folder = fault_data.workdir(f"second-writer-{mode}")
    inp = folder / INPUT_NAME
    shutil.copyfile(source, inp)
    out = inp if mode == "inplace" else folder / OUTPUT_NAME
    force = mode == "inplace"
    first_cmd = dcbg_command(
        inp,
        out,
        METHOD_ARGS[method] + NUM_CPUS_ARGS,
        force=force,
        quiet=False,
    )
    second_cmd = dcbg_command(
        inp, out, METHOD_ARGS["sparsemed"] + NUM_CPUS_ARGS, force=force
    )
    prefix = fault_data.log_prefix(f"first-writer-{mode}")
    results = {}
    first = run_dcbg(
        first_cmd,
        folder,
        prefix,
        on_started=_second_writer(
            fault_data, prefix.with_suffix(".err"), second_cmd, folder, results
        ),
    )
    second = results["second"]
    assert not second.hung, "the second writer waited for the first one"
    assert second.returncode == 1, second.describe()
    message = second.stderr.strip()
    assert out.name in message, message
    assert str(results["first_pid"]) in message, message
    assert first.returncode == 0, first.describe()
    assert background_state(out) == fault_data.new_state(method, mode)
    if mode == "inplace":
        assert fault_data.snapshot.violations(inp) == []
    else:
        assert file_digest(inp) == fault_data.digest[source]
    assert folder_listing(folder) == sorted({INPUT_NAME, out.name})
    shutil.rmtree(folder)


@pytest.mark.parametrize("mode", ["new", "inplace"])
def test_sigkill_then_rerun(fault_data, mode):
    """Issue 11 points 4 and 8: SIGKILL in the middle, then a rerun

    After SIGKILL at 25 % progress the file (in place) holds its previous
    or its new background, complete, and the rest intact; a rerun of the
    same command succeeds and removes the temporary files of the killed
    run. Fails before issue 11: in place, ``image_bg`` is left half
    written; the rerun leaves the killed run's ``.dcbg-partial`` file.
    """
    method = "rollmed"
    source = fault_data.source(method, mode)
    folder = fault_data.workdir(f"sigkill-{mode}")
    inp = folder / INPUT_NAME
    shutil.copyfile(source, inp)
    out = inp if mode == "inplace" else folder / OUTPUT_NAME
    cmd = dcbg_command(
        inp,
        out,
        METHOD_ARGS[method] + NUM_CPUS_ARGS,
        force=mode == "inplace",
        quiet=False,
    )
    prefix = fault_data.log_prefix(f"sigkill-{mode}")

    def kill_at_quarter(proc):
        # the second progress line: 25 % (or a bit more) of the frames done
        _wait_for_progress(prefix.with_suffix(".err"), proc, lines=2)
        os.killpg(proc.pid, signal.SIGKILL)

    killed = run_dcbg(cmd, folder, prefix, on_started=kill_at_quarter)
    assert killed.returncode == -signal.SIGKILL, killed.describe()
    assert killed.strays == []
    new = fault_data.new_state(method, mode)
    if mode == "inplace":
        assert fault_data.snapshot.violations(inp) == []
        assert background_state(inp) in (fault_data.old_state, new)
    else:
        assert file_digest(inp) == fault_data.digest[source]
        assert not out.exists()

    rerun = run_dcbg(cmd, folder, fault_data.log_prefix(f"sigkill-rerun-{mode}"))
    assert rerun.returncode == 0, rerun.describe()
    assert background_state(out) == new
    assert folder_listing(folder) == sorted({INPUT_NAME, out.name})
    shutil.rmtree(folder)
