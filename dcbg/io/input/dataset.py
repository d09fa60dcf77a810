"""dclab's dataset of an .rtdc file, seeing only the basins dcbg followed

dclab follows every basin a file names when its dataset first needs
them. dcbg opens the file with dclab's basins off and, once the basin
policy has decided (see :mod:`dcbg.io.input.policy`), gives the dataset
the basins it may follow through :func:`use_basins`. That goes through
dclab's public extension points: the dataset is a subclass of dclab's
``RTDC_HDF5`` that overrides ``basins_retrieve`` and ``basins_get_dicts``
(the methods dclab's format classes implement), and a followed file
basin is a subclass of dclab's ``HDF5Basin`` whose dataset is the one
dcbg opened under the policy.
"""

from __future__ import annotations

import functools
import pathlib

import h5py

from ...errors import InputFileError, one_line
from ..attributes import check_root_attributes
from ..conventions import ensure_hdf5_filters


@functools.cache
def _policy_dataset_class():
    """dclab's HDF5 dataset whose basins are the ones dcbg followed

    Created on first use: dclab is imported where first needed.
    """
    from dclab.rtdc_dataset.fmt_hdf5 import RTDC_HDF5

    # dclab derives the dataset's ``format`` from the class name's last
    # part: "..._HDF5" keeps it "hdf5"
    class PolicyRTDC_HDF5(RTDC_HDF5):  # noqa: N801 (dclab's naming rule)
        """An .rtdc dataset that follows only the basins it is given"""

        #: basin objects and their definitions, see :func:`use_basins`
        dcbg_basins: tuple = ((), ())

        def basins_retrieve(self):
            return list(self.dcbg_basins[0])

        def basins_get_dicts(self):
            return [dict(bd) for bd in self.dcbg_basins[1]]

    return PolicyRTDC_HDF5


def use_basins(ds, followed: list) -> None:
    """Make dclab's dataset `ds` (of :func:`open_rtdc`) use `followed` only

    Parameters
    ----------
    ds: dclab.rtdc_dataset.RTDC_HDF5
        A dataset opened by :func:`open_rtdc`, whose basins were not used
        yet
    followed: list of FollowedBasin
        The basins the policy allowed, in dclab's order of priority
    """
    ds.dcbg_basins = (
        tuple(fb.basin for fb in followed),
        tuple(dict(fb.definition) for fb in followed),
    )
    # dclab builds its list of basins once, on first access: now, so that
    # closing the dataset closes them too
    ds.basins  # noqa: B018


@functools.cache
def policy_file_basin_class():
    """dclab's HDF5 file basin whose dataset is opened under the policy"""
    from dclab.rtdc_dataset.fmt_hdf5.basin import HDF5Basin

    class PolicyHDF5Basin(HDF5Basin):
        """A file basin that dcbg has checked and opened itself

        dclab's own file basin opens its file with all basins enabled;
        this one hands dclab the measurement that dcbg opened under the
        policy, so basins of basins follow the policy too.
        """

        def __init__(self, location, *, measurement, **kwargs):
            self._measurement = measurement
            super().__init__(location, **kwargs)

        # the abstract method every dclab basin class implements
        def _load_dataset(self, location, **kwargs):
            return self._measurement.ds

        def is_available(self):
            return self._measurement.ds.h5file.id.valid

    return PolicyHDF5Basin


def open_rtdc(path: pathlib.Path):
    """dclab's dataset of an .rtdc file with file and remote basins off

    The dataset follows no basin until :func:`use_basins` gives it the
    basins the policy allowed.

    Raises
    ------
    InputFileError
        If the file cannot be opened as an RT-DC measurement; the
        message names the file
    """
    # HDF5's default locking flags (what a plain ``h5py.File(path)`` uses):
    # with dclab's default (no locking) the user could not open the same
    # file with h5py in this process while dcbg reads it
    h5kwargs = {"mode": "r", "locking": "best-effort"}
    ensure_hdf5_filters()
    from dclab.rtdc_dataset.fmt_hdf5.base import OldFormatNotSupportedError

    # before dclab reads the metadata: a damaged text attribute can make
    # HDF5 loop forever (see dcbg.io.attributes)
    check_root_attributes(path, h5kwargs)
    try:
        return _policy_dataset_class()(path, h5kwargs=h5kwargs, enable_basins=False)
    except OSError as exc:
        raise InputFileError(
            path, f"Cannot open '{path}' as an HDF5 file: {one_line(exc)}"
        ) from exc
    except (Exception, OldFormatNotSupportedError) as exc:
        detail = f"{type(exc).__name__}: {one_line(exc)}"
    # outside the except block: the failed dataset (and its open file) is
    # released with the traceback, so the file can be read again
    bad = _find_bad_attribute(path, h5kwargs)
    raise InputFileError(
        path, f"File '{path}' is not a valid .rtdc measurement: {bad or detail}"
    )


def _find_bad_attribute(path, h5kwargs: dict) -> str | None:
    """Which metadata attribute dclab cannot parse, as a phrase (or None)

    dclab reads all metadata at once and its errors do not name the
    attribute (e.g. "could not convert string to float: 'many'").
    """
    from dclab.rtdc_dataset.config import Configuration

    # the failed dataset may still hold the file open: HDF5 reopens it only
    # with the same file access properties (`h5kwargs` as dclab completed them)
    try:
        with h5py.File(path, **h5kwargs) as h5:
            attrs = dict(h5.attrs)
    except Exception:  # only a diagnosis: dclab's own error is reported then
        return None
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        try:
            section, name = key.split(":")
            Configuration()[section][name] = value
        except Exception as exc:
            return (
                f"attribute '{key}' has the value {value!r}, which dclab cannot "
                f"read ({one_line(exc)})"
            )
    return None


__all__ = ["open_rtdc", "policy_file_basin_class", "use_basins"]
