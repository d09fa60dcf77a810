"""Kernels checked against the slow, obviously correct references

Every kernel registered in ``dcbg.kernels.__all__`` is compared with its
reference of the same name in :mod:`dcbg.kernels.slow`
(:func:`test_kernel_equals_its_reference`); the other tests cover the
trackers inside the rolling median, edge cases and argument checks.
"""

import importlib
import inspect
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dcbg.kernels
from dcbg.kernels import (
    rolling_median,
    rolling_median_pixels,
    slow,
    window_median,
    window_median_pixels,
)

# The package attributes shadow the submodules of the same name.
rm_module = importlib.import_module("dcbg.kernels.rolling_median")
wm_module = importlib.import_module("dcbg.kernels.window_median")
#: compiled core: (stack, k, rank, out, pix_start, pix_stop, use_band)
rm_core = rm_module._rolling_median_core


def make_stack(kind, shape, seed):
    """Random uint8 stack of a given flavour"""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "extremes":
        return rng.choice(np.array([0, 255], dtype=np.uint8), size=shape)
    if kind == "few_values":
        values = rng.integers(0, 256, 3, dtype=np.uint8)
        return rng.choice(values, size=shape)
    if kind == "constant":
        return np.full(shape, rng.integers(0, 256), dtype=np.uint8)
    if kind == "drift":
        # noisy pixels whose level drifts up or down by up to 2 per frame,
        # so that the rank value keeps leaving the band of counts
        slope = rng.uniform(-2, 2)
        start = 128 - slope * shape[0] / 2
        level = start + slope * np.arange(shape[0]).reshape(-1, *[1] * (len(shape) - 1))
        data = level + rng.integers(-60, 60, shape[1:]) + rng.normal(0, 3, shape)
        return np.clip(data, 0, 255).astype(np.uint8)
    if kind == "background":
        # realistic: noise around a static image, occasional dark "cells"
        bg = rng.integers(40, 220, shape[1:])
        data = bg + rng.normal(0, 4, shape)
        data[rng.random(shape) < 0.05] -= 60
        return np.clip(data, 0, 255).astype(np.uint8)
    raise ValueError(kind)


KINDS = ["uniform", "extremes", "few_values", "constant", "background", "drift"]


@st.composite
def rolling_cases(draw, max_k=300, max_pixels=300):
    k = draw(st.one_of(st.integers(1, 4), st.integers(1, max_k)))
    n_frames = draw(st.integers(k, k + draw(st.sampled_from([0, 3, 40, 200]))))
    n_pixels = draw(st.integers(1, max_pixels))
    kind = draw(st.sampled_from(KINDS))
    seed = draw(st.integers(0, 2**32 - 1))
    return make_stack(kind, (n_frames, n_pixels), seed), k


# --- every registered kernel against its reference ---------------------------


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def _pixel_range(draw, n_pixels):
    start = draw(st.integers(0, n_pixels))
    stop = draw(st.integers(start, n_pixels))
    return draw(st.sampled_from([slice(start, stop), (start, stop), None]))


@st.composite
def _window_cases(draw, max_k=300, max_pixels=300):
    k = draw(st.one_of(st.integers(1, 4), st.integers(1, max_k)))
    n_pixels = draw(st.integers(1, max_pixels))
    kind = draw(st.sampled_from(KINDS))
    stack = make_stack(kind, (k, n_pixels), draw(st.integers(0, 2**32 - 1)))
    rank = draw(st.one_of(st.none(), st.integers(0, k - 1)))
    return stack, rank


@st.composite
def _rolling_median_call(draw):
    stack, k = draw(rolling_cases(max_k=80, max_pixels=200))
    return (stack, k), {"num_threads": draw(st.integers(1, 3))}


@st.composite
def _rolling_median_pixels_call(draw):
    stack, k = draw(rolling_cases(max_k=80, max_pixels=200))
    # a marker value shows whether columns outside the range are left alone
    out = np.full((stack.shape[0] - k + 1, stack.shape[1]), 77, dtype=np.uint8)
    return (stack, k, out, _pixel_range(draw, stack.shape[1])), {}


@st.composite
def _window_median_call(draw):
    stack, rank = draw(_window_cases())
    return (stack, rank), {"num_threads": draw(st.integers(1, 3))}


