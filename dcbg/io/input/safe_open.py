"""Opening a file that someone else may change: check what was opened

A path named by an untrusted file (a basin location) may be changed by
anyone who can write to a folder on it, also while dcbg looks at it: a
regular file checked with :func:`os.stat` may be a FIFO when it is opened
(``open`` then blocks until a writer comes), a folder checked to be inside
the basin root may be a symbolic link to elsewhere a moment later. This
module therefore opens first and checks the open descriptor, and HDF5
then reads through that descriptor (:meth:`OpenedFile.h5_name`):

- the path is resolved one component at a time, each looked up in the
  descriptor of the folder before it (``openat`` with ``O_NOFOLLOW`` and
  ``O_DIRECTORY``; symbolic links are read and followed by this code), so
  the folder reached is the folder that was checked, whatever is renamed
  meanwhile; the resolved path is what every lookup found;
- the file is opened with ``O_NONBLOCK`` (a FIFO swapped in cannot block
  the open) and ``O_NOFOLLOW``, then :func:`os.fstat` says whether the
  descriptor is a regular, non-empty file;
- no component, before or after following symbolic links, may be in
  ``/proc``, ``/sys`` or ``/dev`` (:data:`VIRTUAL_FS_ROOTS`): their files
  are kernel interfaces or devices, and their links (``/proc/self/cwd``,
  ``/dev/fd``) lead to different files in every process.

Portability: the descriptor-relative walk needs ``dir_fd`` support
(Linux, macOS, the BSDs). Elsewhere (Windows) the path is resolved with
:func:`os.path.realpath`, opened, and the opened file's identity
(:func:`os.fstat`) compared with the resolved path's: a swap in between
is detected unless it is undone before the comparison. Windows has no
FIFOs or devices in its file systems (named pipes live under
``\\\\.\\pipe\\``), so an open cannot block there. HDF5 reads through the
descriptor where the system names open descriptors as files
(``/proc/self/fd`` on Linux, ``/dev/fd`` on macOS and the BSDs); elsewhere
it opens the resolved path and :func:`check_same_file` compares the file
HDF5 opened with the checked one (POSIX) or the path's identity (Windows).
"""

from __future__ import annotations

import os
import pathlib
import stat
import sys

from ..file_types import describe_file_type

#: the 8 bytes every HDF5 file starts with (after an optional user block)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: HDF5 looks for its signature at offset 0 and at 512 * 2**k (a user
#: block of that size may precede the data); 2**40 * 512 bytes is beyond
#: any file, so this bounds the search
MAX_SIGNATURE_PROBES = 40

#: virtual file systems whose "regular files" are kernel interfaces
#: (``/proc/self/environ`` reads the environment, reads of ``/sys`` files
#: may have side effects), whose entries are devices (``/dev``), or whose
#: links lead to a different file in every process (``/proc/self/cwd``,
#: ``/dev/fd``, ``/dev/stdin``): never basins, neither as written nor
#: after following symbolic links
VIRTUAL_FS_ROOTS = ("/proc", "/sys", "/dev")

#: folders inside :data:`VIRTUAL_FS_ROOTS` that hold real files:
#: ``/dev/shm`` is a RAM disk (tmpfs) some pipelines keep measurements on
VIRTUAL_FS_EXCEPTIONS = ("/dev/shm",)

#: symbolic links followed while resolving one path, as Linux's limit
#: (``MAXSYMLINKS``, 40): more means a loop or a crafted chain
MAX_SYMLINK_HOPS = 40

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: flags of folders on the walk: never through a symbolic link
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_NOFOLLOW | _O_CLOEXEC
#: flags of the file: a FIFO must not block the open, a terminal must not
#: become the controlling one, a symbolic link must not be followed
_FILE_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
    | _O_NOFOLLOW
    | _O_CLOEXEC
)

#: whether paths can be resolved one component at a time in folder
#: descriptors (POSIX systems; not Windows)
WALK_SUPPORTED = (
    os.name == "posix"
    and bool(_O_NOFOLLOW)
    and {os.open, os.stat, os.readlink} <= os.supports_dir_fd
)


class FileRefused(ValueError):
    """A path that must not be opened; the message says why (a phrase)"""


class NotHDF5File(FileRefused):
    """A regular file that is empty or has no HDF5 signature"""


def virtual_root_of(path: str) -> str | None:
    """The virtual file system (e.g. "/proc") an absolute path is in, or None

    A folder on the way to one of :data:`VIRTUAL_FS_EXCEPTIONS` (``/dev``
    on the way to ``/dev/shm``) is not refused yet.
    """
    for root in VIRTUAL_FS_ROOTS:
        if path == root or path.startswith(root + "/"):
            for allowed in VIRTUAL_FS_EXCEPTIONS:
                if path == allowed or path.startswith(allowed + "/"):
                    return None
                if allowed.startswith(path + "/"):
                    return None
            return root
    return None


