"""``dcbg batch``: the backgrounds of many measurements on a Dask cluster

A thin layer over :func:`dcbg.cluster.process_many`: it parses the method
like ``dcbg compute``, shows progress over files, and prints a table of
what happened to every file. Exit status 0 if no file failed, 1 if any
did (or the cluster could not be reached), 2 for usage errors.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import time
import typing

import click

from ..feat.feat_background import get_available_background_methods

if typing.TYPE_CHECKING:
    from ..workflow import FileResult

from .commands import command
from .options import (
    add_method_options,
    method_options,
    option_flags,
    resolve_method,
)
from .runtime import (
    command_guard,
    configure_logging,
    discard_stream,
    echo_result,
    progress_style,
    with_flags,
)
from .shared_options import basin_options


class FileProgress:
    """Progress over files on stderr: a tqdm bar, or one line per file

    Parameters
    ----------
    total: int
        Number of files
    style: str
        "bar" (terminal), "lines" (logs and pipes) or "none"
    """

    def __init__(self, total: int, style: str):
        self.total = total
        self.style = style
        self.count = 0
        self._bar = None
        if style == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                unit="file",
                desc="Backgrounds",
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def __call__(self, result: FileResult):
        self.count += 1
        try:
            self._show(result)
        except OSError:
            # nobody reads stderr any more (a closed pipe or terminal):
            # the batch goes on without progress
            self.style = "none"
            self._bar = None
            discard_stream(sys.stderr)

    def _show(self, result: FileResult):
        if self._bar is not None:
            self._bar.set_postfix_str(f"{result.status} {result.input_path.name}")
            self._bar.update(1)
        elif self.style == "lines":
            click.echo(
                f"[{self.count}/{self.total}] {result.status} {result.input_path}",
                err=True,
            )

    def close(self):
        if self._bar is not None:
            self._bar.close()


def format_summary(
    results: list[FileResult], names: list[str], seconds: float | None
) -> str:
    """The table of all files and a closing count line (not without `seconds`)

    Parameters
    ----------
    results: list of FileResult
        Results in input order
    names: list of str
        How each input is shown (as given on the command line)
    seconds: float or None
        Wall time of the whole batch; None for an interrupted batch, whose
        message gives the counts
    """
    rows = [("STATUS", "EVENTS", "SECONDS", "INPUT")]
    for result, name in zip(results, names, strict=True):
        frames = "-" if result.frames is None else str(result.frames)
        secs = "-" if result.seconds is None else f"{result.seconds:.2f}"
        text = name if result.error is None else f"{name}: {result.error}"
        rows.append((result.status, frames, secs, text))
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    lines = [
        f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}"
        for row in rows
    ]
    counts = {
        status: sum(r.status == status for r in results)
        for status in ("done", "skipped", "failed")
    }
    if seconds is None:
        return "\n".join(lines)
    lines.append(
        f"{counts['done']} done, {counts['skipped']} skipped, "
        f"{counts['failed']} failed of {len(results)} files in {seconds:.1f} s"
    )
    return "\n".join(lines)


#: Inputs holding fewer bytes than this in all are faster to compute one by
#: one with ``dcbg compute`` than on a local cluster, whose start-up takes
#: ~5 s (3 files of 13 events: 6-8 s with ``dcbg batch``, 1.5 s each with
#: ``dcbg compute``); one core computes a background at ~20-50 MB/s of
#: compressed input, so ~5 s of start-up are worth about this much data.
SMALL_BATCH_BYTES = 128 * 2**20


def small_batch_note(input_paths) -> str | None:
    """A hint that ``dcbg compute`` beats a local cluster, or None"""
    total = 0
    for path in input_paths:
        try:
            total += path.stat().st_size
        except OSError:
            continue
    if total >= SMALL_BATCH_BYTES:
        return None
    return (
        f"Note: {len(input_paths)} file(s) of {total / 2**20:.1f} MiB in all; "
        f"starting a local cluster takes a few seconds, 'dcbg compute' one "
        f"file at a time is faster for so little data"
    )


def expand_folders(input_paths, out_dir) -> list[pathlib.Path]:
    """The inputs with every folder replaced by the .rtdc files below it

    Folders are searched recursively (:func:`dcbg.io.conventions.find_measurements`,
    leaving out hidden files and the output folder); files are kept as given.

    Raises
    ------
    click.UsageError
        If a folder holds no .rtdc file
    """
    from ..io.conventions import find_measurements

    expanded = []
    for path in input_paths:
        if not path.is_dir():
            expanded.append(path)
            continue
        found = find_measurements(path, exclude=out_dir)
        if not found:
            raise click.UsageError(
                f"Folder '{path}' holds no .rtdc file (searched with its "
                f"subfolders, leaving out hidden ones and the output folder)"
            )
        expanded.extend(found)
    return expanded


def make_batch_command(methods: dict | None = None) -> click.Command:
    """``dcbg batch`` with one option per method keyword argument"""
    if methods is None:
        methods = get_available_background_methods()

    @command("batch")
    @click.argument(
        "input_paths",
        metavar="INPUT...",
        nargs=-1,
        required=True,
        type=click.Path(path_type=pathlib.Path),
    )
    @click.option(
        "-o",
        "--out-dir",
        required=True,
        type=click.Path(file_okay=False, path_type=pathlib.Path),
        help="Output folder (created if missing); outputs are named "
        "<input stem>_bg.rtdc.",
    )
    @method_options(methods)
    @basin_options()
    @click.option(
        "--scheduler",
        metavar="ADDRESS",
        help="Address of a running Dask scheduler (e.g. tcp://host:8786) or "
        "its scheduler file. Default: a local cluster on this machine.",
    )
    @click.option(
        "--workers",
        "n_workers",
        type=click.IntRange(min=1),
        help="Worker processes of the local cluster. Default: one per CPU.",
    )
    @click.option(
        "--threads-per-worker",
        type=click.IntRange(min=1),
        help="Threads per worker of the local cluster. Default: CPUs / workers.",
    )
    @click.option(
        "--force",
        is_flag=True,
        help="Recompute outputs that exist, whatever their PPID: their "
        "background features (image_bg, bg_off, the internal basins holding "
        "them) and the dcbg log are replaced in one step once complete, "
        "everything else they hold is kept.",
    )
    @click.option(
        "-q", "--quiet", is_flag=True, help="No progress; list failed files only."
    )
    @click.option("--debug", is_flag=True, help="Show the log and tracebacks.")
    @click.pass_context
    def batch(
        ctx,
        input_paths,
        out_dir,
        ppid_text,
        method,
        scheduler,
        n_workers,
        threads_per_worker,
        compress,
        force,
        quiet,
        debug,
        basin_root,
        allow_remote_basins,
        **option_values,
    ):
        """INPUT is an .rtdc file or a folder: a folder stands for all .rtdc
        files in it and its subfolders (hidden ones and the output folder
        left out). One task per file runs on a local cluster, or on the workers
        of a running scheduler (--scheduler). Outputs that exist with the
        same PPID are skipped, so an interrupted batch can be resumed by
        running it again. A summary table lists every file as done,
        skipped or failed; the exit status is 1 if any file failed.

        \b
        Examples:
          dcbg batch *.rtdc --out-dir results --method sparsemed
          dcbg batch measurements/ --out-dir results --method sparsemed
          dcbg batch *.rtdc -o results --ppid rollmed:k=100 --workers 4
          dcbg batch *.rtdc -o results --method sparsemed \\
              --scheduler tcp://host:8786
        """
        cls, kwargs = resolve_method(
            ctx, methods, method_kwargs, ppid_text, method, option_values
        )
        if scheduler is not None and (
            n_workers is not None or threads_per_worker is not None
        ):
            raise click.UsageError(
                "--workers and --threads-per-worker size the local cluster; "
                "they cannot be combined with --scheduler",
                ctx,
            )
        input_paths = expand_folders(input_paths, out_dir)
        if scheduler is None and not quiet:
            note = small_batch_note(input_paths)
            if note:
                click.echo(note, err=True)
        configure_logging(debug)
        start = time.perf_counter()
        progress = FileProgress(len(input_paths), progress_style(quiet))
        if not debug:
            # Stopping a cluster makes its worker processes log cancelled
            # tasks as multi-line warnings; the summary says what happened.
            os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
            logging.getLogger("distributed").setLevel(logging.ERROR)
        with command_guard(
            debug,
            "Interrupted (run the same command again to resume)",
        ) as stop_guard:
            # Dask is imported when a batch runs, not for --help
            from ..cluster import BatchInterrupted, process_many

            try:
                results = process_many(
                    input_paths,
                    out_dir,
                    cls.get_ppid_from_ppkw(kwargs),
                    compress=compress,
                    force=force,
                    scheduler_address=scheduler,
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker,
                    progress=progress,
                    basin_root=basin_root,
                    allow_remote_basins=allow_remote_basins,
                )
                # every file has its outcome: a signal now changes nothing
                stop_guard.finish_when(lambda: True)
            except BatchInterrupted as exc:
                progress.close()
                if not quiet:
                    names = [str(path) for path in input_paths]
                    echo_result(format_summary(exc.results, names, None))
                raise
            finally:
                progress.close()
        seconds = time.perf_counter() - start
        names = [str(path) for path in input_paths]
        name_options(results, option_flags(ctx.command))
        if not quiet:
            for result, name in zip(results, names, strict=True):
                for warning in result.warnings:
                    click.echo(f"Warning: {name}: {warning}", err=True)
        if quiet:
            for result, name in zip(results, names, strict=True):
                if result.status == "failed":
                    click.echo(f"failed: {name}: {result.error}", err=True)
        else:
            echo_result(format_summary(results, names, seconds))
        if any(result.status == "failed" for result in results):
            ctx.exit(1)

    method_kwargs = add_method_options(batch, methods)
    return batch


def name_options(results: list[FileResult], flags: dict[str, str]):
    """Errors and warnings of `results` naming options instead of parameters

    The API names keyword arguments (``kernel_size``), the user typed
    options (``--kernel-size``): the parameters that a result's error and
    warnings are about (``error_parameter``, ``warning_parameters``,
    recorded from :class:`~dcbg.errors.ParameterError` and
    :class:`~dcbg.errors.ParameterWarning`) are written as `flags` say.
    """
    for result in results:
        if result.error and result.error_parameter:
            result.error = with_flags(result.error, flags, [result.error_parameter])
        result.warnings = [
            with_flags(text, flags, parameters)
            for text, parameters in zip(
                result.warnings, result.warning_parameters, strict=True
            )
        ]


def __getattr__(name):
    # ``batch``: the command with the methods registered when it is asked
    # for (``make_cli(methods)`` builds its own with its methods)
    if name == "batch":
        return make_batch_command()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
