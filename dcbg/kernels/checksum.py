"""HDF5's Fletcher-32 checksum, compiled (Cython, ``_checksum.pyx``)

HDF5 appends this checksum to every chunk of a dataset created with
``fletcher32=True`` (as all .rtdc writers do). Computing it ourselves lets
worker threads encode and verify chunks outside HDF5's global lock.
"""

from ._checksum import fletcher32_core as _fletcher32


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
    # C-contiguous bytes of any buffer (also read-only ones); the compiled
    # core releases the GIL
    return _fletcher32(memoryview(data).cast("B"))
