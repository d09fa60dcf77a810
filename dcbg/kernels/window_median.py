"""Rank value (median by default) of a whole uint8 image stack along time

Counting sort per pixel: a 256-bin histogram of the pixel's k values,
then a cumulative scan up to the requested rank. That is O(k + 256) per
pixel with no data-dependent branches in the counting pass, about 20
times faster than ``np.partition(stack, rank, axis=0)`` for k = 200 on
80x320 frames (3 ms vs 60 ms on one core, see ``BLOCK_SIZE``).

The compiled core (Cython, ``_window_median.pyx``) processes pixels in
blocks of ``BLOCK_SIZE`` and releases the GIL; this module checks the
arguments and splits the pixels over threads.
"""

import numpy as np

from ._validate import (
    check_num_threads,
    check_out,
    check_pixels,
    check_rank,
    check_stack,
    check_stack_2d,
    run_threaded,
)
from ._window_median import BLOCK_SIZE  # noqa: F401 (documented there)
from ._window_median import window_median_core as _window_median_core

__all__ = ["window_median", "window_median_pixels"]


def window_median(stack, rank=None, out=None, num_threads=1):
    """Median (or any rank value) of all frames of a stack, per pixel

    Parameters
    ----------
    stack: numpy.ndarray of uint8, shape (k, n_pixels) or (k, h, w)
        Image stack with k >= 1 frames along axis 0. Other dtypes are
        rejected; convert them (e.g. ``np.asarray(x, dtype=np.uint8)``)
        beforehand. A non-C-contiguous stack is copied.
    rank: int, optional
        Sorted position to report, ``0 <= rank < k``. Defaults to
        ``k // 2``, the median (for even k the upper of the two middle
        elements, no averaging). ``rank=0`` gives the minimum and
        ``rank=k-1`` the maximum.
    out: numpy.ndarray of uint8, optional
        C-contiguous array of shape ``stack.shape[1:]`` to write the
        result into. A new array is allocated if omitted.
    num_threads: int
        Number of threads to use (>= 1). The pixels are split into
        contiguous ranges that are processed concurrently by the compiled
        kernel, which releases the GIL.

    Returns
    -------
    out: numpy.ndarray of uint8, shape stack.shape[1:]
        For each pixel the element at sorted position `rank` along axis 0,
        identical to ``np.partition(stack, rank, axis=0)[rank]``.

    See Also
    --------
    window_median_pixels: same for a pixel range, for callers that
        distribute the work over their own threads
    """
    stack2d, frame_shape = check_stack(stack, "stack")
    k, n_pixels = stack2d.shape
    rank = _check_frames_and_rank(k, rank)
    num_threads = check_num_threads(num_threads)
    if out is None:
        out = np.empty(frame_shape, dtype=np.uint8)
    else:
        check_out(out, frame_shape, stack2d)
    if n_pixels:
        out1d = out.reshape(n_pixels)
        run_threaded(_window_median_core, (stack2d, rank, out1d), n_pixels, num_threads)
    return out


def window_median_pixels(stack, rank, out, pixels=None):
    """Rank value over all frames for the pixel range `pixels`

    Single-threaded building block of :func:`window_median` for callers
    that run their own thread pool: threads given disjoint pixel ranges
    may share `stack` and `out`. The GIL is released during the
    computation.

    Parameters
    ----------
    stack: numpy.ndarray of uint8, shape (k, n_pixels), C-contiguous
        Image stack with k >= 1 frames along axis 0 (images flattened)
    rank: int or None
        Sorted position to report, ``0 <= rank < k``; None means ``k // 2``
    out: numpy.ndarray of uint8, shape (n_pixels,), C-contiguous
        Result array; only the entries `pixels` are written
    pixels: slice or (start, stop) or None
        Pixel range to process, step 1; None means all pixels

    Returns
    -------
    out: numpy.ndarray
        The array passed as `out`; ``out[p]`` is the element at sorted
        position `rank` of ``stack[:, p]`` for p in `pixels`.
    """
    check_stack_2d(stack, "stack")
    k, n_pixels = stack.shape
    rank = _check_frames_and_rank(k, rank)
    check_out(out, (n_pixels,), stack)
    start, stop = check_pixels(pixels, n_pixels)
    if stop > start:
        _window_median_core(stack, rank, out, start, stop)
    return out


def _check_frames_and_rank(k, rank):
    if k < 1:
        raise ValueError("stack must contain at least one frame, got 0 frames")
    return k // 2 if rank is None else check_rank(rank, k)
