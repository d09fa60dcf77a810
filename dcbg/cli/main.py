"""The ``dcbg`` command group: ``methods``, ``compute`` and ``plot``

The commands are a thin layer over the Python API: they parse and check
arguments, show progress and turn the API's exceptions into one-line
messages. Usage errors exit with status 2 (click's), input and processing
errors with status 1, an interrupt (Ctrl-C) with 130.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import re
import signal
import sys
import textwrap
import threading
import time
import warnings

import click

from .. import ppid
from .._version import __version__
from ..feat.feat_background import Background, get_available_background_methods
from ..io.rtdc import check_input_path, check_output_dir, same_file
from ..io.transaction import STOP_SIGNALS
from .options import (
    MethodKwarg,
    basin_options,
    collect_method_kwargs,
    format_default,
    get_method_description,
    make_click_option,
    method_options,
    parse_parameter_docs,
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

#: errors whose message is meant for the user as it is
USER_ERRORS = (OSError, ValueError, TypeError, MemoryError)

#: fractions at which progress is printed when stderr is not a terminal
PROGRESS_LINE_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Interrupted(click.ClickException):
    """The computation was stopped by a signal (Ctrl-C: exit status 130)"""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def one_line(text: str) -> str:
    """Join a multi-line message into one line"""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


@contextlib.contextmanager
def errors_as_messages(debug: bool):
    """Turn exceptions into ``Error: <message>`` (exit 1), unless `debug`

    With `debug` the exception propagates and Python prints the traceback.
    """
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, USER_ERRORS):
            message = one_line(exc)
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


def show_warning(message, category, filename, lineno, file=None, line=None):
    """Show a warning as one line ``Warning: <message>`` on stderr"""
    click.echo(f"Warning: {one_line(message)}", err=True)


class StopOnSignals:
    """Turn the first SIGINT or SIGTERM into a KeyboardInterrupt

    The first signal starts a clean stop (worker threads end, the staged
    output is removed, the output path stays as it was). A second signal
    ends the process at once, as a second Ctrl-C should; what it leaves
    (a hidden staged file) is removed by the next run for that output.

    Attributes
    ----------
    signum: int or None
        The signal received, if any
    """

    SIGNALS = STOP_SIGNALS

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            os.write(2, b"Stopped at once (second interrupt)\n")
            os._exit(128 + int(signum))
        self.signum = signum
        raise KeyboardInterrupt

    def __enter__(self):
        # signal handlers can only be set from the main thread
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, exc, tb):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@contextlib.contextmanager
def command_guard(debug: bool, interrupted: str):
    """The run of a command: errors as messages, Ctrl-C as `Interrupted`

    Errors become one-line messages (tracebacks with `debug`), warnings
    are shown one line each, and SIGINT/SIGTERM stop the work and exit
    with `Interrupted` carrying the message `interrupted`.
    """
    with (
        errors_as_messages(debug),
        warnings.catch_warnings(),
        StopOnSignals() as stop,
    ):
        warnings.showwarning = show_warning
        try:
            yield
        except KeyboardInterrupt as exc:
            signum = stop.signum or signal.SIGINT
            # the work may say more exactly what was kept
            message = exc.args[0] if exc.args else interrupted
            raise Interrupted(message, signum=signum) from None


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
                unit="frame",
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
            self._bar.close()

    def _poll(self):
        while not self._stop.wait(self.poll_interval):
            self._show(self.get_progress())

    def _show(self, fraction: float):
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
                f"Progress: {fraction:4.0%} ({done}/{self.total_frames} frames, "
                f"{seconds:.1f} s)",
                err=True,
            )


def default_output_path(input_path: pathlib.Path) -> pathlib.Path:
    """``<input stem>_bg.rtdc`` beside the input"""
    return input_path.with_name(f"{input_path.stem}_bg.rtdc")


def _option_for_message(message: str, kwargs: dict, given: list[str]) -> str | None:
    """The keyword argument a check_user_kwargs error message is about"""
    for names in (given, list(kwargs)):
        positions = {}
        for name in names:
            match = re.search(rf"\b{re.escape(name)}\b", message)
            if match:
                positions[name] = match.start()
        if positions:
            return min(positions, key=positions.get)
    return None


def resolve_method(
    ctx: click.Context,
    methods: dict,
    method_kwargs: dict[str, MethodKwarg],
    ppid_text: str | None,
    method: str | None,
    option_values: dict,
) -> tuple[type, dict]:
    """The method class and its keyword arguments from the command line

    Raises
    ------
    click.UsageError
        For a wrong combination of options or a value the method rejects
    """
    given = {
        kwarg.name: option_values[kwarg.param_name]
        for kwarg in method_kwargs.values()
        if option_values.get(kwarg.param_name) is not None
    }
    if ppid_text is not None and method is not None:
        raise click.UsageError(
            "Options --ppid and --method are mutually exclusive; give one of them",
            ctx,
        )
    if ppid_text is None and method is None:
        raise click.UsageError(
            "Give either --method NAME or --ppid PPID (see 'dcbg methods')", ctx
        )

    if ppid_text is not None:
        if given:
            labels = ", ".join(method_kwargs[name].option_label for name in given)
            raise click.UsageError(
                f"Option(s) {labels} cannot be combined with --ppid; put the "
                f"value(s) into the PPID instead",
                ctx,
            )
        try:
            kwargs = Background.get_ppkw_from_ppid(ppid_text.strip())
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param_hint="'--ppid'") from exc
        code = ppid_text.strip().split(":")[0]
        if code not in methods:
            raise click.BadParameter(
                f"Unknown background method '{code}'", ctx, param_hint="'--ppid'"
            )
        cls = methods[code]
        try:
            cls.check_user_kwargs(**kwargs)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param_hint="'--ppid'") from exc
        return cls, kwargs

    cls = methods[method]
    kwargs = {}
    for name, value in given.items():
        kwarg = method_kwargs[name]
        if method not in kwarg.methods:
            accepted = [
                kw.option_label for kw in method_kwargs.values() if method in kw.methods
            ]
            accepts = ", ".join(accepted) if accepted else "no options"
            raise click.UsageError(
                f"Option {kwarg.option_label} is not accepted by method "
                f"'{method}' (it accepts {accepts})",
                ctx,
            )
        try:
            kwargs[name] = kwarg.convert(value, method)
        except ValueError as exc:
            raise click.BadParameter(
                str(exc), ctx, param_hint=f"'--{kwarg.flag}'"
            ) from exc
    try:
        cls.check_user_kwargs(**kwargs)
    except ValueError as exc:
        name = _option_for_message(str(exc), ppid.get_kwarg_spec(cls), list(given))
        hint = f"'--{method_kwargs[name].flag}'" if name in method_kwargs else None
        raise click.BadParameter(str(exc), ctx, param_hint=hint) from exc
    return cls, kwargs


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
    if same_file(input_path, output_path):
        if not force:
            raise FileExistsError(
                f"Output file '{output_path}' is the input file; use --force to "
                f"write the background into the input file"
            )
    else:
        check_output_dir(output_path)
        if output_path.exists() and not force:
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
            with ProgressDisplay(bg.get_progress, bg.image_count, progress_style):
                bg.process()
            bg_ppid = bg.get_ppid()
            frames = bg.image_count
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
    rate = frames / seconds if seconds > 0 else float("inf")
    return (
        f"Wrote {output_path}: {bg_ppid}, {frames} frames in {seconds:.2f} s "
        f"({rate:.1f} frames/s)"
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
        click.echo("\n\n".join(blocks))

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
        click.echo(summary)

    for kwarg in method_kwargs.values():
        compute.params.append(make_click_option(kwarg))
    return compute


def make_plot_command() -> click.Command:
    """``dcbg plot``: one figure to judge a computed background"""

    @click.command("plot", context_settings=CONTEXT_SETTINGS)
    @click.argument("path", metavar="OUTPUT", type=click.Path(path_type=pathlib.Path))
    @click.option(
        "-o",
        "--output",
        "png_path",
        metavar="PNG",
        type=click.Path(path_type=pathlib.Path),
        help="PNG file to write. Default: <stem>_bg.png beside OUTPUT "
        "(<stem>.png if the stem already ends with '_bg').",
    )
    @click.option(
        "--frame",
        type=int,
        default=None,
        help="Index of the frame to show. Default: the middle frame. "
        "Negative values count from the end.",
    )
    @click.option("--dpi", type=click.IntRange(min=20), default=100, show_default=True)
    @click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
    def plot(path, png_path, frame, dpi, debug):
        """Plot the background of OUTPUT (an .rtdc file with image_bg)

        One figure: a frame, its background, the corrected image, the
        offset bg_off over time and, for sparse-median backgrounds, which
        image of the background series serves which frames.
        """
        configure_logging(debug)
        with errors_as_messages(debug):
            # matplotlib is imported only when a plot is made
            from ..plot import save_background_plot

            written = save_background_plot(path, png_path, frame=frame, dpi=dpi)
        click.echo(f"Wrote {written}")

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
    from .batch import batch  # not at the top: dcbg.cli.batch imports this module

    cli.add_command(batch)
    return cli


def main(args=None):
    """Entry point of the ``dcbg`` console script and ``python -m dcbg``"""
    make_cli().main(args=args, prog_name="dcbg")
