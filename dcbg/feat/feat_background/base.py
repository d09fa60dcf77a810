"""Base class of all background methods and the method registry"""

from __future__ import annotations

import abc
import inspect
import logging
import math
import numbers
import os
import pathlib
import threading
import time

from ... import ppid
from ..._version import __version__
from ...io import ImageStack, OutputFile
from ...io.conventions import LOG_NAME, PPID_ATTR, PPID_GENERATION_ATTR, log_lines
from ...io.input import RtdcMeasurement
from ...io.output import same_file, write_errors_named
from ...run_options import RunOptions
from ...workers import Counter, WorkerPool, close_pools

#: dcbg's top-level logger, parent of every method's logger
PACKAGE_LOGGER = "dcbg"
# A warning of dcbg is a Python warning and a log record of the same text
# (see `dcbg.run_options.warn`). Python prints a record that no handler
# takes with its last-resort handler: the logging HOWTO's NullHandler for
# libraries keeps it from printing the warning a second time. Handlers
# that an application configures (a log file, dcnum's job log) still
# receive every record.
logging.getLogger(PACKAGE_LOGGER).addHandler(logging.NullHandler())


class Progress:
    """Fraction of the work done, in [0, 1], readable from any thread"""

    def __init__(self):
        self.value = 0.0


class Background(abc.ABC):
    """Base class for background computation

    Parameters
    ----------
    input_data: array-like or pathlib.Path or str
        Either the path to an .rtdc (HDF5) file with the "image" feature
        (which may live in a basin), or an array-like image stack whose
        first axis enumerates frames (numpy array, h5py dataset; uint8 or
        numbers that are integers in 0..255)
    output_path: pathlib.Path or str
        Path to the output file. If `input_data` is a path, you can set
        `output_path` to the same path to write directly to the input
        file. The data are written to the "image_bg" (and "bg_off")
        features of the output file. A new output file references the
        input file as a basin, so it shows all input features too. The
        output is written to a temporary sibling and moved into place
        when :meth:`process` succeeds.
    compress: bool
        Whether to compress background data (Zstandard). Set this to
        False for faster processing.
    num_cpus: int
        Number of worker threads for the median computation. Defaults
        to the number of CPUs available to this process; more than that
        is reduced to it (with a warning).
    basin_root: str or pathlib.Path or None
        Keyword-only. Follow file basins of the input only to files that
        resolve (symbolic links followed) inside this directory tree;
        a basin that points elsewhere is refused (not read and not
        carried into the output). None (default): file basins may point
        anywhere, but only to regular HDF5 files. See
        :mod:`dcbg.io.input.policy` for the whole basin policy.
    allow_remote_basins: bool
        Keyword-only. Follow remote basins (http, S3, DCOR) of the input;
        dclab then contacts the hosts the file names. Default False: no
        network access while reading the input.
    options: dcbg.run_options.RunOptions or None
        Keyword-only. The framework options checked once by
        :meth:`RunOptions.create <dcbg.run_options.RunOptions.create>`
        (as the command line and the batch build them); `compress`,
        `num_cpus`, `basin_root` and `allow_remote_basins` must then be
        left at their defaults.
    kwargs:
        Keyword arguments of the method (see :meth:`check_user_kwargs`)
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # dcnum (convert_to_dtype), ChipStream and inspect-based tools read
        # the annotations of check_user_kwargs as types, also in modules
        # with ``from __future__ import annotations``
        ppid.resolve_annotations(cls.check_user_kwargs)

    def __init__(
        self,
        input_data,
        output_path,
        compress=True,
        num_cpus=None,
        *,
        basin_root=None,
        allow_remote_basins=False,
        options: RunOptions | None = None,
        **kwargs,
    ):
        self.logger = logging.getLogger(
            f"dcbg.feat.feat_background.{self.__class__.__name__}"
        )
        if not isinstance(output_path, (str, os.PathLike)):
            raise TypeError(
                f"output_path must be a str or pathlib.Path, got "
                f"{type(output_path).__name__}"
            )
        self.output_path = pathlib.Path(output_path)
        self._check_kwarg_names(kwargs)
        self.check_user_kwargs(**kwargs)

        #: background keyword arguments
        self.kwargs = {
            name: default
            for name, (_, default) in ppid.get_kwarg_spec(type(self)).items()
        }
        self.kwargs.update(kwargs)

        if options is None:
            # the warning about num_cpus is the method's
            options = RunOptions.create(
                compress=compress,
                num_cpus=num_cpus,
                basin_root=basin_root,
                allow_remote_basins=allow_remote_basins,
                logger=self.logger,
            )
        else:
            given = [
                name
                for name, value, default in (
                    ("compress", compress, True),
                    ("num_cpus", num_cpus, None),
                    ("basin_root", basin_root, None),
                    ("allow_remote_basins", allow_remote_basins, False),
                )
                if value is not default
            ]
            if given:
                raise TypeError(
                    f"{type(self).__name__} got options and {given}: these "
                    f"are part of the options (dcbg.run_options.RunOptions)"
                )
        #: the checked framework options (compression, CPUs, basin policy)
        self.options = options
        #: number of CPUs (worker threads) used
        self.num_cpus = options.num_cpus
        self.compress = options.compress
        #: which basins of the input are followed (see dcbg.io.input.policy)
        self.basin_policy = options.basin_policy

        # Attributes of dcnum's Background, with dcnum's meaning (dcnum
        # code reads them): image_proc, hdin, h5in, h5out, paths_ref,
        # writer, worker_counter, queue, workers, image_shape, image_count,
        # input_data, kwargs, num_cpus, output_path, logger.
        #: fraction of images that have been processed (``.value``)
        self.image_proc = Progress()
        #: input measurement (dclab dataset wrapper), None for array input
        self.hdin: RtdcMeasurement | None = None
        #: input h5py.File
        self.h5in = None
        #: output h5py.File
        self.h5out = None
        #: reference paths for logging to the output .rtdc file
        self.paths_ref = []
        self.writer = None
        #: number of jobs finished by the worker threads
        self.worker_counter = Counter()
        #: job queue of the worker threads (None when not running)
        self.queue = None
        #: worker threads (threads, not processes; empty when not running)
        self.workers = []
        self._pool: WorkerPool | None = None
        self._io: WorkerPool | None = None
        self._output: OutputFile | None = None
        self._processed = False
        self._lock = threading.Lock()

        try:
            if isinstance(input_data, (str, os.PathLike)):
                input_path = pathlib.Path(input_data)
                in_place = input_path.exists() and same_file(
                    input_path, self.output_path
                )
                self.hdin = RtdcMeasurement.open(input_path, self.basin_policy)
                self.h5in = self.hdin.h5
                if not in_place:
                    self.paths_ref.append(input_path)
                #: the input image stack (uint8 frames on access)
                self.input_data = self.hdin.images
            elif isinstance(input_data, ImageStack):
                self.input_data = input_data
            else:
                self.input_data = ImageStack(input_data)

            #: shape of event images
            self.image_shape = self.input_data.frame_shape
            #: number of images in the input data
            self.image_count = len(self.input_data)
            if self.image_count == 0:
                where = self.hdin.path if self.hdin else "the input array"
                raise ValueError(
                    f"The 'image' feature of {where} has zero frames; "
                    f"there is nothing to compute a background from"
                )
            self._output = OutputFile(
                self.output_path, self.hdin, self.compress, event_count=self.image_count
            )
            # the staged output holds no finished background yet, so it
            # must not claim the input's (see stamp_pipeline)
            self._output.clear_pipeline_background()
            self.h5out = self._output.h5
            #: dclab.RTDCWriter for the output file
            self.writer = self._output.writer
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, type, value, tb):
        if type is None:
            self.keep_started_output()
        self.close()

    # --- extension API for subclasses -----------------------------------
    # A method implements check_user_kwargs and process_approach; it reads
    # frames through `input_data` (an ImageStack), writes through `output`
    # and runs kernels on `pool` (I/O on `io_pool`) after start_workers().

    @property
    def output(self) -> OutputFile:
        """The staged output file; methods write their features through it"""
        return self._output

    @property
    def pool(self) -> WorkerPool | None:
        """Worker threads for kernels and chunk (de)compression

        ``num_cpus`` threads, started by :meth:`start_workers`, stopped by
        :meth:`close_workers`; None when not running.
        """
        return self._pool

    @property
    def io_pool(self) -> WorkerPool | None:
        """One thread for HDF5 reads and writes next to `pool` (or None)"""
        return self._io

    @property
    def committed(self) -> bool:
        """Whether the output is complete at `output_path` (dcbg extension)"""
        return self._output is not None and self._output.committed

    def keep_started_output(self):
        """Keep what manual steps computed (as dcnum does on a clean exit)

        Called when the ``with`` block is left without an exception and
        :meth:`process` was not run. If the output holds background data
        (e.g. from :meth:`BackgroundRollMed.process_next_batch`), they are
        finalised by :meth:`finish_partial_output` and the output is
        committed; otherwise the output path is left as it was.
        """
        with self._lock:
            if self._processed or self._output is None or not self._output.started:
                return
            self._processed = True
        try:
            self.close_workers()
            self.finish_partial_output()
            self.stamp_ppid()
            self._commit()
        except BaseException:
            self.close_workers()
            self._output.discard()
            raise

    def finish_partial_output(self):  # noqa: B027 (an optional hook)
        """Make the data of manual steps a consistent output (subclasses)"""

    def close(self):
        """Release files and threads; discard an uncommitted output"""
        self.close_workers()
        if self._output is not None:
            self._output.close()
        if self.hdin is not None:
            self.hdin.close()

    def start_workers(self):
        """Start `num_cpus` worker threads for kernels and one I/O thread

        The compiled kernels release the GIL, so the workers use all
        cores while the I/O thread reads and writes HDF5 data.
        """
        if self._pool is None:
            name = f"dcbg-{self.get_ppid_code()}"
            self._pool = WorkerPool(self.num_cpus, name=name)
            self._io = WorkerPool(1, name=f"{name}-io")
            self.queue = self._pool.queue
            self.workers = self._pool.workers
            self.worker_counter = self._pool.counter

    def close_workers(self):
        """Stop the worker threads (waits for running jobs)"""
        close_pools(getattr(self, "_io", None), getattr(self, "_pool", None))
        self._pool = self._io = None
        self.queue = None
        self.workers = []

    @classmethod
    def _check_kwarg_names(cls, kwargs):
        valid = list(ppid.get_kwarg_spec(cls))
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise TypeError(
                f"{cls.__name__} got unknown keyword argument(s) {unknown}; "
                f"valid are {valid}"
            )

    @staticmethod
    @abc.abstractmethod
    def check_user_kwargs(**kwargs):
        """Implement this to check the kwargs during init"""

    def get_ppid(self):
        """Return a unique background pipeline identifier

        The pipeline identifier is universally applicable and must be
        backwards-compatible. It is defined as ``KEY:KW_BACKGROUND``,
        where KEY is e.g. "sparsemed" or "rollmed" and KW_BACKGROUND the
        keyword arguments of :meth:`check_user_kwargs`, e.g.
        ``kernel_size=100^batch_size=10000``, abbreviated to
        ``k=100^b=10000``.
        """
        return self.get_ppid_from_ppkw(self.kwargs)

    @classmethod
    def get_ppid_code(cls):
        """The method's key, e.g. "rollmed" for BackgroundRollMed"""
        if cls is Background:
            raise ValueError("The Background base class has no PPID code")
        key = cls.__name__.lower()
        if key.startswith("background"):
            key = key[len("background") :]
        return key

    @classmethod
    def get_ppid_from_ppkw(cls, kwargs):
        """Return the PPID based on given keyword arguments for a subclass"""
        return f"{cls.get_ppid_code()}:{ppid.kwargs_to_ppid(cls, kwargs)}"

    @staticmethod
    def get_ppkw_from_ppid(bg_ppid):
        """Return keyword arguments for any subclass from a PPID string

        Raises
        ------
        ValueError
            If the PPID is malformed, names an unknown method or key, or
            holds a value of the wrong type
        """
        return resolve_method(bg_ppid)[1]

    def get_progress(self):
        """Return progress of background computation, float in [0,1]"""
        if self.image_count == 0:
            return 0.0
        return min(1.0, max(0.0, float(self.image_proc.value)))

    def process(self):
        """Perform the background computation

        This irreversibly removes/overrides any "image_bg" and "bg_off"
        features defined in the output file `self.h5out`. The output is
        computed in a staged copy and moved to `output_path` in one step
        when complete: afterwards `h5out` is the finished output, open for
        reading. On any error (including KeyboardInterrupt) the file at
        the output path (also the input file, if written in place) stays
        exactly as it was.
        """
        with self._lock:
            if self._processed:
                raise RuntimeError(f"{self} has already been processed")
            self._processed = True
        t0 = time.perf_counter()
        try:
            with write_errors_named(self.output_path):
                duration = self._compute_and_commit(t0)
        except BaseException:
            self.close_workers()
            self._output.discard()
            raise
        self.image_proc.value = 1.0
        self.logger.info(f"Background computation time: {duration:.1f}s")

    def _compute_and_commit(self, t0: float):
        """process(): compute, stamp, log, then move the output into place"""
        self.process_approach()
        self.stamp_ppid()
        self.stamp_pipeline()
        duration = time.perf_counter() - t0
        self._output.store_log(
            LOG_NAME,
            log_lines(
                {
                    "software": f"dcbg {__version__}",
                    "ppid": self.get_ppid(),
                    "ppid generation": ppid.PPID_GENERATION,
                    "input": [str(p) for p in self.paths_ref],
                    "frames": self.image_count,
                    "num_cpus": self.num_cpus,
                    "compress": self.compress,
                    "seconds": round(duration, 3),
                }
            ),
        )
        # worker threads must be idle before the file is closed
        self.close_workers()
        self._commit()
        return duration

    def _commit(self):
        """Move the staged output into place; `h5out` then reads it"""

        def release_input():
            # the input file is about to be replaced: close it first
            if self._output.in_place and self.hdin is not None:
                self.hdin.close()

        self._output.commit(release_input=release_input)
        self.h5out = self._output.h5
        if self._output.in_place:
            self.h5in = self.h5out

    def stamp_ppid(self):
        """Store the PPID with the background features it produced"""
        self._output.set_feature_attrs(
            {
                PPID_ATTR: self.get_ppid(),
                PPID_GENERATION_ATTR: ppid.PPID_GENERATION,
            }
        )

    def stamp_pipeline(self):
        """Make the output's pipeline attributes name this background

        Sets "pipeline:dcnum generation", "pipeline:dcnum data" and
        "pipeline:dcnum background" as dcnum's job runner reads them, so
        that a later dcnum run with the same background PPID reuses the
        background and one with another PPID recomputes it (see
        :func:`dcbg.io.conventions.set_pipeline_background`). A background that
        dcnum 0.31.0 cannot reuse (held in an internal basin, as the
        sparse median's) and the result of array input (no measurement to
        describe) claim nothing, so that dcnum recomputes them.
        """
        if self.hdin is not None:
            self._output.set_pipeline_background(self.get_ppid(), ppid.PPID_GENERATION)

    @abc.abstractmethod
    def process_approach(self):
        """The actual background computation approach"""


