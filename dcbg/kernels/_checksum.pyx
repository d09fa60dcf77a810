# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Compiled core of :mod:`dcbg.kernels.checksum` (HDF5's Fletcher-32)"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t

#: HDF5 folds the running sums every 360 16-bit words so they never overflow
cdef enum:
    _BLOCK_WORDS = 360


def fletcher32_core(const uint8_t[::1] data):
    """HDF5's Fletcher-32 checksum of the bytes `data` (may be read-only)

    The GIL is released during the computation.
    """
    cdef Py_ssize_t n_bytes = data.shape[0]
    cdef uint64_t result
    if n_bytes == 0:
        return 0
    with nogil:
        result = _fletcher32(&data[0], n_bytes)
    return result


cdef uint64_t _fletcher32(const uint8_t* data, Py_ssize_t n_bytes) noexcept nogil:
    cdef Py_ssize_t n_words = n_bytes // 2
    cdef Py_ssize_t start, count, i
    cdef uint64_t sum1 = 0
    cdef uint64_t sum2 = 0
    cdef uint32_t plain, weighted, word
    cdef const uint8_t* p
    start = 0
    while start < n_words:
        count = min(n_words - start, <Py_ssize_t>_BLOCK_WORDS)
        p = data + 2 * start
        # HDF5 adds word by word: sum1 += w; sum2 += sum1. Over one block
        # that is sum1 += sum(w) and sum2 += count * sum1 + sum((count-i) w_i):
        # independent sums that the compiler vectorises. HDF5's uint32 sums
        # never overflow within a block, so wider integers give its values.
        plain = 0
        weighted = 0
        for i in range(count):
            # HDF5 reads big-endian words: high byte first, on any host
            word = (<uint32_t>p[2 * i] << 8) | p[2 * i + 1]
            plain += word
            weighted += <uint32_t>(count - i) * word
        sum2 += <uint64_t>count * sum1 + weighted
        sum1 += plain
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
        start += _BLOCK_WORDS
    if n_bytes % 2:
        sum1 += <uint64_t>data[n_bytes - 1] << 8
        sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    # both sums are below 2**16 after the folds, as in HDF5
    return (sum2 << 16) | sum1
