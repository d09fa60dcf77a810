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
only the background step is faster. dcbg's own methods are offered under
their codes too (e.g. ``background_code="sparsemode"``, the cell-robust
sparse mode): native dcnum knows no such code and cannot reproduce those
files. dcbg's log lines of the background
step go to dcnum's job log (the ``dcnum-log-*`` log of the output file).

dcnum is an optional dependency: ``pip install "dcbg[dcnum]"``.
"""

import contextlib
import logging
import sys
import threading
import warnings

from ._version import __version__
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
    """Hand dcbg's log records to dcnum's log handlers while active

    Records keep their logger name (``dcbg.feat.feat_background...``), so
    dcnum's job log shows which lines came from dcbg. Every record reaches
    the handlers of the ``dcnum`` logger (the runner's log file, i.e. the
    ``dcnum-log-*`` log of the output). dcbg's logger does not propagate
    while active; records below WARNING go on to the root logger's
    handlers here (where an application such as ``chipstream-cli
    --verbose`` shows dcnum's lines). A warning is shown once, as the
    Python warning dcbg issues with it (see
    :func:`dcbg.run_options.warn`): the root handlers do not
    print it a second time.
    """

    def emit(self, record):
        target = logging.getLogger(DCNUM_LOGGER)
        if target.isEnabledFor(record.levelno):
            _handle(target.handlers, record)
        if record.levelno < logging.WARNING:
            _handle(logging.getLogger().handlers, record)


def _handle(handlers, record):
    """Let each of `handlers` whose level admits `record` handle it"""
    for handler in list(handlers):
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
        caller = sys._getframe(1)
        # (catch_warnings swaps process-wide state: a warning of another
        # thread in these milliseconds is shown here, at the same place)
        with warnings.catch_warnings(record=True) as caught:
            method = self.cls(input_data, output_path, *args, **kwargs)
        # a warning of the constructor points to where dcnum's runner
        # constructs the method, as a warning of dcnum's own class would
        for warning in caught:
            warnings.warn_explicit(
                warning.message,
                warning.category,
                caller.f_code.co_filename,
                caller.f_lineno,
                module=caller.f_globals.get("__name__"),
                registry=caller.f_globals.setdefault("__warningregistry__", {}),
            )
        log_computed_by_dcbg(method)
        return method


def log_computed_by_dcbg(method):
    """Record in the job's log that dcbg computes its background

    One INFO line of the ``dcbg.dcnum`` logger, forwarded to dcnum's job
    log (the ``dcnum-log-*`` log of the output), with the versions of
    dcbg and dcnum, dcbg's method class and its PPID.
    """
    import dcnum

    cls = type(method)
    logging.getLogger(__name__).info(
        f"Background computed by dcbg {__version__} "
        f"({cls.__module__}.{cls.__qualname__}, {method.get_ppid()}, "
        f"pipeline generation {PPID_GENERATION}) in place of dcnum "
        f"{getattr(dcnum, '__version__', '?')}'s method (dcbg.dcnum.use_dcbg)"
    )


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


#: how a script protects the code that runs dcnum's job (Python's
#: "safe importing of the main module" for the spawn start method)
MAIN_GUARD = 'if __name__ == "__main__":'


def _refuse_unguarded_main():
    """Fail at once where dcnum's worker processes would rerun the job

    dcnum's job runner starts its workers with the "spawn" method: each
    worker imports the main script again. Code that runs the job at the
    top level of the script, outside `MAIN_GUARD`, then runs once more in
    every worker, which cannot start processes while it is starting, and
    dcnum's runner can end without output and without an error. This
    raises in the script's own process before anything runs, and in a
    worker that imports such a script.

    Raises
    ------
    RuntimeError
        If called while a worker process imports the main script, or from
        top-level code of the main script outside `MAIN_GUARD`
    """
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(
            f"dcbg.dcnum.use_dcbg() ran while a worker process imported the "
            f"main script: the script that runs dcnum's job must run it "
            f"under '{MAIN_GUARD}'"
        )
    script, line = _main_script_position()
    if script is not None and not _is_guarded(script, line):
        raise RuntimeError(
            f"dcbg.dcnum.use_dcbg() runs from top-level code of the script "
            f"'{script}' (line {line}) outside '{MAIN_GUARD}': dcnum's job "
            f"runner starts worker processes that import the script again and "
            f"would run the job once more; put the code that runs the job "
            f"under '{MAIN_GUARD}'"
        )


def _main_script_position():
    """(file, line) the main script's top-level code runs, or (None, None)

    None where no script's top-level code is on the stack: an interactive
    session, Jupyter, ``python -c``, a call from a thread.
    """
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is None or main_file is None:
        return None, None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return None, None


def _is_guarded(script: str, line: int) -> bool:
    """Whether `line` of `script` is inside a ``__name__ == "__main__"`` block

    A script whose source cannot be read or parsed counts as guarded
    (nothing to judge).
    """
    import ast

    try:
        with open(script, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=script)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _tests_main_name(node.test):
            first = node.body[0].lineno
            if first <= line <= node.body[-1].end_lineno:
                return True
    return False


def _tests_main_name(test) -> bool:
    """Whether an ``if`` test compares ``__name__`` with ``"__main__"``"""
    import ast

    names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
    values = {n.value for n in ast.walk(test) if isinstance(n, ast.Constant)}
    return "__name__" in names and "__main__" in values


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
    _saved["logging"] = (logger.level, logger.propagate, forwarder)
    logger.addHandler(forwarder)
    logger.propagate = False
    if logger.getEffectiveLevel() > FORWARD_LEVEL:
        logger.setLevel(FORWARD_LEVEL)


def _uninstall():
    for module, original in _saved.pop("lookups", []):
        setattr(module, LOOKUP_NAME, original)
    level, propagate, forwarder = _saved.pop("logging")
    logger = logging.getLogger(DCBG_LOGGER)
    logger.removeHandler(forwarder)
    logger.propagate = propagate
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
    ``DCNumJobRunner`` the background with dcbg. dcbg's log records go
    to the handlers of the ``dcnum`` logger, i.e. into the job's log, with
    a line that says dcbg computed the background; records below WARNING
    also go to the root logger's handlers, as dcnum's own. A warning is
    shown once, as a Python warning (the root logger's handlers do not
    print its record again). On exit, dcnum's own lookups and the logging
    setup are restored.

    The patch is process-wide (dcnum's lookups are module globals): a
    dcnum run in another thread during the block also uses dcbg. Nested
    and concurrent uses are counted; the last one to exit restores dcnum.

    Raises
    ------
    ImportError
        If dcnum is not installed
    RuntimeError
        If the installed dcnum computes another pipeline generation than
        dcbg's backgrounds, or has another module layout; if it is used
        from top-level code of a script outside ``if __name__ ==
        "__main__":`` (dcnum's worker processes would run that code again)
    """
    global _depth
    _refuse_unguarded_main()
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
