"""The ``dcbg`` command group

The commands are a thin layer over the Python API: they parse and check
arguments, show progress and turn the API's exceptions into one-line
messages. Usage errors exit with status 2 (click's), input and processing
errors with status 1, an interrupt (Ctrl-C) with 130.

``dcbg --help`` imports this module and lists the commands of
:data:`dcbg.cli.commands.COMMANDS` without importing them: nothing heavy
(numpy, h5py, the methods) is imported at the top of this module.
"""

from __future__ import annotations

import click

from .._version import __version__
from .commands import COMMANDS, LazyGroup
from .runtime import CONTEXT_SETTINGS


def make_cli(methods: dict | None = None) -> click.Group:
    """Build the ``dcbg`` command group

    Its commands (:data:`dcbg.cli.commands.COMMANDS`) are built when one
    runs or shows its help, not for ``dcbg --help``.

    Parameters
    ----------
    methods: dict or None
        Method code -> Background subclass; defaults to all methods
        registered when a command is built (a new subclass of
        :class:`dcbg.Background` shows up without changes here).
    """

    @click.group(
        cls=LazyGroup,
        context_settings=CONTEXT_SETTINGS,
        entries=COMMANDS,
        methods=methods,
    )
    @click.version_option(__version__, "-V", "--version", prog_name="dcbg")
    def cli():
        """Fast, reproducible background images for RT-DC measurements"""

    return cli


def main(args=None):
    """Entry point of the ``dcbg`` console script and ``python -m dcbg``"""
    make_cli().main(args=args, prog_name="dcbg")
