"""The sparse median's background series, computed by its distinct windows

A series image is the median of the `kernel_size` frames starting at the
frame closest to its time. With a `split_time` shorter than the time
between frames, many series steps share a window (a measurement of 400
frames over 20 minutes has 1,200 steps at the default split time but at
most 201 distinct windows of 200 frames), and equal windows give equal
images. This module plans the series by its distinct windows:

- :func:`nearest_frames` and :func:`switch_frames` find, for every
  series step at once, the frame that dcnum's per-step ``np.argmin``
  finds (the same floating-point expressions, the first of equal
  minima), in O(log frames) per step (unsorted frame times, as in a
  damaged file, are searched in sorted order);
- :func:`plan_windows` gives each step's distinct window and groups
  overlapping windows into tasks for the incremental rolling-median
  kernel (consecutive windows differ by one frame);
- :class:`SeriesImages` is the series of step images as a read-only
  array-like view on the distinct images (nothing is copied per step);
- :func:`cleanse_profiles` removes steps from the series exactly as
  dcnum's cleansing does, from the peak-to-peak profiles of the distinct
  images and the number of steps that use each (no per-step image or
  profile is materialised).

Memory and time thus grow with the frames (distinct windows); the series
steps cost a few numbers each (see ``BYTES_PER_SERIES_STEP`` in
:mod:`.sparse_base`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...run_options import warn

#: grey levels of uint8 images (histogram bins of the exact median)
GREY_LEVELS = 256
# Cleansing of the background series (dcnum's values; any other value
# changes which images are removed, and with it the output).
#: half height, in rows, of the band around the channel axis whose
#: peak-to-peak profiles are averaged: a quarter of the image height, so
#: the central half of the rows (where cells pass), and at least 20 rows
#: (dcnum's minimum; for images under 40 rows the band's start is negative
#: and Python's slicing takes it from the end, as in dcnum)
CLEANSING_MIN_HALF_ROWS = 20
CLEANSING_HALF_ROWS_DIVISOR = 4
#: series images in the running median that serves as baseline: the
#: series is time-based (one image per split_time), so this spans ten
#: split times (10 s by default); dcnum calls it a best guess
CLEANSING_BASELINE_IMAGES = 10
#: factor on the variance of the deviations from the baseline that gives
#: the threshold of ``thresh_cleansing=1`` (dcnum's empirical value);
#: larger thresh_cleansing values divide it and remove more images
CLEANSING_VARIANCE_FACTOR = 150


def _min_blocks(signed, n_frames: int, n_queries: int):
    """For each query, the frames where ``|signed(q, f)|`` is smallest

    Parameters
    ----------
    signed: callable
        ``signed(q, f)`` evaluates, for index arrays `q` (queries) and `f`
        (frame positions) of the same shape, the signed expression whose
        absolute value the caller minimises, with the same floating-point
        operations as the caller's reference; it must not decrease with
        `f` (true for frame times in sorted order: rounding is monotone).
    n_frames, n_queries: int
        Frames (>= 1) and queries

    Returns
    -------
    lo, hi: np.ndarray of int64, shape (n_queries,)
        The positions ``lo <= f < hi`` that attain the minimum (|signed|
        falls to the sign change and rises after it, so they are
        contiguous), found with binary searches: O(log frames) per query.
    """
    queries = np.arange(n_queries)

    def bisect(lo, hi, predicate):
        # smallest f in [lo, hi] with predicate(q, f) (true at hi, which
        # is never evaluated)
        lo, hi = lo.copy(), hi.copy()
        active = np.flatnonzero(lo < hi)
        while active.size:
            mid = (lo[active] + hi[active]) // 2
            found = predicate(queries[active], mid)
            hi[active[found]] = mid[found]
            lo[active[~found]] = mid[~found] + 1
            active = active[lo[active] < hi[active]]
        return lo

    zeros = np.zeros(n_queries, dtype=np.int64)
    ends = np.full(n_queries, n_frames, dtype=np.int64)
    # first position at or after the sign change (n_frames: none)
    change = bisect(zeros, ends, lambda q, f: signed(q, f) >= 0)
    has_right = change < n_frames
    has_left = change > 0
    right_value = np.abs(signed(queries, np.minimum(change, n_frames - 1)))
    left_value = np.abs(signed(queries, np.maximum(change - 1, 0)))
    # left of the change |signed| does not increase, right of it it does
    # not decrease: the minimum's extent on either side
    first_left = bisect(
        zeros,
        np.maximum(change - 1, 0),
        lambda q, f: np.abs(signed(q, f)) <= left_value[q],
    )
    stop_right = bisect(
        change, ends, lambda q, f: np.abs(signed(q, f)) > right_value[q]
    )
    use_left = has_left & (~has_right | (left_value <= right_value))
    use_right = has_right & (~has_left | (right_value <= left_value))
    lo = np.where(use_left, first_left, change)
    hi = np.where(use_right, stop_right, change)
    return lo, hi


def _range_min(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``min(values[lo[i]:hi[i]])`` for every i (non-empty ranges)

    A segment tree (levels of pairwise minima, 2 * len(values) numbers)
    answers each range in O(log len(values)) steps, for all ranges at once.
    """
    fill = np.iinfo(np.int64).max
    levels = [np.asarray(values, dtype=np.int64)]
    while levels[-1].size > 1:
        level = levels[-1]
        if level.size % 2:
            level = np.append(level, fill)
        levels.append(np.minimum(level[0::2], level[1::2]))
    result = np.full(lo.size, fill, dtype=np.int64)
    lo, hi = lo.copy(), hi.copy()
    for level in levels:
        active = lo < hi
        if not active.any():
            break
        take = active & (lo % 2 == 1)
        result[take] = np.minimum(result[take], level[lo[take]])
        lo[take] += 1
        take = active & (hi % 2 == 1)
        hi[take] -= 1
        result[take] = np.minimum(result[take], level[hi[take]])
        lo //= 2
        hi //= 2
    return result


