"""The .rtdc conventions of background outputs, in one place

Names of the features, attributes and logs a background computation
writes, how outputs are named, and the small readers that find them
again (the PPID of a background, the dcbg log, basin definitions, the
sparse-median series). The names shared with dcnum are marked as such;
changing them breaks compatibility with dcnum and its users.

The staged and lock files of a computation are named in
:mod:`dcbg.io.transaction`.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import h5py
import numpy as np

#: features written by background computation (dcnum's names)
BACKGROUND_FEATURES = ("image_bg", "bg_off")
#: attribute of the background features holding their PPID (dcnum's name)
PPID_ATTR = "dcnum ppid background"
#: attribute of the background features holding the PPID generation
#: (dcnum's name)
PPID_GENERATION_ATTR = "dcnum ppid generation"
#: log each completed dcbg output carries (written right before the output
#: is moved into place, so a file with it is complete)
LOG_NAME = "dcbg-background"
#: PPID code of the method that copies a stored background (dcnum's code):
#: its outputs carry the copied background's PPID on image_bg
COPY_METHOD_CODE = "copy"
#: an output's name is the input's stem with this suffix and ".rtdc"
OUTPUT_STEM_SUFFIX = "_bg"
#: a plot's name is the plotted file's stem with this suffix and ".png":
#: unlike OUTPUT_STEM_SUFFIX it is appended to every stem, so that the
#: plots of "A.rtdc" and of its output "A_bg.rtdc" get different names
PLOT_STEM_SUFFIX = "_plot"
#: group of internal basins (dclab's and dcnum's name)
INTERNAL_BASIN_GROUP = "basin_events"
#: file attributes with which dcnum's job runner decides whether an input
#: already holds the background it wants: it recomputes the background
#: unless the input has "image_bg" and all three equal the job's pipeline
#: generation, data PPID and background PPID (dcnum's names). The other
#: pipeline attributes and "pipeline:dcnum hash" only decide whether
#: segmentation is redone.
PIPELINE_BACKGROUND_ATTRS = (
    "pipeline:dcnum generation",
    "pipeline:dcnum data",
    "pipeline:dcnum background",
)


def default_output_path(input_path, out_dir=None) -> pathlib.Path:
    """``<input stem>_bg.rtdc`` beside the input or in `out_dir`"""
    input_path = pathlib.Path(input_path)
    folder = input_path.parent if out_dir is None else pathlib.Path(out_dir)
    return folder / f"{input_path.stem}{OUTPUT_STEM_SUFFIX}.rtdc"


def find_measurements(folder, exclude=None) -> list[pathlib.Path]:
    """The .rtdc files in a folder and its subfolders, sorted by path

    What ``dcbg batch FOLDER`` processes (as ChipStream's ``--recursive``
    does). Hidden files and folders (names starting with "."; dcbg's
    staged and lock files are hidden) are left out, and so is the
    `exclude` folder (the batch's output folder, so that a rerun does not
    take earlier outputs as inputs). Symbolic links to folders are not
    followed (no loops, nothing outside the folder is reached through
    them); links to files are listed, and checked like any input.

    Parameters
    ----------
    folder: str or pathlib.Path
        Folder to search
    exclude: str or pathlib.Path or None
        Folder whose contents are never listed

    Returns
    -------
    paths: list of pathlib.Path
        Paths below `folder` (joined to it as given)
    """
    folder = pathlib.Path(folder)
    excluded = os.path.realpath(exclude) if exclude is not None else None
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(
            name
            for name in dirs
            if not name.startswith(".")
            and os.path.realpath(os.path.join(root, name)) != excluded
        )
        found.extend(
            pathlib.Path(root) / name
            for name in files
            if not name.startswith(".") and name.lower().endswith(".rtdc")
        )
    return sorted(found)


def default_plot_path(path) -> pathlib.Path:
    """``<stem>_plot.png`` beside the plotted .rtdc file

    Every file gets its own name: ``A.rtdc`` -> ``A_plot.png``,
    ``A_bg.rtdc`` -> ``A_bg_plot.png``.
    """
    path = pathlib.Path(path)
    return path.with_name(f"{path.stem}{PLOT_STEM_SUFFIX}.png")


def ensure_hdf5_filters():
    """Make h5py able to read the ecosystem's compressed data (Zstandard)

    hdf5plugin registers the HDF5 compression filters when it is imported,
    which takes 0.15 s; dcbg imports it where HDF5 data are first read or
    written, not at start-up (``dcbg --help`` stays fast).
    """
    import hdf5plugin  # noqa: F401 (registers the filters)


def decode_text(value) -> str:
    """An HDF5 string attribute or text line as ``str``"""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_text_lines(dataset) -> list[str]:
    """The lines of a text dataset (logs, basin definitions) as ``str``"""
    ensure_hdf5_filters()  # dclab compresses them
    return [decode_text(line) for line in dataset[:]]


def read_basin_definition(dataset) -> dict:
    """The JSON basin definition stored in a dataset of text lines"""
    return json.loads(" ".join(read_text_lines(dataset)))


def log_lines(record: dict) -> list[str]:
    """A log entry as indented JSON lines, stamped with the local time"""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
    return json.dumps(record, indent=2, default=str).split("\n")


def read_background_ppid(h5: h5py.File) -> str | None:
    """The PPID stored with ``image_bg`` in this file (not in a file basin)"""
    for group in ("events", INTERNAL_BASIN_GROUP):
        if group in h5 and "image_bg" in h5[group]:
            value = h5[group]["image_bg"].attrs.get(PPID_ATTR)
            if value is not None:
                return decode_text(value)
    return None


def read_dcbg_log(h5: h5py.File) -> dict | None:
    """The record of the dcbg log in this file, None if absent or damaged"""
    logs = h5.get("logs")
    if not isinstance(logs, h5py.Group) or LOG_NAME not in logs:
        return None
    try:
        record = json.loads("\n".join(read_text_lines(logs[LOG_NAME])))
    except (ValueError, OSError):
        return None
    return record if isinstance(record, dict) else None


def read_output_ppid(path) -> tuple[str | None, int | None]:
    """PPID and frame count of the background stored in an output file

    Only the file itself is read (its basins are not opened).

    Parameters
    ----------
    path: str or pathlib.Path
        An existing .rtdc file

    Returns
    -------
    ppid: str or None
        The PPID of a complete dcbg background (``image_bg`` attribute
        and the dcbg log agree), None if the file holds no background
        written by dcbg
    frames: int or None
        Number of frames according to the log

    Raises
    ------
    ValueError
        If the file cannot be read as HDF5
    """
    try:
        with h5py.File(path, "r", locking=False) as h5:
            attr_ppid = read_background_ppid(h5)
            record = read_dcbg_log(h5)
    except OSError as exc:
        raise ValueError(f"cannot read it as HDF5 ({exc})") from exc
    if record is None:
        return None, None
    log_ppid = record.get("ppid")
    if isinstance(log_ppid, str) and log_ppid.split(":")[0] == COPY_METHOD_CODE:
        # the copy method keeps the PPID of the background it copied on
        # image_bg (as dcnum does): its own PPID is in the dcbg log only
        return log_ppid, record.get("frames")
    if attr_ppid is None or log_ppid != attr_ppid:
        return None, None
    return attr_ppid, record.get("frames")


def read_background_series(h5: h5py.File, basins: list[dict]):
    """The series of a sparse-median background: (images, mapping) or None

    Parameters
    ----------
    h5: h5py.File
        An output file
    basins: list of dict
        Its basin definitions (internal ones are looked at)

    Returns
    -------
    images: h5py.Dataset
        The background images of the series (one per interval)
    mapping: np.ndarray
        For every event, the index of its image in the series
    """
    ensure_hdf5_filters()
    for basin in basins:
        mapping_name = basin.get("mapping")
        if (
            basin.get("type") != "internal"
            or "image_bg" not in (basin.get("features") or [])
            or mapping_name in (None, "same")
        ):
            continue
        group = (basin.get("paths") or [INTERNAL_BASIN_GROUP])[0]
        if group not in h5 or "image_bg" not in h5[group]:
            continue
        mapping = np.asarray(h5["events"][mapping_name][:], dtype=np.int64)
        return h5[group]["image_bg"], mapping
    return None


def dcnum_data_ppid(pixel_size) -> str:
    """dcnum's data PPID of a whole measurement with this pixel size

    dcnum's job names its input data by the pixel size (8 decimals,
    trailing zeros dropped) and the index mapping, ``0`` for all events;
    dcbg always computes the background of all frames.
    """
    return f"hdf:p={float(pixel_size):.8f}".rstrip("0") + "^i=0"


def dcnum_can_reuse_background(h5: h5py.File) -> bool:
    """Whether dcnum 0.31.0's job runner can read the background of `h5`

    On reuse the runner reads "image_bg" through a file basin that sees
    only the file's "events" group: a background held in an internal
    basin (sparse median: "basin_events/image_bg") is listed but not
    found there, and the runner retries the read forever (dcnum's own
    outputs too). Such a file must not claim its background, so that
    dcnum recomputes it instead.
    """
    return "events" in h5 and "image_bg" in h5["events"]


def clear_pipeline_background(h5: h5py.File):
    """Remove the background claims of `PIPELINE_BACKGROUND_ATTRS`

    For a staged output that does not hold a finished background (yet):
    without them dcnum's job runner recomputes the background.
    """
    for key in PIPELINE_BACKGROUND_ATTRS:
        if key in h5.attrs:
            del h5.attrs[key]


def set_pipeline_background(h5: h5py.File, bg_ppid: str, generation: str):
    """Make the pipeline attributes name the background `h5` holds

    Sets `PIPELINE_BACKGROUND_ATTRS` as dcnum's job runner writes them, so
    that a later dcnum job with the same background PPID (and pixel size,
    without index mapping) reuses the background and any other job
    recomputes it. The data PPID uses the file's own "imaging:pixel
    size" (0 if missing), which is what dcnum's job reads from it. A
    background that dcnum cannot reuse (see
    :func:`dcnum_can_reuse_background`) is not claimed at all.
    """
    clear_pipeline_background(h5)
    if not dcnum_can_reuse_background(h5):
        return
    pixel_size = h5.attrs.get("imaging:pixel size", 0)
    h5.attrs["pipeline:dcnum generation"] = str(generation)
    h5.attrs["pipeline:dcnum data"] = dcnum_data_ppid(pixel_size)
    h5.attrs["pipeline:dcnum background"] = str(bg_ppid)


def copy_pipeline_background(src: h5py.File, dst: h5py.File):
    """Carry the background claims of `src` to `dst` (copied backgrounds)

    Only where `dst` holds its background as dcnum can reuse it (see
    :func:`dcnum_can_reuse_background`).
    """
    clear_pipeline_background(dst)
    if not dcnum_can_reuse_background(dst):
        return
    for key in PIPELINE_BACKGROUND_ATTRS:
        if key in src.attrs:
            dst.attrs[key] = src.attrs[key]
