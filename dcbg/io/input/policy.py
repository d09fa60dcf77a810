"""The basin policy: which other files and URLs an input may make dcbg read

An RT-DC measurement may name other data through its *basins* (see
dclab): *internal* basins (data in the same file, possibly mapped to the
events through a ``basinmapN`` feature), *file* basins (paths to other
.rtdc files, absolute or relative) and *remote* basins (http, S3 and
DCOR URLs). dcbg reads measurements from instruments, collaborators and
public repositories, and ``dcbg batch`` runs them unattended, so a
measurement must not decide on its own which files dcbg opens or which
hosts it contacts. dclab follows every basin it can reach; dcbg
therefore opens measurements with dclab's basins switched off
(``RTDC_HDF5(..., enable_basins=False)``, which keeps only internal
basins) and resolves the other basins itself, under a
:class:`BasinPolicy`:

- internal basins (mapped or not) are always used;
- a file basin is followed only to a regular, non-empty file with the
  HDF5 signature (never a FIFO, device, socket, directory, nor anything
  reached through ``/proc``, ``/sys`` or ``/dev``), opened once and
  checked through its open descriptor, which HDF5 then reads (see
  :mod:`dcbg.io.input.safe_open`: what is read is what was checked);
  relative paths are taken relative to the file that names them (never
  to the working directory); with a basin root, only to files that
  resolve (symbolic links followed) inside that directory tree; the
  basin file's measurement identifier must match; file basins of basins
  are followed under the same policy (no cycles, at most
  :data:`~dcbg.io.input.followers.MAX_BASIN_DEPTH` levels), each distinct
  file opened once and the whole work per input bounded (see
  :mod:`dcbg.io.input.basin_resolution`);
- remote basins are never followed, and no network request is made,
  unless the user opts in (``allow_remote_basins=True``,
  ``--allow-remote-basins``); then dclab handles them.

Basins that are not followed are *refused* (:class:`RefusedBasin`, with
the reason); dclab's dataset of the measurement neither sees nor
follows them, and they are not carried into output files. HDF5 external
links, virtual datasets and external raw storage, which could reach other
files below the level of basins, are refused too.

Each basin type is followed by a small class registered by type (see
:mod:`dcbg.io.input.followers`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from .safe_open import OpenedFile, open_hdf5_file


@dataclasses.dataclass(frozen=True)
class BasinPolicy:
    """Which basins of an input measurement dcbg follows

    Use :meth:`create` to build a policy from user options (it checks
    them). Internal basins are always followed; see the module
    documentation for the rules.

    Attributes
    ----------
    basin_root: pathlib.Path or None
        If set (a resolved directory), file basins are followed only to
        files that resolve inside this directory tree
    allow_remote_basins: bool
        Follow remote basins (http, S3, DCOR); dclab then makes network
        requests to the hosts the measurement names
    """

    basin_root: pathlib.Path | None = None
    allow_remote_basins: bool = False

    @classmethod
    def create(cls, basin_root=None, allow_remote_basins=False) -> BasinPolicy:
        """A policy from user options, with clear errors for bad values

        Parameters
        ----------
        basin_root: str or pathlib.Path or None
            Directory that confines file basins (symbolic links are
            resolved); None: file basins anywhere
        allow_remote_basins: bool
            Follow remote basins (network access)

        Raises
        ------
        TypeError
            If `basin_root` is not a path
        ValueError
            If `allow_remote_basins` is not a bool or `basin_root` is not
            a directory
        FileNotFoundError
            If `basin_root` does not exist
        """
        if not isinstance(allow_remote_basins, (bool, np.bool_)):
            raise ValueError(
                f"allow_remote_basins must be True or False, got "
                f"{allow_remote_basins!r}"
            )
        root = None
        if basin_root is not None:
            if not isinstance(basin_root, (str, os.PathLike)):
                raise TypeError(
                    f"basin_root must be a directory path (str or "
                    f"pathlib.Path), got {type(basin_root).__name__}"
                )
            given = pathlib.Path(basin_root).expanduser()
            if not given.exists():
                raise FileNotFoundError(
                    f"Basin root '{given}' does not exist; expected the "
                    f"directory that holds the files basins may refer to"
                )
            if not given.is_dir():
                raise ValueError(f"Basin root '{given}' is not a directory")
            root = pathlib.Path(os.path.realpath(given))
        return cls(basin_root=root, allow_remote_basins=bool(allow_remote_basins))

    def open_file(self, path: pathlib.Path) -> OpenedFile:
        """The file basin at `path`, opened, if the policy allows it

        What is opened is what was checked (see :mod:`dcbg.io.input.safe_open`):
        a regular HDF5 file, resolved inside the basin root if there is one.

        Raises
        ------
        FileRefused
            With the reason (outside the basin root, not a regular HDF5
            file, in a virtual file system, ...)
        """
        return open_hdf5_file(path, self.basin_root)

    def describe(self) -> str:
        """One line for logs, e.g. "file basins under '/data', no remote basins" """
        files = (
            f"file basins under '{self.basin_root}'"
            if self.basin_root is not None
            else "file basins anywhere"
        )
        remote = "remote basins" if self.allow_remote_basins else "no remote basins"
        return f"internal basins, {files}, {remote}"


@dataclasses.dataclass
class RefusedBasin:
    """A basin definition that dcbg did not follow

    Attributes
    ----------
    referrer: pathlib.Path
        The file that defines the basin
    name: str
        The basin's name (or its key if it has none)
    type: str
        Basin type ("file", "remote", ...)
    format: str
        Basin format ("hdf5", "http", ...)
    locations: list of str
        Paths or URLs of the definition
    features: list of str or None
        Features the basin declares (None: any)
    reason: str
        Why it was not followed
    """

    referrer: pathlib.Path
    name: str
    type: str
    format: str
    locations: list
    features: list | None
    reason: str

    def provides(self, feat: str) -> bool:
        """Whether the basin claims to hold `feat`"""
        return self.features is None or feat in self.features

    def describe(self) -> str:
        """One line: the basin, where it points and why it was refused"""
        where = ", ".join(f"'{loc}'" for loc in self.locations) or "no location"
        return (
            f"basin '{self.name}' ({self.type}/{self.format}, {where}) of "
            f"'{self.referrer}' was refused: {self.reason}"
        )


@dataclasses.dataclass
class FollowedBasin:
    """A basin that the policy allowed, with what it resolved to

    Attributes
    ----------
    definition: dict
        The basin definition as stored in the file; for a file basin,
        ``paths`` holds only the resolved path that was followed
    basin: dclab.rtdc_dataset.feat_basin.Basin
        The dclab basin object (given to the dclab dataset)
    measurement: RtdcMeasurement or None
        For file basins: the basin file, opened under the same policy
    """

    definition: dict
    basin: object
    # an RtdcMeasurement (not imported here: it imports this module)
    measurement: object | None = None

    @property
    def kind(self) -> str:
        return self.definition["type"]

    @property
    def name(self) -> str:
        return str(self.definition.get("name") or self.definition["key"])

    @property
    def mapping(self) -> str:
        return self.definition.get("mapping") or "same"

    def declares(self, feat: str) -> bool:
        feats = self.definition.get("features")
        return feats is None or feat in feats

    def describe(self) -> str:
        locs = self.definition.get("paths") or self.definition.get("urls") or []
        where = f" -> '{locs[0]}'" if locs and self.kind != "internal" else ""
        return f"basin '{self.name}'{where}"


def is_str_list(value) -> bool:
    """Whether `value` is a list of strings (as basin definitions hold)"""
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def refused_basin(referrer: pathlib.Path, bdict: dict, reason: str) -> RefusedBasin:
    """The :class:`RefusedBasin` of a definition (which may be malformed)"""
    locs = bdict.get("paths") if bdict.get("type") != "remote" else None
    locs = locs or bdict.get("urls") or bdict.get("paths") or []
    feats = bdict.get("features")
    return RefusedBasin(
        referrer=referrer,
        name=str(bdict.get("name") or bdict.get("key")),
        type=str(bdict.get("type")),
        format=str(bdict.get("format")),
        locations=[str(loc) for loc in locs] if isinstance(locs, list) else [],
        features=feats if is_str_list(feats) else None,
        reason=reason,
    )


__all__ = [
    "BasinPolicy",
    "FollowedBasin",
    "RefusedBasin",
    "is_str_list",
    "refused_basin",
]
