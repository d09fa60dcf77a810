"""A local Dask cluster that leaves the stop signals to this process

What ``dcbg batch`` (:func:`dcbg.cluster.process_many`) needs to stop as
a terminal expects: a Ctrl-C (SIGINT) or a closed terminal (SIGHUP) goes
to every process of the foreground job, the cluster's worker processes
included. Here the workers never get them (:func:`start_local_cluster`),
the start-up of the cluster can be cut at once, and a stopped batch ends
its workers and removes what their tasks were writing, instead of
waiting for running tasks (see :func:`kill_cluster_workers`,
:func:`remove_stopped_attempts`).

Windows has no signal masks: there the workers get Ctrl-C too.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import sys
import threading

import distributed

from .io.transaction import remove_temporary_files, reserve_output


def start_local_cluster(n_workers: int, threads_per_worker: int):
    """A LocalCluster whose worker processes leave Ctrl-C to this process

    A terminal sends Ctrl-C (SIGINT) and, when it is closed, SIGHUP to
    every process of the foreground job, the cluster's worker processes
    included: each would print its own traceback (dozens of lines), and
    a hung-up worker would be restarted while the batch stops. The workers
    are stopped by this process instead (or end with it: Dask ends a
    worker whose parent is gone). So the cluster is started in a thread
    that blocks these signals: the worker processes it spawns inherit the
    blocked signals, this process's main thread does not (it handles them).

    While the cluster starts, the main thread waits in short slices, so a
    Ctrl-C stops the start-up at once: the worker processes started so far
    are killed (they hold no work yet) instead of being waited for.
    Windows has no signal masks: there the workers get Ctrl-C too.

    Returns
    -------
    cluster: distributed.LocalCluster
    client: distributed.Client
    """

    def start():
        # Processes, not threads: a crashing worker cannot take the
        # client down, and h5py serialises HDF5 calls within a process.
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        try:
            return cluster, distributed.Client(cluster)
        except BaseException:
            cluster.close()
            raise

    start_resource_tracker()
    known = child_pids()
    try:
        return run_with_signals_blocked(start, WORKER_BLOCKED_SIGNALS)
    except KeyboardInterrupt:
        kill_spawned_workers(known)
        raise


#: signals the worker processes of a local cluster never get: a terminal's
#: Ctrl-C and hang-up, which this process handles for the whole batch
WORKER_BLOCKED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGHUP") if hasattr(signal, name)
)
#: seconds between two checks whether the cluster has started: a Ctrl-C
#: is handled at the latest after this long
START_POLL_S = 0.05


def run_with_signals_blocked(func, signals):
    """``func()`` in a thread (and its threads) that blocks `signals`

    The calling thread waits for the result in slices of
    :data:`START_POLL_S` seconds: a signal handler that raises (Ctrl-C)
    ends the wait; the thread is a daemon and is left to the process's end.
    Without ``signal.pthread_sigmask`` (Windows) `func` runs in the thread
    without blocking anything.
    """
    outcome = {}

    def run():
        try:
            outcome["value"] = func()
        except BaseException as exc:  # noqa: BLE001 (handed to the caller)
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="dcbg-cluster-start", daemon=True)
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is not None and signals:
        # the new thread inherits the mask of the thread that starts it
        previous = mask(signal.SIG_BLOCK, signals)
        try:
            thread.start()
        finally:
            mask(signal.SIG_SETMASK, previous)
    else:
        thread.start()
    while thread.is_alive():
        thread.join(START_POLL_S)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def start_resource_tracker():
    """Start multiprocessing's resource tracker from this (the main) thread

    Spawning it unblocks SIGINT and SIGTERM in the thread that spawns it,
    which would undo :func:`run_with_signals_blocked` for every process
    spawned after it; started here first, it is only reused later. It is
    started with :data:`WORKER_BLOCKED_SIGNALS` blocked: killed by a
    closed terminal's SIGHUP, it would be restarted and print tracebacks
    for the semaphores it no longer knows. Its warning about the
    semaphores of a cluster whose start-up was cut by Ctrl-C (it removes
    them; a clean stop has none) is left out.
    """
    if sys.platform == "win32":
        return  # no resource tracker process on Windows
    from multiprocessing import resource_tracker

    quiet = "ignore:resource_tracker:UserWarning"
    added = quiet not in sys.warnoptions
    if added:
        # the tracker is started with this process's -W options
        sys.warnoptions.append(quiet)
    # it ignores SIGINT and SIGTERM itself, not a closed terminal's SIGHUP
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_BLOCKED_SIGNALS)
    try:
        resource_tracker.ensure_running()
    finally:
        # also undoes the tracker's unblocking of SIGINT and SIGTERM
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if added:
            sys.warnoptions.remove(quiet)


def child_pids() -> set[int]:
    """Process ids of this process's children (and theirs)"""
    import psutil

    with contextlib.suppress(psutil.Error):
        return {child.pid for child in psutil.Process().children(recursive=True)}
    return set()


def kill_spawned_workers(known: set[int]):
    """Kill the worker processes a cut cluster start-up spawned

    Children of this process not in `known` (those that existed before the
    start-up) that run multiprocessing's spawn entry point (Dask's worker
    processes; multiprocessing's resource tracker ends by itself).
    """
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.pid not in known and "spawn_main" in " ".join(child.cmdline()):
                    child.kill()


def kill_cluster_workers(client: distributed.Client):
    """Kill the worker processes of the LocalCluster of `client`"""
    import psutil

    cluster = getattr(client, "cluster", None)
    workers = getattr(cluster, "workers", {})
    for worker in list(workers.values()):
        with contextlib.suppress(Exception):
            pid = worker.pid
            if pid:
                psutil.Process(pid).kill()


def remove_stopped_attempts(output_paths):
    """Remove the staged files of stopped tasks (their outputs unchanged)

    Only where the output's lock is free, i.e. no worker writes it any
    more; a worker of a remote cluster that still runs its cancelled task
    keeps its files, the next run removes them.
    """
    for output_path in output_paths:
        with contextlib.suppress(Exception):  # best effort, as the next run
            with reserve_output(output_path):
                remove_temporary_files(pathlib.Path(os.path.realpath(output_path)))
