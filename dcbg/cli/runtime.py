"""How dcbg's commands run: errors, signals, warnings, progress

The policy shared by every command: errors become one-line messages
(exit status 1, click's 2 for wrong usage), warnings one line each,
SIGINT/SIGTERM/SIGHUP a clean stop with exit status 130/143/129 (see
:class:`StopOnSignals`; a Ctrl-C pressed again later ends the process at
once), progress a bar or a few lines on stderr. Errors and warnings
about a keyword argument name the option the user typed
(``--kernel-size``), from the parameter the
:class:`~dcbg.errors.ParameterError` or
:class:`~dcbg.errors.ParameterWarning` carries (:func:`with_flags`).

Imported by ``dcbg --help``: nothing heavy at its top.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import signal
import sys
import threading
import time
import types
import warnings

import click

from .. import stop
from ..errors import ParameterError, ParameterWarning, one_line
from ..stop import EXIT_STATUS_BASE, STOP_SIGNALS

#: click settings of every command: -h as --help, help text up to 100 columns
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: errors whose message is meant for the user as it is
USER_ERRORS = (OSError, ValueError, TypeError, MemoryError)

#: fractions at which progress is printed when stderr is not a terminal
PROGRESS_LINE_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)


class Interrupted(click.ClickException):
    """The computation was stopped by a signal (Ctrl-C: exit status 130)"""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = EXIT_STATUS_BASE + int(signum)

    def show(self, file=None):
        # after SIGHUP the terminal is gone (EIO), after `| head` stderr
        # may be a closed pipe: the exit status still tells what happened
        try:
            super().show(file)
        except OSError:
            discard_stream(sys.stderr)


#: no options to name (see :func:`with_flags`)
NO_FLAGS = types.MappingProxyType({})


def with_flags(message, flags=NO_FLAGS, parameters=None) -> str:
    """A message on one line, naming the options where it names parameters

    The API's messages name keyword arguments (``kernel_size``); on the
    command line the user typed ``--kernel-size``. Only the parameters that
    the message is about are rewritten, and not inside quotes (file names).

    Parameters
    ----------
    message: BaseException or str
        The error or warning
    flags: mapping
        Keyword argument name -> its option (``"--kernel-size"``)
    parameters: iterable of str or None
        The parameters the message is about; None: those a
        :class:`~dcbg.errors.ParameterError` or
        :class:`~dcbg.errors.ParameterWarning` carries (none for others)
    """
    if parameters is not None:
        names = tuple(parameters)
    elif isinstance(message, ParameterError):
        names = (message.parameter,)
    elif isinstance(message, ParameterWarning):
        names = message.parameters
    else:
        names = ()
    text = one_line(message)
    names = [name for name in names if name in flags]
    if not names:
        return text
    parts = re.split(r"('[^']*')", text)
    for index in range(0, len(parts), 2):  # the parts outside quotes
        for name in names:
            parts[index] = re.sub(
                rf"(?<![-\w]){re.escape(name)}\b", flags[name], parts[index]
            )
    return "".join(parts)


@contextlib.contextmanager
def errors_as_messages(debug: bool, flags=NO_FLAGS):
    """Turn exceptions into ``Error: <message>`` (exit 1), unless `debug`

    With `debug` the exception propagates and Python prints the traceback.
    Parameters in `flags` are named as options (see :func:`with_flags`).
    """
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, USER_ERRORS):
            message = with_flags(exc, flags)
        else:
            message = (
                f"{type(exc).__name__}: {one_line(exc)} "
                f"(run with --debug for the traceback)"
            )
        raise click.ClickException(message) from exc


def configure_logging(debug: bool):
    """Show dcbg's log on stderr with --debug; otherwise warnings only once

    The methods both log and ``warnings.warn`` a warning; without a
    handler Python would print the log record too, so the warning
    (shown as one line by :func:`show_warning`) is the only copy.
    """
    logger = logging.getLogger("dcbg")
    if debug:
        logging.basicConfig(
            level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s"
        )
        logger.setLevel(logging.DEBUG)
    elif not logger.handlers:
        logger.addHandler(logging.NullHandler())


def show_warning(
    message, category, filename, lineno, file=None, line=None, *, flags=NO_FLAGS
):
    """Show a warning as one line ``Warning: <message>`` on stderr

    The parameters a :class:`~dcbg.errors.ParameterWarning` names are
    written as the options in `flags` (``split_time=`` as
    ``--split-time=``, see :func:`with_flags`).
    """
    click.echo(f"Warning: {with_flags(message, flags)}", err=True)


class StopOnSignals:
    """Turn a stop signal into one clean stop (a KeyboardInterrupt)

    The first SIGINT, SIGTERM, SIGHUP or SIGBREAK starts a clean stop
    (worker threads end, the staged output is removed, the output path
    stays as it was). Signals that belong to the same stop request (see
    :func:`dcbg.stop.escalates`: the group send of ``timeout``, a closing
    terminal, any repeat within :data:`dcbg.stop.STOP_GRACE_S`) are noted
    and change nothing. A Ctrl-C pressed again later ends the process at
    once (:func:`dcbg.stop.exit_at_once`), removing the staged output and
    the lock file first.

    Once :meth:`finish_when` says the output is complete (moved into
    place), a signal no longer interrupts: the command ends as if it had
    not come, with the summary and exit status 0.

    Attributes
    ----------
    signum: int or None
        The signal received, if any
    """

    SIGNALS = STOP_SIGNALS

    #: the instance whose handlers are installed (see :func:`finish_when`)
    active = None

    def __init__(self):
        self.signum = None
        self._previous = {}
        self._done = None

    def finish_when(self, done):
        """From when ``done()`` is true on, a signal does not interrupt"""
        self._done = done

    def is_done(self) -> bool:
        """Whether the command's output is complete (see :meth:`finish_when`)"""
        if stop.finished():
            return True
        try:
            return bool(self._done is not None and self._done())
        except Exception:  # noqa: BLE001 (a half-built object: not done)
            return False

    def _handle(self, signum, frame):
        if not stop.note_request(signum):
            if stop.escalates(signum):
                done = self.is_done()
                stop.exit_at_once(
                    0 if done else EXIT_STATUS_BASE + int(signum),
                    "Stopped at once (second interrupt)"
                    + ("; the output was already complete" if done else ""),
                )
            return  # the same stop request: it is under way
        self.signum = signum
        if self.is_done():
            return  # the output is complete: finish as if nothing came
        raise KeyboardInterrupt

    def __enter__(self):
        stop.reset()
        StopOnSignals.active = self
        # signal handlers can only be set from the main thread
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                # an ignored signal (nohup: SIGHUP) stays ignored
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, exc, tb):
        # The command's outcome is decided, whether it ends normally or is
        # ending with its error or stop message: a signal from now on only
        # gets noted (also by the handler of dcbg.cli.main, restored here),
        # and a stop request of this command does not carry over to later
        # work in the same process (an API call after an interrupted
        # command run in-process would otherwise stop at its first check).
        stop.mark_finished()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if StopOnSignals.active is self:
            StopOnSignals.active = None


