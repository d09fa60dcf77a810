"""``dcbg compute``: the background of one measurement

A thin layer over :func:`dcbg.workflow.process_file` (see
:func:`run_compute`): it parses the method from ``--ppid``
or ``--method`` with one option per method keyword argument, shows
progress on stderr and one summary line on stdout. Errors and warnings
about a parameter name its option (``--kernel-size``).
"""

from __future__ import annotations

import pathlib

import click

from .. import stop
from ..feat.feat_background import get_available_background_methods
from .commands import command
from .options import (
    add_method_options,
    create_run_options,
    method_options,
    option_flags,
    resolve_method,
)
from .runtime import (
    ProgressDisplay,
    command_guard,
    configure_logging,
    echo_result,
    finish_when,
    progress_style,
)
from .shared_options import basin_options, input_argument


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


def make_compute_command(methods: dict | None = None) -> click.Command:
    """``dcbg compute`` with one option per method keyword argument"""
    if methods is None:
        methods = get_available_background_methods()

    @command("compute")
    @input_argument("input_path")
    @click.option(
        "-o",
        "--output",
        "output_path",
        type=click.Path(path_type=pathlib.Path),
        help="Output .rtdc file. Default: <input stem>_bg.rtdc beside INPUT. "
        "May be INPUT itself (with --force) to write into the input file.",
    )
    @method_options(methods)
    @basin_options()
    @click.option(
        "--num-cpus",
        type=click.IntRange(min=1),
        default=None,
        help="Number of worker threads. Default: all CPUs available.",
    )
    @click.option(
        "--force",
        is_flag=True,
        help="Write into an existing output file or, with -o INPUT, into "
        "INPUT itself: its background features (image_bg, bg_off and the "
        "internal basins holding them) and the dcbg log are replaced, "
        "everything else it holds is kept. The file changes in one step "
        "when the new background is complete; until then, and after any "
        "failure, it stays exactly as it was.",
    )
    @click.option("-q", "--quiet", is_flag=True, help="Do not show progress.")
    @click.option(
        "--debug", is_flag=True, help="Show the log and tracebacks of errors."
    )
    @click.pass_context
    def compute(
        ctx,
        input_path,
        output_path,
        ppid_text,
        method,
        force,
        quiet,
        debug,
        # the method's options and the framework's (create_run_options)
        **option_values,
    ):
        """Choose the method and its keyword arguments with --method and the
        options below, or all at once with --ppid. Progress is shown on
        stderr, one summary line on stdout. Ctrl-C stops cleanly and leaves
        no output.

        \b
        Examples:
          dcbg compute data.rtdc --method sparsemed --kernel-size 200
          dcbg compute data.rtdc --ppid rollmed:k=50 -o data_rollmed.rtdc
        """
        cls, kwargs = resolve_method(
            ctx, methods, method_kwargs, ppid_text, method, option_values
        )
        configure_logging(debug)
        with command_guard(
            debug,
            "Interrupted; the computation was stopped and its output discarded",
            # the API's errors and warnings name parameters, the user typed options
            flags=option_flags(ctx.command),
        ):
            summary = run_compute(
                cls,
                kwargs,
                input_path=input_path,
                output_path=output_path,
                force=force,
                progress_style=progress_style(quiet),
                # compression, CPUs and basin policy: checked once, here
                options=create_run_options(ctx),
            )
        stop.pause_point("finished")  # a test hook, see dcbg.stop
        echo_result(summary)

    method_kwargs = add_method_options(compute, methods)
    return compute
