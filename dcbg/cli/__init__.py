"""The ``dcbg`` command: list methods, compute backgrounds, plot results

:func:`main` takes over SIGINT and SIGTERM before it imports anything
heavy: a signal during start-up ends the command with exit status 130
(143), as one during the computation does.
"""

import os
import signal
import sys

#: exit status of a command stopped by a signal (shell convention)
EXIT_STATUS_BASE = 128


def _exit_on_signal(signum, frame):
    sys.exit(EXIT_STATUS_BASE + signum)


def _stop_signals() -> tuple:
    # as dcbg.io.transaction.stop_signals, without importing dcbg.io (numpy,
    # h5py) before the handlers are set
    names = ("SIGINT", "SIGTERM", "SIGBREAK")
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


def main(args=None):
    """Entry point of the ``dcbg`` console script and ``python -m dcbg``"""
    for signum in _stop_signals():
        signal.signal(signum, _exit_on_signal)
    from .main import main as run

    status = 0
    try:
        run(args)
    except SystemExit as exc:
        status = exc.code
        raise
    finally:
        _end_past_broken_hdf5_files(status)


def _end_past_broken_hdf5_files(status):
    """End the process at once if HDF5 could not close a discarded file

    After a write failed (a file-size limit), HDF5 may be unable to close
    the staged file dcbg threw away (see ``dcbg.io.rtdc.UNCLOSABLE_FILES``);
    its own clean-up at interpreter exit would then crash the process.
    Everything the command had to say is said: leave without that clean-up,
    with the command's exit status.
    """
    rtdc = sys.modules.get("dcbg.io.rtdc")
    if rtdc is None or not rtdc.UNCLOSABLE_FILES:
        return
    if not isinstance(status, int):
        status = 0 if status is None else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def __getattr__(name):
    if name == "make_cli":
        from .main import make_cli

        return make_cli
    raise AttributeError(f"module 'dcbg.cli' has no attribute {name!r}")


__all__ = ["main", "make_cli"]
