# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Compiled core of :mod:`dcbg.kernels.rolling_median`

Two trackers of the rank value per pixel, both exact:

- a band of counts around the rank value (``band_rank.h``, C): updated
  with compares for a block of pixels at once, which the compiler
  vectorises; about 3x faster than the histogram on noisy images. Needs
  ``k <= 255`` (uint8 counts).
- a 256-bin histogram per pixel (below): O(1) per pixel and frame for any
  data and any ``k``. It takes over where the band tracker would have to
  count windows again too often (fast drifts, random data).

See the module docstring of :mod:`dcbg.kernels.rolling_median` for the
algorithm. The public, checked entry points live there; this core trusts
its arguments apart from a few O(1) sanity checks that keep a misuse from
writing out of bounds.
"""

from libc.stdint cimport INT32_MAX, int32_t, uint8_t
from libc.stdlib cimport free, malloc
from ._histogram cimport count_frames


cdef extern from "band_rank.h" nogil:
    enum:
        BAND_PIXELS
        BAND_MAX_K
    ctypedef struct band_state:
        pass
    Py_ssize_t band_rolling_rank(
        band_state* state,
        const uint8_t* stack,
        Py_ssize_t n_frames,
        Py_ssize_t n_pixels,
        Py_ssize_t k,
        Py_ssize_t rank,
        uint8_t* out,
        Py_ssize_t pix_start,
        Py_ssize_t nb,
    )


#: Number of pixels whose histograms are updated together while iterating
#: over the frames (histogram tracker); each block reads a contiguous run
#: of ``BLOCK_SIZE`` bytes per frame and owns ``BLOCK_SIZE * 1 KiB`` of
#: histograms, which stay in L2 cache. Measured with this kernel (AMD EPYC,
#: 1 MiB L2/core, a shared 2-core VM, best of 15; 600 noisy 80x320 frames,
#: k=100, one thread): 64 -> 334, 128 -> 351, 256 -> 443, 512 -> 455,
#: 1024 -> 452, 2048 -> 345 million pixel-frames/s.
cdef enum:
    _BLOCK_SIZE = 1024

BLOCK_SIZE = _BLOCK_SIZE
#: pixels per block of the band tracker
BAND_BLOCK_SIZE = BAND_PIXELS
#: largest kernel size handled by the band tracker
BAND_MAX_KERNEL_SIZE = BAND_MAX_K


def rolling_median_core(
    const uint8_t[:, ::1] stack,
    Py_ssize_t k,
    Py_ssize_t rank,
    uint8_t[:, ::1] out,
    Py_ssize_t pix_start,
    Py_ssize_t pix_stop,
    bint use_band=True,
):
    """Rolling rank filter for the pixels ``pix_start:pix_stop``

    Parameters
    ----------
    stack: 2-D uint8 array (n_frames, n_pixels), C-contiguous
        may be read-only
    k: int
        window size, 1 <= k <= n_frames
    rank: int
        sorted position to report, 0 <= rank < k
    out: 2-D uint8 array (n_frames - k + 1, n_pixels), C-contiguous
        only the columns ``pix_start:pix_stop`` are written
    pix_start, pix_stop: int
        pixel (column) range to process
    use_band: bool
        use the band tracker where it applies (``k <= 255``); False runs
        the histogram tracker only (for tests and benchmarks)

    Returns
    -------
    handed_over: int
        number of pixel blocks the band tracker handed over to the
        histogram tracker before the last frame (0 when it was not used)

    The GIL is released for the whole computation.
    """
    cdef Py_ssize_t n_frames = stack.shape[0]
    cdef Py_ssize_t n_pixels = stack.shape[1]
    if not 1 <= k <= n_frames:
        raise ValueError(f"k must satisfy 1 <= k <= {n_frames}, got {k}")
    if k > INT32_MAX:
        raise ValueError(f"k must be at most {INT32_MAX} (int32 counts), got {k}")
    if not 0 <= rank < k:
        raise ValueError(f"rank must satisfy 0 <= rank < {k}, got {rank}")
    if out.shape[0] != n_frames - k + 1 or out.shape[1] != n_pixels:
        raise ValueError(
            f"out must have shape ({n_frames - k + 1}, {n_pixels}), "
            f"got ({out.shape[0]}, {out.shape[1]})"
        )
    if not 0 <= pix_start <= pix_stop <= n_pixels:
        raise ValueError(
            f"pixel range must satisfy 0 <= start <= stop <= {n_pixels}, "
            f"got ({pix_start}, {pix_stop})"
        )
    if pix_stop == pix_start:
        return 0
    cdef Py_ssize_t block = min(<Py_ssize_t>_BLOCK_SIZE, pix_stop - pix_start)
    # int32 counts: uint16 was not measurably faster and would limit k.
    cdef int32_t* hist = <int32_t*>malloc(block * 256 * sizeof(int32_t))
    # Rank value and number of window elements strictly below it, per pixel.
    cdef Py_ssize_t* state = <Py_ssize_t*>malloc(2 * block * sizeof(Py_ssize_t))
    cdef band_state* band = NULL
    cdef bint banded = use_band and k <= BAND_MAX_K
    if banded:
        band = <band_state*>malloc(sizeof(band_state))
    if hist == NULL or state == NULL or (banded and band == NULL):
        free(hist)
        free(state)
        free(band)
        raise MemoryError()
    cdef Py_ssize_t n_out = n_frames - k + 1
    cdef Py_ssize_t b0, nb, done
    cdef Py_ssize_t handed_over = 0
    with nogil:
        if banded:
            b0 = pix_start
            while b0 < pix_stop:
                nb = min(<Py_ssize_t>BAND_PIXELS, pix_stop - b0)
                done = band_rolling_rank(
                    band, &stack[0, 0], n_frames, n_pixels, k, rank, &out[0, 0], b0, nb
                )
                if done < n_out:
                    handed_over += 1
                    _rolling_median(
                        &stack[0, 0] + done * n_pixels, n_frames - done, n_pixels,
                        k, rank, &out[0, 0] + done * n_pixels, b0, b0 + nb,
                        block, hist, state, state + block,
                    )
                b0 += nb
        else:
            _rolling_median(
                &stack[0, 0], n_frames, n_pixels, k, rank, &out[0, 0],
                pix_start, pix_stop, block, hist, state, state + block,
            )
    free(hist)
    free(state)
    free(band)
    return handed_over


cdef void _rolling_median(
    const uint8_t* stack,
    Py_ssize_t n_frames,
    Py_ssize_t n_pixels,
    Py_ssize_t k,
    Py_ssize_t rank,
    uint8_t* out,
    Py_ssize_t pix_start,
    Py_ssize_t pix_stop,
    Py_ssize_t block,
    int32_t* hist,
    Py_ssize_t* med,
    Py_ssize_t* below,
) noexcept nogil:
    cdef Py_ssize_t n_out = n_frames - k + 1
    cdef Py_ssize_t b0, nb, i, j, m, c, v_in, v_out
    cdef const uint8_t* row_in
    cdef const uint8_t* row_out
    cdef uint8_t* orow
    cdef int32_t* h
    b0 = pix_start
    while b0 < pix_stop:
        nb = min(block, pix_stop - b0)
        count_frames(hist, stack, n_pixels, b0, nb, k)
        orow = out + b0
        for j in range(nb):
            h = hist + (j << 8)
            m = 0
            c = 0
            while c + h[m] <= rank:
                c += h[m]
                m += 1
            med[j] = m
            below[j] = c
            orow[j] = <uint8_t>m
        for i in range(1, n_out):
            # Plain pointers into the rows and histograms (no memoryview
            # slicing in the hot loop); all indices and the rank state are
            # pointer-sized, so the compiler needs no sign extensions.
            row_in = stack + (i + k - 1) * n_pixels + b0
            row_out = stack + (i - 1) * n_pixels + b0
            orow = out + i * n_pixels + b0
            h = hist
            for j in range(nb):
                v_in = row_in[j]
                v_out = row_out[j]
                m = med[j]
                c = below[j]
                h[v_in] += 1
                h[v_out] -= 1
                c += (v_in < m) - (v_out < m)
                # Restore below <= rank < below + hist[m]. A histogram that
                # is never empty guarantees both loops stop inside [0, 255].
                # After moving down the bracket holds, so the upward loop is
                # only needed otherwise (if/else: ~2 % faster with gcc).
                if c > rank:
                    while c > rank:
                        m -= 1
                        c -= h[m]
                else:
                    while c + h[m] <= rank:
                        c += h[m]
                        m += 1
                med[j] = m
                below[j] = c
                orow[j] = <uint8_t>m
                h += 256
        b0 += block
