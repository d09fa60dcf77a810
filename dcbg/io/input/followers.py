"""Basin followers: one small class per basin type, registered by type

dclab registers its basin classes by format; dcbg registers what it does
with each basin *type* under the basin policy (see
:mod:`dcbg.io.input.policy`): a follower checks a definition's format,
follows the basin (or refuses it with the reason) and finds a feature's
data in a followed basin. :data:`BASIN_FOLLOWERS` maps a type to its
follower; a new basin type is one more class with
:func:`register_follower`.
"""

from __future__ import annotations

import os
import pathlib

import h5py

from ...errors import InputFileError, one_line
from .basin_resolution import BasinWorkExceeded
from .dataset import policy_file_basin_class
from .hdf5_links import check_links
from .policy import FollowedBasin
from .safe_open import FileRefused, OpenedFile
from .sources import FeatureSource

#: file basins of basins are followed this deep; real pipelines nest two
#: or three levels (raw data -> processed -> background), deeper chains
#: are crafted
MAX_BASIN_DEPTH = 8

#: basin type -> follower class (see :func:`register_follower`)
BASIN_FOLLOWERS: dict[str, type[BasinFollower]] = {}


class BasinRefused(Exception):
    """A follower does not follow a basin; the message is the reason"""


def register_follower(cls: type[BasinFollower]) -> type[BasinFollower]:
    """Class decorator: `cls` follows the basins of type ``cls.type``"""
    BASIN_FOLLOWERS[cls.type] = cls
    return cls


class BasinFollower:
    """What dcbg does with the basins of one type (class attributes, methods)

    Attributes
    ----------
    type: str
        The basin type of the definitions (``"internal"``, ...)
    formats: tuple of str
        The basin formats accepted for this type
    locations_key: str
        The definition's key that lists its locations
    """

    type: str = ""
    formats: tuple = ()
    locations_key = "paths"
    #: the basin type in messages ("unknown format ... for <label>")
    label = ""
    #: words after the label in that message
    format_hint = ""

    @classmethod
    def format_problem(cls, bformat) -> str | None:
        """Why the definition's format is not accepted, or None"""
        if bformat in cls.formats:
            return None
        return f"unknown format {bformat!r} for {cls.label}{cls.format_hint}"

    @classmethod
    def follow(cls, measurement, bdict: dict, keys: list) -> None:
        """Append the followed basin(s) to ``measurement.followed``

        Raises
        ------
        BasinRefused
            With the reason the basin is not followed
        """
        raise NotImplementedError

    @classmethod
    def locate(cls, measurement, fb: FollowedBasin, feat: str, searched: set):
        """The :class:`FeatureSource` of `feat` in basin `fb`, or None"""
        raise NotImplementedError


def _basin_class(bformat: str):
    from dclab.rtdc_dataset import feat_basin

    return feat_basin.get_basin_classes().get(bformat)


@register_follower
class InternalFollower(BasinFollower):
    """Data in the same file (a group), possibly mapped; always followed"""

    type = "internal"
    formats = ("h5dataset", "h5datasetchop")
    label = "an internal basin"

    @classmethod
    def follow(cls, measurement, bdict, keys):
        h5 = measurement.h5
        location = bdict["paths"][0]
        link = h5.get(location, getlink=True) if location else None
        if not isinstance(link, (h5py.HardLink, h5py.SoftLink)) or not isinstance(
            h5[location], h5py.Group
        ):
            raise BasinRefused(f"its data group '{location}' is not in the file")
        check_links(h5, measurement.path, (location,))
        b_cls = _basin_class(bdict["format"])
        try:
            basin = b_cls(location, **measurement.basin_kwargs(bdict, keys))
        except (ValueError, KeyError, OSError, TypeError, AssertionError) as exc:
            raise BasinRefused(f"dclab cannot use it ({exc})") from exc
        measurement.followed.append(FollowedBasin(dict(bdict), basin))

    @classmethod
    def locate(cls, measurement, fb, feat, searched):
        group = measurement.h5[fb.definition["paths"][0]]
        if feat not in group:
            return None
        data = group[feat]
        name = f"'{feat}' feature of '{measurement.path}' ({fb.describe()})"
        measurement.check_dataset(data, name)
        index = measurement.basinmap(fb, len(data), name)
        if index is None:
            measurement.check_length(len(data), name)
        return FeatureSource(data, index, str(measurement.path), [fb.describe()])


def candidate_paths(locations: list, referrer_dir: pathlib.Path) -> list:
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


