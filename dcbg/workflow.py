"""The background of one file: check paths, open, compute, commit, summarise

One function, :func:`process_file`, is the way every front end computes
the background of one measurement file: ``dcbg compute``
(:func:`dcbg.cli.main.run_compute`), the task of a batch on a Dask
cluster (:func:`dcbg.cluster.process_file`) and, for the opening of an
input under the user's basin options, ``dcbg plot`` and ``dcbg check``
(:func:`open_measurement`). The steps:

1. the paths are checked (an existing regular HDF5 input, a writable
   output folder) before anything is created;
2. the output's writer lock is taken
   (:func:`dcbg.io.transaction.reserve_output`) and held from the
   decision whether an existing output may be written to the commit: a
   second run that checked before this one wrote cannot replace its
   output;
3. an existing output is refused (``dcbg compute`` without ``--force``)
   or, when resuming a batch, kept if it is a complete background with
   the requested PPID (status "skipped");
4. the method computes the background through the
   :class:`~dcbg.Background` API, which writes the output as a
   transaction (a staged file moved into place when complete);
5. the outcome is a :class:`FileResult`.

The framework options (compression, CPUs, basin policy) arrive as one
:class:`dcbg.run_options.RunOptions`, built once where the user gave them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import time
from collections.abc import Callable

from .io.conventions import default_output_path, read_output_ppid
from .io.input import check_input_path
from .io.output import check_output_dir, same_file
from .io.transaction import reserve_output
from .run_options import RunOptions

__all__ = [
    "FileResult",
    "STATUSES",
    "check_existing_output",
    "open_measurement",
    "process_file",
]

#: possible values of :attr:`FileResult.status`
STATUSES = ("done", "skipped", "failed")


@dataclasses.dataclass
class FileResult:
    """Outcome of the background computation of one measurement

    Attributes
    ----------
    input_path: pathlib.Path
        The input measurement
    output_path: pathlib.Path
        The output file
    ppid: str
        Canonical background PPID that was requested
    status: str
        "done" (computed now), "skipped" (a complete output with this PPID
        existed) or "failed"
    frames: int or None
        Number of frames of the background (None if unknown)
    seconds: float or None
        Wall time of the whole file in seconds: checks, opening,
        computation and commit (None unless "done")
    error: str or None
        Why the file failed (one line), None otherwise
    worker: str or None
        Address of the Dask worker that produced this result
    warnings: list of str
        Warnings of the computation, one line each (e.g. a kernel size
        larger than the number of frames)
    compute_seconds: float or None
        Wall time of the method's computation alone in seconds (without
        opening the input and committing the output; None unless "done")
    error_parameter: str or None
        The keyword argument the error is about
        (:class:`dcbg.errors.ParameterError`), None otherwise
    warning_parameters: list of tuple of str
        For each of `warnings`, the keyword arguments it is about
        (:class:`dcbg.errors.ParameterWarning`; empty for others)
    """

    input_path: pathlib.Path
    output_path: pathlib.Path
    ppid: str
    status: str
    frames: int | None = None
    seconds: float | None = None
    error: str | None = None
    worker: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    compute_seconds: float | None = None
    error_parameter: str | None = None
    warning_parameters: list[tuple[str, ...]] = dataclasses.field(default_factory=list)


#: what :func:`process_file` calls with the opened background: a context
#: manager entered around its computation (progress display, stop hooks)
Watch = Callable[[object], contextlib.AbstractContextManager]


def process_file(
    input_path,
    output_path,
    method_cls: type,
    kwargs: dict,
    options: RunOptions,
    *,
    force: bool = False,
    resume: bool = False,
    watch: Watch | None = None,
) -> FileResult:
    """Compute the background of one measurement file

    Parameters
    ----------
    input_path: str or pathlib.Path
        Input .rtdc measurement
    output_path: str or pathlib.Path or None
        Output file; None: ``<input stem>_bg.rtdc`` beside the input. May
        be the input itself (with `force`): then its background features
        are replaced and everything else it holds is kept.
    method_cls: type
        The :class:`~dcbg.Background` subclass of the method
    kwargs: dict
        The method's keyword arguments (checked by the method)
    options: dcbg.run_options.RunOptions
        Compression, worker threads and basin policy
    force: bool
        Write into an existing output (or the input itself); without it an
        existing output is refused, or kept when `resume` is set
    resume: bool
        An existing output that is a complete background with the
        requested PPID is kept (status "skipped"); one with another PPID
        or none is an error unless `force`. Without `resume`, any existing
        output is an error unless `force`.
    watch: callable or None
        Called with the opened background object; the context manager it
        returns is entered around the computation (:meth:`process`)

    Returns
    -------
    result: FileResult
        Status "done", or "skipped" when resuming

    Raises
    ------
    FileExistsError
        If the output exists (or is the input) and `force` is not set
        (without `resume`)
    ValueError
        For an unusable input, a foreign output when resuming, or a
        keyword argument the method refuses
    KeyboardInterrupt
        With a message that says whether the output was kept
    """
    start = time.perf_counter()
    input_path = pathlib.Path(input_path)
    output_path = (
        default_output_path(input_path)
        if output_path is None
        else pathlib.Path(output_path)
    )
    result = FileResult(
        input_path, output_path, method_cls.get_ppid_from_ppkw(kwargs), "failed"
    )
    if not resume:
        # an unusable input is named before anything about the output;
        # a resumed batch keeps a complete output even if its input has
        # gone (the method checks the input when it computes)
        check_input_path(input_path)
    check_output_dir(output_path)
    # The output's lock is held from the check whether it exists to the
    # commit: a second run cannot pass the check before this one writes.
    with reserve_output(output_path):
        if not force:
            if resume and output_path.exists():
                result.frames = check_existing_output(output_path, result.ppid)
                result.status = "skipped"
                return result
            if not resume:
                _refuse_existing_output(input_path, output_path)
        result.ppid, result.frames, result.compute_seconds = _compute(
            method_cls, kwargs, options, input_path, output_path, watch
        )
    result.seconds = time.perf_counter() - start
    result.status = "done"
    return result


def _refuse_existing_output(input_path: pathlib.Path, output_path: pathlib.Path):
    """FileExistsError if the output is the input or exists"""
    if not os.path.lexists(output_path):
        return  # the input exists: a missing output path is not the input
    if same_file(input_path, output_path):
        raise FileExistsError(
            f"Output file '{output_path}' is the input file; use --force to "
            f"write the background into the input file"
        )
    raise FileExistsError(
        f"Output file '{output_path}' already exists; use --force to replace it"
    )


def check_existing_output(output_path: pathlib.Path, ppid: str) -> int | None:
    """The frame count of a complete output with `ppid`, else ValueError

    Parameters
    ----------
    output_path: pathlib.Path
        An existing output file
    ppid: str
        The canonical PPID requested

    Returns
    -------
    frames: int or None
        Number of frames of the output's background (as its log says)

    Raises
    ------
    ValueError
        If the file cannot be read, holds no background written by dcbg
        or one with another PPID; the message names the file and says
        that ``--force`` (``force=True``) replaces it
    """
    try:
        old_ppid, frames = read_output_ppid(output_path)
    except ValueError as exc:
        raise ValueError(
            f"Output '{output_path}' exists but is not a readable .rtdc file "
            f"({exc}); use --force (force=True) to replace it"
        ) from None
    if old_ppid is None:
        raise ValueError(
            f"Output '{output_path}' exists but holds no background computed "
            f"by dcbg; use --force (force=True) to replace it"
        )
    if old_ppid != ppid:
        raise ValueError(
            f"Output '{output_path}' exists with another PPID ({old_ppid}, "
            f"requested {ppid}); use --force (force=True) to recompute it"
        )
    return frames


def _compute(method_cls, kwargs, options, input_path, output_path, watch):
    """Run the method; returns its PPID, frame count and compute time

    The API writes the output as a transaction (an existing output keeps
    all but its background until the new one is complete) and removes
    the temporary files of killed earlier attempts.
    """
    bg = None
    try:
        with method_cls(input_path, output_path, options=options, **kwargs) as bg:
            with watch(bg) if watch is not None else contextlib.nullcontext():
                compute_start = time.perf_counter()
                bg.process()
                compute_seconds = time.perf_counter() - compute_start
            return bg.get_ppid(), bg.image_count, compute_seconds
    except KeyboardInterrupt:
        if bg is not None and bg.committed:
            message = f"Interrupted after '{output_path}' was complete; it was kept"
        else:
            message = (
                "Interrupted; the computation was stopped and its output discarded"
            )
        raise KeyboardInterrupt(message) from None


def open_measurement(path, policy=None):
    """An input measurement opened for reading under a basin policy

    What ``dcbg plot`` and ``dcbg check`` read: the path is checked as an
    input of :func:`process_file` is, and basins are followed as `policy`
    says (as for computing: ``--basin-root``, ``--allow-remote-basins``).

    Parameters
    ----------
    path: str or pathlib.Path
        .rtdc file
    policy: dcbg.io.input.BasinPolicy or None
        Which basins are followed (e.g. ``RunOptions.basin_policy``);
        None: dcbg's default policy (no remote basins, file basins only
        to regular HDF5 files)

    Returns
    -------
    path: pathlib.Path
        The checked path
    measurement: dcbg.io.input.RtdcMeasurement
        The open measurement (close it); ``.ds`` is the dclab dataset

    Raises
    ------
    FileNotFoundError
        If the file does not exist
    ValueError
        If it is not a regular HDF5 file or cannot be opened
    """
    from .io.input import RtdcMeasurement

    path = check_input_path(pathlib.Path(path))
    return path, RtdcMeasurement(path, policy)
