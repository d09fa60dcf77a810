# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Compiled core of :mod:`dcbg.kernels.window_mode`

A 256-bin histogram per pixel of the window's offset-corrected values,
slid from one window to the next (frames leave and enter) or counted
again where that is cheaper; at every requested window the smoothed
histogram's mode is read out. See the module docstring of
:mod:`dcbg.kernels.window_mode` for the estimator. The public, checked
entry points live there; this core trusts its arguments apart from a few
O(1) sanity checks that keep a misuse from writing out of bounds.
"""

from libc.stdint cimport INT32_MAX, int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

#: Pixels whose histograms are updated together while iterating over the
#: frames; each block owns ``BLOCK_SIZE * 1 KiB`` of histograms, which stay
#: in L2 cache (the window median's measurement: 256 to 1024 within 20 %).
cdef enum:
    _BLOCK_SIZE = 256
    #: half width of the box filter, grey levels (see window_mode.HALF_WIDTH)
    _HALF_WIDTH = 2

BLOCK_SIZE = _BLOCK_SIZE
HALF_WIDTH = _HALF_WIDTH


def window_modes_core(
    const uint8_t[:, ::1] stack,
    Py_ssize_t k,
    const Py_ssize_t[::1] starts,
    const int32_t[::1] shifts,
    uint8_t[:, ::1] out,
    Py_ssize_t pix_start,
    Py_ssize_t pix_stop,
):
    """Smoothed-histogram mode of windows for the pixels ``pix_start:pix_stop``

    Parameters
    ----------
    stack: 2-D uint8 array (n_frames, n_pixels), C-contiguous
        may be read-only
    k: int
        window size, 1 <= k <= n_frames
    starts: 1-D intp array (n_windows,)
        first frame of each window, sorted, 0 <= start <= n_frames - k
    shifts: 1-D int32 array (n_frames,)
        grey levels subtracted from every value of a frame (|shift| <= 255)
    out: 2-D uint8 array (n_windows, n_pixels), C-contiguous
        only the columns ``pix_start:pix_stop`` are written
    pix_start, pix_stop: int
        pixel (column) range to process

    The GIL is released for the whole computation.
    """
    cdef Py_ssize_t n_frames = stack.shape[0]
    cdef Py_ssize_t n_pixels = stack.shape[1]
    cdef Py_ssize_t n_windows = starts.shape[0]
    cdef Py_ssize_t i
    if not 1 <= k <= n_frames:
        raise ValueError(f"k must satisfy 1 <= k <= {n_frames}, got {k}")
    if k > INT32_MAX:
        raise ValueError(f"k must be at most {INT32_MAX} (int32 counts), got {k}")
    if shifts.shape[0] != n_frames:
        raise ValueError(f"shifts must have {n_frames} entries, got {shifts.shape[0]}")
    if out.shape[0] != n_windows or out.shape[1] != n_pixels:
        raise ValueError(
            f"out must have shape ({n_windows}, {n_pixels}), "
            f"got ({out.shape[0]}, {out.shape[1]})"
        )
    for i in range(n_windows):
        if not 0 <= starts[i] <= n_frames - k or (i and starts[i] < starts[i - 1]):
            raise ValueError("starts must be sorted and within 0..n_frames - k")
    if not 0 <= pix_start <= pix_stop <= n_pixels:
        raise ValueError(
            f"pixel range must satisfy 0 <= start <= stop <= {n_pixels}, "
            f"got ({pix_start}, {pix_stop})"
        )
    if pix_stop == pix_start or n_windows == 0:
        return
    cdef Py_ssize_t block = min(<Py_ssize_t>_BLOCK_SIZE, pix_stop - pix_start)
    for i in range(n_frames):
        if not -255 <= shifts[i] <= 255:
            raise ValueError(f"shifts must lie in -255..255, got {shifts[i]}")
    cdef int32_t* hist = <int32_t*>malloc(block * 256 * sizeof(int32_t))
    # one lookup table of 256 bins per shift -255..255 (128 KiB)
    cdef uint8_t* luts = <uint8_t*>malloc(511 * 256)
    if hist == NULL or luts == NULL:
        free(hist)
        free(luts)
        raise MemoryError()
    with nogil:
        _window_modes(
            &stack[0, 0], n_pixels, k, &starts[0], n_windows, &shifts[0],
            &out[0, 0], pix_start, pix_stop, block, hist, luts,
        )
    free(hist)
    free(luts)


cdef inline void _add_frame(
    int32_t* hist, const uint8_t* row, const uint8_t* lut, Py_ssize_t nb, int32_t sign
) noexcept nogil:
    """Add (sign 1) or remove (sign -1) one frame's values of a block

    `lut` maps a grey value to its histogram bin: the value minus the
    frame's shift, clipped to 0..255.
    """
    cdef Py_ssize_t j = 0
    cdef int32_t* h = hist
    # unrolled by hand, as count_frames of _histogram.pxd (gcc does not)
    while j + 4 <= nb:
        h[lut[row[j]]] += sign
        h[256 + lut[row[j + 1]]] += sign
        h[512 + lut[row[j + 2]]] += sign
        h[768 + lut[row[j + 3]]] += sign
        h += 1024
        j += 4
    while j < nb:
        h[lut[row[j]]] += sign
        h += 256
        j += 1


cdef inline uint8_t _mode(const int32_t* h) noexcept nogil:
    """Rounded mean of the values within HALF_WIDTH of the smoothed mode

    The histogram is smoothed by a box of 2 * HALF_WIDTH + 1 grey levels
    applied twice (a triangle); its first maximum is the mode bin m. The
    estimate is the mean of the values in m - HALF_WIDTH .. m + HALF_WIDTH,
    rounded half up, in integers.
    """
    cdef int32_t box[256 + 2 * _HALF_WIDTH]
    cdef Py_ssize_t m, d, best_bin = 0
    cdef int64_t run = 0, tri = 0, best = -1, weighted = 0, count
    # box[m + HALF_WIDTH] = sum of h[m - HALF_WIDTH .. m + HALF_WIDTH], for
    # m in -HALF_WIDTH .. 255 + HALF_WIDTH (bins outside 0..255 are empty)
    for m in range(-2 * _HALF_WIDTH, 256 + 2 * _HALF_WIDTH):
        if 0 <= m + _HALF_WIDTH <= 255:
            run += h[m + _HALF_WIDTH]
        if 0 <= m - _HALF_WIDTH - 1 <= 255:
            run -= h[m - _HALF_WIDTH - 1]
        if -_HALF_WIDTH <= m <= 255 + _HALF_WIDTH:
            box[m + _HALF_WIDTH] = <int32_t>run
    # triangle at m = sum of box[m - HALF_WIDTH .. m + HALF_WIDTH]
    for d in range(2 * _HALF_WIDTH):
        tri += box[d]
    for m in range(256):
        tri += box[m + 2 * _HALF_WIDTH]
        if tri > best:
            best = tri
            best_bin = m
        tri -= box[m]
    count = box[best_bin + _HALF_WIDTH]
    if count == 0:  # cannot happen (see window_mode's docstring): stay safe
        return <uint8_t>best_bin
    for d in range(max(0, best_bin - _HALF_WIDTH), min(255, best_bin + _HALF_WIDTH) + 1):
        weighted += <int64_t>d * h[d]
    return <uint8_t>((2 * weighted + count) // (2 * count))


cdef void _window_modes(
    const uint8_t* stack,
    Py_ssize_t n_pixels,
    Py_ssize_t k,
    const Py_ssize_t* starts,
    Py_ssize_t n_windows,
    const int32_t* shifts,
    uint8_t* out,
    Py_ssize_t pix_start,
    Py_ssize_t pix_stop,
    Py_ssize_t block,
    int32_t* hist,
    uint8_t* luts,
) noexcept nogil:
    # luts[(shift + 255) * 256 + v]: bin of value v in a frame of that shift
    cdef Py_ssize_t b0, nb, w, f, j, current, start, s, v, t
    for s in range(-255, 256):
        for v in range(256):
            t = v - s
            luts[(s + 255) * 256 + v] = <uint8_t>(0 if t < 0 else (255 if t > 255 else t))
    b0 = pix_start
    while b0 < pix_stop:
        nb = min(block, pix_stop - b0)
        current = -1
        for w in range(n_windows):
            start = starts[w]
            if current < 0 or 2 * (start - current) >= k:
                # no window yet, or sliding would touch more frames than
                # counting the new window afresh
                memset(hist, 0, nb * 256 * sizeof(int32_t))
                for f in range(start, start + k):
                    _add_frame(
                        hist, stack + f * n_pixels + b0,
                        luts + (shifts[f] + 255) * 256, nb, 1,
                    )
            else:
                for f in range(current, start):
                    _add_frame(
                        hist, stack + f * n_pixels + b0,
                        luts + (shifts[f] + 255) * 256, nb, -1,
                    )
                    _add_frame(
                        hist, stack + (f + k) * n_pixels + b0,
                        luts + (shifts[f + k] + 255) * 256, nb, 1,
                    )
            current = start
            for j in range(nb):
                out[w * n_pixels + b0 + j] = _mode(hist + (j << 8))
        b0 += block
