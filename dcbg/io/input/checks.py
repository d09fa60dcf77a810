"""Safety checks of an input file before and after dclab opens it

Every input file is untrusted. These checks run before anything is
computed, so that a file that is not what it claims fails with one line
naming the file (and the feature) rather than in the middle of writing:

- :func:`check_input_path`: the path is an existing regular HDF5 file
  (nothing that could block or have side effects is opened, see
  :mod:`dcbg.io.input.safe_open`);
- :func:`check_events_group`: the file is an RT-DC measurement;
- :func:`read_event_count`: the number of events the file declares;
- :func:`check_dataset`, :func:`check_length`: a feature's data are a
  dataset of one entry per event, stored as it declares
  (:func:`~dcbg.io.images.check_storage`);
- :func:`check_basinmap`: a mapped basin's mapping refers to entries
  that exist;
- :func:`check_readable`: the logs and tables an output copies can be
  read.

HDF5 external links are checked in :mod:`dcbg.io.input.hdf5_links`,
damaged metadata attributes in :mod:`dcbg.io.attributes`.
"""

from __future__ import annotations

import math
import numbers
import os
import pathlib

import h5py
import numpy as np

from ...errors import InputFileError, StoredDataError, one_line
from ..images import check_storage
from .safe_open import FileRefused, NotHDF5File, check_hdf5_file

#: errors h5py raises for damaged object headers, links and data
H5_READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError)


def check_input_path(path: pathlib.Path) -> pathlib.Path:
    """Raise a clear error unless `path` is an existing regular HDF5 file

    Nothing is opened that could block (a FIFO) or have side effects (a
    device): the type is checked with :func:`os.stat` first.

    Raises
    ------
    FileNotFoundError
        If nothing is at `path`
    InputFileError
        If `path` is a directory or not a regular HDF5 file
    """
    path = pathlib.Path(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"Input file '{path}' does not exist")
    if path.is_dir():
        raise InputFileError(
            path,
            f"Input path '{path}' is a directory, expected an .rtdc file; "
            f"to compute the backgrounds of all measurements in a folder, "
            f"use 'dcbg batch {path} -o OUT_DIR'",
        )
    try:
        check_hdf5_file(path)
    except NotHDF5File:
        reason = "is not an HDF5 file"
    except FileRefused as exc:
        reason = str(exc)
    else:
        return path
    raise InputFileError(
        path,
        f"Input file '{path}' {reason}; expected an .rtdc measurement "
        f"with the 'image' feature",
    )


def check_events_group(h5: h5py.File, path: pathlib.Path) -> None:
    """Raise InputFileError unless the file has an ``events`` group of its own"""
    if not isinstance(h5.get("events", getlink=True), h5py.HardLink) or (
        not isinstance(h5["events"], h5py.Group)
    ):
        raise InputFileError(
            path,
            f"File '{path}' has no 'events' group; expected an RT-DC "
            f"measurement (.rtdc) with the 'image' feature",
        )


def read_event_count(h5: h5py.File, path: pathlib.Path) -> int | None:
    """Number of events the measurement declares

    The attribute ``experiment:event count``, else (as dclab) the length
    of the first feature stored in ``events``; None if neither is there.

    Raises
    ------
    InputFileError
        If the attribute is not a non-negative integer
    """
    value = h5.attrs.get("experiment:event count")
    if value is not None:
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(-1)[0]
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value < 0
            or value != int(value)
        ):
            raise InputFileError(
                path,
                f"File '{path}' declares the event count {value!r} (attribute "
                f"'experiment:event count'); expected a non-negative integer",
            )
        return int(value)
    events = h5["events"]
    for name in sorted(events):
        link = events.get(name, getlink=True)
        obj = events[name] if isinstance(link, h5py.HardLink) else None
        if isinstance(obj, h5py.Dataset) and obj.shape and obj.shape[0]:
            return int(obj.shape[0])
    return None


def check_dataset(data, name: str, path: pathlib.Path) -> None:
    """Raise InputFileError unless `data` is a stored dataset of events"""
    if not isinstance(data, h5py.Dataset):
        raise InputFileError(path, f"The {name} is an HDF5 group; expected a dataset")
    if data.ndim == 0:
        raise InputFileError(
            path, f"The {name} is a scalar; expected one value per event"
        )
    check_storage(data, name)


def check_length(length: int, count: int | None, name: str, path: pathlib.Path):
    """Raise InputFileError unless `length` is the event `count` (if known)"""
    if count is not None and length != count:
        raise InputFileError(
            path,
            f"The {name} has {length} entries, but '{path}' declares "
            f"{count} events; expected one entry per event",
        )


def check_basinmap(
    h5: h5py.File,
    path: pathlib.Path,
    mapping: str,
    count: int | None,
    basin_length: int,
    name: str,
) -> np.ndarray:
    """The validated mapping array ``events/<mapping>`` of a mapped basin

    Parameters
    ----------
    mapping: str
        The mapping feature, e.g. ``"basinmap0"``
    count: int or None
        Number of events of the measurement
    basin_length: int
        Number of entries of the basin's data (`name`)
    """
    data = h5["events"][mapping]
    label = f"basin mapping '{mapping}' of '{path}'"
    check_storage(data, label)
    try:
        index = np.asarray(data[:])
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"Cannot read the {label}: {one_line(exc)}") from exc
    check_length(len(index), count, label, path)
    if index.size and (index.min() < 0 or index.max() >= basin_length):
        raise InputFileError(
            path,
            f"The {label} refers to entries {index.min()}..{index.max()} of "
            f"the {name}, which has {basin_length}; expected indices in "
            f"0..{basin_length - 1}",
        )
    return index.astype(np.int64)


def check_readable(h5: h5py.File, path: pathlib.Path, groups=("logs", "tables")):
    """Read the datasets of `groups` once, so that damage fails now

    Outputs copy the input's logs and tables; a damaged one would
    otherwise fail in the middle of writing, with HDF5's words only.

    Raises
    ------
    InputFileError
        If a dataset cannot be read; the message names the file and the
        dataset
    """
    for gname in groups:
        try:
            if gname not in h5:
                continue
            # not h5.get(): it returns None for a damaged object header
            group = h5[gname]
            if not isinstance(group, h5py.Group):
                raise ValueError(f"'{gname}' is not a group")
            for name in group:
                item = group[name]
                if isinstance(item, h5py.Dataset):
                    check_storage(item, f"'{gname}/{name}' of '{path}'")
                    item[()]
        except StoredDataError as exc:
            # check_storage's message names the dataset and the file
            raise InputFileError(path, str(exc)) from exc
        except H5_READ_ERRORS as exc:
            raise _damaged(path, gname, exc) from exc


def _damaged(path, gname: str, exc: BaseException) -> InputFileError:
    return InputFileError(
        path,
        f"Cannot read '{gname}' of '{path}': {one_line(exc)}; the file is damaged",
    )


__all__ = [
    "check_basinmap",
    "check_dataset",
    "check_events_group",
    "check_input_path",
    "check_length",
    "check_readable",
    "read_event_count",
]
