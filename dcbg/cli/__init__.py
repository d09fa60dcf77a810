"""The ``dcbg`` command: list methods, compute backgrounds, plot results

The modules: :mod:`~dcbg.cli.main` (the command group, light),
:mod:`~dcbg.cli.commands` (the table of commands and their summaries,
the lazily building group), one module per command (``compute``,
``methods``, ``plot``, ``batch``, ``check``), :mod:`~dcbg.cli.options`
(method options and method choice), :mod:`~dcbg.cli.shared_options`
(INPUT and the basin options) and :mod:`~dcbg.cli.runtime` (errors,
signals, warnings, progress).

:func:`main` takes over the stop signals (SIGINT, SIGTERM, SIGHUP; SIGBREAK
on Windows) before it imports anything heavy: a signal during start-up
ends the command with exit status 128 + its number (130, 143, 129), as
one during the computation does.
"""

import os
import signal
import sys

from .. import stop

#: exit status of a command stopped by a signal (shell convention)
EXIT_STATUS_BASE = stop.EXIT_STATUS_BASE


def _exit_on_signal(signum, frame):
    # A stop under way (its message is being printed) or a command whose
    # outcome is decided (its output complete) ends as it is ending.
    if not stop.note_request(signum) or stop.finished():
        return
    sys.exit(EXIT_STATUS_BASE + signum)


def _stop_signals() -> tuple:
    return stop.STOP_SIGNALS


def main(args=None):
    """Entry point of the ``dcbg`` console script and ``python -m dcbg``"""
    stop.reset()
    for signum in _stop_signals():
        # a signal ignored from the start stays ignored (nohup: SIGHUP;
        # a background job of a script: SIGINT)
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _exit_on_signal)
    from .main import main as run

    status = 0
    try:
        run(args)
    except SystemExit as exc:
        status = exc.code
        raise
    finally:
        _end_without_teardown_if_needed(status)


def _end_without_teardown_if_needed(status):
    """End the process at once where Python's teardown could go wrong

    - After a write failed (a file-size limit), HDF5 may be unable to close
      the staged file dcbg threw away (see ``dcbg.io.hdf5_failures.UNCLOSABLE_FILES``);
      its own clean-up at interpreter exit would then crash the process.
    - A command stopped by a signal ends with the shell's status for it
      (130, 143): a signal that cut an import short (e.g. of dclab) can
      make Python's teardown report the process as killed by SIGINT.

    Everything the command had to say is said; its files are closed.
    """
    if not isinstance(status, int):
        status = 0 if status is None else 1
    failures = sys.modules.get("dcbg.io.hdf5_failures")
    broken = failures is not None and failures.UNCLOSABLE_FILES
    stopped = status - EXIT_STATUS_BASE in _stop_signals()
    if broken or stopped:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def __getattr__(name):
    if name == "make_cli":
        from .main import make_cli

        return make_cli
    raise AttributeError(f"module 'dcbg.cli' has no attribute {name!r}")


__all__ = ["main", "make_cli"]
