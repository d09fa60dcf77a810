"""Rolling (sliding-window) median of a uint8 image stack along time

Each pixel keeps the counts of its window and tracks the rank value as
frames enter and leave: the counts of values below and equal to the rank
value tell whether it has to move, and by how much. Two exact trackers:

- **band** (``k <= 255``, default): the counts of 8 grey levels around
  the rank value, updated with compares for 256 pixels at once (the loop
  vectorises). For noisy images the rank value moves by at most one level
  per frame and rarely leaves the band; when it does, that pixel's window
  is counted again (O(k)). About 3x faster than the histogram on
  RT-DC images.
- **histogram** (any ``k``): a 256-bin histogram per pixel; O(1) per
  pixel and frame for any data. It takes over a block of pixels from the
  band tracker when recounting becomes too frequent (fast drifts, random
  data), so the band never makes things much slower.

The compiled core (``_rolling_median.pyx`` and ``band_rank.h``) releases
the GIL; this module checks the arguments and splits the pixels over
threads.
"""

import numpy as np

from ._rolling_median import (  # noqa: F401 (documented there)
    BAND_BLOCK_SIZE,
    BAND_MAX_KERNEL_SIZE,
    BLOCK_SIZE,
)
from ._rolling_median import rolling_median_core as _rolling_median_core
from ._validate import (
    check_kernel_size,
    check_num_threads,
    check_out,
    check_pixels,
    check_stack,
    check_stack_2d,
    run_threaded,
)

__all__ = ["rolling_median", "rolling_median_pixels"]


def rolling_median(stack, kernel_size, out=None, num_threads=1):
    """Median of every window of `kernel_size` consecutive frames

    Parameters
    ----------
    stack: numpy.ndarray of uint8, shape (n_frames, n_pixels) or (n_frames, h, w)
        Image stack with frames along axis 0. Other dtypes are rejected;
        convert them (e.g. ``np.asarray(x, dtype=np.uint8)``) beforehand.
        A non-C-contiguous stack is copied.
    kernel_size: int
        Number of consecutive frames k in each window, ``1 <= k <= n_frames``.
        Even and odd values are allowed.
    out: numpy.ndarray of uint8, optional
        C-contiguous array of shape ``(n_frames - k + 1,) + stack.shape[1:]``
        to write the result into. A new array is allocated if omitted.
    num_threads: int
        Number of threads to use (>= 1). The pixels are split into
        contiguous ranges that are filtered concurrently by the compiled
        kernel, which releases the GIL.

    Returns
    -------
    out: numpy.ndarray of uint8, shape (n_frames - k + 1,) + stack.shape[1:]
        ``out[i]`` is the median of ``stack[i:i+k]`` for each pixel
        ("valid" windows only, no padding). The median is the element at
        sorted position ``k // 2``; for even k this is the upper of the two
        middle elements (no averaging), i.e.
        ``np.partition(stack[i:i+k], k // 2, axis=0)[k // 2]``.

    See Also
    --------
    rolling_median_pixels: same filter for a pixel range, for callers that
        distribute the work over their own threads

    Notes
    -----
    For noisy images the work per pixel and frame does not depend on
    `kernel_size`: the median is tracked incrementally as frames enter
    and leave the window (see the module docstring for the two trackers).
    """
    stack2d, frame_shape = check_stack(stack, "stack")
    n_frames, n_pixels = stack2d.shape
    k = check_kernel_size(kernel_size, n_frames)
    num_threads = check_num_threads(num_threads)
    out_shape = (n_frames - k + 1,) + frame_shape
    if out is None:
        out = np.empty(out_shape, dtype=np.uint8)
    else:
        check_out(out, out_shape, stack2d)
    if n_pixels:
        out2d = out.reshape(out_shape[0], n_pixels)
        run_threaded(
            _rolling_median_core, (stack2d, k, k // 2, out2d), n_pixels, num_threads
        )
    return out


def rolling_median_pixels(stack, kernel_size, out, pixels=None):
    """Rolling median of the pixel range `pixels`, written into `out`

    Single-threaded building block of :func:`rolling_median` for callers
    that run their own thread pool: threads given disjoint pixel ranges
    may share `stack` and `out`. The GIL is released during the
    computation.

    Parameters
    ----------
    stack: numpy.ndarray of uint8, shape (n_frames, n_pixels), C-contiguous
        Image stack with frames along axis 0 (images flattened)
    kernel_size: int
        Number of consecutive frames k in each window, ``1 <= k <= n_frames``
    out: numpy.ndarray of uint8, shape (n_frames - k + 1, n_pixels), C-contiguous
        Result array; only the columns `pixels` are written
    pixels: slice or (start, stop) or None
        Pixel (column) range to process, step 1; None means all pixels

    Returns
    -------
    out: numpy.ndarray
        The array passed as `out`; ``out[i, p]`` is the element at sorted
        position ``k // 2`` of ``stack[i:i+k, p]`` for p in `pixels`.
    """
    check_stack_2d(stack, "stack")
    n_frames, n_pixels = stack.shape
    k = check_kernel_size(kernel_size, n_frames)
    check_out(out, (n_frames - k + 1, n_pixels), stack)
    start, stop = check_pixels(pixels, n_pixels)
    if stop > start:
        _rolling_median_core(stack, k, k // 2, out, start, stop)
    return out
