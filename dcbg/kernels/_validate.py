"""Argument checks and work splitting shared by the median kernels

Every check raises ValueError with a message that names the parameter,
the offending value and what was expected.
"""

import operator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Pixel ranges handed to different threads start at multiples of this, so
#: that two threads never write to the same cache line of the output.
_ALIGN = 64


def as_int(value, name):
    """Return `value` as a Python int (numpy integers included)"""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def check_stack(stack, name="stack"):
    """Return a C-contiguous 2-D (n_frames, n_pixels) uint8 view of `stack`

    3-D stacks (n_frames, height, width) are flattened per frame; a
    non-C-contiguous stack is copied. Returns the 2-D array and the shape
    of one frame (``stack.shape[1:]``).
    """
    arr = np.asarray(stack)
    check_uint8(arr, name)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be 2-D (n_frames, n_pixels) or 3-D "
            f"(n_frames, height, width), got {arr.ndim}-D array of shape "
            f"{arr.shape}"
        )
    frame_shape = arr.shape[1:]
    n_pixels = int(np.prod(frame_shape))
    arr2d = np.ascontiguousarray(arr).reshape(arr.shape[0], n_pixels)
    return arr2d, frame_shape


def check_stack_2d(stack, name="stack"):
    """Raise ValueError unless `stack` is a C-contiguous 2-D uint8 array

    Used by the ``*_pixels`` entry points, which must not copy silently.
    """
    if not isinstance(stack, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(stack).__name__}")
    check_uint8(stack, name)
    if stack.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_frames, n_pixels), got {stack.ndim}-D "
            f"array of shape {stack.shape}"
        )
    if not stack.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")


def check_uint8(arr, name):
    if arr.dtype != np.uint8:
        raise ValueError(
            f"{name} must have dtype uint8, got {arr.dtype}; convert it "
            f"first, e.g. with np.asarray({name}, dtype=np.uint8)"
        )


def check_kernel_size(kernel_size, n_frames):
    """Return `kernel_size` as int if ``1 <= kernel_size <= n_frames``"""
    k = as_int(kernel_size, "kernel_size")
    if k < 1:
        raise ValueError(f"kernel_size must be >= 1, got {k}")
    if k > n_frames:
        raise ValueError(
            f"kernel_size must not exceed the number of frames in stack "
            f"({n_frames}), got {k}"
        )
    return k


def check_rank(rank, k):
    """Return `rank` as int if ``0 <= rank < k``"""
    value = as_int(rank, "rank")
    if not 0 <= value < k:
        raise ValueError(
            f"rank must satisfy 0 <= rank < {k} (the number of frames in "
            f"stack), got {value}"
        )
    return value


def check_out(out, shape, stack2d, name="out"):
    """Raise ValueError unless `out` can receive a result of `shape`"""
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if np.may_share_memory(out, stack2d):
        raise ValueError(f"{name} must not share memory with stack")


def check_num_threads(num_threads):
    """Return `num_threads` as int if it is >= 1"""
    value = as_int(num_threads, "num_threads")
    if value < 1:
        raise ValueError(f"num_threads must be >= 1, got {value}")
    return value


def check_pixels(pixels, n_pixels):
    """Return ``(start, stop)`` of a pixel range given as slice or pair

    `pixels` is a ``slice`` with step 1 (or None) or a ``(start, stop)``
    pair; None selects all pixels. Negative indices count from the end
    and the range is clipped to ``[0, n_pixels]`` like a slice.
    """
    if pixels is None:
        return 0, n_pixels
    if not isinstance(pixels, slice):
        try:
            start, stop = pixels
        except (TypeError, ValueError):
            raise ValueError(
                f"pixels must be a slice or a (start, stop) pair, got {pixels!r}"
            ) from None
        pixels = slice(as_int(start, "pixels start"), as_int(stop, "pixels stop"))
    start, stop, step = pixels.indices(n_pixels)
    if step != 1:
        raise ValueError(f"pixels must be a slice with step 1, got {pixels!r}")
    return start, max(start, stop)


def pixel_ranges(n_pixels, num_threads):
    """Split ``range(n_pixels)`` into at most `num_threads` contiguous parts

    Boundaries are multiples of 64 pixels; fewer parts are returned when
    there are not enough pixels to give every thread at least 64.
    """
    n_chunks = -(-n_pixels // _ALIGN)
    parts = max(1, min(num_threads, n_chunks))
    bounds = [(n_chunks * t // parts) * _ALIGN for t in range(parts)]
    bounds.append(n_pixels)
    return [(bounds[t], bounds[t + 1]) for t in range(parts)]


def run_threaded(core, args, n_pixels, num_threads):
    """Call ``core(*args, start, stop)`` for pixel ranges on `num_threads`

    The compiled cores release the GIL, so plain threads run them in
    parallel (no processes: no ``__main__`` guard needed, works in Jupyter).
    """
    ranges = pixel_ranges(n_pixels, num_threads)
    if len(ranges) == 1:
        core(*args, 0, n_pixels)
        return
    with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
        futures = [pool.submit(core, *args, a, b) for a, b in ranges]
        for fut in futures:
            fut.result()
