"""HDF5's failures while writing, and the workarounds dcbg needs for them

- A full disk (or a file-size limit) reaches dcbg as HDF5's long stack
  of messages that holds the system error only as text:
  :func:`is_disk_full` is the one place in dcbg that reads a third-party
  message to classify an error (HDF5's ``errno = N,`` text; there is no
  other way to know);
- after a failed write HDF5 cannot always close the file, and freeing
  its objects then crashes the process: :func:`close_discarded` and
  :data:`UNCLOSABLE_FILES`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib

import h5py

#: errno values of a full disk or a file-size limit
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}

#: staged files HDF5 could not close after a failed write: their objects
#: must never be freed (HDF5 crashes the process when they are)
UNCLOSABLE_FILES = []


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (of h5py or the system) says the disk is full

    h5py raises an OSError whose errno is set, or an OSError or
    RuntimeError (where it copies or closes objects) whose message holds
    HDF5's error stack with the system error as ``errno = 28,``: this is
    the only match of a third-party message in dcbg.
    """
    if getattr(exc, "errno", None) in DISK_FULL_ERRNOS:
        return True
    text = str(exc)
    return any(f"errno = {num}," in text for num in DISK_FULL_ERRNOS)


@contextlib.contextmanager
def write_errors_named(path: pathlib.Path):
    """Turn a full disk while writing `path` into a one-line OSError

    HDF5 reports a failed write as a long stack of messages (see
    :func:`is_disk_full`); this names the output file instead.
    """
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if is_disk_full(exc):
            error = OSError(
                f"Not enough disk space (or file size limit reached) to write "
                f"output file '{path}'; nothing was changed there"
            )
            error.errno = errno.ENOSPC
            raise error from exc
        raise


def close_discarded(h5: h5py.File):
    """Close a staged HDF5 file that is thrown away, also after a full disk

    Closing flushes HDF5's caches; after a failed write (disk full, file
    size limit) that flush fails too, and HDF5 is left in a state in which
    freeing the file's objects crashes the process. Nothing of the file is
    kept, so its writes are sent to the null device first: HDF5 then
    closes it cleanly, unless it must extend the file (which the null
    device cannot be). Then the file stays open, its objects referenced in
    `UNCLOSABLE_FILES` until the process ends. The file itself is removed
    by the caller either way.
    """
    with contextlib.suppress(Exception):
        fd = h5.id.get_vfd_handle()  # the POSIX (sec2) driver's descriptor
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    try:
        h5.close()
    except Exception:  # noqa: BLE001 (HDF5's errors of a broken file)
        # the file and every object of it that h5py still has
        objects = []
        with contextlib.suppress(Exception):
            objects = list(h5py.h5f.get_obj_ids(h5.id))
        UNCLOSABLE_FILES.append((h5, objects))


__all__ = [
    "DISK_FULL_ERRNOS",
    "UNCLOSABLE_FILES",
    "close_discarded",
    "is_disk_full",
    "write_errors_named",
]