class OpenedFile:
    """A regular file opened for reading, with where it was found

    Attributes
    ----------
    fd: int
        The open descriptor (read-only); closed by :meth:`close`
    path: pathlib.Path
        The resolved path that every lookup of the walk found
    stat: os.stat_result
        :func:`os.fstat` of `fd`
    """

    def __init__(self, fd: int, path: pathlib.Path, st: os.stat_result):
        self.fd = fd
        self.path = path
        self.stat = st
        self._h5_name = None

    @property
    def identity(self) -> tuple:
        """(device, inode): the same file, under whatever name"""
        return (self.stat.st_dev, self.stat.st_ino)

    def h5_name(self) -> str:
        """The name under which HDF5 opens exactly this descriptor's file

        ``/proc/self/fd/N`` (Linux) or ``/dev/fd/N`` (macOS, BSD): valid
        while this object is open. Where the system has neither, the
        resolved path; then call :func:`check_same_file` once HDF5 has it
        open.
        """
        if self._h5_name is None:
            self._h5_name = str(self.path)
            for folder in ("/proc/self/fd", "/dev/fd"):
                name = f"{folder}/{self.fd}"
                try:
                    st = os.stat(name)
                except (OSError, ValueError):
                    continue
                if (st.st_dev, st.st_ino) == self.identity:
                    self._h5_name = name
                    break
        return self._h5_name

    def read_at(self, size: int, offset: int) -> bytes:
        """`size` bytes at `offset` (without moving a shared file position)"""
        if hasattr(os, "pread"):
            return os.pread(self.fd, size, offset)
        os.lseek(self.fd, offset, os.SEEK_SET)
        return os.read(self.fd, size)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_regular_file(path, root: pathlib.Path | None = None) -> OpenedFile:
    """Open `path` for reading, refusing all but a regular, non-empty file

    Parameters
    ----------
    path: str or pathlib.Path
        The file; symbolic links are followed (by this code, see the
        module documentation), relative paths start at the working folder
    root: pathlib.Path or None
        A resolved folder the resolved path must be inside

    Returns
    -------
    opened: OpenedFile
        The caller closes it

    Raises
    ------
    FileRefused
        With a phrase saying why, e.g. "is a FIFO (named pipe), not a
        regular file"; nothing was left open
    """
    text = os.fspath(path)
    if "\0" in text:
        raise FileRefused("contains a NUL character")
    if WALK_SUPPORTED:
        opened = _walk_and_open(text)
    else:
        opened = _open_by_real_path(text)
    try:
        if root is not None and not opened.path.is_relative_to(root):
            raise FileRefused(
                f"resolves to '{opened.path}', outside the basin root '{root}'"
            )
        _check_kernel_path(opened, root)
        if opened.stat.st_size == 0:
            raise NotHDF5File("is empty, not an HDF5 file")
    except BaseException:
        opened.close()
        raise
    return opened


def _refuse_if_virtual(here: str, via_link: bool):
    vroot = virtual_root_of(here)
    if vroot is None:
        return
    if via_link:
        raise FileRefused(
            f"leads through a symbolic link to '{here}' in {vroot}, a virtual "
            f"file system, not a regular file"
        )
    raise FileRefused(
        f"is in {vroot}, a virtual file system (kernel interfaces, devices, links "
        f"that differ per process), not a regular file"
    )


def _walk_and_open(text: str) -> OpenedFile:
    """Resolve `text` component by component in folder descriptors, open it"""
    if not text.startswith("/"):
        text = os.path.join(os.getcwd(), text)
    pending = [part for part in reversed(text.split("/")) if part not in ("", ".")]
    logical: list[str] = []
    via_link = False
    hops = 0
    dir_fd = os.open("/", _DIR_FLAGS)
    try:
        while pending:
            name = pending.pop()
            if name == "..":
                if logical:
                    parent = _open_dir("..", dir_fd)
                    os.close(dir_fd)
                    dir_fd = parent
                    logical.pop()
                continue
            here = "/" + "/".join([*logical, name])
            _refuse_if_virtual(here, via_link)
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise FileRefused("does not exist") from None
            except OSError as exc:
                raise FileRefused(f"cannot be accessed ({exc.strerror})") from exc
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise FileRefused(
                        f"leads through more than {MAX_SYMLINK_HOPS} symbolic links"
                    )
                try:
                    target = os.readlink(name, dir_fd=dir_fd)
                except OSError as exc:
                    raise FileRefused("changed while it was opened") from exc
                if target.startswith("/"):
                    top = os.open("/", _DIR_FLAGS)
                    os.close(dir_fd)
                    dir_fd = top
                    logical = []
                pending += [
                    p for p in reversed(target.split("/")) if p not in ("", ".")
                ]
                via_link = True
                continue
            if pending:
                if not stat.S_ISDIR(st.st_mode):
                    raise FileRefused(f"does not exist ('{here}' is not a directory)")
                sub = _open_dir(name, dir_fd)
                os.close(dir_fd)
                dir_fd = sub
                logical.append(name)
                continue
            return _open_file(name, dir_fd, st, pathlib.Path(here))
        raise FileRefused("is a directory, not a regular file")
    finally:
        os.close(dir_fd)


