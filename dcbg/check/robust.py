"""Robust estimators behind ``dcbg check`` (numpy only, no file access)

- :func:`shorth_mode`: per-pixel most frequent value of a frame sample,
  unmoved by cells that cover a pixel in most of the frames (where the
  median fails);
- :func:`interquartile_mean`: a frame's brightness from many pixels,
  unmoved by a stray cell and without the integer steps of a median;
- :func:`running_median` and :func:`jump_mask`: brightness jumps of single
  frames against the slow trend of the measurement (flicker);
- :func:`channel_band` and :func:`wall_rows`: where cells flow and where
  they do not.
"""

from __future__ import annotations

import numpy as np

#: fraction of the frames in the shortest interval whose mean is the mode
#: estimate: the background must show in more of the frames than that, and
#: at 6 cells per frame about a third of the frames still show it at the
#: channel centre; a smaller fraction would follow noise
MODE_FRACTION = 0.2
#: the mode interval holds at least this many frames (a mode of one or two
#: values is noise)
MIN_MODE_FRAMES = 3
#: pixels per piece in which :func:`shorth_mode` sorts the sample: bounds
#: its temporary memory (sample frames x pixels x 8 bytes) for large frames
MODE_PIXELS_PER_PIECE = 8192
#: half height (rows) of the channel band is a quarter of the image height,
#: at least 20 rows: dcnum's band around the channel axis in which its
#: sparse median looks for cells (its cleansing step); cells flow there
BAND_HALF_ROWS_MIN = 20
BAND_HALF_ROWS_DIVISOR = 4


def channel_band(height: int) -> slice:
    """Rows of the channel band, where cells flow (see BAND_HALF_ROWS_*)

    For images of up to 40 rows this is every row.
    """
    half = max(BAND_HALF_ROWS_MIN, height // BAND_HALF_ROWS_DIVISOR)
    centre = height // 2
    return slice(max(0, centre - half), min(height, centre + half))


def wall_rows(height: int) -> np.ndarray:
    """Row indices outside the channel band: channel walls, no cells

    Images of up to 40 rows have no rows outside the band; then the top
    and bottom quarter of the rows serve.
    """
    band = channel_band(height)
    rows = np.r_[0 : band.start, band.stop : height]
    if rows.size == 0:
        quarter = max(1, height // 4)
        rows = np.r_[0:quarter, height - quarter : height]
    return np.unique(rows)


def interquartile_mean(values: np.ndarray) -> np.ndarray:
    """Mean of the middle half of each row of a 2D array

    Parameters
    ----------
    values: np.ndarray
        Array ``(frames, pixels)``

    Returns
    -------
    np.ndarray
        float64 array ``(frames,)``; a few outliers (a cell in the walls'
        rows) do not move it, and unlike a median of integer grey levels
        it has no integer steps.
    """
    values = np.sort(np.asarray(values, dtype=np.float32), axis=1)
    count = values.shape[1]
    lo, hi = count // 4, count - count // 4
    if hi <= lo:
        return values.mean(axis=1, dtype=np.float64)
    return values[:, lo:hi].mean(axis=1, dtype=np.float64)


def shorth_mode(
    frames: np.ndarray, offsets: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mode of a frame sample: mean of its shortest interval

    For each pixel, the values of all frames are sorted; the shortest
    interval that holds ``MODE_FRACTION`` of them (at least
    ``MIN_MODE_FRAMES``) is where they are densest, and its mean is the
    estimate. Background values are alike (sensor noise), cell values
    spread over tens of grey levels, so the background wins even where
    cells cover the pixel in most frames, and a cell that sits still in
    fewer than ``MODE_FRACTION`` of the frames does not.

    Parameters
    ----------
    frames: np.ndarray
        Frames ``(n, height, width)`` (any real dtype), n >= 1
    offsets: np.ndarray or None
        Brightness offset of each frame in grey levels, subtracted first,
        so that flicker and drift do not widen the intervals

    Returns
    -------
    mode: np.ndarray
        float32 image ``(height, width)`` in grey levels
    width: np.ndarray
        float32 image: the width of the shortest interval (grey levels);
        where it is much wider than the sensor noise, no value dominates
        (too few frames show the background) and the mode is uncertain
    """
    count = frames.shape[0]
    if count < 1:
        raise ValueError("shorth_mode needs at least one frame")
    flat = frames.reshape(count, -1)
    shift = (
        np.zeros(count, dtype=np.float32)
        if offsets is None
        else np.asarray(offsets, dtype=np.float32)
    )
    keep = min(count, max(MIN_MODE_FRAMES, int(np.ceil(MODE_FRACTION * count))))
    out = np.empty(flat.shape[1], dtype=np.float32)
    out_width = np.empty(flat.shape[1], dtype=np.float32)
    for start in range(0, flat.shape[1], MODE_PIXELS_PER_PIECE):
        piece = flat[:, start : start + MODE_PIXELS_PER_PIECE].astype(np.float32)
        piece -= shift[:, None]
        piece.sort(axis=0)
        widths = piece[keep - 1 :] - piece[: count - keep + 1]
        first = np.argmin(widths, axis=0)
        sums = np.concatenate(
            [np.zeros((1, piece.shape[1]), np.float64), np.cumsum(piece, axis=0)]
        )
        cols = np.arange(piece.shape[1])
        out[start : start + piece.shape[1]] = (
            sums[first + keep, cols] - sums[first, cols]
        ) / keep
        out_width[start : start + piece.shape[1]] = widths[first, cols]
    return out.reshape(frames.shape[1:]), out_width.reshape(frames.shape[1:])


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median (edges: the window shrinks to what exists)

    Parameters
    ----------
    values: np.ndarray
        1D series
    window: int
        Window length (odd numbers centre it exactly)
    """
    values = np.asarray(values, dtype=np.float64)
    count = values.size
    if count == 0:
        return values.copy()
    window = max(1, min(int(window), count))
    half = window // 2
    padded = np.concatenate(
        [np.full(half, np.nan), values, np.full(window - 1 - half, np.nan)]
    )
    views = np.lib.stride_tricks.sliding_window_view(padded, window)
    return np.nanmedian(views, axis=1)


def jump_mask(values: np.ndarray, window: int, threshold: float) -> np.ndarray:
    """Frames whose value is off its running median by more than `threshold`

    The running median follows slow drift; single frames that jump away
    from it are flicker.
    """
    values = np.asarray(values, dtype=np.float64)
    return np.abs(values - running_median(values, window)) > threshold
