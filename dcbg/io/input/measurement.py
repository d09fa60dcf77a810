"""An .rtdc measurement opened with its basins resolved under the policy

:class:`RtdcMeasurement` is the one object a background method sees of
an .rtdc input (through :func:`dcbg.io.input.open_input`), and the object
of every basin file followed for it. Its data are read through
:meth:`RtdcMeasurement.locate`, which walks the followed basins in
dclab's order (see :mod:`dcbg.io.input.followers`); what it reads is
checked by :mod:`dcbg.io.input.checks`.
"""

from __future__ import annotations

import json
import os
import pathlib
import re

import h5py
import numpy as np

from ...errors import InputFileError, one_line
from ..bounded_chunks import read_whole
from ..conventions import BACKGROUND_FEATURES, read_text_lines
from ..images import ImageStack
from . import checks
from .basin_resolution import BasinResolution
from .dataset import open_rtdc, use_basins
from .followers import BASIN_FOLLOWERS, BasinRefused
from .hdf5_links import check_links
from .policy import (
    BasinPolicy,
    FollowedBasin,
    RefusedBasin,
    is_str_list,
    refused_basin,
)
from .registry import register_input_kind
from .safe_open import FileRefused, OpenedFile, check_same_file, open_hdf5_file
from .sources import FeatureSource

#: names of the features that map events to basin events
BASINMAP_NAME = re.compile(r"basinmap\d+")

#: groups of an .rtdc file whose members dcbg or dclab access
ACCESSED_GROUPS = ("events", "basin_events", "basins", "logs", "tables")

#: errors of a basin definition that cannot be read
DEFINITION_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    RecursionError,
    UnicodeDecodeError,
)


