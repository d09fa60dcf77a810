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
  :mod:`dcbg.io.safe_open`: what is read is what was checked); relative
  paths are taken relative to the file that names them (never to the
  working directory); with a basin root, only to files that resolve
  (symbolic links followed) inside that directory tree; the basin
  file's measurement identifier must match; file basins of basins are
  followed under the same policy (no cycles, at most `MAX_BASIN_DEPTH`
  levels), each distinct file opened once and the whole work per input
  bounded (see :mod:`dcbg.io.basin_resolution`);
- remote basins are never followed, and no network request is made,
  unless the user opts in (``allow_remote_basins=True``,
  ``--allow-remote-basins``); then dclab handles them.

Basins that are not followed are *refused* (:class:`RefusedBasin`, with
the reason); dclab's dataset of the measurement neither sees nor
follows them, and they are not carried into output files. HDF5 external
links, virtual datasets and external raw storage, which could reach other
files below the level of basins, are refused too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import pathlib
import re

import h5py
import numpy as np

from .attributes import check_root_attributes
from .basin_resolution import BasinResolution, BasinWorkExceeded
from .conventions import ensure_hdf5_filters, read_text_lines
from .hdf5_links import check_links, one_line_error
from .images import check_storage
from .safe_open import (
    FileRefused,
    OpenedFile,
    check_hdf5_file,
    check_same_file,
    open_hdf5_file,
)

#: file basins of basins are followed this deep; real pipelines nest two
#: or three levels (raw data -> processed -> background), deeper chains
#: are crafted
MAX_BASIN_DEPTH = 8

#: basin formats of internal basins (data in the same file)
INTERNAL_FORMATS = ("h5dataset", "h5datasetchop")

#: basin formats of remote basins (dclab contacts a host for them)
REMOTE_FORMATS = ("http", "s3", "dcor")

#: names of the features that map events to basin events
BASINMAP_NAME = re.compile(r"basinmap\d+")

