"""The ``dcbg`` command group: ``methods``, ``compute``, ``plot``, ``check``

The commands are a thin layer over the Python API: they parse and check
arguments, show progress and turn the API's exceptions into one-line
messages. Usage errors exit with status 2 (click's), input and processing
errors with status 1, an interrupt (Ctrl-C) with 130.
"""

from __future__ import annotations

import os
import pathlib
import textwrap
import time

import click

from .. import ppid, stop
from .._version import __version__
from ..feat.feat_background import get_available_background_methods
from ..io.conventions import default_output_path
from ..io.rtdc import check_input_path, check_output_dir, same_file
from ..io.transaction import reserve_output
from .batch import make_batch_command
from .check import make_check_command
from .options import (
    basin_options,
    collect_method_kwargs,
    format_default,
    get_method_description,
    make_click_option,
    method_options,
    parse_parameter_docs,
)
from .runtime import (
    CONTEXT_SETTINGS,
    ProgressDisplay,
    command_guard,
    configure_logging,
    echo_result,
    errors_as_messages,
    finish_when,
    progress_style,
    resolve_method,
    with_option_names,
)

#: flags of ``dcbg compute`` that method keyword arguments must not take
COMPUTE_FLAGS = (
    "output",
    "ppid",
    "method",
    "compress",
    "no-compress",
    "num-cpus",
    "force",
    "quiet",
    "debug",
    "help",
    "basin-root",
    "allow-remote-basins",
)


def run_compute(
    cls: type,
    kwargs: dict,
    input_path: pathlib.Path,
    output_path: pathlib.Path | None,
    compress: bool,
    num_cpus: int | None,
    force: bool,
    progress_style: str,
    basin_root: pathlib.Path | None = None,
    allow_remote_basins: bool = False,
) -> str:
    """Compute the background and return the summary line

    The API writes every output as a transaction (a staged file moved
    into place when complete). An existing output, or the input itself,
    is only updated with ``force``: then its background features are
    replaced and everything else it holds is kept, as the API does.

    Raises
    ------
    KeyboardInterrupt
        With a message that says what happened to the output
    """
    start = time.perf_counter()
    check_input_path(input_path)
    if output_path is None:
        output_path = default_output_path(input_path)
    check_output_dir(output_path)
    # The output's lock is held from the check whether it exists to the
    # commit: a second run cannot pass the check before this one writes.
    with reserve_output(output_path):
        return _compute_reserved(
            cls,
            kwargs,
            input_path,
            output_path,
            compress,
            num_cpus,
            force,
            progress_style,
            basin_root,
            allow_remote_basins,
            start,
        )


def _compute_reserved(
    cls,
    kwargs,
    input_path,
    output_path,
    compress,
    num_cpus,
    force,
    progress_style,
    basin_root,
    allow_remote_basins,
    start,
) -> str:
    """run_compute() with the output's writer lock held"""
    if same_file(input_path, output_path):
        if not force:
            raise FileExistsError(
                f"Output file '{output_path}' is the input file; use --force to "
                f"write the background into the input file"
            )
    elif os.path.lexists(output_path) and not force:
        raise FileExistsError(
            f"Output file '{output_path}' already exists; use --force to replace it"
        )

    bg = None
    try:
        with cls(
            input_path,
            output_path,
            compress=compress,
            num_cpus=num_cpus,
            basin_root=basin_root,
            allow_remote_basins=allow_remote_basins,
            **kwargs,
        ) as bg:
            # the commit decides the outcome: a signal after it is no stop
            finish_when(lambda: bg.committed)
            stop.pause_point("computing")  # a test hook, see dcbg.stop
            with ProgressDisplay(bg.get_progress, bg.image_count, progress_style):
                compute_start = time.perf_counter()
                bg.process()
                compute_seconds = time.perf_counter() - compute_start
            bg_ppid = bg.get_ppid()
            frames = bg.image_count
    except ValueError as exc:
        # e.g. rollmed's kernel_size larger than the number of frames
        raise ValueError(with_option_names(str(exc), ppid.get_kwarg_spec(cls))) from exc
    except MemoryError as exc:
        raise MemoryError(
            f"Not enough memory to compute the background of '{input_path}' "
            f"({type(exc).__name__}: {exc or 'allocation failed'}); '{output_path}' "
            f"was left as it was. Use fewer --num-cpus or, for rollmed, a "
            f"smaller --batch-size"
        ) from exc
    except KeyboardInterrupt:
        if bg is not None and bg.committed:
            message = f"Interrupted after '{output_path}' was complete; it was kept"
        else:
            message = (
                "Interrupted; the computation was stopped and its output discarded"
            )
        raise KeyboardInterrupt(message) from None
    seconds = time.perf_counter() - start
    # the rate of the computation itself: opening the input (imports,
    # basins, checks) and moving the output into place are a fixed cost
    # that says nothing about how fast the events are processed
    rate = frames / compute_seconds if compute_seconds > 0 else float("inf")
    return (
        f"Wrote {output_path}: {bg_ppid}, {frames} events in "
        f"{compute_seconds:.2f} s ({rate:.1f} events/s; {seconds:.2f} s in all "
        f"with start-up and writing)"
    )


