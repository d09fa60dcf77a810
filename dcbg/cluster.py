"""Background computation of many measurements on a Dask cluster

:func:`process_many` submits one task per measurement to a
:class:`distributed.Client`: a :class:`distributed.LocalCluster` on this
machine, an existing scheduler (``tcp://host:8786`` or a scheduler file,
e.g. of a dask-jobqueue ``SLURMCluster``) or a client you already have.
Each task is :func:`process_file`, the per-file workflow
(:func:`dcbg.workflow.process_file`) resuming and never raising: every
outcome is a :class:`~dcbg.workflow.FileResult` ("done", "skipped" or
"failed"), so one bad file does not stop the others.

Runs are resumable. A complete output with the requested PPID is skipped:
outputs are written to a hidden ``.<name>.<random>.dcbg-partial`` sibling
and moved into place only on success, so a file at the output path is
complete. If a worker process dies mid-task, the scheduler runs the task
again on another worker, and the partial file the dead attempt left
behind is removed once the new attempt has finished.

Do not run two batches that write the same outputs at the same time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import numbers
import os
import pathlib
import time
import uuid
import warnings
from collections.abc import Callable, Iterable

import distributed

from . import workflow
from .errors import ReadError, one_line
from .feat.feat_background import resolve_method
from .io.conventions import default_output_path, read_output_ppid
from .local_cluster import (
    kill_cluster_workers,
    remove_stopped_attempts,
    start_local_cluster,
)
from .run_options import RunOptions, cpu_count
from .workflow import STATUSES, FileResult

__all__ = [
    "STATUSES",
    "BatchInterrupted",
    "FileResult",
    "canonical_ppid",
    "describe_error",
    "get_output_path",
    "local_cluster_size",
    "process_file",
    "process_many",
]

logger = logging.getLogger(__name__)

#: how often the scheduler reschedules a task whose worker died
#: (``distributed.scheduler.allowed-failures``) is left to the cluster's
#: configuration; ``retries`` covers errors that escape the task
TASK_RETRIES = 2

#: exceptions whose message alone explains the problem (dcbg's ReadError
#: names the file and feature it could not read)
_CLEAR_ERRORS = (FileNotFoundError, PermissionError, ValueError, TypeError, ReadError)


def get_output_path(input_path, out_dir) -> pathlib.Path:
    """Output path of a measurement: ``<out_dir>/<input stem>_bg.rtdc``"""
    return default_output_path(input_path, out_dir)


def canonical_ppid(bg_ppid: str) -> str:
    """The full PPID of a (possibly abbreviated) background PPID

    Parameters
    ----------
    bg_ppid: str
        Background PPID, e.g. "rollmed:k=50" or "sparsemed:k=200^s=1"

    Returns
    -------
    ppid: str
        The PPID with all keyword arguments, as stored in outputs,
        e.g. "rollmed:k=50^b=10000"

    Raises
    ------
    ValueError
        If the PPID is malformed or names an unknown method or key
    """
    cls, kwargs = resolve_method(bg_ppid)
    return cls.get_ppid_from_ppkw(kwargs)


def process_file(
    input_path,
    output_path,
    ppid: str,
    *,
    compress: bool = True,
    force: bool = False,
    num_cpus: int | None = None,
    basin_root=None,
    allow_remote_basins: bool = False,
) -> FileResult:
    """Compute the background of one measurement, skipping finished work

    This is the task :func:`process_many` runs on the workers:
    :func:`dcbg.workflow.process_file` resuming (a complete output with
    the requested PPID is skipped). It never raises :class:`Exception`;
    errors are returned as a "failed" result.

    Parameters
    ----------
    input_path: str or pathlib.Path
        Input .rtdc measurement
    output_path: str or pathlib.Path
        Output file
    ppid: str
        Background PPID (abbreviations allowed)
    compress: bool
        Compress the background data (Zstandard)
    force: bool
        Recompute even if a complete output with this PPID exists, and
        replace an output with another PPID (kept until the new one is
        complete)
    num_cpus: int or None
        Worker threads for the computation (None: all CPUs)
    basin_root: str or pathlib.Path or None
        Follow file basins of the input only to files inside this
        directory tree (see :mod:`dcbg.io.input.policy`); None: anywhere
    allow_remote_basins: bool
        Follow remote basins (http, S3, DCOR) of the input (network access)

    Returns
    -------
    result: FileResult
        Outcome; ``status`` is "done", "skipped" or "failed"
    """
    input_path = pathlib.Path(input_path)
    output_path = pathlib.Path(output_path)
    result = FileResult(input_path, output_path, str(ppid), "failed")
    with _collected_warnings() as messages:
        try:
            cls, kwargs = resolve_method(ppid)
            result.ppid = cls.get_ppid_from_ppkw(kwargs)
            # built here, on the worker: its file system has the basin root
            options = RunOptions.create(
                compress, num_cpus, basin_root, allow_remote_basins
            )
            result = workflow.process_file(
                input_path, output_path, cls, kwargs, options, force=force, resume=True
            )
        except Exception as exc:
            result.error = describe_error(exc)
            result.error_parameter = getattr(exc, "parameter", None)
            if not isinstance(exc, _CLEAR_ERRORS):
                logger.exception(f"Background of '{input_path}' failed")
    result.warnings = list(messages)
    result.warning_parameters = list(messages.values())
    return result


#: keeps dcbg's log records (they repeat its warnings) from Python's
#: last-resort handler where nothing else handles them
_NULL_HANDLER = logging.NullHandler()


@contextlib.contextmanager
def _collected_warnings():
    """Collect the warnings of a computation into the dict yielded

    Each warning once, on one line, with the parameters it is about
    (those a :class:`dcbg.errors.ParameterWarning` carries). On a Dask
    worker, Python would print a warning with a source line, and the log
    record of the same warning again (no log handler there).
    """
    logging.getLogger("dcbg").addHandler(_NULL_HANDLER)
    messages: dict[str, tuple[str, ...]] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        finally:
            for w in caught:
                parameters = tuple(getattr(w.message, "parameters", ()))
                messages.setdefault(one_line(str(w.message)), parameters)


def describe_error(exc: BaseException) -> str:
    """One-line description of an exception for a result table"""
    message = one_line(str(exc))
    if isinstance(exc, _CLEAR_ERRORS) and message:
        return message
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _worker_num_cpus() -> int | None:
    """Threads this task may use: its worker's threads not used by others"""
    try:
        worker = distributed.get_worker()
    except ValueError:  # not on a Dask worker
        return None
    state = worker.state
    # A worker with N threads runs up to N tasks at once; a task that has
    # the worker to itself gets all N threads, else they are shared.
    return max(1, state.nthreads // max(1, state.executing_count))


def _task(input_path, output_path, ppid, settings: dict) -> FileResult:
    """The Dask task: :func:`process_file` with the worker's threads

    `settings` holds the other keyword arguments of :func:`process_file`.
    """
    result = process_file(
        input_path, output_path, ppid, num_cpus=_worker_num_cpus(), **settings
    )
    with contextlib.suppress(ValueError):
        result.worker = distributed.get_worker().address
    return result


def local_cluster_size(
    n_workers: int | None = None, threads_per_worker: int | None = None
) -> tuple[int, int]:
    """Workers and threads per worker of a LocalCluster using all CPUs

    By default one single-threaded worker process per CPU: files are
    processed in parallel, each with one thread, which needs no
    synchronisation and keeps HDF5 I/O (serialised within a process)
    parallel too.
    """
    for name, value in (
        ("n_workers", n_workers),
        ("threads_per_worker", threads_per_worker),
    ):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or value < 1
        ):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    cpus = cpu_count()
    if n_workers is None and threads_per_worker is None:
        return cpus, 1
    if n_workers is None:
        return max(1, cpus // threads_per_worker), int(threads_per_worker)
    if threads_per_worker is None:
        return int(n_workers), max(1, cpus // n_workers)
    return int(n_workers), int(threads_per_worker)


@contextlib.contextmanager
def _get_client(client, scheduler_address, n_workers, threads_per_worker):
    """The client to submit to; closes only what it created"""
    if client is not None:
        yield client
    elif scheduler_address is not None:
        address = str(scheduler_address)
        if not address.startswith(("tcp://", "tls://", "inproc://", "ucx://")) and (
            os.path.isfile(address)
        ):
            kwargs = {"scheduler_file": address}
        else:
            kwargs = {"address": address}
        try:
            new_client = distributed.Client(**kwargs)
        except OSError as exc:
            raise OSError(
                f"Cannot connect to the Dask scheduler '{address}': {exc}"
            ) from exc
        with new_client:
            yield new_client
    else:
        n_workers, threads_per_worker = local_cluster_size(
            n_workers, threads_per_worker
        )
        cluster, new_client = start_local_cluster(n_workers, threads_per_worker)
        with cluster, new_client:
            yield new_client


def _plan(input_paths, out_dir):
    """Absolute input and output paths; errors for colliding outputs"""
    inputs = [pathlib.Path(os.path.abspath(p)) for p in input_paths]
    outputs = [get_output_path(p, out_dir) for p in inputs]
    errors = [None] * len(inputs)
    first_by_output = {}
    input_keys = {os.path.normcase(p): p for p in inputs}
    for index, (inp, out) in enumerate(zip(inputs, outputs, strict=True)):
        key = os.path.normcase(out)
        if key in input_keys:
            errors[index] = (
                f"Output '{out}' would overwrite the input measurement "
                f"'{input_keys[key]}'; choose another output folder"
            )
        elif key in first_by_output:
            errors[index] = (
                f"Output '{out}' is also the output of '{first_by_output[key]}' "
                f"(same file name); process these files separately"
            )
        else:
            first_by_output[key] = inp
    return inputs, outputs, errors


def _file_size(path: pathlib.Path) -> int:
    """Size of a file in bytes, 0 if it cannot be read here"""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def process_many(
    input_paths: Iterable,
    out_dir,
    ppid: str,
    *,
    compress: bool = True,
    force: bool = False,
    client: distributed.Client | None = None,
    scheduler_address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    progress: Callable[[FileResult], None] | None = None,
    basin_root=None,
    allow_remote_basins: bool = False,
) -> list[FileResult]:
    """Compute the backgrounds of many measurements on a Dask cluster

    One task per file is submitted; each task uses the threads of the
    worker it runs on. Outputs are ``<out_dir>/<input stem>_bg.rtdc``.
    Complete outputs with the same PPID are skipped (unless `force`), an
    output with another PPID fails unless `force` is set. A file that
    fails (unreadable input, ...) does not affect the others; a task whose
    worker process dies is run again on another worker.

    When no `client` and no `scheduler_address` is given, a LocalCluster
    of worker processes is started for the call. Scripts doing this must
    guard their entry point with ``if __name__ == "__main__":`` (worker
    processes are spawned).

    Parameters
    ----------
    input_paths: iterable of str or pathlib.Path
        Input .rtdc measurements; the paths must be valid on the workers
        (relative paths are made absolute here)
    out_dir: str or pathlib.Path
        Output folder (created if missing)
    ppid: str
        Background PPID, e.g. "sparsemed:k=200^s=1^t=0^f=0.8^o=1";
        abbreviations such as "rollmed:k=50" are completed with defaults
    compress: bool
        Compress the background data (Zstandard)
    force: bool
        Recompute outputs that exist (with any PPID)
    client: distributed.Client or None
        Client to submit to (left open)
    scheduler_address: str or None
        Address of a running scheduler (e.g. "tcp://host:8786") or path
        of its scheduler file; a client is connected for this call
    n_workers: int or None
        Worker processes of the LocalCluster (default: one per CPU)
    threads_per_worker: int or None
        Threads per LocalCluster worker (default: CPUs / workers)
    progress: callable or None
        Called with each :class:`FileResult` as it becomes available
    basin_root: str or pathlib.Path or None
        Follow file basins of the inputs only to files inside this
        directory tree (symbolic links resolved; the path must be valid
        on the workers, relative paths are made absolute here); None:
        anywhere. See :mod:`dcbg.io.input.policy`.
    allow_remote_basins: bool
        Follow remote basins (http, S3, DCOR) of the inputs; default
        False: the workers make no network request for an input

    Returns
    -------
    results: list of FileResult
        One result per input path, in input order

    Raises
    ------
    ValueError
        For an invalid PPID, an `out_dir` that is not a folder, or
        conflicting cluster arguments
    OSError
        If the scheduler cannot be reached or `out_dir` not be created
    """
    bg_ppid = canonical_ppid(ppid)
    _check_cluster_arguments(client, scheduler_address, n_workers, threads_per_worker)
    settings = {
        "compress": compress,
        "force": force,
        "basin_root": _checked_basin_root(basin_root),
        "allow_remote_basins": allow_remote_basins,
    }
    if not isinstance(allow_remote_basins, bool):
        raise ValueError(
            f"allow_remote_basins must be True or False, got {allow_remote_basins!r}"
        )
    out_dir = pathlib.Path(os.path.abspath(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"Output folder '{out_dir}' is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)

    inputs, outputs, errors = _plan(input_paths, out_dir)
    results: list[FileResult | None] = [None] * len(inputs)

    def report(index: int, result: FileResult):
        results[index] = result
        if progress is not None:
            progress(result)

    for index, error in enumerate(errors):
        if error is not None:
            report(
                index,
                FileResult(
                    inputs[index], outputs[index], bg_ppid, "failed", error=error
                ),
            )
    todo = [i for i, error in enumerate(errors) if error is None]
    if not todo:
        return results

    # file times have a coarse resolution on some file systems
    started = time.time() - 2
    with _get_client(client, scheduler_address, n_workers, threads_per_worker) as cl:
        futures = _submit(cl, todo, inputs, outputs, bg_ppid, settings)
        try:
            for future in distributed.as_completed(futures):
                index = futures[future]
                try:
                    result = future.result()
                except (
                    Exception,
                    asyncio.CancelledError,
                    concurrent.futures.CancelledError,
                ) as exc:
                    # e.g. KilledWorker: the file crashed worker after worker
                    result = FileResult(
                        inputs[index],
                        outputs[index],
                        bg_ppid,
                        "failed",
                        error=f"Task failed on the cluster: {describe_error(exc)}",
                    )
                report(index, result)
        except BaseException as exc:
            # e.g. KeyboardInterrupt: do not leave work running on a
            # cluster that outlives this call
            cl.cancel(list(futures))
            if not isinstance(exc, KeyboardInterrupt):
                raise
            interrupted = exc
            if client is None and scheduler_address is None:
                # Dask cannot stop a running task: its worker would finish
                # it (minutes for a large file) before the cluster closes.
                # The local workers are ended instead; what their tasks
                # were writing is removed below.
                kill_cluster_workers(cl)
        else:
            return results
    remove_stopped_attempts([outputs[index] for index in todo])
    # Tasks that were running when the batch was stopped may have finished
    # (their output was moved into place) or not (their output path was
    # left as it was): the outputs on disk tell which.
    for index in todo:
        if results[index] is None:
            results[index] = _outcome_after_interrupt(
                inputs[index], outputs[index], bg_ppid, started
            )
    raise BatchInterrupted(results) from interrupted


def _check_cluster_arguments(client, scheduler_address, n_workers, threads_per_worker):
    """ValueError for cluster arguments that contradict each other"""
    if client is not None and scheduler_address is not None:
        raise ValueError("Give either client or scheduler_address, not both")
    if (client is not None or scheduler_address is not None) and (
        n_workers is not None or threads_per_worker is not None
    ):
        raise ValueError(
            "n_workers and threads_per_worker size a LocalCluster; they "
            "cannot be used with client or scheduler_address"
        )
    local_cluster_size(n_workers, threads_per_worker)  # validate early


def _checked_basin_root(basin_root) -> str | None:
    """`basin_root` as an absolute path (the workers check the directory)"""
    if basin_root is None:
        return None
    if not isinstance(basin_root, (str, os.PathLike)):
        raise TypeError(
            f"basin_root must be a directory path, got {type(basin_root).__name__}"
        )
    # the workers check that it is a directory (their file system counts)
    return os.path.abspath(basin_root)


def _submit(cl, todo, inputs, outputs, bg_ppid, settings) -> dict:
    """One task per index in `todo`; returns future -> index"""
    run_id = uuid.uuid4().hex[:8]
    futures = {}
    for index in todo:
        future = cl.submit(
            _task,
            inputs[index],
            outputs[index],
            bg_ppid,
            settings,
            # unique, readable keys (shown on the dashboard)
            key=f"dcbg-{inputs[index].stem}-{run_id}-{index}",
            pure=False,
            retries=TASK_RETRIES,
            # big files first: the batch does not end waiting for one
            priority=_file_size(inputs[index]),
        )
        futures[future] = index
    return futures


class BatchInterrupted(KeyboardInterrupt):
    """:func:`process_many` was stopped; ``results`` says what is on disk

    Files computed before or while the batch stopped have status "done";
    those it did not compute have status "stopped" (their output path is
    as it was before the batch).
    """

    def __init__(self, results: list[FileResult]):
        self.results = results
        done = sum(result.status in ("done", "skipped") for result in results)
        stopped = sum(result.status == "stopped" for result in results)
        super().__init__(
            f"Interrupted; {done} of {len(results)} outputs complete, {stopped} "
            f"not computed and left as they were (run the same command again "
            f"to resume)"
        )


def _outcome_after_interrupt(
    input_path, output_path, bg_ppid: str, started: float
) -> FileResult:
    """What an interrupted task left: a complete new output or nothing"""
    result = FileResult(input_path, output_path, bg_ppid, "stopped")
    with contextlib.suppress(OSError, ValueError):
        if output_path.stat().st_mtime >= started:
            old_ppid, frames = read_output_ppid(output_path)
            if old_ppid == bg_ppid:
                result.status, result.frames = "done", frames
    return result
