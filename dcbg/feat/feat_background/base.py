"""The base class of all background methods and the method registry

:class:`Background` is dcnum's facade: the constructor signature, the
attributes dcnum's code reads (``hdin``, ``h5out``, ``image_proc``, ...)
and the PPID methods are dcnum 0.31.0's. What a computation opens, runs
and commits is a :class:`~.run.BackgroundRun` behind it (``open ->
compute -> commit``); the attributes are views on that run. A method
subclasses :class:`Background` and implements :meth:`check_user_kwargs`
and :meth:`process_approach`; the checks of its keyword arguments are in
:mod:`.checks`.
"""

from __future__ import annotations

import abc
import inspect
import logging
import time

from ... import ppid
from ...io import OutputFile
from ...io.conventions import PPID_ATTR, PPID_GENERATION_ATTR
from ...run_options import RunOptions
from ...workers import WorkerPool
from .run import BackgroundRun, check_output_path

#: dcbg's top-level logger, parent of every method's logger
PACKAGE_LOGGER = "dcbg"
# A warning of dcbg is a Python warning and a log record of the same text
# (see `dcbg.run_options.warn`). Python prints a record that no handler
# takes with its last-resort handler: the logging HOWTO's NullHandler for
# libraries keeps it from printing the warning a second time. Handlers
# that an application configures (a log file, dcnum's job log) still
# receive every record.
logging.getLogger(PACKAGE_LOGGER).addHandler(logging.NullHandler())

#: the keyword arguments of Background.__init__ that RunOptions holds,
#: with their defaults (given together with `options`, they are an error)
OPTION_DEFAULTS = {
    "compress": True,
    "num_cpus": None,
    "basin_root": None,
    "allow_remote_basins": False,
}


def _run_view(name: str, doc: str) -> property:
    """A read-only attribute of dcnum's Background that the run holds"""
    return property(lambda self: getattr(self._run, name), doc=doc)


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
        #: logger of the method (a child of the "dcbg" logger)
        self.logger = logging.getLogger(
            f"dcbg.feat.feat_background.{self.__class__.__name__}"
        )
        # checked before anything is opened, in dcnum's order
        output_path = check_output_path(output_path)
        self._check_kwarg_names(kwargs)
        self.check_user_kwargs(**kwargs)
        #: background keyword arguments
        self.kwargs = {
            name: default
            for name, (_, default) in ppid.get_kwarg_spec(type(self)).items()
        }
        self.kwargs.update(kwargs)
        given = {
            "compress": compress,
            "num_cpus": num_cpus,
            "basin_root": basin_root,
            "allow_remote_basins": allow_remote_basins,
        }
        if options is None:
            # the warning about num_cpus is the method's
            options = RunOptions.create(**given, logger=self.logger)
        else:
            named = [k for k, v in given.items() if v is not OPTION_DEFAULTS[k]]
            if named:
                raise TypeError(
                    f"{type(self).__name__} got options and {named}: these "
                    f"are part of the options (dcbg.run_options.RunOptions)"
                )
        #: the checked framework options (compression, CPUs, basin policy)
        self.options = options
        self._run = BackgroundRun(input_data, output_path, options)

    # Attributes of dcnum's Background, with dcnum's meaning (dcnum code
    # reads them), as views on the run.
    hdin = _run_view(
        "measurement", "input measurement (dclab dataset wrapper), None for arrays"
    )
    h5in = _run_view("h5in", "input h5py.File (None for array input)")
    h5out = _run_view("h5out", "output h5py.File (the finished one after commit)")
    paths_ref = _run_view("paths_ref", "input paths named in the output's log")
    writer = _run_view("writer", "dclab.RTDCWriter for the output file")
    worker_counter = _run_view("worker_counter", "jobs finished by the workers")
    queue = _run_view("queue", "job queue of the worker threads (None: not running)")
    workers = _run_view("workers", "worker threads (empty when not running)")
    image_shape = _run_view("image_shape", "shape of event images")
    image_count = _run_view("image_count", "number of images in the input data")
    input_data = _run_view("images", "the input image stack (uint8 frames)")
    output_path = _run_view("output_path", "path of the output file")
    image_proc = _run_view("progress", "fraction of images processed (``.value``)")

    @property
    def num_cpus(self) -> int:
        """Number of CPUs (worker threads) used"""
        return self.options.num_cpus

    @property
    def compress(self) -> bool:
        """Whether the background features are compressed"""
        return self.options.compress

    @property
    def basin_policy(self):
        """Which basins of the input are followed (see dcbg.io.input.policy)"""
        return self.options.basin_policy

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
        return self._run.output

    @property
    def pool(self) -> WorkerPool | None:
        """Worker threads for kernels and chunk (de)compression

        ``num_cpus`` threads, started by :meth:`start_workers`, stopped by
        :meth:`close_workers`; None when not running.
        """
        return self._run.pool

    @property
    def io_pool(self) -> WorkerPool | None:
        """One thread for HDF5 reads and writes next to `pool` (or None)"""
        return self._run.io_pool

    @property
    def committed(self) -> bool:
        """Whether the output is complete at `output_path` (dcbg extension)"""
        return self._run.output is not None and self._run.output.committed

    def describe_input(self) -> str:
        """How messages name the input: its quoted path or "the input array" """
        return self._run.describe_input()

    def pixel_slices(self, npix: int, align: int = 1) -> list[slice]:
        """Pixel ranges for the `pool`'s jobs, starting at multiples of `align`"""
        return self._run.pixel_slices(npix, align)

    def keep_started_output(self):
        """Keep what manual steps computed (as dcnum does on a clean exit)

        Called when the ``with`` block is left without an exception and
        :meth:`process` was not run. If the output holds background data
        (e.g. from :meth:`BackgroundRollMed.process_next_batch`), they are
        finalised by :meth:`finish_partial_output` and the output is
        committed; otherwise the output path is left as it was.
        """
        if not self._run.claim(require_started=True):
            return
        with self._run.transaction(name_write_errors=False):
            self.close_workers()
            self.finish_partial_output()
            self.stamp_ppid()

    def finish_partial_output(self):  # noqa: B027 (an optional hook)
        """Make the data of manual steps a consistent output (subclasses)"""

    def close(self):
        """Release files and threads; discard an uncommitted output"""
        run = getattr(self, "_run", None)
        if run is not None:
            run.close()

    def start_workers(self):
        """Start `num_cpus` worker threads for kernels and one I/O thread

        The compiled kernels release the GIL, so the workers use all
        cores while the I/O thread reads and writes HDF5 data.
        """
        self._run.start_workers(f"dcbg-{self.get_ppid_code()}")

    def close_workers(self):
        """Stop the worker threads (waits for running jobs)"""
        run = getattr(self, "_run", None)
        if run is not None:
            run.close_workers()

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
        if not self._run.claim():
            raise RuntimeError(f"{self} has already been processed")
        t0 = time.perf_counter()
        with self._run.transaction():
            self.process_approach()
            self.stamp_ppid()
            self.stamp_pipeline()
            duration = time.perf_counter() - t0
            self._run.store_log(self.get_ppid(), duration)
        self.image_proc.value = 1.0
        self.logger.info(f"Background computation time: {duration:.1f}s")

    def stamp_ppid(self):
        """Store the PPID with the background features it produced"""
        self.output.set_feature_attrs(
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
            self.output.set_pipeline_background(self.get_ppid(), ppid.PPID_GENERATION)

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