@st.composite
def _window_median_pixels_call(draw):
    stack, rank = draw(_window_cases())
    out = np.full(stack.shape[1], 77, dtype=np.uint8)
    return (stack, rank, out, _pixel_range(draw, stack.shape[1])), {}


@st.composite
def _window_modes_case(draw, max_k=40, max_pixels=40):
    """A small stack, window size, sorted window starts and frame shifts"""
    k = draw(st.one_of(st.integers(1, 4), st.integers(1, max_k)))
    n_frames = draw(st.integers(k, k + draw(st.sampled_from([0, 3, 30]))))
    n_pixels = draw(st.integers(1, max_pixels))
    kind = draw(st.sampled_from(KINDS))
    stack = make_stack(kind, (n_frames, n_pixels), draw(st.integers(0, 2**32 - 1)))
    starts = sorted(
        draw(st.lists(st.integers(0, n_frames - k), min_size=0, max_size=5))
    )
    shifts = draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(-255, 255), min_size=n_frames, max_size=n_frames).map(
                np.array
            ),
            st.lists(st.integers(-3, 3), min_size=n_frames, max_size=n_frames).map(
                np.array
            ),
        )
    )
    return stack, k, starts, shifts


@st.composite
def _window_modes_call(draw):
    stack, k, starts, shifts = draw(_window_modes_case())
    return (stack, k, starts, shifts), {"num_threads": draw(st.integers(1, 3))}


@st.composite
def _window_modes_pixels_call(draw):
    stack, k, starts, shifts = draw(_window_modes_case())
    out = np.full((len(starts), stack.shape[1]), 77, dtype=np.uint8)
    return (stack, k, starts, shifts, out, _pixel_range(draw, stack.shape[1])), {}


#: example arguments (args, kwargs) of every kernel in ``dcbg.kernels.__all__``
KERNEL_CALLS = {
    "fletcher32": st.binary(max_size=3000).map(lambda data: ((data,), {})),
    "rolling_median": _rolling_median_call(),
    "rolling_median_pixels": _rolling_median_pixels_call(),
    "window_median": _window_median_call(),
    "window_median_pixels": _window_median_pixels_call(),
    "window_modes": _window_modes_call(),
    "window_modes_pixels": _window_modes_pixels_call(),
}


def test_every_kernel_has_a_reference_and_example_arguments():
    assert sorted(KERNEL_CALLS) == sorted(dcbg.kernels.__all__)
    for name in dcbg.kernels.__all__:
        fast = inspect.signature(getattr(dcbg.kernels, name)).parameters
        ref = inspect.signature(getattr(slow, name)).parameters
        assert list(fast.values()) == list(ref.values()), name


@pytest.mark.parametrize("name", dcbg.kernels.__all__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_kernel_equals_its_reference(name, data):
    args, kwargs = data.draw(KERNEL_CALLS[name], label="arguments")
    expected = getattr(slow, name)(*map(_copy, args), **kwargs)
    result = getattr(dcbg.kernels, name)(*args, **kwargs)
    np.testing.assert_array_equal(result, expected)


# --- rolling_median ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(case=rolling_cases())
def test_rolling_median_matches_reference(case):
    stack, k = case
    np.testing.assert_array_equal(
        rolling_median(stack, k), slow.rolling_median(stack, k)
    )


@settings(max_examples=100, deadline=None)
@given(
    stack=hnp.arrays(
        np.uint8,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=30),
        elements=st.integers(0, 255),
    ),
    data=st.data(),
)
def test_rolling_median_small_arrays(stack, data):
    """Fully hypothesis-generated (shrinkable) small stacks"""
    k = data.draw(st.integers(1, stack.shape[0]))
    np.testing.assert_array_equal(
        rolling_median(stack, k), slow.rolling_median(stack, k)
    )


@pytest.mark.parametrize(
    "k, extra_frames",
    [(1, 5), (2, 20), (99, 4), (100, 4), (300, 2)],
)
def test_rolling_median_large_frame(k, extra_frames):
    """100 x 800 pixel frames, several blocks and a partial last block"""
    stack = make_stack("background", (k + extra_frames, 100 * 800), seed=k)
    expected = slow.rolling_median(stack, k)
    np.testing.assert_array_equal(rolling_median(stack, k), expected)
    np.testing.assert_array_equal(rolling_median(stack, k, num_threads=2), expected)


