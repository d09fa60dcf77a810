"""Compiled kernels: medians of uint8 image stacks, HDF5's checksum

The median kernels reduce along axis 0 (time) independently for every
pixel:

- :func:`rolling_median`: median of every window of k consecutive frames
- :func:`window_median`: rank value (default: median) of a whole stack
- :func:`window_modes`: most frequent value (smoothed-histogram mode) of
  windows of k frames, each frame's values shifted by its offset first

:func:`fletcher32` is HDF5's chunk checksum, with which worker threads
encode and verify HDF5 chunks outside HDF5's global lock.

The ``*_pixels`` variants process one pixel range in the calling thread,
for callers that distribute the work over their own threads. All kernels
are compiled ahead of time with Cython (the ``_*.pyx`` modules, built at
install time, nothing is compiled at run time) and release the GIL.

Every kernel named in ``__all__`` has a slow, obviously correct reference
of the same name and signature in :mod:`dcbg.kernels.slow`; the tests
compare the two.
"""

from .checksum import fletcher32
from .rolling_median import rolling_median, rolling_median_pixels
from .window_median import window_median, window_median_pixels
from .window_mode import window_modes, window_modes_pixels

__all__ = [
    "fletcher32",
    "rolling_median",
    "rolling_median_pixels",
    "window_median",
    "window_median_pixels",
    "window_modes",
    "window_modes_pixels",
]
