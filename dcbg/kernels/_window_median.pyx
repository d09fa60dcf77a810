# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Compiled core of :mod:`dcbg.kernels.window_median`

Counting sort per pixel; see the module docstring of
:mod:`dcbg.kernels.window_median`. The public, checked entry points live
there; this core trusts its arguments apart from a few O(1) sanity checks
that keep a misuse from writing out of bounds.
"""

from libc.stdint cimport INT32_MAX, int32_t, uint8_t
from libc.stdlib cimport free, malloc
from ._histogram cimport count_frames

#: Number of pixels counted together per pass over the frames; their
#: histograms (``BLOCK_SIZE * 1 KiB``) stay in L2 cache. Measured with this
#: kernel (AMD EPYC, 1 MiB L2/core, a shared 2-core VM, best of 15; k=200
#: noisy 80x320 frames, one thread): 64 -> 2.4 ms, 128 -> 4.1 ms,
#: 256 -> 2.8 ms, 512 -> 2.5 ms, 1024 -> 2.8 ms, 2048 -> 3.0 ms
#: (np.partition: 60 ms): within 20 % of each other except 128.
cdef enum:
    _BLOCK_SIZE = 256

BLOCK_SIZE = _BLOCK_SIZE


def window_median_core(
    const uint8_t[:, ::1] stack,
    Py_ssize_t rank,
    uint8_t[::1] out,
    Py_ssize_t pix_start,
    Py_ssize_t pix_stop,
):
    """Rank filter over all frames for the pixels ``pix_start:pix_stop``

    Parameters
    ----------
    stack: 2-D uint8 array (k, n_pixels), C-contiguous, k >= 1
        may be read-only
    rank: int
        sorted position to report, 0 <= rank < k
    out: 1-D uint8 array (n_pixels,), C-contiguous
        only the entries ``pix_start:pix_stop`` are written
    pix_start, pix_stop: int
        pixel (column) range to process

    The GIL is released for the whole computation.
    """
    cdef Py_ssize_t k = stack.shape[0]
    cdef Py_ssize_t n_pixels = stack.shape[1]
    if k > INT32_MAX:
        raise ValueError(f"at most {INT32_MAX} frames (int32 counts), got {k}")
    if not 0 <= rank < k:
        raise ValueError(f"rank must satisfy 0 <= rank < {k}, got {rank}")
    if out.shape[0] != n_pixels:
        raise ValueError(f"out must have shape ({n_pixels},), got ({out.shape[0]},)")
    if not 0 <= pix_start <= pix_stop <= n_pixels:
        raise ValueError(
            f"pixel range must satisfy 0 <= start <= stop <= {n_pixels}, "
            f"got ({pix_start}, {pix_stop})"
        )
    if pix_stop == pix_start:
        return
    cdef Py_ssize_t block = min(<Py_ssize_t>_BLOCK_SIZE, pix_stop - pix_start)
    cdef int32_t* hist = <int32_t*>malloc(block * 256 * sizeof(int32_t))
    if hist == NULL:
        raise MemoryError()
    with nogil:
        _window_median(
            &stack[0, 0], k, n_pixels, rank, &out[0], pix_start, pix_stop,
            block, hist,
        )
    free(hist)


cdef void _window_median(
    const uint8_t* stack,
    Py_ssize_t k,
    Py_ssize_t n_pixels,
    Py_ssize_t rank,
    uint8_t* out,
    Py_ssize_t pix_start,
    Py_ssize_t pix_stop,
    Py_ssize_t block,
    int32_t* hist,
) noexcept nogil:
    cdef Py_ssize_t b0, nb, j, m, c
    cdef int32_t s
    cdef const int32_t* h
    b0 = pix_start
    while b0 < pix_stop:
        nb = min(block, pix_stop - b0)
        count_frames(hist, stack, n_pixels, b0, nb, k)
        for j in range(nb):
            h = hist + (j << 8)
            c = 0
            m = 0
            # Coarse scan in groups of 16 bins, then bin by bin. Both stop by
            # bin 255 because the total k exceeds rank. The group sum is
            # written as a tree of independent adds (gcc would chain 16
            # dependent adds); int32 cannot overflow as any sum of bins is
            # at most k < 2**31.
            while True:
                s = (((h[m] + h[m + 1]) + (h[m + 2] + h[m + 3]))
                     + ((h[m + 4] + h[m + 5]) + (h[m + 6] + h[m + 7]))
                     + (((h[m + 8] + h[m + 9]) + (h[m + 10] + h[m + 11]))
                        + ((h[m + 12] + h[m + 13]) + (h[m + 14] + h[m + 15]))))
                if c + s > rank:
                    break
                c += s
                m += 16
            while c + h[m] <= rank:
                c += h[m]
                m += 1
            out[b0 + j] = <uint8_t>m
        b0 += block