def finish_when(done):
    """Tell the running command's signal handler when its output is complete

    From when ``done()`` is true on (the output was moved into place), a
    signal does not interrupt the command: it ends with its summary and
    exit status 0, as the file on disk is complete. Does nothing outside
    :func:`command_guard`.
    """
    if StopOnSignals.active is not None:
        StopOnSignals.active.finish_when(done)


@contextlib.contextmanager
def command_guard(debug: bool, interrupted: str, flags=NO_FLAGS):
    """The run of a command: errors as messages, Ctrl-C as `Interrupted`

    Errors become one-line messages (tracebacks with `debug`), warnings
    are shown one line each (the parameters they are about written as the
    options in `flags`, see :func:`with_flags`), and SIGINT/SIGTERM/SIGHUP stop
    the work and exit with `Interrupted` carrying the message
    `interrupted`. Yields the :class:`StopOnSignals` of the command (see
    its ``finish_when``).
    """
    with (
        errors_as_messages(debug, flags),
        warnings.catch_warnings(),
        StopOnSignals() as stop_guard,
    ):
        warnings.showwarning = functools.partial(show_warning, flags=flags)
        try:
            yield stop_guard
        except KeyboardInterrupt as exc:
            signum = stop_guard.signum or stop.requested() or signal.SIGINT
            # the work may say more exactly what was kept
            message = exc.args[0] if exc.args else interrupted
            raise Interrupted(message, signum=signum) from None


