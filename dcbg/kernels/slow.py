"""Slow, obviously correct references of the kernels and the methods

Like bottleneck's ``bottleneck.slow``, this module holds for every kernel
of :mod:`dcbg.kernels` (every name in ``dcbg.kernels.__all__``) a function
of the same name and signature, written in a few lines of numpy or plain
Python so that it can be checked by reading it. The tests compare every
registered kernel with its reference (``tests/test_kernels.py``); a new
kernel is tested once it has a reference here and example arguments
there. The references are also a readable statement of the contracts:

- rolling median: ``out[i]`` is the element at sorted position
  ``k // 2`` of ``stack[i:i + k]`` along axis 0 (for even ``k`` the upper
  of the two middle elements, no averaging), "valid" windows only
- window median: the element at sorted position `rank` (default
  ``k // 2``) of all ``k`` frames along axis 0
- ``*_pixels`` variants: the same for the pixel (column) range `pixels`
  of a flattened stack, written into `out`; other columns are untouched
- Fletcher-32: HDF5's checksum of a byte buffer
- window modes: for each window start, per pixel, the mean of the
  shifted values within ``HALF_WIDTH`` grey levels of the first maximum
  of the triangle-smoothed histogram, rounded half up

Below the kernels are references of what the background methods compute
from an image stack (dcnum 0.31.0's rules), for the method tests:
:func:`rollmed_background`, :func:`sparsemed_offset`, and dcbg's own
sparse mode, :func:`sparsemode_series`.

The references accept the arguments of the kernels they mirror but do
not validate them (``num_threads`` is accepted and ignored); they are
meant for small inputs: they loop in Python.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "fletcher32",
    "rolling_median",
    "rolling_median_pixels",
    "rolling_rank",
    "rollmed_background",
    "sparsemed_offset",
    "sparsemode_series",
    "window_median",
    "window_median_pixels",
    "window_modes",
    "window_modes_pixels",
]

#: half width of the box filter of the window mode, grey levels: the
#: kernel's value (:data:`dcbg.kernels.window_mode.HALF_WIDTH`)
MODE_HALF_WIDTH = 2

#: HDF5 folds its two Fletcher-32 running sums to 16 bits after every
#: block of this many 16-bit words (``H5_checksum_fletcher32``); the
#: folding points change the result, so the reference folds there too
FLETCHER32_BLOCK_WORDS = 360


# --- kernels --------------------------------------------------------------


def rolling_rank(stack, kernel_size, rank):
    """Element at sorted position `rank` of every window of `kernel_size` frames

    Parameters
    ----------
    stack: array-like, shape (n_frames, ...)
        Frames along axis 0
    kernel_size: int
        Frames per window k, ``1 <= k <= n_frames``
    rank: int
        Sorted position ``0 <= rank < k`` to report

    Returns
    -------
    out: numpy.ndarray, shape (n_frames - k + 1,) + stack.shape[1:]
        ``out[i]`` is the `rank`-th smallest value of ``stack[i:i + k]``
        along axis 0, for each pixel
    """
    stack = np.asarray(stack)
    count = stack.shape[0] - kernel_size + 1
    out = np.empty((count,) + stack.shape[1:], dtype=stack.dtype)
    for i in range(count):
        # np.partition puts the element of sorted position `rank` there
        out[i] = np.partition(stack[i : i + kernel_size], rank, axis=0)[rank]
    return out


def rolling_median(stack, kernel_size, out=None, num_threads=1):
    """Median of every window of `kernel_size` consecutive frames

    Reference of :func:`dcbg.kernels.rolling_median`: ``out[i]`` is the
    element at sorted position ``k // 2`` of ``stack[i:i + k]``.
    """
    result = rolling_rank(stack, kernel_size, kernel_size // 2)
    return _into(result, out)


def rolling_median_pixels(stack, kernel_size, out, pixels=None):
    """Rolling median of the pixel columns `pixels` of a 2-D stack, into `out`

    Reference of :func:`dcbg.kernels.rolling_median_pixels`.
    """
    cols = _columns(pixels, np.shape(stack)[1])
    out[:, cols] = rolling_median(np.asarray(stack)[:, cols], kernel_size)
    return out


def window_median(stack, rank=None, out=None, num_threads=1):
    """Element at sorted position `rank` (default: ``k // 2``) of all frames

    Reference of :func:`dcbg.kernels.window_median`.
    """
    stack = np.asarray(stack)
    rank = stack.shape[0] // 2 if rank is None else rank
    return _into(np.partition(stack, rank, axis=0)[rank], out)


def window_median_pixels(stack, rank, out, pixels=None):
    """Window median of the pixel columns `pixels` of a 2-D stack, into `out`

    Reference of :func:`dcbg.kernels.window_median_pixels`.
    """
    cols = _columns(pixels, np.shape(stack)[1])
    out[cols] = window_median(np.asarray(stack)[:, cols], rank)
    return out


def window_modes(stack, kernel_size, starts, shifts=None, out=None, num_threads=1):
    """Smoothed-histogram mode of the windows ``stack[s:s + k]``, s in `starts`

    Reference of :func:`dcbg.kernels.window_modes`: per pixel, the
    histogram of the shifted, clipped values is smoothed by a triangle
    (a box of ``2 * MODE_HALF_WIDTH + 1`` levels applied twice); the
    result is the mean of the values within `MODE_HALF_WIDTH` levels of
    its first maximum, rounded half up.
    """
    stack = np.asarray(stack)
    n_frames = stack.shape[0]
    shifts = np.zeros(n_frames, int) if shifts is None else np.asarray(shifts)
    flat = stack.reshape(n_frames, -1).astype(np.int64)
    shifted = np.clip(flat - shifts.astype(np.int64)[:, None], 0, 255)
    h = MODE_HALF_WIDTH
    box = np.ones(2 * h + 1, dtype=np.int64)
    triangle = np.convolve(box, box)  # 1, 2, .., 2h + 1, .., 2, 1
    levels = np.arange(256)
    result = np.empty((len(starts), flat.shape[1]), dtype=np.uint8)
    for w, start in enumerate(starts):
        values = shifted[start : start + kernel_size]
        for p in range(flat.shape[1]):
            hist = np.bincount(values[:, p], minlength=256)
            smooth = np.convolve(hist, triangle)[2 * h : 2 * h + 256]
            mode = int(np.argmax(smooth))  # the first maximum
            near = np.abs(levels - mode) <= h
            count = int(hist[near].sum())
            weighted = int((hist[near] * levels[near]).sum())
            result[w, p] = (2 * weighted + count) // (2 * count)  # half up
    return _into(result.reshape((len(starts),) + stack.shape[1:]), out)


def window_modes_pixels(stack, kernel_size, starts, shifts, out, pixels=None):
    """Window modes of the pixel columns `pixels` of a 2-D stack, into `out`

    Reference of :func:`dcbg.kernels.window_modes_pixels`.
    """
    cols = _columns(pixels, np.shape(stack)[1])
    out[:, cols] = window_modes(np.asarray(stack)[:, cols], kernel_size, starts, shifts)
    return out


def fletcher32(data) -> int:
    """HDF5's Fletcher-32 checksum, word by word as HDF5 computes it

    Reference of :func:`dcbg.kernels.fletcher32`: the bytes are read as
    big-endian 16-bit words (an odd last byte as the high byte of a word);
    two running sums are folded to 16 bits after every
    `FLETCHER32_BLOCK_WORDS` words and at the end; the checksum is
    ``sum2 << 16 | sum1``.
    """
    data = bytes(memoryview(data).cast("B"))
    words = [data[i] << 8 | data[i + 1] for i in range(0, len(data) - 1, 2)]
    blocks = [
        words[i : i + FLETCHER32_BLOCK_WORDS]
        for i in range(0, len(words), FLETCHER32_BLOCK_WORDS)
    ]
    if len(data) % 2:
        blocks.append([data[-1] << 8])
    sum1 = sum2 = 0
    for block in blocks:
        for word in block:
            sum1 += word
            sum2 += sum1
        sum1 = _fold(sum1)
        sum2 = _fold(sum2)
    return _fold(sum2) << 16 | _fold(sum1)


def _fold(value: int) -> int:
    return (value & 0xFFFF) + (value >> 16)


def _into(result, out):
    if out is None:
        return result
    out[...] = result.reshape(out.shape)
    return out


def _columns(pixels, n_pixels) -> slice:
    if pixels is None:
        return slice(0, n_pixels)
    if isinstance(pixels, slice):
        return pixels
    return slice(*pixels)


# --- background methods ---------------------------------------------------


def rollmed_background(stack, kernel_size):
    """Rolling-median background of every frame, by dcnum 0.31.0's rule

    Frame ``i`` gets the median of the `kernel_size` frames starting at
    ``i``, for ``i < max(1, n_frames - kernel_size)``; the remaining
    frames at the end, which dcnum gives no window of their own, get the
    last computed background. So with ``n_frames == kernel_size`` every
    frame gets the median of all frames.

    Parameters
    ----------
    stack: array-like of uint8, shape (n_frames, height, width)
        The frames, ``n_frames >= kernel_size``
    kernel_size: int
        Window length (even for the rollmed method)

    Returns
    -------
    image_bg: numpy.ndarray, same shape and dtype as `stack`
    """
    stack = np.asarray(stack)
    computed = max(1, len(stack) - kernel_size)
    medians = rolling_median(stack[: computed + kernel_size - 1], kernel_size)
    out = np.empty_like(stack)
    out[:computed] = medians
    out[computed:] = medians[-1]
    return out


def sparsemed_offset(frames, image_bg, rows):
    """The sparse-median offset ``bg_off`` of every frame, by its definition

    The mean grey value of the top `rows` pixel rows (the channel wall,
    where cells do not pass) of each frame minus that of its background
    image, so that ``image_bg + bg_off`` follows the frame's brightness.

    Parameters
    ----------
    frames, image_bg: array-like, shape (n_frames, height, width)
        The frames and the background image of every frame
    rows: int
        Number of top rows (dcnum uses 20)

    Returns
    -------
    bg_off: numpy.ndarray of float64, shape (n_frames,)
    """
    top_frames = np.asarray(frames)[:, :rows].mean(axis=(1, 2), dtype=np.float64)
    top_bg = np.asarray(image_bg)[:, :rows].mean(axis=(1, 2), dtype=np.float64)
    return top_frames - top_bg


def sparsemode_series(frames, kernel_size, starts, rows=20):
    """The sparse mode's background images of the windows at `starts`

    Reference of what :class:`dcbg.BackgroundSparseMode` computes, in
    Python integers: a frame's level is the sum of its top `rows` rows
    divided by their pixel count; the reference level ``R`` is the
    first window's mean level rounded half up; each frame is shifted by
    its level minus ``R``, rounded half up; the image is the window mode
    (:func:`window_modes`) of the shifted frames plus the window's mean
    level minus ``R``, rounded half up, clipped to 0..255. ``rows=0``:
    no shifts.

    Parameters
    ----------
    frames: array-like of uint8, shape (n_frames, height, width)
    kernel_size: int
        Frames per window
    starts: sequence of int
        First frame of every window, sorted; the first defines ``R``
    rows: int
        Top rows of the level (the sparse median's 20), at most the height

    Returns
    -------
    images: numpy.ndarray of uint8, shape (len(starts), height, width)
    """
    frames = np.asarray(frames)
    rows = min(rows, frames.shape[1])
    if rows == 0:
        return window_modes(frames, kernel_size, starts)
    pixels = rows * frames.shape[2]
    sums = [int(frame[:rows].sum()) for frame in frames]

    def half_up(numerator, denominator):
        return (2 * numerator + denominator) // (2 * denominator)

    def window_sum(start):
        return sum(sums[start : start + kernel_size])

    reference = half_up(window_sum(starts[0]), kernel_size * pixels)
    shifts = [
        max(-255, min(255, half_up(total - reference * pixels, pixels)))
        for total in sums
    ]
    modes = window_modes(frames, kernel_size, starts, np.array(shifts))
    levels = [
        half_up(
            window_sum(start) - reference * kernel_size * pixels, kernel_size * pixels
        )
        for start in starts
    ]
    images = modes.astype(np.int64) + np.array(levels).reshape(-1, 1, 1)
    return np.clip(images, 0, 255).astype(np.uint8)