@register_follower
class FileFollower(BasinFollower):
    """Another .rtdc file, opened under the policy (see the policy's rules)"""

    type = "file"
    formats = ("hdf5",)
    label = "a file basin"
    format_hint = " (expected 'hdf5')"

    @classmethod
    def follow(cls, measurement, bdict, keys):
        m = measurement
        if len(m.chain) > MAX_BASIN_DEPTH:
            raise BasinRefused(
                f"file basins are followed at most {MAX_BASIN_DEPTH} levels deep"
            )
        reasons = []
        candidates = candidate_paths(bdict["paths"], m.path.parent)
        m.resolution.count_steps(len(candidates), "basin locations", m.path)
        for candidate in candidates:
            try:
                opened = m.policy.open_file(candidate)
            except FileRefused as exc:
                reasons.append(f"'{candidate}' {exc}")
                continue
            real = opened.path
            if opened.identity in m.chain:
                opened.close()
                reasons.append(f"'{candidate}' refers back to '{real}' (a cycle)")
                continue
            try:
                sub = cls._basin_measurement(m, opened)
            except BasinWorkExceeded:
                raise
            except (ValueError, OSError, TypeError, KeyError) as exc:
                reasons.append(f"'{candidate}' cannot be opened: {one_line(exc)}")
                continue
            mismatch = cls._identifier_mismatch(m, bdict, sub)
            if mismatch:
                # the resolution closes it (another basin may use the file)
                reasons.append(f"'{candidate}': {mismatch}")
                continue
            definition = dict(bdict, paths=[str(real)])
            try:
                basin = policy_file_basin_class()(
                    real, measurement=sub, **m.basin_kwargs(bdict, keys)
                )
            except Exception as exc:
                reasons.append(f"'{candidate}': dclab cannot use it ({exc})")
                continue
            m.followed.append(FollowedBasin(definition, basin, sub))
            return
        raise BasinRefused("; ".join(reasons) or "no usable path")

    @staticmethod
    def _basin_measurement(m, opened: OpenedFile):
        """The basin file of `opened` as a measurement, each file once

        Takes over `opened`. A file met before is not opened again (see
        :meth:`BasinResolution.reuse`); after each file opened, a stop
        request is honoured.
        """
        depth = len(m.chain)
        known = m.resolution.reuse(opened.identity, depth)
        if known is not None:
            opened.close()
            return known
        try:
            m.resolution.count_file()
        except BaseException:
            opened.close()
            raise
        sub = type(m)(
            opened.path,
            m.policy,
            opened=opened,
            chain=m.chain,
            resolution=m.resolution,
        )
        m.resolution.remember(opened.identity, sub, depth)
        m.resolution.safe_point()
        return sub

    @staticmethod
    def _identifier_mismatch(m, bdict: dict, sub) -> str | None:
        """Why the basin file is not the measurement the definition means"""
        basin_id = sub.ds.get_measurement_identifier()
        expected = bdict.get("identifier")
        if expected and basin_id != expected:
            return (
                f"its measurement identifier is {basin_id!r}, the basin "
                f"definition expects {expected!r}"
            )
        referrer_id = m.ds.get_measurement_identifier()
        if referrer_id and basin_id:
            mapping = bdict.get("mapping") or "same"
            if mapping == "same" and referrer_id != basin_id:
                return (
                    f"its measurement identifier {basin_id!r} differs from that "
                    f"of '{m.path}' ({referrer_id!r})"
                )
            if mapping != "same" and not referrer_id.startswith(basin_id):
                return (
                    f"its measurement identifier {basin_id!r} is not a prefix of "
                    f"that of '{m.path}' ({referrer_id!r}), as a mapped basin's "
                    f"must be"
                )
        return None

    @classmethod
    def locate(cls, measurement, fb, feat, searched):
        m = measurement
        try:
            source = fb.measurement.locate(feat, searched)
        except ValueError as exc:
            # the basin file's own problem: say how it was reached
            raise InputFileError(
                m.path,
                f"{one_line(exc)} (reached from '{m.path}' through {fb.describe()})",
                feature=feat,
            ) from exc
        if source is None:
            return None
        source.route.insert(0, fb.describe())
        name = source.describe(feat, m.path)
        index = m.basinmap(fb, len(source), name)
        if index is None:
            m.check_length(len(source), name)
        elif source.index is not None:
            index = source.index[index]
        return FeatureSource(source.data, index, source.path, source.route)


@register_follower
class RemoteFollower(BasinFollower):
    """http, S3 and DCOR URLs: only with ``allow_remote_basins``; dclab reads"""

    type = "remote"
    formats = ("http", "s3", "dcor")
    label = "a remote basin"
    locations_key = "urls"

    @classmethod
    def follow(cls, measurement, bdict, keys):
        if not measurement.policy.allow_remote_basins:
            raise BasinRefused(
                "remote basins are not followed (no network access); allow "
                "them with --allow-remote-basins (allow_remote_basins=True)"
            )
        b_cls = _basin_class(bdict["format"])
        if b_cls is None:
            raise BasinRefused(f"dclab does not support format {bdict['format']!r}")
        urls = bdict["urls"]
        if bdict["format"] == "dcor":
            # dclab sends the DCOR API tokens registered in this process
            # to the host: never in plain text
            urls = [url for url in urls if url.lower().startswith("https://")]
            if not urls:
                raise BasinRefused(
                    "DCOR basins are followed only over https (dclab sends "
                    "DCOR API tokens to the host)"
                )
        kwargs = measurement.basin_kwargs(bdict, keys)
        kwargs["perishable"] = bdict.get("perishable", False)
        for url in urls:
            try:
                basin = b_cls(url, **kwargs)
            except Exception as exc:
                raise BasinRefused(
                    f"dclab cannot use '{url}' ({one_line(exc)})"
                ) from exc
            measurement.followed.append(FollowedBasin(dict(bdict, urls=[url]), basin))

    @classmethod
    def locate(cls, measurement, fb, feat, searched):
        # dclab reads and maps the data
        from dclab.rtdc_dataset import feat_basin

        try:
            data = fb.basin.get_feature_data(feat)
        except (
            Exception,
            # dclab's basin errors are BaseExceptions
            feat_basin.BasinNotAvailableError,
            feat_basin.BasinIdentifierMismatchError,
        ) as exc:
            raise InputFileError(
                measurement.path,
                f"The '{feat}' feature of '{measurement.path}' is in remote "
                f"{fb.describe()}, which cannot be read: {one_line(exc)}",
                feature=feat,
            ) from exc
        return FeatureSource(data, None, fb.definition["urls"][0], [fb.describe()])


__all__ = [
    "BASIN_FOLLOWERS",
    "MAX_BASIN_DEPTH",
    "BasinFollower",
    "BasinRefused",
    "FileFollower",
    "InternalFollower",
    "RemoteFollower",
    "candidate_paths",
    "register_follower",
]
