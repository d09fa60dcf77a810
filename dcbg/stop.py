"""A stop request (a signal) as state of the process, and stopping at once

The ``dcbg`` commands stop cleanly on SIGINT (Ctrl-C), SIGTERM, SIGHUP (the
terminal was closed) and, on Windows, SIGBREAK (Ctrl-Break): see
:class:`dcbg.cli.runtime.StopOnSignals`. This module holds what that
policy needs beyond one ``KeyboardInterrupt``, without importing anything
heavy (the command takes over the signals first):

- :func:`note_request` records the stop request, so that code which cannot
  see the ``KeyboardInterrupt`` (it was raised in a ``__del__`` or a weak
  reference callback, where Python prints and drops it) can ask with
  :func:`requested` or :func:`raise_if_requested` whether to stop.
- One stop request often arrives as several signals: ``timeout`` sends
  SIGTERM to the process and then to its process group, a closing
  terminal sends SIGHUP to every process of its session. Only a Ctrl-C
  (or Ctrl-Break) pressed again more than :data:`STOP_GRACE_S` after the
  first stop request escalates to "stop at once" (:func:`escalates`).
- :func:`exit_at_once` ends the process without waiting for worker
  threads or HDF5, after the clean-ups registered with
  :func:`add_abrupt_cleanup` (removing the staged output file, releasing
  the lock file).
- :func:`pause_point` is a test hook: with ``DCBG_TEST_PAUSE=<name>`` in
  the environment, the process stops at the point of that name until a
  stop request arrives, so that tests send signals at an exact moment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

#: names of the signals that stop a run, where the platform has them:
#: Ctrl-C, termination (``kill``, ``timeout``, service managers), hang-up
#: (the terminal was closed; POSIX only) and Ctrl-Break (Windows only;
#: closing the console window arrives as SIGBREAK too, but Windows ends
#: the process right after, see docs/file_safety.rst)
STOP_SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")

#: signals a person sends by pressing keys again (Ctrl-C, Ctrl-Break):
#: only a repeat of these escalates to "stop at once"; SIGTERM and SIGHUP
#: are sent by programs (``timeout``, a closing terminal, a service
#: manager), which repeat them to the process group and escalate with
#: SIGKILL themselves
INTERACTIVE_SIGNAL_NAMES = ("SIGINT", "SIGBREAK")

#: seconds after the first stop request within which further signals
#: count as the same request: the signals of one request (to the process,
#: then to its group; SIGHUP to every process of a session) arrive within
#: milliseconds, Python runs their handlers between two bytecodes of the
#: main thread (delayed by at most one short blocking call, which the
#: computation keeps below a few hundred ms); a person who presses Ctrl-C
#: again because the clean stop (at most 3 s) seems to hang does so after
#: a second or more
STOP_GRACE_S = 1.0

#: environment variable of the test hook :func:`pause_point`
PAUSE_ENV = "DCBG_TEST_PAUSE"
#: a paused process goes on by itself after this many seconds, so that a
#: test that fails to signal it does not leave it behind
PAUSE_LIMIT_S = 60.0
#: seconds between two checks for a stop request while paused
PAUSE_POLL_S = 0.01

#: exit status of a process ended by signal N: 128 + N (shell convention)
EXIT_STATUS_BASE = 128


def stop_signals(signals=signal) -> tuple:
    """The signals that stop a run where `signals` (the module) has them"""
    return tuple(
        getattr(signals, name) for name in STOP_SIGNAL_NAMES if hasattr(signals, name)
    )


#: signals that stop a run on this platform
STOP_SIGNALS = stop_signals()


class _Request:
    """The first stop request of the process: its signal and when it came"""

    def __init__(self):
        self.signum = None
        self.since = None
        #: whether the command's outcome is decided (its output complete):
        #: later signals are noted, they no longer change the outcome
        self.finished = False


_request = _Request()
_cleanups: dict[int, object] = {}
_cleanups_guard = threading.Lock()


def reset():
    """Forget any stop request (a new command starts)"""
    _request.signum = None
    _request.since = None
    _request.finished = False


def note_request(signum: int) -> bool:
    """Record the stop request of `signum`; whether it is the first one"""
    if _request.signum is not None:
        return False
    _request.signum = int(signum)
    _request.since = time.monotonic()
    return True


def requested() -> int | None:
    """The signal of the stop request, None if there is none"""
    return _request.signum


def raise_if_requested():
    """Raise KeyboardInterrupt if a stop was requested and is not done

    For loops that may have lost the ``KeyboardInterrupt`` of the signal
    handler (raised inside a ``__del__`` and dropped by Python).
    """
    if _request.signum is not None and not _request.finished:
        raise KeyboardInterrupt


def mark_finished():
    """The command's outcome is decided: later signals only get noted"""
    _request.finished = True


def finished() -> bool:
    """Whether :func:`mark_finished` was called since the last reset"""
    return _request.finished


def escalates(signum: int, now: float | None = None) -> bool:
    """Whether a further stop signal `signum` means "stop at once"

    Only a Ctrl-C or Ctrl-Break more than :data:`STOP_GRACE_S` after the
    first stop request does; everything else belongs to that request.
    """
    if _request.signum is None:
        return False
    now = time.monotonic() if now is None else now
    interactive = {
        getattr(signal, name)
        for name in INTERACTIVE_SIGNAL_NAMES
        if hasattr(signal, name)
    }
    return signum in interactive and now - _request.since > STOP_GRACE_S


def add_abrupt_cleanup(func) -> int:
    """Run ``func()`` before :func:`exit_at_once` ends the process

    Returns a token for :func:`discard_abrupt_cleanup`. `func` must be
    quick and must not raise (its errors are ignored).
    """
    with _cleanups_guard:
        token = id(func)
        _cleanups[token] = func
    return token


def discard_abrupt_cleanup(token: int):
    """Forget a clean-up registered with :func:`add_abrupt_cleanup`"""
    with _cleanups_guard:
        _cleanups.pop(token, None)


def exit_at_once(status: int, message: str):
    """Run the abrupt clean-ups, write `message` to stderr, end the process

    The process ends without Python's teardown (``os._exit``): worker
    threads still running and open HDF5 files are dropped, the files the
    clean-ups name (staged outputs, lock files) are removed.
    """
    # no lock: the main thread this runs in may have been interrupted
    # while holding it; copying a dict is one step under the GIL
    for cleanup in list(_cleanups.values()):
        with contextlib.suppress(BaseException):
            cleanup()
    with contextlib.suppress(BaseException):
        os.write(2, (message.rstrip("\n") + "\n").encode(errors="replace"))
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
    os._exit(status)


def pause_point(name: str):
    """Test hook: wait here for a stop request if ``DCBG_TEST_PAUSE=name``

    Writes ``dcbg-paused:<name>`` to stderr, then waits (without holding
    any lock) until a stop signal was noted or :data:`PAUSE_LIMIT_S` has
    passed. Does nothing unless the environment names this point.
    """
    if os.environ.get(PAUSE_ENV) != name:
        return
    os.write(2, f"dcbg-paused:{name}\n".encode())
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while _request.signum is None and time.monotonic() < deadline:
        time.sleep(PAUSE_POLL_S)
