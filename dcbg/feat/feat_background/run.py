"""One background computation as a run: open, compute, commit

:class:`~dcbg.feat.feat_background.base.Background` is the face that
methods, dcnum and users see, with dcnum's attribute names. Behind it, a
:class:`BackgroundRun` holds what one computation uses, in the order it
uses it:

1. open: the input (an .rtdc measurement whose basins are followed as
   :class:`~dcbg.run_options.RunOptions` allow, or an array-like image
   stack) and the staged output (:class:`dcbg.io.OutputFile`);
2. compute: the worker threads (`pool` for kernels and chunk
   (de)compression, `io_pool` for HDF5 reads and writes) and the progress;
3. commit or discard, in :meth:`BackgroundRun.transaction`: the staged
   output moves into place in one step when everything succeeded, else it
   is removed and the output path stays as it was; then :meth:`close`.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import threading

import numpy as np

from ... import ppid
from ..._version import __version__
from ...errors import InputFileError
from ...io import OutputFile
from ...io.conventions import LOG_NAME, log_lines
from ...io.input import RtdcMeasurement, open_input
from ...io.output import write_errors_named
from ...run_options import RunOptions
from ...workers import JOBS_PER_THREAD, Counter, WorkerPool, close_pools


class Progress:
    """Fraction of the work done, in [0, 1], readable from any thread"""

    def __init__(self):
        self.value = 0.0


def check_output_path(output_path) -> pathlib.Path:
    """The output path as a :class:`pathlib.Path`, or a TypeError"""
    if not isinstance(output_path, (str, os.PathLike)):
        raise TypeError(
            f"output_path must be a str or pathlib.Path, got "
            f"{type(output_path).__name__}"
        )
    return pathlib.Path(output_path)


class BackgroundRun:
    """The input, staged output and workers of one background computation

    Opening happens in the constructor; on any error there, everything
    opened so far is closed again.

    Parameters
    ----------
    input_data: array-like or pathlib.Path or str
        An .rtdc file or an image stack (see :class:`.Background`)
    output_path: pathlib.Path or str
        Where the output is committed
    options: dcbg.run_options.RunOptions
        Compression, worker threads and basin policy

    Attributes
    ----------
    measurement: dcbg.io.input.RtdcMeasurement or None
        The input measurement; None for array input
    images: dcbg.io.ImageStack
        The input frames (uint8 on access)
    image_count: int
        Number of frames (at least 1)
    image_shape: tuple of int
        Shape of a frame (height, width) in pixels
    paths_ref: list of pathlib.Path
        Input files the output's log names (not the output itself)
    output: dcbg.io.OutputFile
        The staged output
    h5in, h5out: h5py.File or None
        Input file (None for arrays) and output file; after an in-place
        commit both are the finished output
    progress: Progress
        Fraction of the computation done
    """

    def __init__(self, input_data, output_path, options: RunOptions):
        self.options = options
        self.output_path = check_output_path(output_path)
        self.progress = Progress()
        #: the opened input (dcbg.io.input: a file or an array)
        self.input = None
        self.measurement: RtdcMeasurement | None = None
        self.h5in = None
        self.h5out = None
        self.writer = None
        self.paths_ref = []
        self.output: OutputFile | None = None
        self.pool: WorkerPool | None = None
        self.io_pool: WorkerPool | None = None
        #: jobs finished by the worker threads (kept when they stop)
        self.worker_counter = Counter()
        self._claimed = False
        self._lock = threading.Lock()
        try:
            self._open(input_data)
        except BaseException:
            self.close()
            raise

    def _open(self, input_data):
        # the input kind (a file, an array) is chosen by dcbg.io.input
        self.input = open_input(input_data, self.options.basin_policy)
        if self.input.is_file:
            self.measurement = self.input
        self.h5in = self.input.h5
        self.images = self.input.images
        self.image_shape = self.images.frame_shape
        self.image_count = len(self.images)
        if self.image_count == 0:
            if self.measurement is None:
                raise ValueError(
                    "The 'image' feature of the input array has zero frames; "
                    "there is nothing to compute a background from"
                )
            raise InputFileError(
                self.measurement.path,
                f"The 'image' feature of {self.measurement.path} has zero "
                f"frames; there is nothing to compute a background from",
                feature="image",
            )
        self.output = OutputFile(
            self.output_path,
            self.measurement,
            self.options.compress,
            event_count=self.image_count,
        )
        if self.measurement is not None and not self.output.in_place:
            self.paths_ref.append(pathlib.Path(input_data))
        # the staged output holds no finished background yet, so it must
        # not claim the input's (see Background.stamp_pipeline)
        self.output.clear_pipeline_background()
        self.h5out = self.output.h5
        self.writer = self.output.writer

    def describe_input(self) -> str:
        """How messages name the input: its quoted path or "the input array" """
        if self.measurement is None:
            return "the input array"
        return f"'{self.measurement.path}'"

    # --- compute ----------------------------------------------------------

    @property
    def queue(self):
        """Job queue of the worker threads (None when not running)"""
        return self.pool.queue if self.pool is not None else None

    @property
    def workers(self) -> list:
        """Worker threads (empty when not running)"""
        return self.pool.workers if self.pool is not None else []

    def start_workers(self, name: str):
        """Start `num_cpus` worker threads and one I/O thread (once)

        Parameters
        ----------
        name: str
            Thread name prefix, e.g. "dcbg-rollmed"
        """
        if self.pool is None:
            self.pool = WorkerPool(self.options.num_cpus, name=name)
            self.io_pool = WorkerPool(1, name=f"{name}-io")
            self.worker_counter = self.pool.counter

    def close_workers(self):
        """Stop the worker threads (waits for running jobs)"""
        close_pools(self.io_pool, self.pool)
        self.pool = self.io_pool = None

    def pixel_slices(self, npix: int, align: int = 1) -> list[slice]:
        """Pixel ranges for the worker threads, starting at multiples of `align`

        Several ranges per thread (`JOBS_PER_THREAD`) keep the jobs short,
        so that chunk (de)compression jobs, which have priority, never
        wait long, and balance the load.
        """
        blocks = -(-npix // align)
        parts = min(blocks, JOBS_PER_THREAD * self.options.num_cpus)
        bounds = np.linspace(0, blocks, parts + 1).astype(int) * align
        return [
            slice(int(a), min(int(b), npix))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            if min(b, npix) > a
        ]

    # --- commit -----------------------------------------------------------

    def claim(self, require_started: bool = False) -> bool:
        """Take the one right to finish this run (False: already taken)

        Parameters
        ----------
        require_started: bool
            Only if background data were written (manual steps)
        """
        with self._lock:
            if self._claimed or (
                require_started and (self.output is None or not self.output.started)
            ):
                return False
            self._claimed = True
            return True

    @contextlib.contextmanager
    def transaction(self, name_write_errors: bool = True):
        """Compute in the ``with`` block; commit after it, discard on error

        Parameters
        ----------
        name_write_errors: bool
            Report a full disk as a one-line error naming the output
            (see :func:`dcbg.io.hdf5_failures.write_errors_named`)
        """
        naming = (
            write_errors_named(self.output_path)
            if name_write_errors
            else contextlib.nullcontext()
        )
        try:
            with naming:
                yield
                # worker threads must be idle before the file is closed
                self.close_workers()
                self.commit()
        except BaseException:
            self.close_workers()
            self.output.discard()
            raise

    def store_log(self, bg_ppid: str, seconds: float):
        """Write the run's log (software, PPID, input, settings, duration)"""
        self.output.store_log(
            LOG_NAME,
            log_lines(
                {
                    "software": f"dcbg {__version__}",
                    "ppid": bg_ppid,
                    "ppid generation": ppid.PPID_GENERATION,
                    "input": [str(p) for p in self.paths_ref],
                    "frames": self.image_count,
                    "num_cpus": self.options.num_cpus,
                    "compress": self.options.compress,
                    "seconds": round(seconds, 3),
                }
            ),
        )

    def commit(self):
        """Move the staged output into place; `h5out` then reads it"""

        def release_input():
            # the input file is about to be replaced: close it first
            if self.output.in_place and self.measurement is not None:
                self.measurement.close()

        self.output.commit(release_input=release_input)
        self.h5out = self.output.h5
        if self.output.in_place:
            self.h5in = self.h5out

    def close(self):
        """Release files and threads; discard an uncommitted output"""
        self.close_workers()
        if self.output is not None:
            self.output.close()
        if self.input is not None:
            self.input.close()