def get_available_background_methods():
    """Return dictionary of background computation methods

    The dictionary maps each method's PPID code to its class. It is
    derived from the subclasses of :class:`Background`, so a new method
    registers itself by subclassing it.
    """
    methods = {}
    stack = list(Background.__subclasses__())
    while stack:
        cls = stack.pop(0)
        stack.extend(cls.__subclasses__())
        if not inspect.isabstract(cls):
            methods.setdefault(cls.get_ppid_code(), cls)
    return methods


def resolve_method(
    bg_ppid: str | None = None,
    *,
    method: str | None = None,
    kwargs: dict | None = None,
    methods: dict | None = None,
) -> tuple[type, dict]:
    """The method class and its checked keyword arguments

    The one place where a PPID, or a method name with keyword arguments,
    becomes what a background is computed with: the CLI, the cluster and
    :meth:`Background.get_ppkw_from_ppid` use it.

    Parameters
    ----------
    bg_ppid: str or None
        A (possibly abbreviated) background PPID, e.g. "rollmed:k=50";
        keys it does not name take their defaults
    method: str or None
        Instead of `bg_ppid`: a method code, e.g. "sparsemed"
    kwargs: dict or None
        With `method`: its keyword arguments (missing ones take defaults)
    methods: dict or None
        Method code -> class; default :func:`get_available_background_methods`

    Returns
    -------
    cls: type
        The Background subclass
    kwargs: dict
        All its keyword arguments, checked by its ``check_user_kwargs``

    Raises
    ------
    ValueError
        For a malformed PPID, an unknown method or key, or a value the
        method rejects
    """
    if methods is None:
        methods = get_available_background_methods()
    if (bg_ppid is None) == (method is None):
        raise ValueError("Give either a background PPID or a method name")
    if bg_ppid is not None:
        if kwargs is not None:
            raise ValueError("Keyword arguments are given in the PPID itself")
        if not isinstance(bg_ppid, str) or bg_ppid.count(":") != 1:
            raise ValueError(
                f"Invalid background PPID {bg_ppid!r}: expected 'METHOD:KWARGS', "
                f"e.g. 'rollmed:k=100^b=10000'"
            )
        method, kwargs_ppid = (part.strip() for part in bg_ppid.split(":"))
    if method not in methods:
        where = f" in PPID {bg_ppid!r}" if bg_ppid is not None else ""
        raise ValueError(
            f"Unknown background method '{method}'{where}; available are "
            f"{sorted(methods)}"
        )
    cls = methods[method]
    if bg_ppid is not None:
        return cls, ppid.ppid_to_kwargs(cls, kwargs_ppid)
    kwargs = dict(kwargs or {})
    spec = ppid.get_kwarg_spec(cls)
    unknown = sorted(set(kwargs) - set(spec))
    if unknown:
        raise ValueError(
            f"Method '{method}' has no keyword argument(s) {unknown}; valid are "
            f"{list(spec)}"
        )
    cls.check_user_kwargs(**kwargs)
    return cls, {name: kwargs.get(name, default) for name, (_, default) in spec.items()}


def check_positive_int(name: str, value, even: bool = False):
    """Raise ValueError unless `value` is a positive (even) integer"""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if even and value % 2:
        raise ValueError(f"{name} must be an even number, got {value}")


def check_real(name: str, value, low=None, high=None, low_open=False):
    """Raise ValueError unless `value` is a finite number in the range"""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        rule = ">" if low_open else ">="
        raise ValueError(f"{name} must be {rule} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
