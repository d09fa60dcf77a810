"""Fault injection for ``dcbg compute``: real processes, real signals

Helpers of ``tests/test_faults.py`` (issue 11, "Nothing lost"):

- :func:`run_dcbg` starts ``python -m dcbg compute ...`` in its own process
  group, optionally sends SIGINT, SIGTERM, SIGKILL or two SIGINTs at a
  given moment, waits for the end within the deadline of issue 11 and
  records what happened (:class:`Outcome`), SIGKILLing a run that hangs.
- :class:`FileSnapshot` and :func:`background_state` capture what a file
  holds (every dataset except the background features; the background as
  dclab sees it) so that the state after a fault can be compared with the
  state before and with the result of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

#: issue 11: SIGINT/SIGTERM must end a run within 3 s, a second SIGINT at once
EXIT_DEADLINE_S = 3.0
#: a run that has not ended this long after the (last) signal is taken for
#: a hang and SIGKILLed; far above any clean-up, so a slow machine does not
#: turn a late exit into a hang
HANG_TIMEOUT_S = 20.0
#: the second SIGINT of "SIGINTx2" follows the first after this delay
#: (a user pressing Ctrl-C twice)
SECOND_SIGINT_DELAY_S = 0.2
#: an uninterrupted run that takes longer than this is stuck (the largest
#: run of the harness takes ~5 s on an idle 2-core machine)
RUN_TIMEOUT_S = 180.0
#: exit statuses of a run stopped by a signal: 128 + signal number (what
#: dcbg returns) or death by the signal itself (Popen's negative status,
#: e.g. SIGINT/SIGTERM arriving while Python imports, before dcbg
#: installs its handlers; a shell shows both as 130/143)
INTERRUPT_STATUSES = {
    signal.SIGINT: (130, -signal.SIGINT),
    signal.SIGTERM: (143, -signal.SIGTERM),
}
#: what Python prints (exit status 1) when a signal cuts its own start-up
#: (importing ``site``), before it runs any code of dcbg: seen once in 144
#: runs of the slow budget, a SIGINT 19 ms after the start
PYTHON_STARTUP_CUT = "Fatal Python error: init_import_site"
#: ways of stopping a run: signals sent to the run's process group
SIGNAL_KINDS = {
    "SIGINT": (signal.SIGINT,),
    "SIGTERM": (signal.SIGTERM,),
    "SIGKILL": (signal.SIGKILL,),
    "SIGINTx2": (signal.SIGINT, signal.SIGINT),
}
#: features whose content an (in-place) background computation may replace
BACKGROUND_FEATURES = ("image_bg", "bg_off")
#: datasets are hashed in blocks of about this many bytes (bounded memory)
HASH_BLOCK_BYTES = 32 * 1024**2
#: frames of a background read one by one through dclab (as a viewer does),
#: besides reading all of them in blocks; each single read decodes a chunk,
#: so only a few
SPOT_FRAMES = 5


def dcbg_command(
    input_path: pathlib.Path,
    output_path: pathlib.Path,
    method_args: list[str],
    force: bool = False,
    quiet: bool = True,
) -> list[str]:
    """The ``python -m dcbg compute`` command line of a run"""
    cmd = [sys.executable, "-m", "dcbg", "compute", str(input_path)]
    cmd += ["-o", str(output_path), *method_args]
    if force:
        cmd.append("--force")
    if quiet:
        cmd.append("--quiet")
    return cmd


@dataclasses.dataclass
class Outcome:
    """What a run of ``dcbg compute`` did

    Attributes
    ----------
    returncode: int
        Exit status (negative: killed by that signal, as in Popen)
    kind: str or None
        Signal kind requested (a key of :data:`SIGNAL_KINDS`) or None
    moment: float or None
        Seconds after the start at which the first signal was due
    signalled: bool
        Whether a signal was sent (False: the run ended before `moment`)
    exit_delay: float or None
        Seconds from the last signal sent to the end of the run
    hung: bool
        The run did not end within :data:`HANG_TIMEOUT_S` of the last
        signal (or the run timeout without signal) and was SIGKILLed
    strays: list of int
        Processes of the run's process group still alive after it ended
        (killed by the harness)
    duration: float
        Seconds from the start to the end of the run
    stdout, stderr: str
        The run's output
    """

    returncode: int
    kind: str | None
    moment: float | None
    signalled: bool
    exit_delay: float | None
    hung: bool
    strays: list
    duration: float
    stdout: str
    stderr: str

    def describe(self) -> str:
        """One line for failure messages"""
        delay = "-" if self.exit_delay is None else f"{self.exit_delay:.2f} s"
        moment = "-" if self.moment is None else f"{self.moment:.3f} s"
        err = " | ".join(ln for ln in self.stderr.splitlines() if ln.strip())[-600:]
        return (
            f"kind={self.kind} moment={moment} signalled={self.signalled} "
            f"returncode={self.returncode} exit_delay={delay} hung={self.hung} "
            f"duration={self.duration:.2f} s stderr: {err}"
        )


#: processes of a group signalled at its end need a moment to die and be
#: reaped (by init, once their parent is gone) before the group is empty
STRAY_GRACE_S = 2.0


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`"""
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(proc.info["pid"]) == pgid:
                pids.append(proc.info["pid"])
        except (ProcessLookupError, psutil.Error):
            continue
    return pids