#: groups of an .rtdc file whose members dcbg or dclab access
ACCESSED_GROUPS = ("events", "basin_events", "basins", "logs", "tables")


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

        What is opened is what was checked (see :mod:`dcbg.io.safe_open`):
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
    measurement: PolicyMeasurement or None
        For file basins: the basin file, opened under the same policy
    """

    definition: dict
    basin: object
    measurement: PolicyMeasurement | None = None

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


@dataclasses.dataclass
class FeatureSource:
    """Where the data of one feature of a measurement are stored

    Attributes
    ----------
    data: h5py.Dataset or array-like
        The stored data (an HDF5 dataset, or dclab's object for remote data)
    index: np.ndarray or None
        For each event of the measurement, the entry of `data` holding
        it (mapped basins); None: entry i is event i
    path: str
        The file (or URL) that stores `data`
    route: list of str
        The basins followed to get there (for messages)
    """

    data: object
    index: np.ndarray | None
    path: str
    route: list

    def __len__(self):
        return len(self.index) if self.index is not None else int(self.data.shape[0])

    def describe(self, feat: str, referrer: pathlib.Path) -> str:
        """E.g. "'image' feature of 'a.rtdc' (from basin 'raw' -> '/b.rtdc')" """
        text = f"'{feat}' feature of '{referrer}'"
        if self.route:
            text += f" (from {', '.join(self.route)})"
        return text

    def as_array_like(self):
        """The data indexed like the events (a :class:`MappedData` if mapped)"""
        if self.index is None:
            return self.data
        return MappedData(self.data, self.index)


class MappedData:
    """Read-only view of ``data[index]`` that reads only what is asked for

    It has the attributes ``feat_obj`` and ``basinmap`` of dclab's
    ``BasinProxyFeature``, so :class:`~dcbg.io.ImageStack` reads it in
    blocks.
    """

    def __init__(self, data, index: np.ndarray):
        self.feat_obj = data
        self.basinmap = index
        self.shape = (len(index), *data.shape[1:])
        self.dtype = data.dtype

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        indices = self.basinmap[key]
        if np.ndim(indices) == 0:
            return np.asarray(self.feat_obj[int(indices)])
        if len(indices) == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        lo, hi = int(indices.min()), int(indices.max()) + 1
        return np.asarray(self.feat_obj[lo:hi])[indices - lo]


def _policy_file_basin_class():
    """dclab's HDF5 file basin whose dataset is opened under the policy"""
    from dclab.rtdc_dataset.fmt_hdf5.basin import HDF5Basin

    class PolicyHDF5Basin(HDF5Basin):
        """A file basin that dcbg has checked and opened itself

        dclab's own file basin opens its file with all basins enabled;
        this one hands dclab the measurement that dcbg opened under the
        policy, so basins of basins follow the policy too.
        """

        def __init__(self, location, *, measurement: PolicyMeasurement, **kwargs):
            self._measurement = measurement
            super().__init__(location, **kwargs)

        def _load_dataset(self, location, **kwargs):
            return self._measurement.ds

        def is_available(self):
            return self._measurement.ds.h5file.id.valid

    return PolicyHDF5Basin


#: created on first use (a subclass of a dclab class)
_PolicyHDF5Basin = None


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class PolicyMeasurement:
    """An .rtdc file opened with its basins resolved under a policy

    Parameters
    ----------
    path: pathlib.Path
        The .rtdc file
    policy: BasinPolicy
        Which basins to follow
    writable: bool
        Open the file in append mode (by its path, the user's own file);
        read-only files are opened through :mod:`dcbg.io.safe_open`
    opened: OpenedFile or None
        The file, already opened and checked (basin files); this object
        then owns it
    chain: tuple of tuple
        (device, inode) of the files whose basins led here (cycle check)
    resolution: BasinResolution or None
        The basin files opened so far for the input (None: this file is
        the input, a new resolution starts)

    Attributes
    ----------
    ds: dclab.rtdc_dataset.RTDC_HDF5
        dclab's dataset, opened with basins off; its basins are the
        followed ones, its ``basins_get_dicts()`` lists only those
    followed: list of FollowedBasin
        The basins that are followed, in dclab's order of priority
    refused: list of RefusedBasin
        The basins that are not followed, with the reason

    Raises
    ------
    ValueError
        If the file is not a regular HDF5 file, not an RT-DC measurement,
        or holds HDF5 external links, or its basins reach more files than
        :data:`~dcbg.io.basin_resolution.MAX_BASIN_FILES`; the message
        names the file
    KeyboardInterrupt
        If a stop was requested while basins were opened (see
        :meth:`BasinResolution.safe_point`)
    """

    def __init__(
        self,
        path: pathlib.Path,
        policy: BasinPolicy,
        writable: bool = False,
        *,
        opened: OpenedFile | None = None,
        chain: tuple = (),
        resolution: BasinResolution | None = None,
    ):
        self.path = pathlib.Path(path)
        self.policy = policy
        self._owns_resolution = resolution is None
        self.resolution = resolution or BasinResolution(self.path)
        self.followed: list[FollowedBasin] = []
        self.refused: list[RefusedBasin] = []
        self._event_count = None
        self._opened = opened
        self._closed = False
        self.ds = None
        try:
            if self._opened is None and not writable:
                self._opened = self._open_checked()
            if self._opened is not None:
                self.real_path = self._opened.path
                identity = self._opened.identity
            else:
                self.real_path = pathlib.Path(os.path.realpath(self.path))
                st = os.stat(self.real_path)
                identity = (st.st_dev, st.st_ino)
            self.chain = (*chain, identity)
            self.ds = self._open_dataset(writable)
            self.h5 = self.ds.h5file
            check_links(self.h5, self.path, ("/", *ACCESSED_GROUPS))
            if not isinstance(self.h5.get("events", getlink=True), h5py.HardLink) or (
                not isinstance(self.h5["events"], h5py.Group)
            ):
                raise ValueError(
                    f"File '{self.path}' has no 'events' group; expected an "
                    f"RT-DC measurement (.rtdc) with the 'image' feature"
                )
            self._resolve_basins()
            self._install_in_dclab()
        except BaseException:
            self.close()
            raise

    def _open_checked(self) -> OpenedFile:
        try:
            return open_hdf5_file(self.path)
        except FileRefused as exc:
            raise ValueError(
                f"File '{self.path}' {exc}; expected an .rtdc measurement"
            ) from None

    def _open_dataset(self, writable: bool):
        """dclab's dataset of the file, read through the checked descriptor"""
        name = self._opened.h5_name() if self._opened is not None else str(self.path)
        try:
            ds = open_rtdc(pathlib.Path(name), writable)
        except ValueError as exc:
            if name == str(self.path):
                raise
            # the messages name the file, not the descriptor
            text = str(exc).replace(f"'{name}'", f"'{self.path}'")
            raise ValueError(text) from exc
        # dclab's messages and hash name the file, not the descriptor
        ds.path = self.path
        if self._opened is not None:
            try:
                check_same_file(self._opened, ds.h5file)
            except FileRefused as exc:
                ds.close()
                raise ValueError(f"File '{self.path}' {exc}") from None
        return ds

    def close(self):
        """Close the file and, for the input, every basin file opened for it"""
        if self._closed:
            return
        self._closed = True
        # dclab closes its basins (and so the basin datasets) with the dataset
        if self.ds is not None:
            self.ds.close()
        if self._owns_resolution:
            self.resolution.close()
        if self._opened is not None:
            self._opened.close()

    # basins --------------------------------------------------------------

    def _read_definitions(self) -> list[dict]:
        """Basin definitions of the file, in dclab's order of priority

        A definition that is not a JSON object with a "type" is an error
        (dclab itself, e.g. when it copies the file's metadata, fails on
        it); other problems make the basin refused later.

        Raises
        ------
        ValueError
            If a definition cannot be read; the message names the file
            and the definition's key
        """
        group = self.h5.get("basins")
        if group is None:
            return []
        if not isinstance(group, h5py.Group):
            raise ValueError(
                f"'basins' in '{self.path}' is not a group; expected the "
                f"basin definitions of an RT-DC measurement"
            )
        self.resolution.count_steps(len(group), "basin definitions", self.path)
        definitions = []
        for key in sorted(group):
            try:
                item = group[key]
                if (
                    not isinstance(item, h5py.Dataset)
                    or item.ndim != 1
                    or not len(item)
                ):
                    raise ValueError("expected a dataset of JSON text lines")
                bdict = json.loads(" ".join(read_text_lines(item)))
                if not isinstance(bdict, dict):
                    raise ValueError("not a JSON object")
                if not isinstance(bdict.get("type"), str):
                    raise ValueError("no basin 'type'")
                if bdict["type"] == "internal" and not _is_str_list(
                    bdict.get("features")
                ):
                    raise ValueError("an internal basin without a list of features")
            except (
                OSError,
                ValueError,
                TypeError,
                KeyError,
                RecursionError,
                UnicodeDecodeError,
            ) as exc:
                raise ValueError(
                    f"Basin definition '{key}' of '{self.path}' cannot be read "
                    f"({one_line_error(exc)}); expected a JSON object with the basin's "
                    f"'type', 'format' and locations"
                ) from exc
            bdict["key"] = key
            definitions.append(bdict)
        return sorted(definitions, key=_priority)

    def _refuse(self, bdict: dict, reason: str):
        locs = bdict.get("paths") if bdict.get("type") != "remote" else None
        locs = locs or bdict.get("urls") or bdict.get("paths") or []
        feats = bdict.get("features")
        self.refused.append(
            RefusedBasin(
                referrer=self.path,
                name=str(bdict.get("name") or bdict.get("key")),
                type=str(bdict.get("type")),
                format=str(bdict.get("format")),
                locations=[str(loc) for loc in locs] if isinstance(locs, list) else [],
                features=feats if _is_str_list(feats) else None,
                reason=reason,
            )
        )

    def _resolve_basins(self):
        definitions = self._read_definitions()
        keys = [bd["key"] for bd in definitions]
        for bdict in definitions:
            problem = self._definition_problem(bdict)
            if problem:
                self._refuse(bdict, problem)
                continue
            btype = bdict["type"]
            try:
                if btype == "internal":
                    self._follow_internal(bdict, keys)
                elif btype == "file":
                    self._follow_file(bdict, keys)
                elif btype == "remote":
                    self._follow_remote(bdict, keys)
            except _Refusal as exc:
                self._refuse(bdict, str(exc))

    def _definition_problem(self, bdict: dict) -> str | None:
        """Why a definition cannot be used as it is, or None"""
        btype, bformat = bdict.get("type"), bdict.get("format")
        if btype not in ("internal", "file", "remote"):
            return f"unknown basin type {btype!r}"
        if btype == "internal" and bformat not in INTERNAL_FORMATS:
            return f"unknown format {bformat!r} for an internal basin"
        if btype == "file" and bformat != "hdf5":
            return f"unknown format {bformat!r} for a file basin (expected 'hdf5')"
        if btype == "remote" and bformat not in REMOTE_FORMATS:
            return f"unknown format {bformat!r} for a remote basin"
        locs = bdict.get("urls" if btype == "remote" else "paths")
        if not _is_str_list(locs) or not locs:
            what = "urls" if btype == "remote" else "paths"
            return f"its '{what}' is not a list of strings"
        feats = bdict.get("features")
        if feats is not None and not _is_str_list(feats):
            return "its 'features' is not a list of strings"
        mapping = bdict.get("mapping", "same")
        if mapping not in (None, "same"):
            if not isinstance(mapping, str) or not BASINMAP_NAME.fullmatch(mapping):
                return f"invalid mapping {mapping!r} (expected 'same' or 'basinmapN')"
            link = self.h5["events"].get(mapping, getlink=True)
            if not isinstance(link, (h5py.HardLink, h5py.SoftLink)):
                return f"its mapping feature '{mapping}' is not in the file"
            data = self.h5["events"][mapping]
            if (
                not isinstance(data, h5py.Dataset)
                or data.ndim != 1
                or data.dtype.kind not in "iu"
            ):
                return f"its mapping feature '{mapping}' is not a 1-D integer array"
        return None

    def _basin_kwargs(self, bdict: dict, keys: list) -> dict:
        """Keyword arguments of dclab's basin classes (as dclab builds them)"""
        feats = bdict.get("features")
        return {
            "name": bdict.get("name"),
            "description": bdict.get("description"),
            "features": list(feats) if feats is not None else None,
            "mapping": bdict.get("mapping") or "same",
            "mapping_referrer": self.ds,
            "referrer_identifier": self.ds.get_measurement_identifier(),
            "basin_identifier": bdict.get("identifier"),
            "ignored_basins": list(keys),
            "key": bdict["key"],
        }

    def _follow_internal(self, bdict: dict, keys: list):
        location = bdict["paths"][0]
        link = self.h5.get(location, getlink=True) if location else None
        if not isinstance(link, (h5py.HardLink, h5py.SoftLink)) or not isinstance(
            self.h5[location], h5py.Group
        ):
            raise _Refusal(f"its data group '{location}' is not in the file")
        check_links(self.h5, self.path, (location,))
        from dclab.rtdc_dataset import feat_basin

        b_cls = feat_basin.get_basin_classes()[bdict["format"]]
        try:
            basin = b_cls(location, **self._basin_kwargs(bdict, keys))
        except (ValueError, KeyError, OSError, TypeError, AssertionError) as exc:
            raise _Refusal(f"dclab cannot use it ({exc})") from exc
        self.followed.append(FollowedBasin(dict(bdict), basin))

    def _follow_file(self, bdict: dict, keys: list):
        global _PolicyHDF5Basin
        if _PolicyHDF5Basin is None:
            _PolicyHDF5Basin = _policy_file_basin_class()
        if len(self.chain) > MAX_BASIN_DEPTH:
            raise _Refusal(
                f"file basins are followed at most {MAX_BASIN_DEPTH} levels deep"
            )
        reasons = []
        candidates = _candidate_paths(bdict["paths"], self.path.parent)
        self.resolution.count_steps(len(candidates), "basin locations", self.path)
        for candidate in candidates:
            try:
                opened = self.policy.open_file(candidate)
            except FileRefused as exc:
                reasons.append(f"'{candidate}' {exc}")
                continue
            real = opened.path
            if opened.identity in self.chain:
                opened.close()
                reasons.append(f"'{candidate}' refers back to '{real}' (a cycle)")
                continue
            try:
                sub = self._basin_measurement(opened)
            except BasinWorkExceeded:
                raise
            except (ValueError, OSError, TypeError, KeyError) as exc:
                reasons.append(f"'{candidate}' cannot be opened: {one_line_error(exc)}")
                continue
            mismatch = self._identifier_mismatch(bdict, sub)
            if mismatch:
                # the resolution closes it (another basin may use the file)
                reasons.append(f"'{candidate}': {mismatch}")
                continue
            definition = dict(bdict, paths=[str(real)])
            try:
                basin = _PolicyHDF5Basin(
                    real, measurement=sub, **self._basin_kwargs(bdict, keys)
                )
            except Exception as exc:
                reasons.append(f"'{candidate}': dclab cannot use it ({exc})")
                continue
            self.followed.append(FollowedBasin(definition, basin, sub))
            return
        raise _Refusal("; ".join(reasons) or "no usable path")

    def _basin_measurement(self, opened: OpenedFile) -> PolicyMeasurement:
        """The basin file of `opened` as a measurement, each file once

        Takes over `opened`. A file met before is not opened again (see
        :meth:`BasinResolution.reuse`); after each file opened, a stop
        request is honoured.
        """
        depth = len(self.chain)
        known = self.resolution.reuse(opened.identity, depth)
        if known is not None:
            opened.close()
            return known
        try:
            self.resolution.count_file()
        except BaseException:
            opened.close()
            raise
        sub = PolicyMeasurement(
            opened.path,
            self.policy,
            opened=opened,
            chain=self.chain,
            resolution=self.resolution,
        )
        self.resolution.remember(opened.identity, sub, depth)
        self.resolution.safe_point()
        return sub

    def _identifier_mismatch(self, bdict: dict, sub: PolicyMeasurement) -> str | None:
        """Why the basin file is not the measurement the definition means"""
        basin_id = sub.ds.get_measurement_identifier()
        expected = bdict.get("identifier")
        if expected and basin_id != expected:
            return (
                f"its measurement identifier is {basin_id!r}, the basin "
                f"definition expects {expected!r}"
            )
        referrer_id = self.ds.get_measurement_identifier()
        if referrer_id and basin_id:
            mapping = bdict.get("mapping") or "same"
            if mapping == "same" and referrer_id != basin_id:
                return (
                    f"its measurement identifier {basin_id!r} differs from that "
                    f"of '{self.path}' ({referrer_id!r})"
                )
            if mapping != "same" and not referrer_id.startswith(basin_id):
                return (
                    f"its measurement identifier {basin_id!r} is not a prefix of "
                    f"that of '{self.path}' ({referrer_id!r}), as a mapped basin's "
                    f"must be"
                )
        return None

    def _follow_remote(self, bdict: dict, keys: list):
        if not self.policy.allow_remote_basins:
            raise _Refusal(
                "remote basins are not followed (no network access); allow "
                "them with --allow-remote-basins (allow_remote_basins=True)"
            )
        from dclab.rtdc_dataset import feat_basin

        b_cls = feat_basin.get_basin_classes().get(bdict["format"])
        if b_cls is None:
            raise _Refusal(f"dclab does not support format {bdict['format']!r}")
        urls = bdict["urls"]
        if bdict["format"] == "dcor":
            # dclab sends the DCOR API tokens registered in this process
            # to the host: never in plain text
            urls = [url for url in urls if url.lower().startswith("https://")]
            if not urls:
                raise _Refusal(
                    "DCOR basins are followed only over https (dclab sends "
                    "DCOR API tokens to the host)"
                )
        kwargs = self._basin_kwargs(bdict, keys)
        kwargs["perishable"] = bdict.get("perishable", False)
        for url in urls:
            try:
                basin = b_cls(url, **kwargs)
            except Exception as exc:
                raise _Refusal(
                    f"dclab cannot use '{url}' ({one_line_error(exc)})"
                ) from exc
            self.followed.append(FollowedBasin(dict(bdict, urls=[url]), basin))

    def _install_in_dclab(self):
        """Make dclab's dataset see exactly the followed basins"""
        followed = [dict(fb.definition) for fb in self.followed]
        # dclab builds its basins once, on first access of `basins`
        self.ds._basins = [fb.basin for fb in self.followed]
        self.ds.basins_get_dicts = lambda: [dict(bd) for bd in followed]

    def check_readable(self, groups=("logs", "tables")):
        """Read the datasets of `groups` once, so that damage fails now

        Outputs copy the input's logs and tables; a damaged one would
        otherwise fail in the middle of writing, with HDF5's words only.

        Raises
        ------
        ValueError
            If a dataset cannot be read; the message names the file and
            the dataset
        """
        for gname in groups:
            try:
                if gname not in self.h5:
                    continue
                # not h5.get(): it returns None for a damaged object header
                group = self.h5[gname]
                if not isinstance(group, h5py.Group):
                    raise ValueError(f"'{gname}' is not a group")
                for name in group:
                    item = group[name]
                    if isinstance(item, h5py.Dataset):
                        label = f"'{gname}/{name}' of '{self.path}'"
                        check_storage(item, label)
                        item[()]
            except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
                text = one_line_error(exc)
                if str(self.path) in text:
                    raise
                raise ValueError(
                    f"Cannot read '{gname}' of '{self.path}': {text}; the file "
                    f"is damaged"
                ) from exc

    def basin_definitions(self) -> list[dict]:
        """Definitions of the followed basins (file basins: resolved path)"""
        return [dict(fb.definition) for fb in self.followed]

    def all_refused(self, _seen: set | None = None) -> list[RefusedBasin]:
        """Refused basins of this file and of the basin files it follows

        A basin file that several basins reach is listed once.
        """
        seen = set() if _seen is None else _seen
        seen.add(id(self))
        refused = list(self.refused)
        for fb in self.followed:
            if fb.measurement is not None and id(fb.measurement) not in seen:
                refused += fb.measurement.all_refused(seen)
        return refused

    # features --------------------------------------------------------------

    @property
    def event_count(self) -> int | None:
        """Number of events the measurement declares

        The attribute ``experiment:event count``, else (as dclab) the
        length of the first feature stored in ``events``; None if neither
        is there.

        Raises
        ------
        ValueError
            If the attribute is not a non-negative integer
        """
        if self._event_count is None:
            value = self.h5.attrs.get("experiment:event count")
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
                    raise ValueError(
                        f"File '{self.path}' declares the event count "
                        f"{value!r} (attribute 'experiment:event count'); "
                        f"expected a non-negative integer"
                    )
                self._event_count = int(value)
            else:
                events = self.h5["events"]
                for name in sorted(events):
                    link = events.get(name, getlink=True)
                    obj = events[name] if isinstance(link, h5py.HardLink) else None
                    if isinstance(obj, h5py.Dataset) and obj.shape and obj.shape[0]:
                        self._event_count = int(obj.shape[0])
                        break
        return self._event_count

    def locate(self, feat: str, _searched: set | None = None) -> FeatureSource | None:
        """Where the data of `feat` are stored, checked; None if nowhere

        The search order is dclab's: the ``events`` group, then internal,
        file and remote basins in order of priority; file basins are
        searched recursively. Stored data are checked against what the
        file declares: the number of events, the mapping of mapped
        basins and the storage of the dataset (:func:`check_storage`).

        A basin file that several basins reach is searched once
        (`_searched`: the measurements searched in vain so far).

        Raises
        ------
        ValueError
            If the data are there but do not fit the measurement; the
            message names the file, the feature and the basin
        """
        searched = set() if _searched is None else _searched
        if id(self) in searched:
            return None
        try:
            source = self._locate(feat, searched)
        except (KeyError, RuntimeError, OSError) as exc:
            # h5py's errors for a damaged object header or link name nothing
            raise ValueError(
                f"The '{feat}' feature of '{self.path}' cannot be read "
                f"({one_line_error(exc)}); the file is damaged"
            ) from exc
        if source is None:
            searched.add(id(self))
        return source

    def _locate(self, feat: str, searched: set) -> FeatureSource | None:
        events = self.h5["events"]
        if feat in events:
            data = events[feat]
            name = f"'{feat}' feature of '{self.path}'"
            self._check_dataset(data, name)
            self._check_length(len(data), name)
            return FeatureSource(data, None, str(self.path), [])
        for fb in self.followed:
            if not fb.declares(feat):
                continue
            if fb.kind == "internal":
                group = self.h5[fb.definition["paths"][0]]
                if feat not in group:
                    continue
                data = group[feat]
                name = f"'{feat}' feature of '{self.path}' ({fb.describe()})"
                self._check_dataset(data, name)
                index = self._basinmap(fb, len(data), name)
                if index is None:
                    self._check_length(len(data), name)
                return FeatureSource(data, index, str(self.path), [fb.describe()])
            if fb.kind == "file":
                try:
                    source = fb.measurement.locate(feat, searched)
                except ValueError as exc:
                    # the basin file's own problem: say how it was reached
                    raise ValueError(
                        f"{one_line_error(exc)} (reached from '{self.path}' through "
                        f"{fb.describe()})"
                    ) from exc
                if source is None:
                    continue
                source.route.insert(0, fb.describe())
                name = source.describe(feat, self.path)
                index = self._basinmap(fb, len(source), name)
                if index is None:
                    self._check_length(len(source), name)
                elif source.index is not None:
                    index = source.index[index]
                return FeatureSource(source.data, index, source.path, source.route)
            # remote (only if allowed): dclab reads and maps the data
            from dclab.rtdc_dataset import feat_basin

            try:
                data = fb.basin.get_feature_data(feat)
            except (
                Exception,
                # dclab's basin errors are BaseExceptions
                feat_basin.BasinNotAvailableError,
                feat_basin.BasinIdentifierMismatchError,
            ) as exc:
                raise ValueError(
                    f"The '{feat}' feature of '{self.path}' is in remote "
                    f"{fb.describe()}, which cannot be read: {one_line_error(exc)}"
                ) from exc
            return FeatureSource(data, None, fb.definition["urls"][0], [fb.describe()])
        return None

    def missing_feature_error(self, feat: str) -> ValueError:
        """The error for a feature that :meth:`locate` did not find

        It names refused basins that would have held the feature.
        """
        candidates = [rb for rb in self.all_refused() if rb.provides(feat)]
        if candidates:
            details = "; ".join(rb.describe() for rb in candidates)
            return ValueError(
                f"Input file '{self.path}' has no '{feat}' feature of its own; "
                f"the basins that could hold it were not followed: {details}"
            )
        found = sorted(set(self.ds.features_innate) | set(self.ds.features_basin))
        return ValueError(
            f"Input file '{self.path}' has no '{feat}' feature (also not in "
            f"its basins); features found: {found}"
        )

    def _check_dataset(self, data, name: str):
        if not isinstance(data, h5py.Dataset):
            raise ValueError(f"The {name} is an HDF5 group; expected a dataset")
        if data.ndim == 0:
            raise ValueError(f"The {name} is a scalar; expected one value per event")
        check_storage(data, name)

    def _check_length(self, length: int, name: str):
        count = self.event_count
        if count is not None and length != count:
            raise ValueError(
                f"The {name} has {length} entries, but '{self.path}' declares "
                f"{count} events; expected one entry per event"
            )

    def _basinmap(self, fb: FollowedBasin, basin_length: int, name: str):
        """The validated mapping array of a mapped basin, None if unmapped"""
        if fb.mapping == "same":
            return None
        data = self.h5["events"][fb.mapping]
        label = f"basin mapping '{fb.mapping}' of '{self.path}'"
        check_storage(data, label)
        try:
            index = np.asarray(data[:])
        except (OSError, ValueError) as exc:
            raise ValueError(f"Cannot read the {label}: {one_line_error(exc)}") from exc
        self._check_length(len(index), label)
        if index.size and (index.min() < 0 or index.max() >= basin_length):
            raise ValueError(
                f"The {label} refers to entries {index.min()}..{index.max()} of "
                f"the {name}, which has {basin_length}; expected indices in "
                f"0..{basin_length - 1}"
            )
        return index.astype(np.int64)


class _Refusal(Exception):
    """Internal: a basin is refused; the message is the reason"""


def _priority(bdict: dict) -> str:
    """dclab's order of basins (internal, file, remote; unmapped first)"""
    from dclab.rtdc_dataset import feat_basin

    try:
        return feat_basin.basin_priority_sorted_key(bdict)
    except (TypeError, AttributeError):
        return "z"


def _candidate_paths(locations: list, referrer_dir: pathlib.Path) -> list:
    """Paths a file basin location may mean, in dclab's order

    A relative location is relative to the referring file's folder (dclab
    also tries the working directory; dcbg does not, the result must not
    depend on where dcbg is started). Like dclab, the file name alone in
    the referrer's folder is tried too, and Windows separators in relative
    paths are translated.
    """
    candidates = []
    for text in locations:
        variants = [text]
        if "\\" in text and os.sep == "/":
            variants.append(text.replace("\\", "/"))
        for variant in variants:
            if not variant or "\0" in variant:
                continue
            path = pathlib.Path(variant)
            if path.is_absolute():
                candidates.append(path)
            else:
                candidates.append(referrer_dir / path)
            if path.name:
                candidates.append(referrer_dir / path.name)
    return list(dict.fromkeys(candidates))


def open_rtdc(path: pathlib.Path, writable: bool = False):
    """dclab's dataset of an .rtdc file with file and remote basins off

    Raises
    ------
    ValueError
        If the file cannot be opened as an RT-DC measurement; the
        message names the file
    """
    # HDF5's default locking flags (what a plain ``h5py.File(path)`` uses):
    # with dclab's default (no locking) the user could not open the same
    # file with h5py in this process while dcbg reads it
    h5kwargs = {"mode": "a" if writable else "r", "locking": "best-effort"}
    ensure_hdf5_filters()
    from dclab.rtdc_dataset.fmt_hdf5 import RTDC_HDF5
    from dclab.rtdc_dataset.fmt_hdf5.base import OldFormatNotSupportedError

    # before dclab reads the metadata: a damaged text attribute can make
    # HDF5 loop forever (see dcbg.io.attributes)
    check_root_attributes(path, h5kwargs)
    try:
        return RTDC_HDF5(path, h5kwargs=h5kwargs, enable_basins=False)
    except OSError as exc:
        raise ValueError(
            f"Cannot open '{path}' as an HDF5 file: {one_line_error(exc)}"
        ) from exc
    except (Exception, OldFormatNotSupportedError) as exc:
        detail = f"{type(exc).__name__}: {one_line_error(exc)}"
    # outside the except block: the failed dataset (and its open file) is
    # released with the traceback, so the file can be read again
    bad = _find_bad_attribute(path, h5kwargs)
    raise ValueError(f"File '{path}' is not a valid .rtdc measurement: {bad or detail}")


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
                f"read ({one_line_error(exc)})"
            )
    return None


__all__ = [
    "BasinPolicy",
    "FeatureSource",
    "FileRefused",
    "FollowedBasin",
    "MappedData",
    "PolicyMeasurement",
    "RefusedBasin",
    "check_hdf5_file",
    "check_links",
    "one_line_error",
    "open_rtdc",
]

# dclab (imported where first needed) registers all its basin classes when
# any of its modules is imported