def echo_result(text: str):
    """Print `text` on stdout; a closed stdout (``| head``) is no failure

    The command's work is done when it prints its result: if the reader
    of stdout went away (EPIPE) or the terminal was closed (EIO), the rest
    of stdout goes to the null device (as Python's documentation on
    SIGPIPE recommends) and the command still ends with status 0.
    """
    try:
        click.echo(text)
        sys.stdout.flush()
    except OSError as exc:
        if exc.errno not in CLOSED_STREAM_ERRNOS:
            raise
        discard_stream(sys.stdout)


#: errno values of a write to a stream whose reader is gone: a closed pipe
#: (EPIPE), a terminal that was hung up (EIO)
CLOSED_STREAM_ERRNOS = (errno.EPIPE, errno.EIO)


def discard_stream(stream):
    """Send what is still written to `stream` (stdout, stderr) to devnull"""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)


def progress_style(quiet: bool) -> str:
    """How to show progress: none (--quiet), a bar on a terminal, else lines"""
    if quiet:
        return "none"
    return "bar" if sys.stderr.isatty() else "lines"


class ProgressDisplay:
    """Show a background computation's progress on stderr while it runs

    A daemon thread polls ``get_progress()`` (updated by the worker
    threads) while the main thread runs ``process()``, so that Ctrl-C
    reaches ``process()`` directly.

    Parameters
    ----------
    get_progress: callable
        Returns the fraction of work done, in [0, 1]
    total_frames: int
        Number of frames processed
    style: str
        "bar" (tqdm progress bar), "lines" (a few plain lines, for logs
        and pipes) or "none"
    poll_interval: float
        Seconds between two polls
    """

    def __init__(self, get_progress, total_frames: int, style: str, poll_interval=0.1):
        if style not in ("bar", "lines", "none"):
            raise ValueError(f"Unknown progress style {style!r}")
        self.get_progress = get_progress
        self.total_frames = int(total_frames)
        self.style = style
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread = None
        self._bar = None
        self._steps_shown = 0
        self._start_time = None

    def __enter__(self):
        self._start_time = time.perf_counter()
        if self.style == "none":
            return self
        if self.style == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total_frames,
                unit="event",
                desc="Background",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=self.poll_interval,
            )
        self._show(0.0)
        self._thread = threading.Thread(
            target=self._poll, name="dcbg-progress", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is None:
            self._show(1.0)
        if self._bar is not None:
            with contextlib.suppress(OSError):
                self._bar.close()

    def _poll(self):
        while not self._stop.wait(self.poll_interval):
            self._show(self.get_progress())

    def _show(self, fraction: float):
        try:
            self._show_on_stderr(fraction)
        except OSError as exc:
            if exc.errno not in CLOSED_STREAM_ERRNOS:
                raise
            # nobody reads stderr any more (a closed pipe, a closed
            # terminal): the computation goes on without progress
            self.style = "none"
            self._bar = None
            discard_stream(sys.stderr)

    def _show_on_stderr(self, fraction: float):
        done = round(fraction * self.total_frames)
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            return
        if self.style != "lines":
            return
        passed = sum(fraction >= step for step in PROGRESS_LINE_STEPS)
        # one line per poll with the actual value, even if it passed two steps
        if passed > self._steps_shown:
            self._steps_shown = passed
            seconds = time.perf_counter() - self._start_time
            click.echo(
                f"Progress: {fraction:4.0%} ({done}/{self.total_frames} events, "
                f"{seconds:.1f} s)",
                err=True,
            )