def _first_argmin_abs(expression, time: np.ndarray, n_queries: int) -> np.ndarray:
    """What ``np.argmin(np.abs(expression(q, time)))`` gives for every query

    `expression(q, values)` evaluates the caller's expression for queries
    `q` and frame times `values` (arrays of one shape); it must not
    decrease with the frame time. Unsorted times are searched in sorted
    order (stable), and the first frame of the minimum is the smallest
    original index among the positions that attain it.
    """
    if n_queries == 0:
        return np.zeros(0, dtype=np.int64)
    if _is_sorted(time):
        lo, _ = _min_blocks(lambda q, f: expression(q, time[f]), time.size, n_queries)
        return lo
    order = np.argsort(time, kind="stable")
    in_order = time[order]
    lo, hi = _min_blocks(lambda q, f: expression(q, in_order[f]), time.size, n_queries)
    return _range_min(order, lo, hi)


def _is_sorted(values: np.ndarray) -> bool:
    return bool(values.size < 2 or np.all(values[1:] >= values[:-1]))


def nearest_frames(time: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """First frame closest in time to each of `seconds`

    Identical to ``np.argmin(np.abs(second - time))`` for every second
    (dcnum's choice of a series image's first frame), for any `time`.
    """
    seconds = np.asarray(seconds)

    def expression(q, values):
        # negated (exactly) so that it increases with the frame time
        return -(seconds[q] - values)

    return _first_argmin_abs(expression, time, seconds.size)


def switch_frames(time: np.ndarray, step_times: np.ndarray, split_time) -> np.ndarray:
    """Frame closest to half a split time after each step time

    Identical to ``np.argmin(np.abs(time - t1 - split_time / 2))`` for
    every `t1` of `step_times` (where dcnum's frame mapping switches from
    one series image to the next), for any `time`.
    """
    half = split_time / 2

    def expression(q, values):
        return values - step_times[q] - half

    return _first_argmin_abs(expression, time, step_times.size)


def assign_background_index(time, step_times, split_time) -> np.ndarray:
    """Index into the background series for every frame

    Frame ranges switch from one series image to the next at the frame
    closest to half a split time after the earlier image's time (dcnum's
    mapping: image ``ii`` serves the frames from the previous switch up
    to its own; the frames after the last switch get the last image).
    """
    bg_idx = np.zeros(time.size, dtype=np.int64)
    if step_times.size == 0:
        return bg_idx
    switches = switch_frames(time, step_times, split_time)
    last = step_times.size - 1
    if _is_sorted(switches):
        # frame f: the first image whose switch lies after f
        found = np.searchsorted(switches, np.arange(time.size), side="right")
        return np.minimum(found, last)
    # unsorted frame times: dcnum's slices in order (later ones win)
    start = 0
    for ii, stop in enumerate(switches.tolist()):
        bg_idx[start:stop] = ii
        start = stop
    bg_idx[switches[-1] :] = last
    return bg_idx


@dataclass(frozen=True)
class WindowTask:
    """Medians of the windows starting at ``starts`` (all consecutive)

    Attributes
    ----------
    first: int
        First window start; the task reads frames ``first`` to ``stop``
    stop: int
        Frame after the last frame of the last window
    targets: np.ndarray
        Distinct-image index of each window ``first + i``, -1 for windows
        computed on the way (rolling) but not part of the series
    rolling: bool
        True: incremental rolling median over all windows in the range;
        False: one window (counting median)
    """

    first: int
    stop: int
    targets: np.ndarray
    rolling: bool


def plan_windows(starts: np.ndarray, kernel_size: int, rolling_max_windows: int):
    """Distinct windows and the tasks that compute them

    Windows that overlap (start gap < `kernel_size`) are computed with the
    rolling median over the frames they span, every window on the way
    included (a slide costs less than a fresh window median), in tasks of
    at most `rolling_max_windows` windows; a window that overlaps no
    other is a task of its own.

    Parameters
    ----------
    starts: np.ndarray of int
        First frame of the window of each series step
    kernel_size: int
        Frames per window
    rolling_max_windows: int
        Most windows per rolling task (bounds its buffers)

    Returns
    -------
    distinct_starts: np.ndarray
        Sorted first frames of the distinct windows
    step_index: np.ndarray
        Distinct window of each series step
    tasks: list of WindowTask
        In order of their first frame; each distinct window is the
        target of exactly one task
    """
    distinct_starts, step_index = np.unique(starts, return_inverse=True)
    tasks = []
    count = distinct_starts.size
    ii = 0
    while ii < count:
        first = int(distinct_starts[ii])
        jj = ii + 1
        while (
            jj < count
            and distinct_starts[jj] - distinct_starts[jj - 1] < kernel_size
            and distinct_starts[jj] - first < rolling_max_windows
        ):
            jj += 1
        last = int(distinct_starts[jj - 1])
        targets = np.full(last - first + 1, -1, dtype=np.int64)
        targets[distinct_starts[ii:jj] - first] = np.arange(ii, jj)
        tasks.append(
            WindowTask(first, last + kernel_size, targets, rolling=jj - ii > 1)
        )
        ii = jj
    return distinct_starts, step_index.reshape(-1), tasks


class SeriesImages:
    """The background series, one image per step, as a read-only view

    Steps that share a median window share its image: the view keeps the
    distinct images once and an index per step. It behaves like the
    uint8 array ``distinct[index]`` of shape (steps, height, width) for
    ``len``, ``shape``, ``dtype``, integer and slice indexing, and
    :func:`numpy.asarray` (which materialises it, as :meth:`copy` does).
    dclab's writer stores it chunk by chunk.
    """

    def __init__(self, distinct: np.ndarray, index: np.ndarray):
        self.distinct = distinct
        self.index = np.asarray(index, dtype=np.int64)
        self.dtype = distinct.dtype
        self.shape = (self.index.size, *distinct.shape[1:])
        self.ndim = len(self.shape)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return self.distinct[self.index[item]]
        first, rest = item[0], item[1:]
        selected = self[first]
        if selected.ndim == self.ndim:  # a slice or an index array of steps
            return selected[(slice(None), *rest)]
        return selected[rest]

    def __array__(self, dtype=None, copy=None):
        array = self.distinct[self.index]
        return array if dtype is None else array.astype(dtype)

    def copy(self) -> np.ndarray:
        return np.asarray(self)


def exact_column_median(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``np.median`` along axis 0 of the rows of `values` repeated `counts` times

    Parameters
    ----------
    values: np.ndarray of uint8, shape (rows, columns)
    counts: np.ndarray of int, shape (rows,)
        How often each row occurs (>= 0, positive sum)

    Returns
    -------
    median: np.ndarray of float64, shape (columns,)
        Bit-identical to ``np.median(np.repeat(values, counts, axis=0),
        axis=0)``: numpy takes the mean of the one or two middle values,
        which for integers below 256 is exact, so the middle values from a
        weighted histogram per column give the same number.
    """
    columns = values.shape[1]
    total = int(counts.sum())
    bins = (np.arange(columns) * GREY_LEVELS)[np.newaxis, :] + values
    weights = np.broadcast_to(counts[:, np.newaxis], values.shape)
    hist = np.bincount(
        bins.ravel(), weights=weights.ravel(), minlength=columns * GREY_LEVELS
    ).reshape(columns, GREY_LEVELS)
    cumulative = np.cumsum(hist, axis=1)
    lower = np.argmax(cumulative > (total - 1) // 2, axis=1)
    upper = np.argmax(cumulative > total // 2, axis=1)
    return (lower.astype(np.float64) + upper) / 2


def cleanse_profiles(profiles, step_index, thresh_cleansing, frac_cleansing, logger):
    """Steps of a background series that do not show cells

    dcnum's cleansing (see :func:`cleanse_background_series`)
    of the series ``images[step_index]``, from the peak-to-peak profiles
    of the distinct images only: the per-step values are the distinct
    images' values repeated, and every sum involved is of integers or
    half-integers far below 2**52, exact in any order, so the result is
    bit-identical to cleansing the full series.

    Parameters
    ----------
    profiles: np.ndarray of uint8, shape (distinct images, height)
        ``np.ptp(image, axis=1)`` of each distinct image (grey levels)
    step_index: np.ndarray of int, shape (steps,)
        Distinct image of each series step
    thresh_cleansing: float
        Threshold factor; 0 selects the quantile method
    frac_cleansing: float
        Fraction of images to keep at least; 1 disables cleansing
    logger: logging.Logger
        Where to report what was removed

    Returns
    -------
    used: np.ndarray
        Boolean mask over the steps: True for images to keep
    """
    steps = step_index.size
    if frac_cleansing == 1:
        logger.info("Background series cleansing disabled")
        return np.ones(steps, dtype=bool)
    counts = np.bincount(step_index, minlength=profiles.shape[0])
    median = exact_column_median(profiles, counts)
    profiles_norm = profiles - median.reshape(1, -1)
    height = profiles.shape[1]
    spread = max(CLEANSING_MIN_HALF_ROWS, height // CLEANSING_HALF_ROWS_DIVISOR)
    center = slice(height // 2 - spread, height // 2 + spread)
    profiles_center = np.mean(profiles_norm[:, center], axis=1)[step_index]
    from scipy import ndimage  # 0.3 s to import: only where it is used

    baseline = ndimage.median_filter(profiles_center, size=CLEANSING_BASELINE_IMAGES)
    deviation = profiles_center - baseline
    ref = np.abs(deviation - np.median(deviation))
    thresh_fact = np.var(ref) * CLEANSING_VARIANCE_FACTOR
    if thresh_cleansing != 0:
        thresh = thresh_fact / thresh_cleansing
    else:
        thresh = np.quantile(ref, frac_cleansing)
    used = ref <= thresh
    frac_remove = np.sum(~used) / used.size
    if thresh_cleansing != 0 and (1 - frac_remove) < frac_cleansing:
        frac_remove_user = frac_remove
        thresh = np.quantile(ref, frac_cleansing)
        used = ref <= thresh
        frac_remove = np.sum(~used) / used.size
        msg = (
            f"{frac_remove_user:.1%} of the background images would be removed "
            f"with thresh_cleansing={thresh_cleansing}, so frac_cleansing="
            f"{frac_cleansing} is enforced instead (new threshold factor "
            f"{thresh_fact / thresh}). Decrease thresh_cleansing or "
            f"frac_cleansing to avoid this warning."
        )
        warn(
            logger,
            msg,
            stacklevel=3,
            parameters=("thresh_cleansing", "frac_cleansing"),
        )
    logger.info(f"Cleansed {frac_remove:.2%}")
    return used


def cleanse_background_series(bg_images, thresh_cleansing, frac_cleansing, logger):
    """Find the background images of a series that do not show cells

    Background images computed while cells streamed through the same
    spot show the cells. Such images stand out in the peak-to-peak
    grey-value profile across the channel: for each image, take the
    peak-to-peak range along the channel axis of every row, subtract the
    series' median profile, average the central rows, subtract a running
    median (`CLEANSING_BASELINE_IMAGES` images) as baseline, and compare
    the absolute deviation from its median with a threshold:
    ``CLEANSING_VARIANCE_FACTOR * var(deviation) / thresh_cleansing``
    (150 * ...), or, with ``thresh_cleansing == 0``, the
    `frac_cleansing` quantile of the deviations. If the threshold keeps
    fewer than `frac_cleansing` of the images, the quantile is used
    instead (with a warning). :class:`BackgroundSparseMed` computes the
    same from the distinct images of its series (:func:`cleanse_profiles`,
    which describes the other parameters and the result).

    Parameters
    ----------
    bg_images: np.ndarray
        Background series, uint8 (images, height, width)
    """
    profiles = np.ptp(np.asarray(bg_images), axis=2)
    return cleanse_profiles(
        profiles,
        np.arange(len(profiles)),
        thresh_cleansing,
        frac_cleansing,
        logger,
    )
