# cython: language_level=3
"""Per-pixel 256-bin histograms shared by the median kernels"""

from libc.stdint cimport int32_t, uint8_t
from libc.string cimport memset


cdef inline void count_frames(
    int32_t* hist,
    const uint8_t* stack,
    Py_ssize_t n_pixels,
    Py_ssize_t first_pixel,
    Py_ssize_t n_block,
    Py_ssize_t n_frames,
) noexcept nogil:
    """Reset `hist` and count frames ``0:n_frames`` of pixels
    ``first_pixel:first_pixel + n_block`` (256 bins per pixel)"""
    cdef Py_ssize_t f, j
    cdef const uint8_t* row
    cdef int32_t* h
    memset(hist, 0, n_block * 256 * sizeof(int32_t))
    for f in range(n_frames):
        row = stack + f * n_pixels + first_pixel
        # unrolled by hand: gcc -O3 does not unroll it and is ~10 % slower
        # without
        h = hist
        j = 0
        while j + 8 <= n_block:
            h[row[j]] += 1
            h[256 + row[j + 1]] += 1
            h[512 + row[j + 2]] += 1
            h[768 + row[j + 3]] += 1
            h[1024 + row[j + 4]] += 1
            h[1280 + row[j + 5]] += 1
            h[1536 + row[j + 6]] += 1
            h[1792 + row[j + 7]] += 1
            h += 2048
            j += 8
        while j < n_block:
            h[row[j]] += 1
            h += 256
            j += 1
