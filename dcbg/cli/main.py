"""The ``dcbg`` command group, and the run of ``dcbg compute``

The commands are a thin layer over the Python API: they parse and check
arguments, show progress and turn the API's exceptions into one-line
messages. Usage errors exit with status 2 (click's), input and processing
errors with status 1, an interrupt (Ctrl-C) with 130.

``dcbg --help`` imports this module and lists the commands of
:data:`dcbg.cli.commands.COMMANDS` without importing them: nothing heavy
(numpy, h5py, the methods) is imported at the top of this module.
"""

from __future__ import annotations

import pathlib

import click

from .. import stop
from .._version import __version__
from .commands import COMMANDS, LazyGroup
from .runtime import CONTEXT_SETTINGS, ProgressDisplay, finish_when


def run_compute(
    cls: type,
    kwargs: dict,
    input_path: pathlib.Path,
    output_path: pathlib.Path | None,
    compress: bool = True,
    num_cpus: int | None = None,
    force: bool = False,
    progress_style: str = "none",
    basin_root: pathlib.Path | None = None,
    allow_remote_basins: bool = False,
    *,
    options=None,
) -> str:
    """Compute the background and return the summary line

    :func:`dcbg.workflow.process_file` with progress on stderr. The API
    writes every output as a transaction (a staged file moved into place
    when complete). An existing output, or the input itself, is only
    updated with ``force``: then its background features are replaced and
    everything else it holds is kept, as the API does.

    The framework options come as `options` (a
    :class:`dcbg.run_options.RunOptions`, then `compress`, `num_cpus`,
    `basin_root` and `allow_remote_basins` are not used) or as those
    values, checked here.

    Raises
    ------
    KeyboardInterrupt
        With a message that says what happened to the output
    """
    # numpy, h5py and the methods are imported for a computation, not --help
    from ..run_options import RunOptions
    from ..workflow import process_file

    def watch(bg):
        # the commit decides the outcome: a signal after it is no stop
        finish_when(lambda: bg.committed)
        stop.pause_point("computing")  # a test hook, see dcbg.stop
        return ProgressDisplay(bg.get_progress, bg.image_count, progress_style)

    try:
        if options is None:
            options = RunOptions.create(
                compress, num_cpus, basin_root, allow_remote_basins
            )
        result = process_file(
            input_path, output_path, cls, kwargs, options, force=force, watch=watch
        )
    except MemoryError as exc:
        if output_path is None:
            from ..io.conventions import default_output_path

            output_path = default_output_path(input_path)
        raise MemoryError(
            f"Not enough memory to compute the background of '{input_path}' "
            f"({type(exc).__name__}: {exc or 'allocation failed'}); '{output_path}' "
            f"was left as it was. Use fewer --num-cpus or, for rollmed, a "
            f"smaller --batch-size"
        ) from exc
    # the rate of the computation itself: opening the input (imports,
    # basins, checks) and moving the output into place are a fixed cost
    # that says nothing about how fast the events are processed
    compute_seconds = result.compute_seconds
    rate = result.frames / compute_seconds if compute_seconds > 0 else float("inf")
    return (
        f"Wrote {result.output_path}: {result.ppid}, {result.frames} events in "
        f"{compute_seconds:.2f} s ({rate:.1f} events/s; {result.seconds:.2f} s "
        f"in all with start-up and writing)"
    )


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
