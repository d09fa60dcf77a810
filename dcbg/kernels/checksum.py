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
def _fletcher32(data):
    n_bytes = data.size
    remaining = n_bytes // 2
    sum1 = np.uint32(0)
    sum2 = np.uint32(0)
    pos = 0
    while remaining > 0:
        count = min(remaining, _BLOCK_WORDS)
        remaining -= count
        for _ in range(count):
            sum1 += (np.uint32(data[pos]) << np.uint32(8)) | np.uint32(data[pos + 1])
            sum2 += sum1
            pos += 2
        sum1 = (sum1 & np.uint32(0xFFFF)) + (sum1 >> np.uint32(16))
        sum2 = (sum2 & np.uint32(0xFFFF)) + (sum2 >> np.uint32(16))
    if n_bytes % 2:
        sum1 += np.uint32(data[n_bytes - 1]) << np.uint32(8)
        sum2 += sum1
        sum1 = (sum1 & np.uint32(0xFFFF)) + (sum1 >> np.uint32(16))
        sum2 = (sum2 & np.uint32(0xFFFF)) + (sum2 >> np.uint32(16))
    sum1 = (sum1 & np.uint32(0xFFFF)) + (sum1 >> np.uint32(16))
    sum2 = (sum2 & np.uint32(0xFFFF)) + (sum2 >> np.uint32(16))
    return (sum2 << np.uint32(16)) | sum1


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
    return int(_fletcher32(buffer))