def _open_dir(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        # ELOOP/ENOTDIR: a symbolic link or file replaced the folder
        raise FileRefused(f"changed while it was opened ({exc.strerror})") from exc


def _open_file(name: str, dir_fd, st, path: pathlib.Path) -> OpenedFile:
    """Open the last component; `st` is what a look without opening saw"""
    if not stat.S_ISREG(st.st_mode):
        # nothing is opened that is not a regular file (a device may act
        # on open)
        raise FileRefused(f"is {describe_file_type(st.st_mode)}, not a regular file")
    try:
        if dir_fd is None:
            fd = os.open(name, _FILE_FLAGS)
        else:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise FileRefused(f"cannot be opened ({exc.strerror})") from exc
    try:
        opened_st = os.fstat(fd)
        if not stat.S_ISREG(opened_st.st_mode):
            kind = describe_file_type(opened_st.st_mode)
            raise FileRefused(
                f"changed while it was opened (it is now {kind}, not a regular file)"
            )
        if (opened_st.st_dev, opened_st.st_ino) != (st.st_dev, st.st_ino):
            raise FileRefused("changed while it was opened (another file)")
    except BaseException:
        os.close(fd)
        raise
    return OpenedFile(fd, path, opened_st)


def _open_by_real_path(text: str) -> OpenedFile:
    """Where folders cannot be walked by descriptor: resolve, open, compare"""
    absolute = os.path.abspath(text)
    _refuse_if_virtual(absolute.replace(os.sep, "/"), via_link=False)
    real = os.path.realpath(absolute)
    _refuse_if_virtual(real.replace(os.sep, "/"), via_link=True)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise FileRefused("does not exist") from None
    except (OSError, ValueError) as exc:
        raise FileRefused(f"cannot be accessed ({exc})") from exc
    return _open_file(real, None, st, pathlib.Path(real))


def _check_kernel_path(opened: OpenedFile, root):
    """Where the system names an open file's path: check that one too

    Linux says where the opened file is now (``/proc/self/fd/N``); it must
    be inside `root` and outside the virtual file systems as well (a
    folder renamed during the walk could have moved it).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        now = os.readlink(f"/proc/self/fd/{opened.fd}")
    except OSError:
        return  # no /proc: the walk's checks stand
    if not now.startswith("/"):
        return  # e.g. an anonymous file: nothing to compare
    if virtual_root_of(now) or (
        root is not None and not pathlib.Path(now).is_relative_to(root)
    ):
        raise FileRefused(f"changed while it was opened (it is now '{now}')")


def check_hdf5_signature(opened: OpenedFile):
    """Raise :class:`FileRefused` unless the file has the HDF5 signature"""
    size = opened.stat.st_size
    offsets = [0] + [512 * 2**k for k in range(MAX_SIGNATURE_PROBES)]
    try:
        for offset in offsets:
            if offset + len(HDF5_SIGNATURE) > size:
                break
            if opened.read_at(len(HDF5_SIGNATURE), offset) == HDF5_SIGNATURE:
                return
    except OSError as exc:
        raise FileRefused(f"cannot be read ({exc.strerror})") from exc
    raise NotHDF5File("is not an HDF5 file (no HDF5 signature)")


def open_hdf5_file(path, root: pathlib.Path | None = None) -> OpenedFile:
    """:func:`open_regular_file`, then :func:`check_hdf5_signature`"""
    opened = open_regular_file(path, root)
    try:
        check_hdf5_signature(opened)
    except BaseException:
        opened.close()
        raise
    return opened


def check_hdf5_file(path) -> os.stat_result:
    """Raise :class:`FileRefused` unless `path` is a regular HDF5 file

    Nothing that could block or have side effects is opened (see
    :func:`open_regular_file`); the file is closed again.

    Returns
    -------
    st: os.stat_result
        The status of the file
    """
    with open_hdf5_file(path) as opened:
        return opened.stat


def check_same_file(opened: OpenedFile, h5file):
    """Raise :class:`FileRefused` unless HDF5 opened the file of `opened`

    Needed only where :meth:`OpenedFile.h5_name` is a path: on POSIX the
    descriptor HDF5 holds is compared; on Windows (HDF5's descriptors
    belong to its own C runtime) the path's identity now.
    """
    if opened.h5_name() != str(opened.path):
        return  # HDF5 opened the descriptor itself
    try:
        if os.name == "posix":
            st = os.fstat(h5file.id.get_vfd_handle())
        else:
            st = os.stat(opened.path)
    except (OSError, ValueError, RuntimeError, TypeError):
        return  # a driver without a descriptor: the open's checks stand
    if (st.st_dev, st.st_ino) != opened.identity:
        raise FileRefused("changed while it was opened (another file)")


__all__ = [
    "FileRefused",
    "NotHDF5File",
    "OpenedFile",
    "check_hdf5_file",
    "check_hdf5_signature",
    "check_same_file",
    "open_hdf5_file",
    "open_regular_file",
    "virtual_root_of",
]