def _strays(pgid: int) -> list[int]:
    """Processes left in the group after its leader ended (then SIGKILLed)"""
    deadline = time.monotonic() + STRAY_GRACE_S
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        members = _group_members(pgid)
        if not members:
            return []
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return members


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to `timeout` s for `proc`; whether it ended"""
    try:
        proc.wait(timeout=max(timeout, 0))
    except subprocess.TimeoutExpired:
        return False
    return True


def run_dcbg(
    cmd: list[str],
    cwd: pathlib.Path,
    log_prefix: pathlib.Path,
    kind: str | None = None,
    moment: float | None = None,
    preexec_fn=None,
    on_started=None,
    timeout: float = RUN_TIMEOUT_S,
) -> Outcome:
    """Run `cmd` in its own process group; signal it at `moment` s if given

    Parameters
    ----------
    cmd: list of str
        Command line (see :func:`dcbg_command`)
    cwd: pathlib.Path
        Working directory of the run
    log_prefix: pathlib.Path
        stdout/stderr go to ``<log_prefix>.out``/``.err`` (outside the
        folder of the files under test, whose listing is checked)
    kind: str or None
        Key of :data:`SIGNAL_KINDS`; None runs to the end
    moment: float or None
        Seconds after the start at which the first signal is sent; if the
        run ended earlier, nothing is sent
    preexec_fn: callable or None
        Run in the child before ``exec`` (e.g. resource limits)
    on_started: callable or None
        Called with the Popen object right after the start (e.g. to start
        a competing run while this one computes); the run is then waited
        for as usual
    timeout: float
        Seconds an unsignalled run may take before it counts as hung
    """
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    out_path = log_prefix.with_suffix(".out")
    err_path = log_prefix.with_suffix(".err")
    signalled = False
    hung = False
    exit_delay = None
    with open(out_path, "w") as out, open(err_path, "w") as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group, as a shell job
            preexec_fn=preexec_fn,
        )
        pgid = proc.pid
        try:
            if on_started is not None:
                on_started(proc)
            if kind is None:
                if not _wait(proc, timeout - (time.monotonic() - start)):
                    hung = True
            elif _wait(proc, moment - (time.monotonic() - start)):
                pass  # ended before the moment: nothing to send
            else:
                signals = SIGNAL_KINDS[kind]
                last = None
                for i, sig in enumerate(signals):
                    if i > 0 and _wait(proc, SECOND_SIGINT_DELAY_S):
                        break
                    # to the whole group, as Ctrl-C in a terminal does
                    os.killpg(pgid, sig)
                    last = time.monotonic()
                    signalled = True
                if not _wait(proc, HANG_TIMEOUT_S - (time.monotonic() - last)):
                    hung = True
                exit_delay = time.monotonic() - last
            if hung:
                os.killpg(pgid, signal.SIGKILL)
                proc.wait()
        finally:
            if proc.poll() is None:
                os.killpg(pgid, signal.SIGKILL)
                proc.wait()
        duration = time.monotonic() - start
    # the leader is reaped; anything left in its group is a stray
    strays = _strays(pgid)
    return Outcome(
        returncode=proc.returncode,
        kind=kind,
        moment=moment,
        signalled=signalled,
        exit_delay=None if hung else exit_delay,
        hung=hung,
        strays=strays,
        duration=duration,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def signal_violations(outcome: Outcome) -> list[str]:
    """Invariants of issue 11 on how a signalled run ends

    SIGINT/SIGTERM (and a second SIGINT) end the run within
    :data:`EXIT_DEADLINE_S` with status 130/143, or 0 if the run got
    through before the signal took effect (the data checks then require a
    complete result). Every run leaves no process of its group behind.
    """
    problems = []
    if outcome.strays:
        problems.append(f"stray: processes {outcome.strays} left in the group")
    if outcome.hung:
        problems.append(
            f"hang: still running {HANG_TIMEOUT_S:.0f} s after the signal "
            f"(SIGKILLed by the harness)"
        )
        return problems
    if not outcome.signalled or outcome.kind == "SIGKILL":
        return problems
    if outcome.exit_delay > EXIT_DEADLINE_S:
        problems.append(
            f"late: ended {outcome.exit_delay:.1f} s after the signal "
            f"(at most {EXIT_DEADLINE_S} s)"
        )
    sig = SIGNAL_KINDS[outcome.kind][0]
    if outcome.returncode == 1 and PYTHON_STARTUP_CUT in outcome.stderr:
        return problems  # Python's own start-up, before any code of dcbg
    if outcome.returncode not in (0, *INTERRUPT_STATUSES[sig]):
        problems.append(
            f"exit-code: status {outcome.returncode}, expected "
            f"{INTERRUPT_STATUSES[sig][0]} (or 0 if it had finished)"
        )
    return problems


#: hash of file and array contents: SHA-256 is the fastest of hashlib's
#: on CPUs with SHA instructions (~1.5 GB/s), and hundreds of MB are hashed
#: per run
HASH = "sha256"


def file_digest(path: pathlib.Path) -> str:
    """Digest of a file's bytes"""
    with open(path, "rb") as fd:
        return hashlib.file_digest(fd, HASH).hexdigest()


