"""Writing an output file as one transaction: lock, stage, swap

Every output of a background computation, also one written into its own
input file (in place), is written to a hidden *staged* sibling file and
moved over the output path in one step (:func:`move_into_place`) only
when it is complete. The output path therefore always holds either the
previous file or the new one, complete, whatever happens to the process
(an exception, Ctrl-C, SIGTERM, a full disk, SIGKILL, a power cut once
the file system has journaled the rename). HDF5 itself cannot promise
that for a file modified in place: a process killed while the library
writes metadata leaves a file that may not open at all.

While a staged file is written, a lock file beside the output
(:class:`WriterLock`) keeps other dcbg processes from writing the same
output; it names the process holding it, so a second writer can say who
is in the way. The operating system drops the lock when its process
dies, also by SIGKILL, so a killed run never blocks the next one.

Names of the hidden files (all in the output's folder):

- ``.<name>.<random>.dcbg-partial``: a staged output
- ``.<name>.dcbg-lock``: the lock of the output ``<name>``

Platforms: the lock uses ``fcntl.flock`` on POSIX and ``msvcrt.locking``
on Windows; the swap is ``os.replace`` (an existing output) or a
no-clobber move (a new output: ``os.link`` on POSIX, ``os.rename`` on
Windows). On Windows a file cannot be replaced while any program has it
open; the caller closes its own handles first (see
:meth:`dcbg.io.OutputFile.commit`), and an output held open by another
program (e.g. Shape-Out) is an error that names it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import re
import signal
import sys
import threading
import time
import uuid

from .. import stop
from .lockfile import (
    # raised by WriterLock.acquire: importable here with the other errors
    UnsafeLockFileError as UnsafeLockFileError,
)
from .lockfile import (
    check_lock_file,
    describe_holder,
    held_by_this_process,
    open_lock_file,
    read_record,
    write_record,
)
from .output_names import (
    LOCK_SUFFIX,
    PARTIAL_SUFFIX,
    STAGED_TOKEN_CHARS,
    check_name_fits,
)

#: suffix of the temporary files of dcbg <= 0.1, which stacked a second
#: staged file for replaced outputs; reruns remove these too
LEGACY_REPLACE_SUFFIX = ".dcbg-replace"

#: Windows locks byte ranges, and a locked range cannot be read by other
#: processes; the lock sits far past the owner record at the start of
#: the file, so that a second writer can still read who holds it.
WINDOWS_LOCK_OFFSET = 2**30

#: Windows refuses to replace a file that another process (a virus
#: scanner, the search indexer) has open for a moment; retry this often,
#: this many seconds apart, before reporting that the output is in use.
REPLACE_RETRIES = 10
REPLACE_RETRY_DELAY = 0.1


class OutputLockedError(RuntimeError):
    """Another process is writing the same output file"""


class OutputChangedError(RuntimeError):
    """The output path changed while the background was computed"""


def staged_path(output_path: pathlib.Path) -> pathlib.Path:
    """A new, unique hidden sibling of `output_path` to stage it in"""
    token = uuid.uuid4().hex[:STAGED_TOKEN_CHARS]
    return output_path.with_name(f".{output_path.name}.{token}{PARTIAL_SUFFIX}")


def lock_path(output_path: pathlib.Path) -> pathlib.Path:
    """The lock file of `output_path`"""
    return output_path.with_name(f".{output_path.name}{LOCK_SUFFIX}")


def find_temporary_files(output_path: pathlib.Path) -> list[pathlib.Path]:
    """Staged files of `output_path` left by earlier (killed) runs

    Only call this while holding the output's :class:`WriterLock`: then
    no live dcbg process is writing any of them.
    """
    name = re.escape(output_path.name)
    pattern = re.compile(
        rf"\.{name}\.[0-9a-f]+({re.escape(PARTIAL_SUFFIX)}"
        rf"|{re.escape(LEGACY_REPLACE_SUFFIX)})"
        # a staged file of a legacy replacement file
        rf"|\.\.{name}\.[0-9a-f]+{re.escape(LEGACY_REPLACE_SUFFIX)}"
        rf"\.[0-9a-f]+{re.escape(PARTIAL_SUFFIX)}"
    )
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(output_path.parent):
            if pattern.fullmatch(entry.name):
                found.append(pathlib.Path(entry.path))
    return sorted(found)


def remove_temporary_files(output_path: pathlib.Path) -> list[pathlib.Path]:
    """Remove what killed runs left for `output_path`; returns the removed"""
    removed = []
    for path in find_temporary_files(output_path):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


class _PosixLocking:
    """Advisory whole-file locks with ``fcntl.flock``"""

    def __init__(self):
        import fcntl

        self._fcntl = fcntl

    def try_lock(self, fd: int) -> bool:
        try:
            self._fcntl.flock(fd, self._fcntl.LOCK_EX | self._fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def unlock(self, fd: int):
        self._fcntl.flock(fd, self._fcntl.LOCK_UN)

    #: a lock file may be removed while locked: the next writer then
    #: locks a new file, and checks that it locked the file on disk
    unlink_while_locked = True


class _WindowsLocking:
    """Byte-range locks with ``msvcrt.locking`` (Windows)"""

    def __init__(self):
        import msvcrt

        self._msvcrt = msvcrt

    def try_lock(self, fd: int) -> bool:
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            self._msvcrt.locking(fd, self._msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def unlock(self, fd: int):
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        self._msvcrt.locking(fd, self._msvcrt.LK_UNLCK, 1)

    #: Windows cannot delete a file that is open; the lock file is
    #: removed after closing it (failing silently if another writer
    #: opened it meanwhile)
    unlink_while_locked = False


def platform_locking(platform: str = sys.platform):
    """The locking primitives of `platform` (a ``sys.platform`` value)"""
    return _WindowsLocking() if platform == "win32" else _PosixLocking()


class WriterLock:
    """Exclusive right to write one output file, across processes and objects

    The lock is an operating-system lock on the file
    ``.<name>.dcbg-lock`` beside the output, opened and filled as
    :mod:`dcbg.io.lockfile` describes (never through a link, never
    overwriting a file dcbg did not create). Within one process, a
    registry of held locks tells a second object that wants the same
    output that this process (another object in it) holds the lock.

    Parameters
    ----------
    output_path: pathlib.Path
        The output file to lock (need not exist)
    locking: object or None
        Locking primitives (see :func:`platform_locking`); for tests
    joinable: bool
        Let one lock of the same output acquired later in the same thread
        join this one instead of failing: a command holds the lock of its
        output for the whole run (:func:`reserve_output`), from the check
        whether the output exists to the commit, and the
        :class:`dcbg.io.OutputFile` it creates meanwhile joins it.

    Raises
    ------
    OutputLockedError
        From :meth:`acquire` if another process or object holds the lock;
        the message names the output, the lock file and the other writer.
    UnsafeLockFileError
        From :meth:`acquire` if something else than a lock file lies at
        the lock file's path
    ValueError
        From :meth:`acquire` if the output's name leaves no room for the
        names of its lock and staged files
    """

    def __init__(self, output_path: pathlib.Path, locking=None, joinable=False):
        self.output_path = pathlib.Path(output_path)
        self.path = lock_path(self.output_path)
        self._locking = locking or platform_locking()
        self._fd = None
        self._joinable = joinable
        #: the lock of this process this one joined (see `joinable`)
        self._joined = None
        self._thread = None
        self._pid = None
        self._record = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._joined is not None

    def acquire(self):
        """Take the lock at once or raise :class:`OutputLockedError`"""
        if self.held:
            return
        check_name_fits(self.output_path)
        key = _registry_key(self.path)
        with _REGISTRY_GUARD:
            holder = _HELD_IN_PROCESS.get(key)
            if holder is not None and holder._pid == os.getpid():
                if (
                    holder._joinable
                    and not self._joinable
                    and holder._thread == threading.get_ident()
                ):
                    self._joined = holder
                    return
                raise self._locked_error(holder._record, in_process=True)
            self._acquire_os_lock()
            self._pid = os.getpid()
            self._thread = threading.get_ident()
            _HELD_IN_PROCESS[key] = self

    def _acquire_os_lock(self):
        while True:
            opened = open_lock_file(self.path, self.output_path)
            if opened is None:
                continue  # another writer removed or created it meanwhile
            fd, created = opened
            try:
                if not self._locking.try_lock(fd):
                    record = read_record(fd)
                    raise self._locked_error(
                        record, in_process=held_by_this_process(record)
                    )
                # The previous holder may have removed the lock file
                # between our open and our lock: then we locked a file
                # that nobody else will see; start over.
                if self._locking.unlink_while_locked and not _same_inode(fd, self.path):
                    self._locking.unlock(fd)
                    os.close(fd)
                    continue
                check_lock_file(fd, created, self.path, self.output_path)
                write_record(fd)
                self._record = read_record(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            self._fd = fd
            return

    def _locked_error(self, record, in_process: bool) -> OutputLockedError:
        who = "another dcbg object in this process" if in_process else "another process"
        hint = (
            "close that object (leave its with block or call close()) first"
            if in_process
            else "wait for it to finish or stop it"
        )
        return OutputLockedError(
            f"Output file '{self.output_path}' is being written by {who} "
            f"({describe_holder(record)}; lock file '{self.path}'); {hint}"
        )

    def release(self):
        """Give the lock back and remove the lock file"""
        if self._joined is not None:
            self._joined = None  # the joined lock is released by its owner
            return
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with _REGISTRY_GUARD:
            key = _registry_key(self.path)
            if _HELD_IN_PROCESS.get(key) is self:
                del _HELD_IN_PROCESS[key]
        try:
            if self._locking.unlink_while_locked and _same_inode(fd, self.path):
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self._locking.unlock(fd)
        finally:
            os.close(fd)
        if not self._locking.unlink_while_locked:
            with contextlib.suppress(OSError):  # another writer has it open
                self.path.unlink()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


#: locks held by objects of this process, by lock file path: a second
#: object learns from here that the holder is in this process
_HELD_IN_PROCESS: dict[str, WriterLock] = {}
_REGISTRY_GUARD = threading.Lock()


def abandon_held_locks():
    """Remove the lock files this process holds, as it ends at once

    Registered with :func:`dcbg.stop.add_abrupt_cleanup`; runs in a signal
    handler, so it takes no lock (the interrupted thread may hold one).
    The operating system drops the locks themselves with the process.
    """
    for lock in list(_HELD_IN_PROCESS.values()):
        fd = lock._fd
        with contextlib.suppress(OSError, TypeError):
            if lock._locking.unlink_while_locked and _same_inode(fd, lock.path):
                lock.path.unlink()


stop.add_abrupt_cleanup(abandon_held_locks)


def _registry_key(path: pathlib.Path) -> str:
    return os.path.normcase(os.path.abspath(path))


@contextlib.contextmanager
def reserve_output(output_path: pathlib.Path):
    """Hold the writer lock of `output_path` for a whole command

    A command that decides from the output path whether to write (it
    does not exist, or ``--force``) must decide under the lock: otherwise
    a second run that checked before the first one wrote would replace
    the first one's output. The :class:`dcbg.io.OutputFile` created in
    the block (in the same thread) joins this lock. Symbolic links are
    resolved as :class:`dcbg.io.OutputFile` resolves them.

    Yields
    ------
    lock: WriterLock
        The held lock

    Raises
    ------
    OutputLockedError
        If another process or object writes the output
    """
    target = pathlib.Path(os.path.realpath(output_path))
    with WriterLock(target, joinable=True) as lock:
        yield lock


def _same_inode(fd: int, path: pathlib.Path) -> bool:
    """Whether `path` itself (not a link's target) is the open file `fd`"""
    try:
        st_path = os.lstat(path)
    except FileNotFoundError:
        return False
    st_fd = os.fstat(fd)
    return (st_fd.st_dev, st_fd.st_ino) == (st_path.st_dev, st_path.st_ino)


def file_identity(path: pathlib.Path) -> tuple | None:
    """What tells whether a file was replaced or modified, None if absent"""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def move_into_place(
    source: pathlib.Path,
    target: pathlib.Path,
    expected: tuple | None,
    platform: str = sys.platform,
):
    """Move the complete file `source` to `target` in one step

    Parameters
    ----------
    source: pathlib.Path
        The staged file, closed, in the folder of `target`
    target: pathlib.Path
        The output path
    expected: tuple or None
        :func:`file_identity` of `target` when staging began; None if
        there was no file. If `target` changed meanwhile (another program
        wrote or created it), nothing is moved.
    platform: str
        ``sys.platform`` value deciding the system calls (for tests)

    Raises
    ------
    OutputChangedError
        If `target` was created, removed or modified since staging began
    PermissionError
        If `target` is held open by another program (Windows)
    """
    # The data must be on disk before the rename is: otherwise a power
    # cut could leave the new name pointing at an incomplete file.
    sync_file(source)
    if file_identity(target) != expected:
        raise OutputChangedError(
            f"Output file '{target}' was "
            + ("created" if expected is None else "changed or removed")
            + " by another program while dcbg computed its background; "
            "it was left as it is and the new background discarded"
        )
    if expected is None:
        _move_no_clobber(source, target, platform)
        sync_folder(target.parent, platform)
        return
    for attempt in range(REPLACE_RETRIES):
        try:
            os.replace(source, target)
            sync_folder(target.parent, platform)
            return
        except PermissionError as exc:
            if platform != "win32":
                # (checked before the computation; changed meanwhile)
                raise PermissionError(
                    f"Cannot replace output file '{target}': the operating "
                    f"system refused it ({exc.strerror}; is it or its folder "
                    f"immutable, append-only or owned by another user?); it "
                    f"was left as it is and the new background discarded"
                ) from None
            if attempt == REPLACE_RETRIES - 1:
                raise PermissionError(
                    f"Cannot replace output file '{target}': it is open in "
                    f"another program (close it and run again)"
                ) from None
            time.sleep(REPLACE_RETRY_DELAY)


def sync_file(path: pathlib.Path):
    """Write the file's data to disk (``fsync``)"""
    # read-write: Windows flushes only handles open for writing
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(folder: pathlib.Path, platform: str = sys.platform):
    """Write a rename in `folder` to disk (POSIX; Windows has no such call)"""
    if platform == "win32":
        return
    with contextlib.suppress(OSError):  # some file systems refuse it
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _move_no_clobber(source: pathlib.Path, target: pathlib.Path, platform: str):
    """Move `source` to `target`, failing if `target` exists"""
    try:
        if platform == "win32":
            os.rename(source, target)  # never replaces on Windows
        else:
            try:
                os.link(source, target)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                # a file system without hard links (FAT, some network
                # shares): the check above has to do
                os.replace(source, target)
                return
            os.unlink(source)
    except FileExistsError:
        raise OutputChangedError(
            f"Output file '{target}' was created by another program while "
            f"dcbg computed its background; it was left as it is and the "
            f"new background discarded"
        ) from None


def stop_signals(signals=signal) -> tuple:
    """The signals that stop a run where `signals` (the module) has them

    Ctrl-C (SIGINT) and SIGTERM everywhere, SIGHUP (the terminal was
    closed) on POSIX, and on Windows Ctrl-Break (SIGBREAK), which is how a
    console stops a program there (closing the console window too).
    """
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
    return tuple(getattr(signals, name) for name in names if hasattr(signals, name))


#: signals that stop a run on this platform
STOP_SIGNALS = stop_signals()


@contextlib.contextmanager
def signals_deferred():
    """Hold the stop signals back while a short step must not be cut

    A signal that arrives inside the block is delivered to the previous
    handler when the block ends, further ones are part of the same stop:
    the step (the commit's rename) is never cut, so the handler then
    knows whether the output was moved into place, and the command's
    message and exit status say what is on disk. Outside the main thread
    (where Python cannot set handlers) this does nothing; an ignored
    signal (``nohup``) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def defer(signum, frame):
        received.append(signum)

    previous = {
        sig: signal.signal(sig, defer)
        for sig in STOP_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received[0])
