"""Run dcnum's pipeline with dcbg's background engines

dcnum 0.31.0's job runner (:class:`dcnum.logic.DCNumJobRunner`, also what
ChipStream runs) looks background methods up by their PPID code through
``get_available_background_methods``. :func:`use_dcbg` makes that lookup
return dcbg's classes for as long as the ``with`` block runs::

    from dcnum.logic import DCNumJobRunner, DCNumPipelineJob
    from dcbg.dcnum import use_dcbg

    job = DCNumPipelineJob(path_in="measurement.rtdc",
                           background_code="sparsemed")
    with use_dcbg(), DCNumJobRunner(job=job) as runner:
        runner.run()

The backgrounds are bit-identical and have the same PPIDs, so the job's
pipeline identifiers, hash and output file are those of a native run;
only the background step is faster. dcbg's log lines of the background
step go to dcnum's job log (the ``dcnum-log-*`` log of the output file).

dcnum is an optional dependency: ``pip install "dcbg[dcnum]"``.
"""

import contextlib
import logging
import threading

from .feat.feat_background import get_available_background_methods
from .ppid import PPID_GENERATION

#: the dcnum release whose background module dcbg replaces
DCNUM_VERSION = "0.31.0"

#: modules of dcnum that look background methods up, each by the name
#: ``get_available_background_methods`` (the job validates the code and
#: computes the PPID with it, the runner constructs the method with it)
LOOKUP_MODULES = (
    "dcnum.logic.job",
    "dcnum.logic.ctrl",
    "dcnum.feat.feat_background",
    "dcnum.feat.feat_background.base",
)
#: the module of `LOOKUP_MODULES` whose lookup constructs the method
RUNNER_MODULE = "dcnum.logic.ctrl"
#: the name patched in each of `LOOKUP_MODULES`
LOOKUP_NAME = "get_available_background_methods"

#: logger of dcnum whose handlers (e.g. the job runner's log file) also
#: receive dcbg's log records while :func:`use_dcbg` is active
DCNUM_LOGGER = "dcnum"
#: dcbg's top-level logger (the background methods log to its children)
DCBG_LOGGER = "dcbg"
#: level dcbg's logger is lowered to while active: dcnum's runner logs its
#: own steps at INFO, so dcbg's INFO lines must be created too
FORWARD_LEVEL = logging.INFO

_lock = threading.RLock()
_depth = 0
_saved: dict = {}


class _DcnumLogForwarder(logging.Handler):
    """Hand dcbg's log records to the handlers of dcnum's logger

    Records keep their logger name (``dcbg.feat.feat_background...``), so
    dcnum's job log shows which lines came from dcbg. They reach only the
    handlers attached to the ``dcnum`` logger itself (the runner attaches
    its log file there), not the root logger's, which already receives
    them through dcbg's own logger: nothing is logged twice.
    """

    def emit(self, record):
        target = logging.getLogger(DCNUM_LOGGER)
        if not target.isEnabledFor(record.levelno):
            return
        for handler in list(target.handlers):
            if record.levelno >= handler.level:
                handler.handle(record)


def dcbg_background_methods():
    """dcbg's background methods, as dcnum's lookup returns them"""
    return get_available_background_methods()


class RunnerMethod:
    """A dcbg method as dcnum's job runner constructs it

    dcnum's runner computes the background into a temporary file that
    dcnum's ``Background`` creates with ``dcnum.write.create_with_basins``
    (a file basin to the input naming all of the input's features,
    including an ``image_bg``/``bg_off`` that the new background replaces
    or, for a method without ``bg_off``, keeps). The runner's segmentation
    reads that file, so this creates it the same way before dcbg writes
    its background into it: the runner then sees the same data as in a
    native run. All other attributes are those of the dcbg class.
    """

    def __init__(self, cls):
        self.cls = cls

    def __getattr__(self, name):
        return getattr(self.cls, name)

    def __repr__(self):
        return f"RunnerMethod({self.cls.__name__})"

    def __call__(self, input_data, output_path, *args, **kwargs):
        import os
        import pathlib

        from dcnum.write import create_with_basins

        output_path = pathlib.Path(output_path)
        if isinstance(input_data, (str, os.PathLike)) and not output_path.exists():
            create_with_basins(path_out=output_path, basin_paths=[input_data])
        return self.cls(input_data, output_path, *args, **kwargs)


