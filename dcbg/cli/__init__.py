"""The ``dcbg`` command: list methods, compute backgrounds, plot results

:func:`main` takes over SIGINT and SIGTERM before it imports anything
heavy: a signal during start-up ends the command with exit status 130
(143), as one during the computation does.
"""

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

    run(args)


def __getattr__(name):
    if name == "make_cli":
        from .main import make_cli

        return make_cli
    raise AttributeError(f"module 'dcbg.cli' has no attribute {name!r}")


__all__ = ["main", "make_cli"]