def test_rolling_median_single_pixel_long_series():
    stack = make_stack("uniform", (3000, 1), seed=3)
    for k in (1, 2, 57, 256, 2999, 3000):
        np.testing.assert_array_equal(
            rolling_median(stack, k), slow.rolling_median(stack, k)
        )


def test_rolling_median_huge_kernel():
    """Counts beyond the uint16 range must not overflow"""
    k = 70_000
    stack = make_stack("extremes", (k + 3, 2), seed=4)
    np.testing.assert_array_equal(
        rolling_median(stack, k), slow.rolling_median(stack, k)
    )


# --- the band and histogram trackers of the rank value ----------------------


def zigzag_stack(n_frames, n_pixels, seed, low=20, high=235):
    """Levels that sweep low -> high -> low with noise: the band moves"""
    rng = np.random.default_rng(seed)
    mid, amplitude = (high + low) / 2, (high - low) / 2
    level = mid - amplitude * np.cos(np.linspace(0, 2 * np.pi, n_frames))
    data = level[:, None] + rng.normal(0, 3, (n_frames, n_pixels))
    return np.clip(data, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "kind", ["background", "drift", "zigzag", "slow_zigzag", "uniform", "extremes"]
)
@pytest.mark.parametrize("k", [1, 2, 51, 100, 255])
def test_band_and_histogram_trackers_agree(kind, k):
    """Both trackers give the reference, for full and partial pixel blocks"""
    n_frames, n_pixels = k + 300, 2 * rm_module.BAND_BLOCK_SIZE + 88
    if kind == "zigzag":
        stack = zigzag_stack(n_frames, n_pixels, seed=k)
    elif kind == "slow_zigzag":
        stack = zigzag_stack(n_frames, n_pixels, seed=k, low=100, high=140)
    else:
        stack = make_stack(kind, (n_frames, n_pixels), seed=k)
    expected = slow.rolling_median(stack, k)
    for use_band in (True, False):
        out = np.zeros_like(expected)
        rm_core(stack, k, k // 2, out, 0, n_pixels, use_band)
        np.testing.assert_array_equal(out, expected)
    # odd pixel range: blocks that do not start at a multiple of 8
    out = np.zeros_like(expected)
    rm_core(stack, k, k // 2, out, 3, n_pixels - 5, True)
    np.testing.assert_array_equal(out[:, 3:-5], expected[:, 3:-5])
    assert not out[:, :3].any() and not out[:, -5:].any()


@pytest.mark.parametrize("rank_of", [lambda k: 0, lambda k: k - 1, lambda k: k // 3])
def test_band_tracker_any_rank(rank_of):
    k = 40
    stack = make_stack("drift", (k + 200, 300), seed=9)
    rank = rank_of(k)
    expected = slow.rolling_rank(stack, k, rank)
    for use_band in (True, False):
        out = np.empty_like(expected)
        rm_core(stack, k, rank, out, 0, 300, use_band)
        np.testing.assert_array_equal(out, expected)


def test_band_tracker_hands_over_random_data():
    """Random data: the histogram tracker takes over every pixel block"""
    k = 100
    n_blocks = 3
    stack = make_stack("uniform", (k + 400, n_blocks * rm_module.BAND_BLOCK_SIZE), 10)
    out = np.empty((401, stack.shape[1]), dtype=np.uint8)
    handed_over = rm_core(stack, k, k // 2, out, 0, stack.shape[1], True)
    assert handed_over == n_blocks
    np.testing.assert_array_equal(out, slow.rolling_median(stack, k))


def test_band_tracker_keeps_noisy_images():
    """Noisy RT-DC-like images stay with the band tracker"""
    k = 100
    stack = make_stack("background", (k + 400, 2 * rm_module.BAND_BLOCK_SIZE), 11)
    out = np.empty((401, stack.shape[1]), dtype=np.uint8)
    assert rm_core(stack, k, k // 2, out, 0, stack.shape[1], True) == 0
    np.testing.assert_array_equal(out, slow.rolling_median(stack, k))


def test_band_tracker_follows_slow_drift():
    """A slowly drifting level leaves the band often but not too often"""
    k = 100
    stack = zigzag_stack(k + 600, rm_module.BAND_BLOCK_SIZE, seed=13, low=90, high=150)
    out = np.empty((601, stack.shape[1]), dtype=np.uint8)
    assert rm_core(stack, k, k // 2, out, 0, stack.shape[1], True) == 0
    assert np.ptp(out) > 50  # the rank values crossed many bands
    np.testing.assert_array_equal(out, slow.rolling_median(stack, k))


def test_band_tracker_limited_to_uint8_counts():
    assert rm_module.BAND_MAX_KERNEL_SIZE == 255
    k = 256  # histogram tracker only
    stack = make_stack("uniform", (k + 20, 300), seed=12)
    out = np.empty((21, 300), dtype=np.uint8)
    assert rm_core(stack, k, k // 2, out, 0, 300, True) == 0
    np.testing.assert_array_equal(out, slow.rolling_median(stack, k))


@pytest.mark.parametrize("value", [0, 1, 128, 254, 255])
@pytest.mark.parametrize("k", [1, 2, 7, 64])
def test_rolling_median_constant(value, k):
    stack = np.full((80, 70), value, dtype=np.uint8)
    result = rolling_median(stack, k)
    assert result.shape == (80 - k + 1, 70)
    assert np.all(result == value)


def test_rolling_median_even_kernel_takes_upper_middle():
    stack = np.array([[0], [10], [20], [30], [200]], dtype=np.uint8)
    np.testing.assert_array_equal(rolling_median(stack, 2)[:, 0], [10, 20, 30, 200])
    np.testing.assert_array_equal(rolling_median(stack, 4)[:, 0], [20, 30])


@pytest.mark.parametrize("k", [2, 4, 10, 50, 100, 150])
def test_rolling_median_equals_scipy_median_filter(k):
    """dcnum's definition: scipy median filter shifted to "valid" windows"""
    stack = make_stack("uniform", (k + 120, 90), seed=k)
    n = stack.shape[0]
    expected = ndi.median_filter(
        stack, size=(k, 1), mode="constant", cval=0, origin=(-k // 2, 0)
    )[: n - k + 1]
    np.testing.assert_array_equal(rolling_median(stack, k), expected)


@settings(max_examples=25, deadline=None)
@given(case=rolling_cases(max_k=120, max_pixels=700), threads=st.integers(2, 5))
def test_rolling_median_threads_identical(case, threads):
    stack, k = case
    np.testing.assert_array_equal(
        rolling_median(stack, k, num_threads=threads),
        rolling_median(stack, k, num_threads=1),
    )


def test_rolling_median_out():
    stack = make_stack("background", (50, 333), seed=5)
    for threads in (1, 2):
        out = np.zeros((41, 333), dtype=np.uint8)
        result = rolling_median(stack, 10, out=out, num_threads=threads)
        assert result is out
        np.testing.assert_array_equal(out, slow.rolling_median(stack, 10))


def test_rolling_median_3d():
    stack = make_stack("background", (30, 8, 13), seed=6)
    out = np.empty((21, 8, 13), dtype=np.uint8)
    result = rolling_median(stack, 10, out=out, num_threads=2)
    assert result is out
    np.testing.assert_array_equal(result, slow.rolling_median(stack, 10))


def test_rolling_median_non_contiguous_input():
    base = make_stack("uniform", (40, 20, 30), seed=7)
    stack = base[:, ::2, 1::3]
    np.testing.assert_array_equal(
        rolling_median(stack, 6), slow.rolling_median(stack, 6)
    )


def test_rolling_median_zero_pixels():
    result = rolling_median(np.zeros((10, 0), dtype=np.uint8), 3)
    assert result.shape == (8, 0)


def test_rolling_median_pixels():
    stack = make_stack("background", (60, 500), seed=8)
    expected = slow.rolling_median(stack, 11)
    out = np.zeros((50, 500), dtype=np.uint8)
    rolling_median_pixels(stack, 11, out, slice(100, 300))
    np.testing.assert_array_equal(out[:, 100:300], expected[:, 100:300])
    assert not out[:, :100].any() and not out[:, 300:].any()
    rolling_median_pixels(stack, 11, out, (0, 100))
    rolling_median_pixels(stack, 11, out, slice(-200, None))
    np.testing.assert_array_equal(out, expected)
    # empty and full ranges
    rolling_median_pixels(stack, 11, out, slice(5, 5))
    out[:] = 0
    assert rolling_median_pixels(stack, 11, out) is out
    np.testing.assert_array_equal(out, expected)


def _stack():
    return np.zeros((10, 6), dtype=np.uint8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kernel_size": 0}, r"kernel_size must be >= 1, got 0"),
        ({"kernel_size": -3}, r"kernel_size must be >= 1, got -3"),
        ({"kernel_size": 11}, r"must not exceed the number of frames .*\(10\), got 11"),
        ({"kernel_size": 2.0}, r"kernel_size must be an integer, got 2.0"),
        ({"kernel_size": True}, r"kernel_size must be an integer"),
        ({"kernel_size": 3, "num_threads": 0}, r"num_threads must be >= 1, got 0"),
        ({"kernel_size": 3, "num_threads": 1.5}, r"num_threads must be an integer"),
        (
            {"kernel_size": 3, "out": np.zeros((8, 6), dtype=np.uint16)},
            r"out must have dtype uint8, got uint16",
        ),
        (
            {"kernel_size": 3, "out": np.zeros((7, 6), dtype=np.uint8)},
            r"out must have shape \(8, 6\), got \(7, 6\)",
        ),
        (
            {"kernel_size": 3, "out": np.zeros((8, 12), dtype=np.uint8)[:, ::2]},
            r"out must be C-contiguous",
        ),
        ({"kernel_size": 3, "out": [[0] * 6] * 8}, r"out must be a numpy.ndarray"),
    ],
)
def test_rolling_median_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rolling_median(_stack(), **kwargs)


@pytest.mark.parametrize(
    "stack, match",
    [
        (
            np.zeros((10, 6), dtype=np.float64),
            r"stack must have dtype uint8, got float64",
        ),
        (
            np.zeros((10, 6), dtype=np.uint16),
            r"stack must have dtype uint8, got uint16",
        ),
        (np.zeros((10, 6), dtype=np.int8), r"stack must have dtype uint8, got int8"),
        (np.zeros(10, dtype=np.uint8), r"stack must be 2-D .* or 3-D .*got 1-D"),
        (np.zeros((10, 2, 3, 4), dtype=np.uint8), r"got 4-D array of shape"),
    ],
)
def test_rolling_median_invalid_stack(stack, match):
    with pytest.raises(ValueError, match=match):
        rolling_median(stack, 3)


def test_rolling_median_invalid_out_memory():
    stack = _stack()
    readonly = np.zeros((8, 6), dtype=np.uint8)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        rolling_median(stack, 3, out=readonly)
    with pytest.raises(ValueError, match="out must not share memory with stack"):
        rolling_median(stack, 3, out=stack[2:])


def test_rolling_median_pixels_invalid_arguments():
    stack = _stack()
    out = np.zeros((8, 6), dtype=np.uint8)
    with pytest.raises(ValueError, match="pixels must be a slice with step 1"):
        rolling_median_pixels(stack, 3, out, slice(0, 6, 2))
    with pytest.raises(ValueError, match="pixels must be a slice or a"):
        rolling_median_pixels(stack, 3, out, 3)
    with pytest.raises(ValueError, match="stack must be C-contiguous"):
        rolling_median_pixels(np.zeros((10, 12), np.uint8)[:, ::2], 3, out)
    with pytest.raises(ValueError, match="stack must be 2-D"):
        rolling_median_pixels(np.zeros((10, 2, 3), np.uint8), 3, out)
    with pytest.raises(ValueError, match="stack must be a numpy.ndarray"):
        rolling_median_pixels(stack.tolist(), 3, out)
    with pytest.raises(ValueError, match=r"out must have shape \(9, 6\)"):
        rolling_median_pixels(stack, 2, out)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        rolling_median_pixels(stack, 0, out)


# --- window_median ----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    k=st.one_of(st.integers(1, 4), st.integers(1, 400)),
    n_pixels=st.integers(1, 700),
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_window_median_matches_reference(k, n_pixels, kind, seed, data):
    stack = make_stack(kind, (k, n_pixels), seed)
    rank = data.draw(st.one_of(st.none(), st.integers(0, k - 1)))
    expected = slow.window_median(stack, k // 2 if rank is None else rank)
    np.testing.assert_array_equal(window_median(stack, rank), expected)
    np.testing.assert_array_equal(window_median(stack, rank, num_threads=2), expected)


@settings(max_examples=100, deadline=None)
@given(
    stack=hnp.arrays(
        np.uint8,
        hnp.array_shapes(min_dims=2, max_dims=3, max_side=20),
        elements=st.integers(0, 255),
    ),
)
def test_window_median_small_arrays(stack):
    k = stack.shape[0]
    np.testing.assert_array_equal(
        window_median(stack), slow.window_median(stack, k // 2)
    )


@pytest.mark.parametrize("k", [1, 2, 3, 200, 201])
def test_window_median_large_frame(k):
    stack = make_stack("background", (k, 100, 800), seed=k)
    expected = slow.window_median(stack, k // 2)
    np.testing.assert_array_equal(window_median(stack), expected)
    out = np.empty((100, 800), dtype=np.uint8)
    assert window_median(stack, out=out, num_threads=2) is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("value", [0, 255])
def test_window_median_extremes(value):
    stack = np.full((17, 300), value, dtype=np.uint8)
    for rank in (0, 8, 16):
        assert np.all(window_median(stack, rank) == value)
    stack[:9] = 255 - value
    assert np.all(window_median(stack, 0) == min(value, 255 - value))
    assert np.all(window_median(stack, 16) == max(value, 255 - value))
    assert np.all(window_median(stack) == 255 - value)


def test_window_median_huge_kernel():
    stack = make_stack("extremes", (70_001, 3), seed=9)
    for rank in (0, 35_000, 70_000):
        np.testing.assert_array_equal(
            window_median(stack, rank), slow.window_median(stack, rank)
        )


def test_window_median_pixels():
    stack = make_stack("background", (31, 400), seed=10)
    expected = slow.window_median(stack, 15)
    out = np.zeros(400, dtype=np.uint8)
    window_median_pixels(stack, 15, out, slice(50, 120))
    np.testing.assert_array_equal(out[50:120], expected[50:120])
    assert not out[:50].any() and not out[120:].any()
    window_median_pixels(stack, None, out, (0, 50))
    window_median_pixels(stack, 15, out, slice(120, None))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((np.zeros((0, 6), np.uint8),), {}, "stack must contain at least one frame"),
        (
            (np.zeros((5, 6), np.float32),),
            {},
            "stack must have dtype uint8, got float32",
        ),
        ((np.zeros(5, np.uint8),), {}, "stack must be 2-D .* or 3-D"),
        ((np.zeros((5, 6), np.uint8), 5), {}, r"0 <= rank < 5 .*got 5"),
        ((np.zeros((5, 6), np.uint8), -1), {}, r"0 <= rank < 5 .*got -1"),
        ((np.zeros((5, 6), np.uint8), 1.0), {}, "rank must be an integer, got 1.0"),
        ((np.zeros((5, 6), np.uint8),), {"num_threads": 0}, "num_threads must be >= 1"),
        (
            (np.zeros((5, 6), np.uint8),),
            {"out": np.zeros(7, np.uint8)},
            r"out must have shape \(6,\), got \(7,\)",
        ),
        (
            (np.zeros((5, 2, 3), np.uint8),),
            {"out": np.zeros(6, np.uint8)},
            r"out must have shape \(2, 3\), got \(6,\)",
        ),
        (
            (np.zeros((5, 6), np.uint8),),
            {"out": np.zeros(6, np.int16)},
            "out must have dtype uint8, got int16",
        ),
    ],
)
def test_window_median_invalid_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        window_median(*args, **kwargs)


def test_window_median_pixels_invalid_arguments():
    stack = np.zeros((5, 6), np.uint8)
    out = np.zeros(6, np.uint8)
    with pytest.raises(ValueError, match="pixels must be a slice with step 1"):
        window_median_pixels(stack, 2, out, slice(None, None, -1))
    with pytest.raises(ValueError, match="stack must be C-contiguous"):
        window_median_pixels(np.zeros((5, 12), np.uint8)[:, ::2], 2, out)
    with pytest.raises(ValueError, match=r"0 <= rank < 5"):
        window_median_pixels(stack, 7, out)
    with pytest.raises(ValueError, match=r"out must have shape \(6,\)"):
        window_median_pixels(stack, 2, out[:5])


# --- compilation ---------------------------------------------------------------


def _longest_main_thread_stall(func):
    """Run `func` in a thread; return (its duration, longest main-thread gap)

    While a compiled core holds the GIL the main thread cannot wake up from
    its short sleeps, so the longest gap between its ticks is about the
    duration of the call; with the GIL released it stays at a few ms.
    """
    duration = []

    def target():
        t0 = time.perf_counter()
        func()
        duration.append(time.perf_counter() - t0)

    thread = threading.Thread(target=target)
    ticks = [time.perf_counter()]
    thread.start()
    while thread.is_alive():
        time.sleep(0.001)
        ticks.append(time.perf_counter())
    thread.join()
    return duration[0], max(np.diff(ticks))


@pytest.mark.parametrize("kernel", ["rolling_median", "window_median"])
def test_kernels_release_gil(kernel):
    rng = np.random.default_rng(7)
    if kernel == "rolling_median":
        stack = rng.integers(90, 110, size=(600, 64_000), dtype=np.uint8)
        out = np.empty((600 - 50 + 1, 64_000), dtype=np.uint8)

        def func():
            rolling_median_pixels(stack, 50, out)
    else:
        stack = rng.integers(0, 256, size=(200, 400_000), dtype=np.uint8)
        out = np.empty(400_000, dtype=np.uint8)

        def func():
            window_median_pixels(stack, None, out)

    func()  # warm up (page faults)
    duration, stall = _longest_main_thread_stall(func)
    assert duration > 0.03, "call too short to tell"
    assert stall < 0.5 * duration, (duration, stall)


def test_import_does_not_compile():
    # The cores are ahead-of-time compiled extension modules: nothing is
    # JIT-compiled at import or first call, and numba is not imported.
    code = (
        "import importlib.machinery, sys, dcbg, dcbg.kernels\n"
        "import dcbg.kernels.checksum\n"
        "assert 'numba' not in sys.modules\n"
        "suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)\n"
        "for name in ('rolling_median', 'window_median', 'checksum'):\n"
        "    mod = sys.modules['dcbg.kernels._' + name]\n"
        "    assert mod.__file__.endswith(suffixes), mod.__file__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kernels_accept_read_only_input():
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 256, size=(30, 4, 5), dtype=np.uint8)
    stack.flags.writeable = False
    expected = slow.rolling_median(stack, 7)
    np.testing.assert_array_equal(rolling_median(stack, 7), expected)
    flat = stack.reshape(30, 20)
    out = np.empty((24, 20), dtype=np.uint8)
    rolling_median_pixels(flat, 7, out)
    np.testing.assert_array_equal(out.reshape(expected.shape), expected)
    expected = slow.window_median(stack, 11).reshape(4, 5)
    np.testing.assert_array_equal(window_median(stack, 11), expected)
    out = np.empty(20, dtype=np.uint8)
    window_median_pixels(flat, 11, out)
    np.testing.assert_array_equal(out.reshape(4, 5), expected)


def test_cores_reject_inconsistent_arguments():
    # The private cores skip the full checks but must never write out of
    # bounds when called directly with inconsistent arguments.
    stack = np.zeros((10, 6), dtype=np.uint8)
    out = np.zeros((8, 6), dtype=np.uint8)
    wm_core = wm_module._window_median_core
    with pytest.raises(ValueError, match="k must satisfy"):
        rm_core(stack, 11, 5, np.zeros((0, 6), np.uint8), 0, 6)
    with pytest.raises(ValueError, match="rank must satisfy"):
        rm_core(stack, 3, 3, out, 0, 6)
    with pytest.raises(ValueError, match="out must have shape"):
        rm_core(stack, 3, 1, np.zeros((8, 5), np.uint8), 0, 5)
    with pytest.raises(ValueError, match="pixel range"):
        rm_core(stack, 3, 1, out, 2, 7)
    with pytest.raises(ValueError, match="pixel range"):
        rm_core(stack, 3, 1, out, 4, 2)
    with pytest.raises(ValueError, match="rank must satisfy"):
        wm_core(stack, 10, np.zeros(6, np.uint8), 0, 6)
    with pytest.raises(ValueError, match="out must have shape"):
        wm_core(stack, 5, np.zeros(5, np.uint8), 0, 5)
    with pytest.raises(ValueError, match="pixel range"):
        wm_core(stack, 5, np.zeros(6, np.uint8), -1, 6)
