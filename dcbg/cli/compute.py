"""``dcbg compute``: the background of one measurement

A thin layer over :func:`dcbg.cli.main.run_compute` (which runs
:func:`dcbg.workflow.process_file`): it parses the method from ``--ppid``
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
from .main import run_compute
from .options import (
    add_method_options,
    basin_options,
    create_run_options,
    input_argument,
    method_options,
    option_flags,
    resolve_method,
)
from .runtime import command_guard, configure_logging, echo_result, progress_style


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