def runner_background_methods():
    """dcbg's background methods for dcnum's job runner (`RunnerMethod`)"""
    return {
        code: RunnerMethod(cls)
        for code, cls in get_available_background_methods().items()
    }


def _check_dcnum():
    """Import dcnum's lookup modules; refuse an incompatible dcnum"""
    import importlib

    try:
        import dcnum
        from dcnum.meta.ppid import DCNUM_PPID_GENERATION
    except ImportError as exc:
        raise ImportError(
            f"dcbg.dcnum.use_dcbg needs dcnum {DCNUM_VERSION} "
            f"(pip install 'dcbg[dcnum]'): {exc}"
        ) from exc
    if DCNUM_PPID_GENERATION != PPID_GENERATION:
        # The runner would stamp its generation on dcbg's results, which
        # are those of generation PPID_GENERATION.
        raise RuntimeError(
            f"dcnum {getattr(dcnum, '__version__', '?')} computes pipeline "
            f"generation {DCNUM_PPID_GENERATION}, dcbg's backgrounds are those "
            f"of generation {PPID_GENERATION} (dcnum {DCNUM_VERSION}); install "
            f"dcnum {DCNUM_VERSION} to run its pipeline with dcbg"
        )
    modules = []
    for name in LOOKUP_MODULES:
        module = importlib.import_module(name)
        if not hasattr(module, LOOKUP_NAME):
            raise RuntimeError(
                f"dcnum {getattr(dcnum, '__version__', '?')} has no "
                f"'{name}.{LOOKUP_NAME}'; dcbg.dcnum.use_dcbg supports the "
                f"layout of dcnum {DCNUM_VERSION}"
            )
        modules.append(module)
    return modules


def _install():
    modules = _check_dcnum()
    _saved["lookups"] = [(m, getattr(m, LOOKUP_NAME)) for m in modules]
    for module in modules:
        if module.__name__ == RUNNER_MODULE:
            setattr(module, LOOKUP_NAME, runner_background_methods)
        else:
            setattr(module, LOOKUP_NAME, dcbg_background_methods)
    logger = logging.getLogger(DCBG_LOGGER)
    forwarder = _DcnumLogForwarder()
    _saved["logging"] = (logger.level, forwarder)
    logger.addHandler(forwarder)
    if logger.getEffectiveLevel() > FORWARD_LEVEL:
        logger.setLevel(FORWARD_LEVEL)


def _uninstall():
    for module, original in _saved.pop("lookups", []):
        setattr(module, LOOKUP_NAME, original)
    level, forwarder = _saved.pop("logging")
    logger = logging.getLogger(DCBG_LOGGER)
    logger.removeHandler(forwarder)
    logger.setLevel(level)


def is_active() -> bool:
    """Whether dcnum's background lookup currently returns dcbg's methods"""
    with _lock:
        return _depth > 0


@contextlib.contextmanager
def use_dcbg():
    """Make dcnum compute backgrounds with dcbg inside the ``with`` block

    While active, every lookup of background methods by dcnum (in
    ``dcnum.logic.job``, ``dcnum.logic.ctrl`` and
    ``dcnum.feat.feat_background``) returns dcbg's classes, so that
    ``DCNumPipelineJob`` computes the background PPID and
    ``DCNumJobRunner`` the background with dcbg. dcbg's log records also
    go to the handlers of the ``dcnum`` logger, i.e. into the job's log.
    On exit, dcnum's own lookups and the logging setup are restored.

    The patch is process-wide (dcnum's lookups are module globals): a
    dcnum run in another thread during the block also uses dcbg. Nested
    and concurrent uses are counted; the last one to exit restores dcnum.

    Raises
    ------
    ImportError
        If dcnum is not installed
    RuntimeError
        If the installed dcnum computes another pipeline generation than
        dcbg's backgrounds, or has another module layout
    """
    global _depth
    with _lock:
        if _depth == 0:
            _install()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _uninstall()
