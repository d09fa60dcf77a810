"""HDF5 links that lead out of a file

An HDF5 external link makes h5py open another file (any file, also a
FIFO) when the link is accessed; dcbg reads only data stored in the file
itself (see :mod:`dcbg.io.input`).
"""

from __future__ import annotations

import pathlib

import h5py

from ...errors import one_line

#: how many links a soft link may point through before dcbg gives up
#: (HDF5's own limit on link traversals is 16)
MAX_SOFT_LINK_HOPS = 16


def check_links(h5: h5py.File, path: pathlib.Path, groups) -> None:
    """Raise ValueError if a group's members are HDF5 external links

    An external link makes h5py open another file (any file, also a FIFO)
    when the link is accessed. The members of `groups` (one level) and
    the targets of soft links among them are checked; nothing is opened.

    Parameters
    ----------
    h5: h5py.File
        The open file
    path: pathlib.Path
        The file's path, for messages
    groups: iterable of str
        Group paths whose members are checked ("/" for the root)
    """
    for gname in groups:
        if gname != "/":
            if not _link_is_local(h5, gname, path):
                continue
            if not isinstance(h5.get(gname), h5py.Group):
                continue
        group = h5[gname]
        try:
            names = list(group)
        except (OSError, RuntimeError) as exc:
            raise ValueError(
                f"Cannot list group '{gname}' of '{path}': {one_line(exc)}; the "
                f"file is damaged"
            ) from exc
        for name in names:
            _link_is_local(h5, f"{group.name.rstrip('/')}/{name}", path)


def _link_is_local(h5: h5py.File, name: str, path: pathlib.Path, hops: int = 0) -> bool:
    """Whether `name` exists; raises ValueError if it leads to another file"""
    parts = [p for p in name.split("/") if p]
    current = ""
    for part in parts:
        current = f"{current}/{part}"
        try:
            link = h5.get(current, getlink=True)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(
                f"Cannot read link '{current}' in '{path}': {one_line(exc)}; the "
                f"file is damaged"
            ) from exc
        if link is None:
            return False
        if isinstance(link, h5py.ExternalLink):
            raise ValueError(
                f"'{current}' in '{path}' is an HDF5 external link to "
                f"'{link.filename}'; dcbg does not follow external links (they "
                f"can reach any file), expected data stored in the file itself"
            )
        if isinstance(link, h5py.SoftLink):
            if hops >= MAX_SOFT_LINK_HOPS:
                raise ValueError(
                    f"'{current}' in '{path}' is a chain of more than "
                    f"{MAX_SOFT_LINK_HOPS} soft links"
                )
            target = link.path
            if not target.startswith("/"):
                target = f"{current.rsplit('/', 1)[0]}/{target}"
            if not _link_is_local(h5, target, path, hops + 1):
                return False
    return True


__all__ = ["MAX_SOFT_LINK_HOPS", "check_links"]
