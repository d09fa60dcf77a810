"""An existing file as the output: whether it may take the background

An output that exists (``--force``; in Python any existing output path),
also the input itself (in place), is replaced by a copy of it in which
only the background features differ (see :class:`dcbg.io.OutputFile`).
Before anything is computed, the checks here decide whether that is
allowed, and say why not:

- the file must be writable (not read-only, not immutable, not in a
  sticky folder under another user's name): :func:`check_replaceable`;
- another measurement's file is never an output
  (:func:`check_fits_output`): it must not hold raw images of its own
  (in ``events`` or in an internal basin), its events must be as many
  as the background's frames, and its measurement identifier must be
  the input's.

While the copy is made, :func:`remove_background_features` removes the
old background without losing anything that is kept (an internal basin
that holds the images *and* the old background keeps the images), and
:func:`keep_ownership` gives the new file the owner, group and mode of
the one it replaces, where the operating system lets the user do that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import stat
import uuid
import warnings

import h5py

from ..errors import one_line
from .attributes import check_attribute_heaps
from .conventions import (
    BACKGROUND_FEATURES,
    INTERNAL_BASIN_GROUP,
    decode_text,
    read_basin_definition,
)

#: permission bits that make a file writable for someone
WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
#: permission bits dcbg needs on its staged copy while it writes it (the
#: file's own mode is applied before it is moved into place)
STAGED_MODE_BITS = stat.S_IRUSR | stat.S_IWUSR


def check_replaceable(path: pathlib.Path, target: pathlib.Path):
    """Raise PermissionError unless dcbg may replace the existing file

    Parameters
    ----------
    path: pathlib.Path
        The output path as given (named in messages)
    target: pathlib.Path
        The file it names (symbolic links resolved)

    Raises
    ------
    PermissionError
        If the file is read-only (no write permission bit: its owner
        marked it as not to be changed), not writable by this user (owned
        by another user, or immutable), or in a folder with the sticky
        bit where only its owner may replace it
    """
    st = os.stat(target)
    mode = stat.S_IMODE(st.st_mode)
    if not mode & WRITE_BITS:
        raise PermissionError(
            f"Output file '{path}' is read-only (mode {mode:04o}); dcbg does "
            f"not replace a read-only file. Make it writable (chmod u+w) if its "
            f"background is to be replaced; nothing was computed"
        )
    if not os.access(target, os.W_OK):
        raise PermissionError(
            f"Output file '{path}' is not writable by this user (owner uid "
            f"{st.st_uid}, mode {mode:04o}, or marked immutable); dcbg does not "
            f"replace it; nothing was computed"
        )
    folder = os.stat(target.parent)
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    if (
        folder.st_mode & stat.S_ISVTX
        and euid is not None
        and euid not in (0, st.st_uid, folder.st_uid)
    ):
        raise PermissionError(
            f"Output file '{path}' belongs to another user (uid {st.st_uid}) in "
            f"a folder with the sticky bit, where only its owner may replace "
            f"it; nothing was computed"
        )


def warn_hard_links(path: pathlib.Path, st: os.stat_result):
    """Warn that the other names of a hard-linked output keep the old file"""
    if st.st_nlink > 1:
        warnings.warn(
            f"Output file '{path}' has {st.st_nlink} names (hard links); the "
            f"new file replaces it under this name only, the other names keep "
            f"the previous file",
            UserWarning,
            stacklevel=3,
        )


def prepare_staged_copy(staged: pathlib.Path):
    """Let dcbg write its staged copy whatever mode the original has"""
    mode = stat.S_IMODE(os.stat(staged).st_mode)
    os.chmod(staged, mode | STAGED_MODE_BITS)


def keep_ownership(staged: pathlib.Path, original: os.stat_result):
    """Give the staged copy the owner, group and mode of `original`

    The new file is created by the running user; a file replaced in place
    keeps its owner and group only where the user may set them (root, or
    the group of a user who is a member of it); otherwise the running
    user owns the new file. The mode is always kept. Windows has no
    owners here (only the read-only flag, which is part of the mode).
    """
    if hasattr(os, "chown"):
        for uid in (original.st_uid, -1):
            try:
                os.chown(staged, uid, original.st_gid)
                break
            except OSError:
                continue  # not permitted (or not supported): try less
    # after chown, which may clear the set-user/group-ID bits
    with contextlib.suppress(OSError):
        os.chmod(staged, stat.S_IMODE(original.st_mode))


def measurement_identifier(attrs) -> str | None:
    """A file's measurement identifier from its attributes, as dclab has it

    "experiment:run identifier" if set; else the MD5-based UUID of
    experiment time, date and setup identifier if all are set; else None.
    """
    run_id = attrs.get("experiment:run identifier")
    if run_id is not None and decode_text(run_id):
        return decode_text(run_id)
    parts = [
        attrs.get(key)
        for key in ("experiment:time", "experiment:date", "setup:identifier")
    ]
    parts = [decode_text(part) if part is not None else "" for part in parts]
    if not all(parts):
        return None
    digest = hashlib.md5("_".join(parts).encode()).hexdigest()
    return str(uuid.UUID(hex=digest))


def _basin_definitions(h5: h5py.File, path: pathlib.Path) -> list[dict]:
    basins = h5.get("basins")
    if not isinstance(basins, h5py.Group):
        return []
    definitions = []
    for key in basins:
        try:
            bn = read_basin_definition(basins[key])
        except Exception as exc:  # noqa: BLE001 (untrusted file: any damage)
            raise ValueError(
                f"Output file '{path}' exists, but its basin definition '{key}' "
                f"cannot be read ({one_line(exc)}); choose another output "
                f"path"
            ) from exc
        if not isinstance(bn, dict):
            raise ValueError(
                f"Output file '{path}' exists, but its basin definition '{key}' "
                f"is not a JSON object; choose another output path"
            )
        definitions.append(bn)
    return definitions


def check_fits_output(
    path: pathlib.Path, event_count: int | None, identifier: str | None = None
):
    """Raise ValueError unless the existing file `path` may take a background

    Only background features of an existing output are replaced (the rest
    is kept), so the file must be an .rtdc file of the same measurement
    without raw images of its own (a file with images is a measurement:
    write into it as the input instead).

    Parameters
    ----------
    path: pathlib.Path
        The existing output
    event_count: int or None
        Frames of the background; the file's events must be as many
    identifier: str or None
        Measurement identifier of the input; the file's (its own, else
        those its file basins name) must be the same. None: not compared
        (also where the file has none)
    """
    try:
        with h5py.File(path, "r") as h5:
            events = h5.get("events")
            if not isinstance(events, h5py.Group):
                events = {}
            own_images = "image" in events
            counts = {
                len(dset)
                for name, dset in events.items()
                if isinstance(dset, h5py.Dataset)
                and dset.shape
                and not name.startswith("basinmap")
            }
            definitions = _basin_definitions(h5, path)
            # a damaged text attribute can make HDF5 loop forever
            check_attribute_heaps(h5, path)
            own_id = measurement_identifier(h5.attrs)
    except OSError as exc:
        raise ValueError(
            f"Output file '{path}' exists but is not a readable HDF5 file "
            f"({one_line(exc)}); choose another output path"
        ) from exc
    image_basins = [
        bn.get("name", "?")
        for bn in definitions
        if bn.get("type") == "internal" and "image" in (bn.get("features") or [])
    ]
    if own_images or image_basins:
        where = (
            "'events/image'"
            if own_images
            else f"the internal basin '{image_basins[0]}'"
        )
        raise ValueError(
            f"Output file '{path}' holds raw images ({where}) of its own; "
            f"refusing to write another measurement's background into it even "
            f"with --force, choose another output path"
        )
    if event_count is not None and counts and counts != {event_count}:
        raise ValueError(
            f"Output file '{path}' holds {sorted(counts)[0]} events, but the "
            f"background is computed for {event_count} events; it does not fit "
            f"that file, choose another output path"
        )
    if identifier:
        known = (
            {own_id}
            if own_id
            else {
                bn["identifier"]
                for bn in definitions
                if bn.get("type") == "file" and isinstance(bn.get("identifier"), str)
            }
        )
        if known and identifier not in known:
            raise ValueError(
                f"Output file '{path}' belongs to another measurement (its "
                f"measurement identifier is {sorted(known)[0]!r}, the input's "
                f"{identifier!r}): its events are not the input's frames. "
                f"Refusing to write the background into it even with --force, "
                f"choose another output path"
            )


def remove_background_features(h5: h5py.File):
    """Remove ``image_bg``/``bg_off`` and what only serves them from `h5`

    The features are deleted from ``events`` and from the internal basin
    group. An internal basin that holds only background features is
    removed with its mapping (``basinmapN``, unless another basin uses
    it); one that also holds other features (the images, say) keeps them:
    its definition lists them alone, its mapping stays.
    """
    for grp in ("events", INTERNAL_BASIN_GROUP):
        for feat in BACKGROUND_FEATURES:
            if grp in h5 and feat in h5[grp]:
                del h5[grp][feat]
    basins = h5.get("basins", {})
    stale_maps = set()
    for key in list(basins):
        bn = read_basin_definition(basins[key])
        features = bn.get("features") or []
        if bn.get("type") != "internal" or not set(features) & set(BACKGROUND_FEATURES):
            continue
        kept = [feat for feat in features if feat not in BACKGROUND_FEATURES]
        del basins[key]
        if kept:
            _write_basin_definition(h5, {**bn, "features": kept})
        elif bn.get("mapping") not in (None, "same"):
            stale_maps.add(bn["mapping"])
    used = {read_basin_definition(basins[key]).get("mapping") for key in basins}
    for name in stale_maps - used:
        if name in h5["events"]:
            del h5["events"][name]
    if INTERNAL_BASIN_GROUP in h5 and not len(h5[INTERNAL_BASIN_GROUP]):
        del h5[INTERNAL_BASIN_GROUP]


def _write_basin_definition(h5: h5py.File, bn_dict: dict):
    """Store a basin definition as dclab does (named by its hash)"""
    import dclab
    from dclab.util import hashobj

    bn_dict = {key: value for key, value in bn_dict.items() if key != "key"}
    lines = json.dumps(bn_dict, indent=2, sort_keys=True).split("\n")
    dclab.RTDCWriter(h5).write_text(h5.require_group("basins"), hashobj(lines), lines)