def make_methods_command(methods: dict | None = None) -> click.Command:
    """``dcbg methods``: the registered methods and their keyword arguments"""

    @click.command("methods", context_settings=CONTEXT_SETTINGS)
    def methods_command():
        """List the background methods and their keyword arguments

        For each method: its description, its default PPID, and each
        keyword argument with its type, default, command-line option and
        meaning.
        """
        registry = (
            methods if methods is not None else get_available_background_methods()
        )
        option_by_name = collect_method_kwargs(registry, COMPUTE_FLAGS)
        width = 88
        blocks = []
        for code in sorted(registry):
            cls = registry[code]
            docs = parse_parameter_docs(cls.check_user_kwargs.__doc__)
            lines = [f"{code}: {get_method_description(cls)}"]
            spec = ppid.get_kwarg_spec(cls)
            lines.append(f"  PPID (defaults): {cls.get_ppid_from_ppkw({})}")
            if not spec:
                lines.append("  (no keyword arguments)")
            for name, (dtype, default) in spec.items():
                type_name = getattr(dtype, "__name__", str(dtype))
                lines.append(
                    f"  {name} ({type_name}, default {format_default(default)})"
                    f"  {option_by_name[name].option_label}"
                )
                if docs.get(name):
                    lines.extend(
                        textwrap.wrap(
                            docs[name],
                            width=width,
                            initial_indent="      ",
                            subsequent_indent="      ",
                        )
                    )
            blocks.append("\n".join(lines))
        echo_result("\n\n".join(blocks))

    return methods_command


def make_compute_command(methods: dict | None = None) -> click.Command:
    """``dcbg compute`` with one option per method keyword argument"""
    if methods is None:
        methods = get_available_background_methods()
    method_kwargs = collect_method_kwargs(methods, COMPUTE_FLAGS)

    @click.command("compute", context_settings=CONTEXT_SETTINGS)
    @click.argument(
        "input_path", metavar="INPUT", type=click.Path(path_type=pathlib.Path)
    )
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
        compress,
        num_cpus,
        force,
        quiet,
        debug,
        basin_root,
        allow_remote_basins,
        **option_values,
    ):
        """Compute the background of the RT-DC measurement INPUT

        Choose the method and its keyword arguments with --method and the
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
            # the API's warnings name keyword arguments, the user typed options
            option_names=[*ppid.get_kwarg_spec(cls), "num_cpus"],
        ):
            summary = run_compute(
                cls,
                kwargs,
                input_path=input_path,
                output_path=output_path,
                compress=compress,
                num_cpus=num_cpus,
                force=force,
                progress_style=progress_style(quiet),
                basin_root=basin_root,
                allow_remote_basins=allow_remote_basins,
            )
        stop.pause_point("finished")  # a test hook, see dcbg.stop
        echo_result(summary)

    for kwarg in method_kwargs.values():
        compute.params.append(make_click_option(kwarg))
    return compute


def make_plot_command() -> click.Command:
    """``dcbg plot``: one figure to judge a computed background"""

    @click.command("plot", context_settings=CONTEXT_SETTINGS)
    @click.argument("path", metavar="INPUT", type=click.Path(path_type=pathlib.Path))
    @click.option(
        "-o",
        "--output",
        "png_path",
        metavar="PNG",
        type=click.Path(path_type=pathlib.Path),
        help="PNG file to write (name ending with .png). Default: "
        "<stem>_plot.png beside INPUT.",
    )
    @click.option(
        "--frame",
        type=int,
        default=None,
        help="Index (0-based) of the event to show. Default: the middle "
        "event. Negative values count from the end.",
    )
    @click.option("--dpi", type=click.IntRange(min=20), default=100, show_default=True)
    @click.option(
        "--force",
        is_flag=True,
        help="Replace an existing PNG file (a measurement is never replaced).",
    )
    @click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
    def plot(path, png_path, frame, dpi, force, debug):
        """Plot the background of INPUT (an .rtdc file with image_bg)

        One figure: a frame, its background, the corrected image, the
        offset bg_off over time and, for sparse-median backgrounds, which
        image of the background series serves which frames.
        """
        configure_logging(debug)
        with errors_as_messages(debug):
            # matplotlib is imported only when a plot is made
            from ..plot import save_background_plot

            written = save_background_plot(
                path, png_path, frame=frame, dpi=dpi, force=force
            )
        echo_result(f"Wrote {written}")

    return plot


def make_cli(methods: dict | None = None) -> click.Group:
    """Build the ``dcbg`` command group

    Parameters
    ----------
    methods: dict or None
        Method code -> Background subclass; defaults to all methods
        registered when this is called (a new subclass of
        :class:`dcbg.Background` shows up without changes here).
    """

    @click.group(context_settings=CONTEXT_SETTINGS)
    @click.version_option(__version__, "-V", "--version", prog_name="dcbg")
    def cli():
        """Fast, reproducible background images for RT-DC measurements"""

    cli.add_command(make_methods_command(methods))
    cli.add_command(make_compute_command(methods))
    cli.add_command(make_plot_command())
    cli.add_command(make_batch_command(methods))
    cli.add_command(make_check_command())
    return cli


def main(args=None):
    """Entry point of the ``dcbg`` console script and ``python -m dcbg``"""
    make_cli().main(args=args, prog_name="dcbg")