def _block_rows(shape, itemsize, chunks) -> int:
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    rows = max(1, HASH_BLOCK_BYTES // row_bytes)
    if chunks:
        rows = max(chunks[0], rows // chunks[0] * chunks[0])
    return rows


def array_digest(data) -> str:
    """Digest of an array-like's content, read in blocks along axis 0

    Works for h5py datasets and dclab features (anything with ``shape``,
    ``dtype`` or sliceable rows); dtype and shape are part of the digest.
    """
    sha = hashlib.new(HASH)
    shape = tuple(data.shape)
    if len(shape) == 0:
        arr = np.asarray(data[()])
        sha.update(f"{arr.dtype.str}{arr.shape}".encode())
        sha.update(np.ascontiguousarray(arr).tobytes())
        return sha.hexdigest()
    first = np.asarray(data[0:1])
    sha.update(f"{first.dtype.str}{shape}".encode())
    rows = _block_rows(shape, first.dtype.itemsize, getattr(data, "chunks", None))
    for start in range(0, shape[0], rows):
        block = np.ascontiguousarray(data[start : start + rows])
        sha.update(block.tobytes())
    return sha.hexdigest()


def raw_chunk_digest(ds: h5py.Dataset) -> str | None:
    """Digest of a chunked dataset's stored (encoded) chunks, or None

    Reading the stored bytes is much faster than decoding noisy images;
    equal stored chunks and filters mean equal content. None for datasets
    that are not chunked.
    """
    if ds.chunks is None:
        return None
    sha = hashlib.new(HASH)
    sha.update(f"{ds.dtype.str}{ds.shape}{ds.chunks}{ds.compression}".encode())
    dsid = ds.id
    for i in range(dsid.get_num_chunks()):
        info = dsid.get_chunk_info(i)
        mask, data = dsid.read_direct_chunk(info.chunk_offset)
        sha.update(f"{info.chunk_offset}{mask}".encode())
        sha.update(data)
    return sha.hexdigest()


def _is_background_path(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in BACKGROUND_FEATURES


class FileSnapshot:
    """Everything an .rtdc file holds except its background features

    The content of every dataset (stored chunks, decoded where they
    differ) and the root attributes except ``pipeline:*`` (which a
    background computation may set). Used to check that a computation
    (in place) left the rest of a file alone.
    """

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)
        self.raw = {}
        self._decoded = {}
        with h5py.File(self.path, "r") as h5:
            self.attrs = _plain_attrs(h5)

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and not _is_background_path(name):
                    self.raw[name] = raw_chunk_digest(obj)

            h5.visititems(visit)

    def decoded(self, name: str) -> str:
        if name not in self._decoded:
            with h5py.File(self.path, "r") as h5:
                self._decoded[name] = array_digest(h5[name])
        return self._decoded[name]

    def violations(self, path: pathlib.Path) -> list[str]:
        """How the file at `path` differs from this snapshot (empty: same)"""
        problems = []
        try:
            with h5py.File(path, "r") as h5:
                if _plain_attrs(h5) != self.attrs:
                    problems.append("data-loss: root attributes changed")
                for name, raw in self.raw.items():
                    if name not in h5:
                        problems.append(f"data-loss: dataset '{name}' is gone")
                        continue
                    try:
                        ds = h5[name]
                        if raw is not None and raw_chunk_digest(ds) == raw:
                            continue
                        if array_digest(ds) != self.decoded(name):
                            problems.append(f"data-loss: dataset '{name}' changed")
                    except Exception as exc:
                        problems.append(
                            f"data-loss: dataset '{name}' unreadable: "
                            f"{type(exc).__name__}: {exc}"
                        )
        except Exception as exc:
            problems.append(
                f"data-loss: h5py cannot open '{path.name}': "
                f"{type(exc).__name__}: {exc}"
            )
        return problems


def _plain_attrs(h5: h5py.File) -> dict:
    return {
        key: (val.tolist() if isinstance(val, np.ndarray) else val)
        for key, val in h5.attrs.items()
        if not key.startswith("pipeline:")
    }


@dataclasses.dataclass(frozen=True)
class BackgroundState:
    """The background of a file as dclab sees it

    Attributes
    ----------
    frames: int
        Number of events
    image_bg, bg_off: str or None
        Content digests (:func:`array_digest`), None if absent
    """

    frames: int
    image_bg: str | None
    bg_off: str | None


def background_state(path: pathlib.Path) -> BackgroundState:
    """Open `path` with dclab and read its whole background

    ``image_bg`` is read in blocks (which decodes every chunk and checks
    its checksum) and a few frames one by one; the single frames must
    equal the frames read in blocks.

    Raises
    ------
    Exception
        Whatever dclab or h5py raise for an unreadable file or feature
    """
    import dclab

    with dclab.new_dataset(path) as ds:
        frames = len(ds)
        image_bg = bg_off = None
        if "image_bg" in ds:
            feat = ds["image_bg"]
            if len(feat) != frames:
                raise ValueError(f"image_bg has {len(feat)} frames, not {frames}")
            image_bg = array_digest(feat)
            picks = np.linspace(0, frames - 1, SPOT_FRAMES).astype(int)
            for idx in np.unique(picks):
                single = np.asarray(feat[int(idx)])
                block = np.asarray(feat[int(idx) : int(idx) + 1])[0]
                if not np.array_equal(single, block):
                    raise ValueError(f"image_bg frame {idx} differs read alone")
        if "bg_off" in ds:
            bg_off = array_digest(np.asarray(ds["bg_off"][:]))
    return BackgroundState(frames=frames, image_bg=image_bg, bg_off=bg_off)


def folder_listing(folder: pathlib.Path) -> list[str]:
    """Names in `folder` (temporary and lock files included), sorted"""
    return sorted(os.listdir(folder))


def summarize_log(path: pathlib.Path) -> str:
    """Per-case counts of a ``DCBG_FAULT_LOG`` file (one JSON line per run)

    Counts runs, runs that got a signal, hangs, late exits, runs with lost
    data (``data-loss``/``partial-output``), left-over files and failed
    reruns, per method and mode.
    """
    import collections
    import json

    categories = ("hang", "late", "exit-code", "stray", "data-loss", "leftover")
    table = collections.defaultdict(collections.Counter)
    for line in pathlib.Path(path).read_text().splitlines():
        entry = json.loads(line)
        count = table[(entry["method"], entry["mode"])]
        count["runs"] += 1
        count["signalled"] += entry["signalled"]
        kinds = {p.split(":", 1)[0] for p in entry["problems"]}
        if "partial-output" in kinds:
            kinds.add("data-loss")
        for cat in categories:
            count[cat] += cat in kinds
        count["rerun"] += any(p.startswith("rerun:") for p in entry["problems"])
        count["failed"] += bool(entry["problems"])
    columns = ("runs", "signalled", *categories, "rerun", "failed")
    lines = ["method     mode     " + " ".join(f"{c:>9}" for c in columns)]
    for (method, mode), count in sorted(table.items()):
        cells = " ".join(f"{count[c]:>9}" for c in columns)
        lines.append(f"{method:<10} {mode:<8} {cells}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize_log(pathlib.Path(sys.argv[1])))
