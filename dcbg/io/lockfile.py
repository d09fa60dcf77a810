"""Opening, checking and filling the lock file of an output safely

The lock file ``.<name>.dcbg-lock`` lies in the output's folder, and
whoever may write to that folder may have put something there before
dcbg runs: a symbolic link to another file of the user, a hard link to
one, a directory or a FIFO. dcbg writes its lock record (who holds the
lock) into that file, so it must never be anything but a lock file:

- The path is checked with :func:`os.lstat` before it is opened: anything
  but a regular file (a symbolic link, a directory, a FIFO, a device) is
  refused, nothing is opened.
- It is opened with ``O_NOFOLLOW`` (a link planted between the check and
  the open fails the open), ``O_NONBLOCK`` (a FIFO planted meanwhile
  cannot block), ``O_CLOEXEC`` and without ``O_TRUNC``; then checked
  again on the open descriptor (:func:`os.fstat`): a regular file with
  one name (a hard link to another file is refused).
- Its content is written only after the lock is taken, and only if dcbg
  created the file in this call or it holds nothing or a dcbg lock record
  (:func:`check_lock_file`): a file that holds anything else is refused,
  never truncated.

Windows has no ``O_NOFOLLOW``: there the :func:`os.lstat` check before
and the :func:`os.fstat` check after the open are all there is, so a link
planted in the moment between them would be followed (creating symbolic
links needs an administrator or developer mode there).
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import pathlib
import socket
import stat
import sys

from .file_types import describe_file_type

#: flags of every open of a lock file: read-write, created if absent but
#: never truncated; no symbolic link as the last component (POSIX), no
#: blocking open of a FIFO, not inherited by child processes, binary
#: (Windows)
LOCK_OPEN_FLAGS = (
    os.O_RDWR
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOINHERIT", 0)
    | getattr(os, "O_BINARY", 0)
)

#: mode of a new lock file (before the umask): readable by others, so that
#: a second writer of another user can say who holds the lock
LOCK_FILE_MODE = 0o644

#: a dcbg lock record is one short JSON line (the command is cut to
#: `COMMAND_CHARS` characters); a file larger than this is no lock file
MAX_RECORD_BYTES = 4096
#: characters of the command line kept in the lock record
COMMAND_CHARS = 200

#: key that marks a lock record as dcbg's (records of dcbg <= 0.2 have
#: exactly the other keys)
RECORD_MARK = "dcbg lock"
RECORD_KEYS = {RECORD_MARK, "pid", "host", "since", "command"}

#: errno values of ``open`` with ``O_NOFOLLOW`` on a symbolic link
#: (ELOOP on Linux and macOS, EMLINK on FreeBSD)
SYMLINK_ERRNOS = {errno.ELOOP, errno.EMLINK}


class UnsafeLockFileError(PermissionError):
    """The lock file path holds something dcbg must not write into"""


def _refuse(path: pathlib.Path, output_path: pathlib.Path, what: str):
    return UnsafeLockFileError(
        f"Lock file '{path}' of output file '{output_path}' is {what}; dcbg "
        f"expected a regular file it created itself there and does not open "
        f"or write it (planted by someone?). Remove it and run again"
    )


def open_lock_file(
    path: pathlib.Path, output_path: pathlib.Path, platform: str = sys.platform
) -> tuple[int, bool] | None:
    """Open (creating if absent) the lock file `path` without following links

    Parameters
    ----------
    path: pathlib.Path
        The lock file
    output_path: pathlib.Path
        The output it locks (named in errors)
    platform: str
        ``sys.platform`` value (for tests of the Windows branch)

    Returns
    -------
    (fd, created) or None
        `fd`: open read-write descriptor of a regular file with one name;
        `created`: whether this call created the file. None if another
        writer created or removed the file between the calls here: the
        caller tries again.

    Raises
    ------
    UnsafeLockFileError
        If the path is a symbolic link, directory, FIFO, device or socket,
        or a file with more than one name (hard link)
    FileNotFoundError
        If the folder does not exist
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        before = None
    if before is not None and not stat.S_ISREG(before.st_mode):
        raise _refuse(path, output_path, describe_file_type(before.st_mode))
    flags = LOCK_OPEN_FLAGS
    if platform == "win32":
        flags &= ~getattr(os, "O_NOFOLLOW", 0)  # (tests on POSIX)
    created = before is None
    try:
        if created:
            # O_EXCL: this call creates the file, or fails if one appeared
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, LOCK_FILE_MODE)
        else:
            fd = os.open(path, flags)
    except FileExistsError:
        return None  # another writer created it meanwhile
    except FileNotFoundError:
        if created:
            raise FileNotFoundError(
                f"Output folder '{path.parent}' does not exist (output path "
                f"'{output_path}')",
            ) from None
        return None  # its holder removed it meanwhile
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and created:
            raise PermissionError(
                f"Cannot create the lock file '{path}' of output file "
                f"'{output_path}': the folder is not writable ({exc.strerror})",
            ) from None
        if exc.errno in SYMLINK_ERRNOS:
            raise _refuse(path, output_path, "a symbolic link") from None
        if exc.errno == errno.EISDIR:
            raise _refuse(path, output_path, "a directory") from None
        raise
    try:
        after = os.fstat(fd)
        if not stat.S_ISREG(after.st_mode):
            raise _refuse(path, output_path, describe_file_type(after.st_mode))
        if after.st_nlink > 1:
            raise _refuse(
                path,
                output_path,
                f"a file with {after.st_nlink} names (a hard link to another file)",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def read_record(fd: int) -> dict | None:
    """The lock record in the file `fd`; {} if it is empty, None if no record"""
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, MAX_RECORD_BYTES + 1)
    if not data:
        return {}
    if len(data) > MAX_RECORD_BYTES:
        return None
    try:
        record = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or "pid" not in record:
        return None
    if not set(record) <= RECORD_KEYS:
        return None
    return record


def check_lock_file(
    fd: int, created: bool, path: pathlib.Path, output_path: pathlib.Path
):
    """Raise unless dcbg may write its record into the locked file `fd`

    Call this with the lock held (no other dcbg writes the record then).
    A file this call created is dcbg's; an existing one must hold nothing
    or a dcbg lock record (a killed run leaves its lock file behind).
    """
    if created:
        return
    if read_record(fd) is None:
        size = os.fstat(fd).st_size
        raise UnsafeLockFileError(
            f"Lock file '{path}' of output file '{output_path}' holds {size} "
            f"bytes that are not a dcbg lock record; dcbg does not overwrite "
            f"a file it did not create. Remove it if it is a leftover and run "
            f"again"
        )


def write_record(fd: int):
    """Write this process's lock record into the checked, locked file `fd`"""
    record = {
        RECORD_MARK: 1,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:COMMAND_CHARS],
    }
    data = json.dumps(record).encode()
    # empty first: a run killed in between leaves an empty file or a whole
    # record, never a mixture (which the next run would refuse)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


def describe_holder(record: dict | None) -> str:
    """The lock holder as 'pid N on host H since T', as far as known"""
    try:
        return f"pid {record['pid']} on host {record['host']} since {record['since']}"
    except (KeyError, TypeError):
        return "owner unknown"


def held_by_this_process(record: dict | None) -> bool:
    """Whether the lock record names this process"""
    return (
        isinstance(record, dict)
        and record.get("pid") == os.getpid()
        and record.get("host") == socket.gethostname()
    )