@register_input_kind
class RtdcMeasurement:
    """An .rtdc file opened with its basins resolved under a policy

    Use :meth:`open` for an input (it also checks and opens its images);
    the constructor opens basin files and files that are only inspected.

    Parameters
    ----------
    path: pathlib.Path
        The .rtdc file
    policy: BasinPolicy
        Which basins to follow
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
    h5: h5py.File
        The file handle dclab opened
    images: ImageStack or None
        The ``image`` feature, wherever it is stored (inputs opened with
        :meth:`open`; None otherwise)
    followed: list of FollowedBasin
        The basins that are followed, in dclab's order of priority
    refused: list of RefusedBasin
        The basins that are not followed, with the reason

    Raises
    ------
    InputFileError
        If the file is not a regular HDF5 file, not an RT-DC measurement,
        or holds HDF5 external links, or its basins reach more files than
        :data:`~dcbg.io.input.basin_resolution.MAX_BASIN_FILES`; the
        message names the file
    KeyboardInterrupt
        If a stop was requested while basins were opened (see
        :meth:`BasinResolution.safe_point`)
    """

    #: an input kind that reads a file (see dcbg.io.input.registry)
    is_file = True

    def __init__(
        self,
        path: pathlib.Path,
        policy: BasinPolicy | None = None,
        *,
        opened: OpenedFile | None = None,
        chain: tuple = (),
        resolution: BasinResolution | None = None,
    ):
        self.path = pathlib.Path(path)
        self.policy = policy if policy is not None else BasinPolicy()
        self._owns_resolution = resolution is None
        self.resolution = resolution or BasinResolution(self.path)
        self.followed: list[FollowedBasin] = []
        self.refused: list[RefusedBasin] = []
        self.images: ImageStack | None = None
        self._event_count = None
        self._opened = opened
        self._closed = False
        self.ds = None
        try:
            if self._opened is None:
                self._opened = self._open_checked()
            self.real_path = self._opened.path
            self.chain = (*chain, self._opened.identity)
            self.ds = self._open_dataset()
            self.h5 = self.ds.h5file
            check_links(self.h5, self.path, ("/", *ACCESSED_GROUPS))
            checks.check_events_group(self.h5, self.path)
            self._resolve_basins()
            use_basins(self.ds, self.followed)
        except BaseException:
            self.close()
            raise

    @classmethod
    def accepts(cls, input_data) -> bool:
        """The input kind of a path (str or os.PathLike)"""
        return isinstance(input_data, (str, os.PathLike))

    @classmethod
    def open(cls, path, policy: BasinPolicy | None = None) -> RtdcMeasurement:
        """An input measurement, checked, with its images ready to read

        The ``image`` feature is checked against what the file declares
        (event count, mapping, stored chunks) and its first chunk is read,
        and the logs and tables an output copies are read once: damage
        fails here, before an output exists.

        Raises
        ------
        FileNotFoundError
            If `path` does not exist
        InputFileError
            If the file is not a usable measurement, or its images are
            missing, refused or inconsistent; the message names the file
            (and the basin)
        """
        path = checks.check_input_path(pathlib.Path(path))
        measurement = cls(path, policy)
        try:
            measurement.images = measurement._open_images()
            checks.check_readable(measurement.h5, path, ("logs", "tables"))
        except BaseException:
            measurement.close()
            raise
        return measurement

    def _open_checked(self) -> OpenedFile:
        try:
            return open_hdf5_file(self.path)
        except FileRefused as exc:
            raise InputFileError(
                self.path, f"File '{self.path}' {exc}; expected an .rtdc measurement"
            ) from None

    def _open_dataset(self):
        """dclab's dataset of the file, read through the checked descriptor"""
        name = self._opened.h5_name()
        try:
            ds = open_rtdc(pathlib.Path(name))
        except ValueError as exc:  # InputFileError, DamagedAttributeError
            if name == str(self.path):
                raise
            # the messages name the file, not the descriptor
            text = str(exc).replace(f"'{name}'", f"'{self.path}'")
            raise InputFileError(self.path, text) from exc
        # dclab's messages and hash name the file, not the descriptor
        ds.path = self.path
        try:
            check_same_file(self._opened, ds.h5file)
        except FileRefused as exc:
            ds.close()
            raise InputFileError(self.path, f"File '{self.path}' {exc}") from None
        return ds

    def _open_images(self) -> ImageStack:
        source = self.locate("image")
        if source is None:
            raise self.missing_feature_error("image")
        images = ImageStack(
            source.as_array_like(), name=source.describe("image", self.path)
        )
        if len(images):
            # A damaged first chunk fails here, before an output exists.
            images.read(0, 1)
        return images

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

    # what a method reads -------------------------------------------------

    @property
    def config(self):
        """dclab's configuration (metadata) of the measurement"""
        return self.ds.config

    @property
    def refused_basins(self) -> list[RefusedBasin]:
        """Basins of the input (not of its basin files) that were not followed"""
        return list(self.refused)

    def followed_basins(self) -> list[dict]:
        """Definitions of the followed basins (file basins: resolved path)

        An output may carry these basins; refused ones it must not.
        """
        return [dict(fb.definition) for fb in self.followed]

    def get_feature(self, name: str) -> np.ndarray | None:
        """A scalar feature as an array (one value per frame), or None

        Basins are resolved under the policy; the data are checked
        against the number of frames.

        Raises
        ------
        InputFileError
            If the stored feature is not one value per frame; the
            message names the file and the feature
            or cannot be read
        """
        source = self.locate(name)
        if source is None:
            return None
        label = source.describe(name, self.path)
        try:
            # a chunk never decodes to more than it holds (no bomb)
            data = read_whole(source.data, label)
            if source.index is not None:
                data = np.asarray(data)[source.index]
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InputFileError(
                self.path, f"Cannot read the {label}: {one_line(exc)}", feature=name
            ) from exc
        data = np.asarray(data)
        if data.ndim != 1 or data.dtype.kind not in "uif":
            raise InputFileError(
                self.path,
                f"The {label} has shape {data.shape} and dtype {data.dtype}; "
                f"expected one number per event",
                feature=name,
            )
        if self.images is not None and len(data) != len(self.images):
            raise InputFileError(
                self.path,
                f"The {label} has {len(data)} values for {len(self.images)} "
                f"frames; expected one value per frame",
                feature=name,
            )
        return data

    def get_frame_rate(self):
        """The attribute "imaging:frame rate" as stored (None if missing)

        Raw, as dcnum reads it: the caller checks that it is a positive
        number (a crafted file may hold anything there).
        """
        return self.h5.attrs.get("imaging:frame rate")

    def get_basin_features(self) -> list[str]:
        """Features the output takes from this file when it is a file basin

        These are the features stored in the file itself (``events`` and
        internal basins). Features of the file's own file basins are not
        listed: the output carries copies of those basins, and dcnum does
        not follow nested basins.
        """
        import dclab

        feats = set(self.h5.get("events", {}).keys())
        for bn_dict in self.followed_basins():
            if bn_dict.get("type") == "internal":
                feats |= set(bn_dict.get("features") or [])
        return sorted(
            f
            for f in feats
            if dclab.dfn.feature_exists(f)
            and f not in BACKGROUND_FEATURES
            and not f.startswith("basinmap")
        )

    # basins --------------------------------------------------------------

    def _read_definitions(self) -> list[dict]:
        """Basin definitions of the file, in dclab's order of priority

        A definition that is not a JSON object with a "type" is an error
        (dclab itself, e.g. when it copies the file's metadata, fails on
        it); other problems make the basin refused later.

        Raises
        ------
        InputFileError
            If a definition cannot be read; the message names the file
            and the definition's key
        """
        group = self.h5.get("basins")
        if group is None:
            return []
        if not isinstance(group, h5py.Group):
            raise InputFileError(
                self.path,
                f"'basins' in '{self.path}' is not a group; expected the "
                f"basin definitions of an RT-DC measurement",
            )
        self.resolution.count_steps(len(group), "basin definitions", self.path)
        definitions = []
        for key in sorted(group):
            try:
                bdict = _read_definition(group[key])
            except DEFINITION_ERRORS as exc:
                raise InputFileError(
                    self.path,
                    f"Basin definition '{key}' of '{self.path}' cannot be read "
                    f"({one_line(exc)}); expected a JSON object with the "
                    f"basin's 'type', 'format' and locations",
                ) from exc
            bdict["key"] = key
            definitions.append(bdict)
        return sorted(definitions, key=_priority)

    def _resolve_basins(self):
        definitions = self._read_definitions()
        keys = [bd["key"] for bd in definitions]
        for bdict in definitions:
            problem = self._definition_problem(bdict)
            if problem:
                self.refused.append(refused_basin(self.path, bdict, problem))
                continue
            try:
                BASIN_FOLLOWERS[bdict["type"]].follow(self, bdict, keys)
            except BasinRefused as exc:
                self.refused.append(refused_basin(self.path, bdict, str(exc)))

    def _definition_problem(self, bdict: dict) -> str | None:
        """Why a definition cannot be used as it is, or None"""
        btype = bdict.get("type")
        follower = BASIN_FOLLOWERS.get(btype)
        if follower is None:
            return f"unknown basin type {btype!r}"
        problem = follower.format_problem(bdict.get("format"))
        if problem:
            return problem
        locs = bdict.get(follower.locations_key)
        if not is_str_list(locs) or not locs:
            return f"its '{follower.locations_key}' is not a list of strings"
        feats = bdict.get("features")
        if feats is not None and not is_str_list(feats):
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

    def basin_kwargs(self, bdict: dict, keys: list) -> dict:
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
        """Number of events the measurement declares (see checks.read_event_count)"""
        if self._event_count is None:
            self._event_count = checks.read_event_count(self.h5, self.path)
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
        InputFileError
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
            raise InputFileError(
                self.path,
                f"The '{feat}' feature of '{self.path}' cannot be read "
                f"({one_line(exc)}); the file is damaged",
                feature=feat,
            ) from exc
        if source is None:
            searched.add(id(self))
        return source

    def _locate(self, feat: str, searched: set) -> FeatureSource | None:
        events = self.h5["events"]
        if feat in events:
            data = events[feat]
            name = f"'{feat}' feature of '{self.path}'"
            self.check_dataset(data, name)
            self.check_length(len(data), name)
            return FeatureSource(data, None, str(self.path), [])
        for fb in self.followed:
            if not fb.declares(feat):
                continue
            source = BASIN_FOLLOWERS[fb.kind].locate(self, fb, feat, searched)
            if source is not None:
                return source
        return None

    def missing_feature_error(self, feat: str) -> InputFileError:
        """The error for a feature that :meth:`locate` did not find

        It names refused basins that would have held the feature.
        """
        candidates = [rb for rb in self.all_refused() if rb.provides(feat)]
        if candidates:
            details = "; ".join(rb.describe() for rb in candidates)
            return InputFileError(
                self.path,
                f"Input file '{self.path}' has no '{feat}' feature of its own; "
                f"the basins that could hold it were not followed: {details}",
                feature=feat,
            )
        found = sorted(set(self.ds.features_innate) | set(self.ds.features_basin))
        return InputFileError(
            self.path,
            f"Input file '{self.path}' has no '{feat}' feature (also not in "
            f"its basins); features found: {found}",
            feature=feat,
        )

    def check_dataset(self, data, name: str):
        """See :func:`dcbg.io.input.checks.check_dataset`"""
        checks.check_dataset(data, name, self.path)

    def check_length(self, length: int, name: str):
        """Raise InputFileError unless `length` is the declared event count"""
        checks.check_length(length, self.event_count, name, self.path)

    def basinmap(self, fb: FollowedBasin, basin_length: int, name: str):
        """The validated mapping array of a mapped basin, None if unmapped"""
        if fb.mapping == "same":
            return None
        return checks.check_basinmap(
            self.h5, self.path, fb.mapping, self.event_count, basin_length, name
        )


def _read_definition(item) -> dict:
    """One basin definition (a dataset of JSON text lines) as a dict"""
    if not isinstance(item, h5py.Dataset) or item.ndim != 1 or not len(item):
        raise ValueError("expected a dataset of JSON text lines")
    bdict = json.loads(" ".join(read_text_lines(item)))
    if not isinstance(bdict, dict):
        raise ValueError("not a JSON object")
    if not isinstance(bdict.get("type"), str):
        raise ValueError("no basin 'type'")
    if bdict["type"] == "internal" and not is_str_list(bdict.get("features")):
        raise ValueError("an internal basin without a list of features")
    return bdict


def _priority(bdict: dict) -> str:
    """dclab's order of basins (internal, file, remote; unmapped first)"""
    from dclab.rtdc_dataset import feat_basin

    try:
        return feat_basin.basin_priority_sorted_key(bdict)
    except (TypeError, AttributeError):
        return "z"


__all__ = ["ACCESSED_GROUPS", "BASINMAP_NAME", "RtdcMeasurement"]
