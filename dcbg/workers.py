"""Worker threads for background computation

dcnum runs its median workers as spawned processes, which need an
``if __name__ == "__main__":`` guard and seconds of start-up time. Our
kernels are compiled (Cython) and release the GIL, so plain threads
use all cores, start instantly and work in scripts and Jupyter alike.
"""

from __future__ import annotations

import itertools
import queue
import threading
from concurrent.futures import Future


class Counter:
    """Thread-safe integer counter with a ``value`` attribute"""

    def __init__(self, value: int = 0):
        self._lock = threading.Lock()
        self.value = value

    def increment(self):
        with self._lock:
            self.value += 1


class WorkerPool:
    """A fixed set of daemon worker threads fed from one job queue

    Jobs run in order of priority, then of submission: I/O jobs (chunk
    decompression and compression) jump ahead of queued median jobs, so
    that the next block's data are ready when the medians of the current
    block are done.

    Parameters
    ----------
    num_threads: int
        Number of worker threads
    name: str
        Thread name prefix (shows up in debuggers and profilers)

    Attributes
    ----------
    queue: queue.PriorityQueue
        Pending jobs ``(priority, sequence, (future, function, args))``
    counter: Counter
        Number of jobs finished since the pool started
    workers: list of threading.Thread
        The worker threads
    """

    #: priority of jobs that others wait for (lower runs first)
    URGENT = 0
    #: priority of ordinary jobs
    NORMAL = 1
    #: priority of the stop signals, after all jobs
    _STOP = 2

    def __init__(self, num_threads: int, name: str = "dcbg-worker"):
        self.queue = queue.PriorityQueue()
        self._sequence = itertools.count()
        self.counter = Counter()
        # guards `_stopped` together with the queue, so that no job is
        # queued after the stop signals (it would wait forever)
        self._state = threading.Lock()
        self._stopped = False
        self.workers = [
            threading.Thread(target=self._work, name=f"{name}-{ii}", daemon=True)
            for ii in range(num_threads)
        ]
        for worker in self.workers:
            worker.start()

    def _work(self):
        while True:
            _, _, job = self.queue.get()
            if job is None:
                return
            future, func, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            self.counter.increment()

    def submit(self, func, *args, priority: int = NORMAL) -> Future:
        """Run ``func(*args)`` on a worker thread

        After :meth:`stop`, the returned future is cancelled at once, so
        that a thread waiting for it (e.g. the I/O thread waiting for
        chunk decompression) ends instead of waiting forever.
        """
        future = Future()
        with self._state:
            if self._stopped:
                future.cancel()
            else:
                self.queue.put((priority, next(self._sequence), (future, func, args)))
        return future

    def run_all(self, func, args_list) -> list:
        """Run ``func(*args)`` for every ``args`` in parallel; wait for all

        The first exception raised by a job is raised here, after all
        jobs have finished, so no job writes into buffers after return.
        """
        futures = [self.submit(func, *args) for args in args_list]
        return wait_all(futures)

    def stop(self):
        """Cancel pending jobs, refuse new ones, tell the threads to end

        Returns at once; running jobs finish (see :meth:`join`).
        """
        with self._state:
            if self._stopped:
                return
            self._stopped = True
            while True:
                try:
                    _, _, job = self.queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
            for _ in self.workers:
                self.queue.put((self._STOP, next(self._sequence), None))

    def join(self):
        """Wait until the threads have ended (after :meth:`stop`)"""
        for worker in self.workers:
            if worker is not threading.current_thread():
                worker.join()

    def close(self):
        """Cancel pending jobs and stop the threads (waits for running jobs)"""
        self.stop()
        self.join()


def close_pools(*pools: WorkerPool | None):
    """Stop several pools that feed each other, without deadlock

    All pools stop taking jobs before any is joined: a thread of one
    pool that waits for a job of another then sees it cancelled instead
    of waiting for a thread that has already ended.
    """
    pools = [pool for pool in pools if pool is not None]
    for pool in pools:
        pool.stop()
    for pool in pools:
        pool.join()


#: seconds a waiting thread sleeps between checks of a future: waiting
#: in short slices keeps the main thread responsive to Ctrl-C (a blocking
#: wait is not interrupted by signals), and 0.2 s is quick for a person
#: and costs nothing measurable
#: Median jobs per worker thread in one parallel step: several short jobs
#: per thread let chunk (de)compression jobs, which have priority, start
#: soon, and even out threads that the system slows down.
JOBS_PER_THREAD = 4
WAIT_POLL_SECONDS = 0.2


def wait_all(futures: list[Future]) -> list:
    """Wait for all futures (interruptible), then return results or raise"""
    error = None
    results = []
    try:
        for future in futures:
            # a timeout keeps the main thread responsive to Ctrl-C
            while True:
                try:
                    results.append(future.result(timeout=WAIT_POLL_SECONDS))
                    break
                except TimeoutError:
                    continue
                except BaseException as exc:  # noqa: BLE001
                    error = error or exc
                    results.append(None)
                    break
    except BaseException:
        for future in futures:
            future.cancel()
        for future in futures:
            if not future.cancelled():
                try:
                    future.exception()
                except BaseException:  # noqa: BLE001
                    pass
        raise
    if error is not None:
        raise error
    return results
