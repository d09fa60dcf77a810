"""HDF5's Fletcher-32 checksum, compiled

HDF5 appends this checksum to every chunk of a dataset created with
``fletcher32=True`` (as all .rtdc writers do). Computing it ourselves lets
worker threads encode and verify chunks outside HDF5's global lock.
"""

import numba
import numpy as np

#: HDF5 folds the running sums every 360 16-bit words so they never overflow
_BLOCK_WORDS = 360


@numba.njit(nogil=True, cache=True)
def _fletcher32(words, n_bytes, last_byte):
    n_words = words.size
    sum1 = np.uint64(0)
    sum2 = np.uint64(0)
    mask = np.uint64(0xFFFF)
    shift = np.uint64(16)
    for start in range(0, n_words, _BLOCK_WORDS):
        count = min(n_words - start, _BLOCK_WORDS)
        # HDF5 adds word by word: sum1 += w; sum2 += sum1. Over one block
        # that is sum1 += sum(w) and sum2 += count * sum1 + sum((count-i) w_i):
        # independent sums that the compiler vectorises. HDF5's uint32 sums
        # never overflow within a block, so wider integers give its values.
        plain = np.uint32(0)
        weighted = np.uint32(0)
        for i in range(count):
            raw = np.uint32(words[start + i])
            # HDF5 reads big-endian words; `words` holds native little-endian
            word = ((raw & np.uint32(0xFF)) << np.uint32(8)) | (raw >> np.uint32(8))
            plain += word
            weighted += np.uint32(count - i) * word
        sum2 += np.uint64(count) * sum1 + np.uint64(weighted)
        sum1 += np.uint64(plain)
        sum1 = (sum1 & mask) + (sum1 >> shift)
        sum2 = (sum2 & mask) + (sum2 >> shift)
    if n_bytes % 2:
        sum1 += np.uint64(last_byte) << np.uint64(8)
        sum2 += sum1
        sum1 = (sum1 & mask) + (sum1 >> shift)
        sum2 = (sum2 & mask) + (sum2 >> shift)
    sum1 = (sum1 & mask) + (sum1 >> shift)
    sum2 = (sum2 & mask) + (sum2 >> shift)
    return (sum2 << shift) | sum1


def fletcher32(data) -> int:
    """HDF5's Fletcher-32 checksum of a byte buffer

    Parameters
    ----------
    data: bytes, bytearray, memoryview or numpy.ndarray
        The bytes to check (any array is taken by its raw bytes)

    Returns
    -------
    checksum: int
        32-bit checksum as HDF5 computes it (``H5_checksum_fletcher32``);
        HDF5 stores it little-endian after the chunk data.
    """
    buffer = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    n_bytes = buffer.size
    words = buffer[: n_bytes - n_bytes % 2].view("<u2")
    last_byte = int(buffer[-1]) if n_bytes % 2 else 0
    return int(_fletcher32(words, n_bytes, last_byte))
