"""Judge a background without ground truth: cell ghosts and flicker

:func:`check_background` reads a measurement with ``image`` and
``image_bg`` (made by dcbg, dcnum or Shape-In; ``bg_off`` optional) and
estimates which events' backgrounds hold a ghost of a cell and whether
the frames flicker:

1. The events are taken in segments of ``SEGMENT_EVENTS``. Per segment, up
   to ``REFERENCE_FRAMES`` distinct camera frames (one per frame number:
   files that store a frame once per event hold copies) spread over the
   segment give a reference background: the per-pixel mode
   (:func:`~dcbg.check.robust.shorth_mode`) of the frames, each with its
   brightness offset removed. The mode holds the background even where
   cells cover a pixel in most frames, or a cell sat still for a while,
   which is where median backgrounds fail.
2. Every event (or an even sample of `max_events`) is compared with the
   reference: the deviation ``image_bg + bg_off - reference``, less its
   median over the channel walls' rows (a uniform offset is flicker, not a
   ghost), is a ghost where it exceeds ``GHOST_LEVELS`` grey levels over
   at least ``GHOST_MIN_PIXELS`` pixels of the channel band.
3. Flicker: the brightness of the walls' rows of each frame (an
   interquartile mean) against its running median over ``FLICKER_WINDOW``
   events; frames that jump by more than ``FLICKER_LEVELS`` grey levels
   are flicker frames, and the measurement flickers when there are at
   least ``FLICKER_MIN_FRAMES`` of them and more than
   ``FLICKER_MIN_FRACTION`` of the events. The same rule on the frames'
   brightness less their background's (``image - image_bg - bg_off``)
   tells whether the background follows the flicker.

Memory is bounded by the segment sample and a block of events, whatever
the number of events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib

import numpy as np

from ..errors import InputFileError, ParameterError
from .robust import (
    channel_band,
    interquartile_mean,
    running_median,
    shorth_mode,
    wall_rows,
)

#: a ghost deviates from the reference by more than this many grey levels
#: (issue 19's definition: a cell left in a background is tens of grey
#: levels deep, sensor noise of a median background well below 1)
GHOST_LEVELS = 6.0
#: ... over at least this many pixels of the channel band: a small cell
#: covers a few hundred pixels, single noisy pixels are no ghost
GHOST_MIN_PIXELS = 30
#: frame brightness jump (grey levels) that counts as flicker: dcnum's
#: ``detect_flickering`` threshold
FLICKER_LEVELS = 2.5
#: a measurement flickers with at least this many flicker frames (dcnum's
#: count threshold) ...
FLICKER_MIN_FRAMES = 5
#: ... that are more than this fraction of the events (a long measurement
#: with a handful of glitches does not flicker)
FLICKER_MIN_FRACTION = 0.01
#: events in the running median that flicker is measured against: short
#: enough to follow slow drift, long enough that flicker frames (even a
#: tenth of them) do not move it
FLICKER_WINDOW = 51
#: events per segment with its own reference: about 3 s at 3,500 frames per
#: second, so slow changes of the background are followed, and a cell stuck
#: for 300 frames is a few percent of the reference frames
SEGMENT_EVENTS = 10_000
#: distinct frames sampled for a segment's reference: the mode is then
#: precise to a fraction of a grey level; memory: this many frames
REFERENCE_FRAMES = 300
#: fewer distinct frames than this give no reference worth the name, and
#: the events of such a segment are not judged for ghosts (only for
#: flicker): the mode is the mean of the densest 3 frames
#: (robust.MIN_MODE_FRAMES), and in fewer than 10 frames a cell that passes
#: one pixel in 3 of them with like grey values would be taken for the
#: background
MIN_REFERENCE_FRAMES = 10
#: events read at once: bounds memory (a few tens of MB at 80x320 px)
BLOCK_EVENTS = 256
#: the uniform part of a background's deviation is the median over every
#: 4th column of the wall rows: some 3,000 pixels at 80x320, precise to a
#: few hundredths of a grey level, a quarter of the work of all of them
WALL_COLUMN_STEP = 4
#: a background with ghosts in more than this fraction of the events fails
GHOST_FRACTION_LIMIT = 0.01


@dataclasses.dataclass
class EventDetails:
    """Per-event results of the events checked (arrays of equal length)

    Attributes
    ----------
    index: np.ndarray
        Event indices (0-based) that were checked, ascending
    judged: np.ndarray
        Whether the event was judged for ghosts (its segment has at least
        ``MIN_REFERENCE_FRAMES`` distinct frames)
    ghost: np.ndarray
        Whether the event's background holds a ghost (False if not judged)
    ghost_pixels: np.ndarray
        Pixels of the channel band that deviate from the reference by more
        than ``GHOST_LEVELS`` grey levels
    max_deviation: np.ndarray
        Largest absolute deviation in the channel band (grey levels)
    frame_offset: np.ndarray
        Brightness of the frame's wall rows against its running median
        (grey levels): flicker
    residual_offset: np.ndarray
        The same for ``image - image_bg - bg_off``: flicker the background
        does not follow
    time: np.ndarray or None
        Time of the events in seconds (None if the file has no time axis)
    """

    index: np.ndarray
    judged: np.ndarray
    ghost: np.ndarray
    ghost_pixels: np.ndarray
    max_deviation: np.ndarray
    frame_offset: np.ndarray
    residual_offset: np.ndarray
    time: np.ndarray | None


@dataclasses.dataclass
class CheckResult:
    """What :func:`check_background` found (see :mod:`dcbg.check.report`)

    Attributes
    ----------
    path: pathlib.Path
        The file checked
    event_count: int
        Events in the file
    has_bg_off: bool
        Whether the file has ``bg_off``
    events: EventDetails
        Per-event results
    flicker: bool
        Whether the frames flicker
    flicker_fraction: float
        Fraction of the checked events that are flicker frames
    residual_flicker_fraction: float
        Fraction whose brightness the background does not follow
    flicker_corrected: bool
        False if the frames' brightness jumps and the background's
        (``image_bg + bg_off``) does not follow (that is flicker in the
        corrected images)
    ghost_map: np.ndarray or None
        Deviation image of the event asked for with `map_event` (grey
        levels; NaN where the reference is uncertain; None if that event
        could not be judged)
    map_event: int or None
        Its index
    judged_fraction: float
        Fraction of the channel band in which the reference is certain
        enough to judge ghosts (lowest over the segments): the densest
        interval of its frames is at most ``GHOST_LEVELS`` wide; elsewhere
        too few frames show the background (a short file, or cells in
        almost every frame at that pixel)
    ppid: str or None
        Pipeline identifier of the background, if the file names it
    """

    path: pathlib.Path
    event_count: int
    has_bg_off: bool
    events: EventDetails
    flicker: bool
    flicker_fraction: float
    residual_flicker_fraction: float
    flicker_corrected: bool
    ghost_map: np.ndarray | None = None
    map_event: int | None = None
    judged_fraction: float = 1.0
    ppid: str | None = None

    @property
    def ghosts_judged(self) -> bool:
        """Whether any event could be judged for ghosts"""
        return bool(np.any(self.events.judged))

    @property
    def ghost_fraction(self) -> float:
        """Fraction (0-1) of the judged events whose background has a ghost

        0 if no event could be judged (see :attr:`ghosts_judged`).
        """
        if not self.ghosts_judged:
            return 0.0
        return float(np.mean(self.events.ghost[self.events.judged]))

    @property
    def ghosts_found(self) -> bool:
        """More than ``GHOST_FRACTION_LIMIT`` of the events hold a ghost"""
        return self.ghost_fraction > GHOST_FRACTION_LIMIT

    @property
    def passed(self) -> bool:
        """No ghosts and no flicker the background leaves in the images"""
        return not self.ghosts_found and self.flicker_corrected


def _flickers(jumps: np.ndarray) -> bool:
    count = int(np.count_nonzero(jumps))
    return count >= FLICKER_MIN_FRAMES and count > FLICKER_MIN_FRACTION * jumps.size


def _read(ds, name, index):
    """Events `index` (a slice or sorted indices) of feature `name`"""
    return np.asarray(ds[name][index])


def _reference(ds, start, stop, frame_numbers, wall):
    """Mode background of one segment from a sample of its distinct frames

    Returns ``(mode, width)`` of :func:`~dcbg.check.robust.shorth_mode`, or
    None if the segment has fewer than ``MIN_REFERENCE_FRAMES`` distinct
    frames.
    """
    if frame_numbers is not None:
        _, first = np.unique(frame_numbers[start:stop], return_index=True)
        candidates = np.sort(first) + start
    else:
        candidates = np.arange(start, stop)
    if candidates.size < MIN_REFERENCE_FRAMES:
        return None
    take = np.unique(
        np.linspace(0, candidates.size - 1, min(REFERENCE_FRAMES, candidates.size))
        .round()
        .astype(np.int64)
    )
    sample = candidates[take]
    # contiguous reads, then the sample picked: HDF5 decompresses whole
    # chunks anyway, and reading scattered frames one by one is slower
    pieces = []
    for block_start in range(start, stop, BLOCK_EVENTS):
        block_stop = min(stop, block_start + BLOCK_EVENTS)
        inside = sample[(sample >= block_start) & (sample < block_stop)]
        if inside.size:
            block = _read(ds, "image", slice(int(inside[0]), int(inside[-1]) + 1))
            pieces.append(block[inside - inside[0]])
    frames = np.concatenate(pieces)
    bright = interquartile_mean(frames[:, wall, :].reshape(len(frames), -1))
    return shorth_mode(frames, bright - np.median(bright))


def _checked_events(start, stop, budget) -> np.ndarray:
    if budget is None or stop - start <= budget:
        return np.arange(start, stop)
    return np.unique(np.linspace(start, stop - 1, budget).round().astype(np.int64))


def check_background(
    path,
    *,
    basin_root=None,
    allow_remote_basins: bool = False,
    max_events: int | None = None,
    map_event: int | None = None,
) -> CheckResult:
    """Find cell ghosts in a file's backgrounds and flicker in its frames

    No ground truth is needed: the reference is the per-pixel mode of the
    file's own frames (see :mod:`dcbg.check.analysis`).

    Parameters
    ----------
    path: str or pathlib.Path
        .rtdc file with the features "image" and "image_bg" (possibly in
        basins) and optionally "bg_off"
    basin_root: str or pathlib.Path or None
        Follow file basins only to files inside this directory (symbolic
        links resolved); None: anywhere (regular HDF5 files only)
    allow_remote_basins: bool
        Follow remote basins (http, S3, DCOR; network access)
    max_events: int or None
        Check at most this many events, evenly spread (None: all); the
        references always come from up to ``REFERENCE_FRAMES`` frames per
        segment of ``SEGMENT_EVENTS`` events
    map_event: int or None
        Keep the deviation image of this event (``CheckResult.ghost_map``,
        for plots); it is checked even if `max_events` leaves it out

    Returns
    -------
    CheckResult

    Raises
    ------
    FileNotFoundError
        If the file does not exist
    ValueError
        If it is not an .rtdc file with "image" and "image_bg" of the same
        shape, has fewer than ``MIN_REFERENCE_FRAMES`` distinct frames, or
        a parameter is out of range; the message names the file
    """
    from ..io.input import BasinPolicy
    from ..workflow import open_measurement

    if max_events is not None and (isinstance(max_events, bool) or int(max_events) < 1):
        raise ParameterError(
            "max_events", f"max_events must be a positive integer, got {max_events!r}"
        )
    policy = BasinPolicy.create(basin_root, allow_remote_basins)
    path, measurement = open_measurement(path, policy)
    with contextlib.closing(measurement):
        return check_measurement(
            measurement.ds, path, max_events=max_events, map_event=map_event
        )


def check_measurement(
    ds, path: pathlib.Path, *, max_events=None, map_event=None
) -> CheckResult:
    """:func:`check_background` of a measurement already open

    Parameters
    ----------
    ds: dclab.rtdc_dataset.RTDCBase
        The open measurement (its basins followed under the user's policy)
    path: pathlib.Path
        Its file, for the result and the messages
    max_events, map_event: int or None
        As for :func:`check_background`

    Raises
    ------
    ValueError
        (:class:`dcbg.errors.InputFileError` naming the file, or
        :class:`dcbg.errors.ParameterError`) as :func:`check_background`
    """
    try:
        return _check_open(ds, path, max_events, map_event)
    except (InputFileError, ParameterError):
        raise  # ours: they name the file or the parameter
    except ValueError as exc:
        raise InputFileError(path, f"File '{path}': {exc}") from exc
    except (KeyError, OSError) as exc:
        # a ReadError names the file and feature; others the file here
        raise InputFileError(
            path,
            f"File '{path}' could not be read for the check "
            f"({type(exc).__name__}: {exc})",
            getattr(exc, "feature", None),
        ) from exc


def _check_open(ds, path, max_events, map_event) -> CheckResult:
    from ..io.conventions import read_background_ppid

    for feature in ("image", "image_bg"):
        if feature not in ds:
            raise InputFileError(
                path,
                f"File '{path}' has no '{feature}' feature; dcbg check compares "
                f"a background image_bg with the frames image",
                feature,
            )
    count = len(ds)
    if count == 0:
        raise InputFileError(path, f"File '{path}' has zero events; nothing to check")
    shape = tuple(ds["image"][0].shape)
    if tuple(ds["image_bg"][0].shape) != shape or len(shape) != 2:
        raise InputFileError(
            path,
            f"File '{path}': 'image_bg' frames must have the shape of the 'image' "
            f"frames {shape}",
            "image_bg",
        )
    if map_event is not None:
        if not -count <= int(map_event) < count:
            raise ParameterError(
                "map_event",
                f"Event {map_event} is out of range for '{path}' with {count} events",
            )
        map_event = int(map_event) % count
    has_bg_off = "bg_off" in ds
    bg_off = (
        np.asarray(ds["bg_off"][:], dtype=np.float64) if has_bg_off else np.zeros(count)
    )
    frame_numbers = np.asarray(ds["frame"][:]) if "frame" in ds else None
    time = np.asarray(ds["time"][:], dtype=np.float64) if "time" in ds else None
    for name, values in (("bg_off", bg_off), ("frame", frame_numbers), ("time", time)):
        if values is not None and values.shape != (count,):
            raise InputFileError(
                path,
                f"File '{path}': feature '{name}' has shape {values.shape}; "
                f"expected one value per event ({count})",
                name,
            )
    if not np.all(np.isfinite(bg_off)):
        raise InputFileError(
            path,
            f"File '{path}': feature 'bg_off' holds values that are not finite; "
            f"expected brightness offsets in grey levels",
            "bg_off",
        )

    height = shape[0]
    band = channel_band(height)
    wall = wall_rows(height)
    segments = max(1, -(-count // SEGMENT_EVENTS))
    per_segment = None if max_events is None else -(-int(max_events) // segments)
    # equal segments: no short last segment with too few frames
    bounds = np.linspace(0, count, segments + 1).round().astype(np.int64)
    parts = []
    judged_fractions = []
    ghost_map = None
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        found = _reference(ds, start, stop, frame_numbers, wall)
        if found is None:
            # not judged: no pixel, reference of nothing
            reference = np.zeros(shape, dtype=np.float32)
            judged = np.zeros((band.stop - band.start, shape[1]), dtype=bool)
        else:
            reference, width = found
            # pixels whose densest frames spread wider than a ghost is deep
            # tell no ghost: too few of the sampled frames show the background
            judged = width[band] <= GHOST_LEVELS
        judged_fractions.append(float(np.mean(judged)))
        checked = _checked_events(start, stop, per_segment)
        if map_event is not None and start <= map_event < stop:
            checked = np.union1d(checked, [map_event])
        for ii in range(0, checked.size, BLOCK_EVENTS):
            idx = checked[ii : ii + BLOCK_EVENTS]
            sel = (
                slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == idx.size else idx
            )
            images = _read(ds, "image", sel).astype(np.float32)
            backgrounds = _read(ds, "image_bg", sel).astype(np.float32)
            backgrounds += bg_off[idx].astype(np.float32)[:, None, None]
            n = idx.size
            frame_bright = interquartile_mean(images[:, wall].reshape(n, -1))
            residual = interquartile_mean(
                (images[:, wall] - backgrounds[:, wall]).reshape(n, -1)
            )
            deviation = backgrounds - reference[None]
            # every WALL_COLUMN_STEP-th column: thousands of pixels still
            uniform = np.median(
                deviation[:, wall, ::WALL_COLUMN_STEP].reshape(n, -1), axis=1
            )
            deviation -= uniform.astype(np.float32)[:, None, None]
            in_band = np.abs(deviation[:, band]) * judged
            ghost_pixels = np.count_nonzero(in_band > GHOST_LEVELS, axis=(1, 2))
            parts.append(
                (
                    idx,
                    np.full(n, found is not None),
                    ghost_pixels,
                    in_band.max(axis=(1, 2)),
                    frame_bright,
                    residual,
                )
            )
            if map_event is not None and map_event in idx and found is not None:
                ghost_map = deviation[int(np.searchsorted(idx, map_event))].copy()
                ghost_map[band][~judged] = np.nan
    index, judged_event, ghost_pixels, max_dev, frame_bright, residual = (
        np.concatenate(p) for p in zip(*parts, strict=True)
    )
    frame_offset = frame_bright - running_median(frame_bright, FLICKER_WINDOW)
    residual_offset = residual - running_median(residual, FLICKER_WINDOW)
    frame_jumps = np.abs(frame_offset) > FLICKER_LEVELS
    residual_jumps = np.abs(residual_offset) > FLICKER_LEVELS
    events = EventDetails(
        index=index,
        judged=judged_event,
        ghost=judged_event & (ghost_pixels >= GHOST_MIN_PIXELS),
        ghost_pixels=ghost_pixels,
        max_deviation=max_dev.astype(np.float64),
        frame_offset=frame_offset,
        residual_offset=residual_offset,
        time=None if time is None else time[index],
    )
    return CheckResult(
        path=path,
        event_count=count,
        has_bg_off=has_bg_off,
        events=events,
        flicker=_flickers(frame_jumps),
        flicker_fraction=float(np.mean(frame_jumps)),
        residual_flicker_fraction=float(np.mean(residual_jumps)),
        flicker_corrected=not _flickers(residual_jumps),
        ghost_map=ghost_map,
        map_event=map_event,
        judged_fraction=min(judged_fractions),
        ppid=read_background_ppid(ds.h5file),
    )
