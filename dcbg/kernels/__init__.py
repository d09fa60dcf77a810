"""Compiled median kernels for uint8 image stacks

Both kernels reduce along axis 0 (time) independently for every pixel:

- :func:`rolling_median`: median of every window of k consecutive frames
- :func:`window_median`: rank value (default: median) of a whole stack

The ``*_pixels`` variants process one pixel range in the calling thread,
for callers that distribute the work over their own threads. All kernels
are compiled ahead of time with Cython (the ``_*.pyx`` modules, built at
install time, nothing is compiled at run time) and release the GIL.
"""

from .rolling_median import rolling_median, rolling_median_pixels
from .window_median import window_median, window_median_pixels

__all__ = [
    "rolling_median",
    "rolling_median_pixels",
    "window_median",
    "window_median_pixels",
]
