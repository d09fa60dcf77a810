"""Most frequent value (smoothed-histogram mode) of uint8 frame windows

A robust estimate of a pixel's background where cells cover it in most
frames: the median then lands on a cell, but the background is still
the single most frequent value, because sensor noise keeps background
values within a few grey levels of each other while cell values spread
over tens of levels.

For every window of `kernel_size` frames starting at one of `starts` and
every pixel:

1. each frame's value minus its integer `shift` (grey levels), clipped
   to 0..255, is counted in a 256-bin histogram;
2. the histogram is smoothed by a box of ``2 * HALF_WIDTH + 1`` levels
   applied twice (a triangle of 9 levels); its first (lowest) maximum is
   the mode bin ``m``;
3. the result is the mean of the counted values within ``HALF_WIDTH``
   of ``m``, rounded half up (integer arithmetic, exact).

The box count at ``m`` is never zero: were it, the triangle would be
larger three levels further up or down. Between requested windows the
histograms slide (frames leave and enter, O(1) per pixel and frame), or
are counted afresh where the windows are further apart than half a
window; either way the counts, and so the results, are the same.

The compiled core (``_window_mode.pyx``) releases the GIL; this module
checks the arguments and splits the pixels over threads.
"""

import numpy as np

from ._validate import (
    check_kernel_size,
    check_num_threads,
    check_out,
    check_pixels,
    check_stack,
    check_stack_2d,
    run_threaded,
)
from ._window_mode import (
    BLOCK_SIZE,  # noqa: F401 (documented there)
    HALF_WIDTH,  # noqa: F401 (documented there)
)
from ._window_mode import window_modes_core as _window_modes_core

__all__ = ["window_modes", "window_modes_pixels"]

#: largest shift magnitude: beyond 255 grey levels every value clips
MAX_SHIFT = 255


def window_modes(stack, kernel_size, starts, shifts=None, out=None, num_threads=1):
    """Smoothed-histogram mode of the windows starting at `starts`

    Parameters
    ----------
    stack: numpy.ndarray of uint8, shape (n_frames, n_pixels) or (n_frames, h, w)
        Image stack with frames along axis 0. A non-C-contiguous stack is
        copied; other dtypes are rejected.
    kernel_size: int
        Frames per window k, ``1 <= k <= n_frames``
    starts: sequence of int
        First frame of every window, sorted (repeats allowed), each in
        ``0 .. n_frames - k``
    shifts: sequence of int, optional
        Grey levels subtracted from every value of each frame before it
        is counted (the frame's brightness offset), ``|shift| <= 255``,
        one per frame; the shifted values are clipped to 0..255. None:
        no shift.
    out: numpy.ndarray of uint8, optional
        C-contiguous array of shape ``(len(starts),) + stack.shape[1:]``
    num_threads: int
        Number of threads (>= 1); the pixels are split among them.

    Returns
    -------
    out: numpy.ndarray of uint8, shape (len(starts),) + stack.shape[1:]
        ``out[i]`` is the mode image of the window ``stack[starts[i]:
        starts[i] + k]`` (see the module docstring), in grey levels of
        the shifted values.
    """
    stack2d, frame_shape = check_stack(stack, "stack")
    n_frames, n_pixels = stack2d.shape
    k = check_kernel_size(kernel_size, n_frames)
    starts = check_starts(starts, n_frames, k)
    shifts = check_shifts(shifts, n_frames)
    num_threads = check_num_threads(num_threads)
    out_shape = (starts.size,) + frame_shape
    if out is None:
        out = np.empty(out_shape, dtype=np.uint8)
    else:
        check_out(out, out_shape, stack2d)
    if n_pixels and starts.size:
        out2d = out.reshape(starts.size, n_pixels)
        run_threaded(
            _window_modes_core,
            (stack2d, k, starts, shifts, out2d),
            n_pixels,
            num_threads,
        )
    return out


def window_modes_pixels(stack, kernel_size, starts, shifts, out, pixels=None):
    """Window modes of the pixel range `pixels`, written into `out`

    Single-threaded building block of :func:`window_modes` for callers
    that run their own thread pool: threads given disjoint pixel ranges
    may share `stack` and `out`. The GIL is released during the
    computation.

    Parameters
    ----------
    stack: numpy.ndarray of uint8, shape (n_frames, n_pixels), C-contiguous
        Image stack with frames along axis 0 (images flattened)
    kernel_size, starts, shifts:
        As for :func:`window_modes` (`shifts` may be None)
    out: numpy.ndarray of uint8, shape (len(starts), n_pixels), C-contiguous
        Result array; only the columns `pixels` are written
    pixels: slice or (start, stop) or None
        Pixel (column) range to process, step 1; None means all pixels

    Returns
    -------
    out: numpy.ndarray
        The array passed as `out`
    """
    check_stack_2d(stack, "stack")
    n_frames, n_pixels = stack.shape
    k = check_kernel_size(kernel_size, n_frames)
    starts = check_starts(starts, n_frames, k)
    shifts = check_shifts(shifts, n_frames)
    check_out(out, (starts.size, n_pixels), stack)
    start, stop = check_pixels(pixels, n_pixels)
    if stop > start and starts.size:
        _window_modes_core(stack, k, starts, shifts, out, start, stop)
    return out


def _integer_array(values, name) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr


def check_starts(starts, n_frames, kernel_size) -> np.ndarray:
    """`starts` as C-contiguous intp array, sorted and inside the stack"""
    arr = _integer_array(starts, "starts")
    if arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > n_frames - kernel_size:
            raise ValueError(
                f"starts must lie in 0..{n_frames - kernel_size} (n_frames - "
                f"kernel_size), got values in {low}..{high}"
            )
        if np.any(arr[1:] < arr[:-1]):
            raise ValueError("starts must be sorted in increasing order")
    return np.ascontiguousarray(arr, dtype=np.intp)


def check_shifts(shifts, n_frames) -> np.ndarray:
    """`shifts` as C-contiguous int32 array of one value per frame"""
    if shifts is None:
        return np.zeros(n_frames, dtype=np.int32)
    arr = _integer_array(shifts, "shifts")
    if arr.size != n_frames:
        raise ValueError(
            f"shifts must hold one value per frame ({n_frames}), got {arr.size}"
        )
    if arr.size and int(np.max(np.abs(arr.astype(np.int64)))) > MAX_SHIFT:
        raise ValueError(f"shifts must lie in -{MAX_SHIFT}..{MAX_SHIFT} grey levels")
    return np.ascontiguousarray(arr, dtype=np.int32)
