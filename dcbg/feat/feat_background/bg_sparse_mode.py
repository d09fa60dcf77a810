"""Sparse mode background: the most frequent value per pixel, robust to cells

dcbg's own method (not one of dcnum's): a time-sparse series like the
sparse median's, whose images are the per-pixel most frequent value of
the window's offset-corrected frames instead of their median. The median
shows a cell wherever cells cover a pixel in more than half of the
frames (dense blood samples, a cell stuck in the channel); the
background is then still the most frequent value, because sensor noise
keeps background values within a few grey levels while cell values
spread over tens of levels.
"""

from __future__ import annotations

import bisect
import collections

import numpy as np

from ...kernels import window_modes_pixels
from ...workers import JOBS_PER_THREAD, wait_all
from .base import Background, check_positive_int, check_real
from .bg_sparse_median import (
    OFFSET_ROWS,
    READ_BLOCK_FRAMES,
    check_offset_correction,
    check_series_size,
    describe_input,
    frame_times,
    merge_ranges,
)
from .sparse_series import (
    SeriesImages,
    assign_background_index,
    nearest_frames,
    plan_windows,
)

#: Default frames per mode window. A cell stuck for 300 frames (0.09 s at
#: 3,447.5 frames per second) must stay the less frequent value in every
#: window that holds it; in a window of 1,000 frames it covers at most 30 %
#: of the frames, and the background, even with 4-6 passing cells per frame,
#: still shows in more of them. Larger windows also average the sensor
#: noise better (1 cell per frame: RMS 0.03 grey levels against the truth
#: on the model of dcbg.testing).
DEFAULT_KERNEL_SIZE = 1000
#: Default seconds between series images: the sparse median's default
DEFAULT_SPLIT_TIME = 1.0
#: Overlapping windows are computed together in a task whose histograms
#: slide from one window to the next; a task spans window starts over at
#: most max(kernel_size, TASK_MIN_SPAN) frames and holds that many frames
#: plus kernel_size, which bounds its memory (default: 2,000 frames, 51 MB
#: of 80x320 frames) whatever the length of the measurement. Spans shorter
#: than kernel_size would count the first window of a task afresh more often.
TASK_MIN_SPAN = 256
#: Tasks whose kernel jobs may still run while the next blocks are read:
#: one overlaps counting with decompression (without it they alternate and
#: the wall-clock time is their sum); each holds its frames until done
RUNNING_TASKS = 1


def round_half_up(numerator, denominator):
    """``floor(numerator / denominator + 1/2)`` of integers, exactly

    Parameters
    ----------
    numerator, denominator: int or np.ndarray of int64
        ``denominator > 0``

    Returns
    -------
    int or np.ndarray of int64
    """
    return (2 * numerator + denominator) // (2 * denominator)


def frame_shifts(top_sums: np.ndarray, reference: int, pixels: int) -> np.ndarray:
    """Each frame's brightness offset against `reference`, in whole levels

    Parameters
    ----------
    top_sums: np.ndarray of int64
        Sums of the top `OFFSET_ROWS` rows (channel wall) of each frame
    reference: int
        Reference level (grey levels)
    pixels: int
        Pixels in those rows

    Returns
    -------
    np.ndarray of int64: ``round_half_up(top_sums / pixels - reference)``,
    clipped to -255..255
    """
    shifts = round_half_up(top_sums - reference * pixels, pixels)
    return np.clip(shifts, -255, 255)


def window_level(top_sums: np.ndarray, reference: int, pixels: int) -> int:
    """The window's mean brightness against `reference`, in whole levels"""
    total = int(np.sum(top_sums, dtype=np.int64))
    return int(
        round_half_up(
            total - reference * pixels * top_sums.size, pixels * top_sums.size
        )
    )


class BackgroundSparseMode(Background):
    def __init__(
        self,
        input_data,
        output_path,
        kernel_size=DEFAULT_KERNEL_SIZE,
        split_time=DEFAULT_SPLIT_TIME,
        offset_correction=True,
        compress=True,
        num_cpus=None,
        **framework,
    ):
        """Sparse mode background: the most frequent value, robust to cells

        dcbg's own method; native dcnum cannot compute or reproduce it.
        Like the sparse median, a background image is computed every
        `split_time` seconds from the `kernel_size` frames starting at
        the frame closest in time, and each frame gets the image closest
        to it in time (stored once, as a mapped internal basin). Each
        image is, per pixel, the most frequent value of its window:

        1. With `offset_correction`, every frame is shifted by its
           brightness offset (mean of the top 20 pixel rows, the channel
           wall, against that of the first window; whole grey levels), so
           that flicker and drift do not blur the values.
        2. Per pixel, the histogram of the window's values is smoothed
           (a triangle of 9 grey levels); the mean of the values within 2
           levels of its peak is the estimate (see
           :mod:`dcbg.kernels.window_mode`).
        3. The window's mean offset is added back, so that ``image_bg``
           has the window's brightness; "bg_off" is the frame's top-row
           mean minus its image's, as the sparse median's.

        Unlike the median, the result does not show cells that cover a
        pixel in more than half of the frames (dense samples), nor a cell
        stuck for less than about a third of a window. No cleansing step
        is needed.

        Parameters
        ----------
        input_data: array-like or pathlib.Path or str
            Path to an .rtdc file with the "image" feature (possibly in a
            basin) or an array-like image stack (first axis: frames).
        output_path: pathlib.Path or str
            Output file; may be the input file (written in place).
        kernel_size: int
            Frames per window (default 1000). More frames than the input
            has: all frames are used (logged).
        split_time: float
            Time between background images in the series, in seconds
        offset_correction: bool
            Correct each frame's brightness offset before counting, and
            write the per-frame offset "bg_off".
        compress: bool
            Whether to compress background data (Zstandard).
        num_cpus: int
            Number of worker threads. Defaults to the CPUs available.
        framework:
            Keyword-only framework keywords, as for :class:`.Background`:
            `basin_root`, `allow_remote_basins` or `options`.
        """
        super().__init__(
            input_data=input_data,
            output_path=output_path,
            compress=compress,
            num_cpus=num_cpus,
            **framework,
            kernel_size=kernel_size,
            split_time=split_time,
            offset_correction=offset_correction,
        )
        try:
            if kernel_size > self.image_count:
                self.logger.info(
                    f"The kernel size {kernel_size} is larger than the number "
                    f"of frames {self.image_count}; using all frames"
                )
                kernel_size = self.image_count
            #: frames per mode window (at most the number of frames)
            self.kernel_size = int(kernel_size)
            #: time between background images in the series, seconds
            self.split_time = split_time
            #: offset (flicker, drift) correction and "bg_off"
            self.offset_correction = bool(offset_correction)
            #: time of each frame relative to the first frame, seconds
            self.time = frame_times(self)
            #: duration of the measurement, seconds
            self.duration = self.time[-1] - self.time[0]
            self._check_series_size()
            #: times of the background series, seconds
            self.step_times = np.arange(0, self.duration, self.split_time)
            if self.step_times.size == 0:
                self.step_times = np.zeros(1)
            starts = np.minimum(
                nearest_frames(self.time, self.step_times),
                self.image_count - self.kernel_size,
            )
            #: first frames of the distinct windows (sorted), the distinct
            #: window of each series step, the tasks that compute them
            self.distinct_starts, self.step_index, self._tasks = plan_windows(
                starts, self.kernel_size, max(self.kernel_size, TASK_MIN_SPAN)
            )
            #: one background image per distinct window
            self.distinct_images = np.zeros(
                (self.distinct_starts.size, *self.image_shape), dtype=np.uint8
            )
        except BaseException:
            self.close()
            raise

    @staticmethod
    def check_user_kwargs(
        *,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        split_time: float = DEFAULT_SPLIT_TIME,
        offset_correction: bool = True,
    ):
        """Check the method's keyword arguments

        Parameters
        ----------
        kernel_size: int
            Frames per window whose most frequent value per pixel gives
            one background image (> 0).
        split_time: float
            Time between background images in the series, in seconds (> 0)
        offset_correction: bool
            Correct each frame's brightness offset (top 20 pixel rows,
            the channel wall) before counting, and write "bg_off".

        Raises
        ------
        ValueError
            If a value breaks its rule
        """
        check_positive_int("kernel_size", kernel_size)
        check_real("split_time", split_time, low=0, low_open=True)
        check_offset_correction(offset_correction)

    def stamp_pipeline(self):
        """Claim nothing in dcnum's pipeline attributes

        dcnum 0.31.0 knows no "sparsemode" method and cannot read a
        background held in an internal basin; its job runner recomputes.
        """

    def _where(self) -> str:
        return describe_input(self)

    def _check_series_size(self):
        """Refuse a series whose per-step values exceed the memory budget"""
        check_series_size(self)

    def _pixel_slices(self):
        """Pixel ranges for the worker threads (several jobs per thread)"""
        npix = int(np.prod(self.image_shape))
        parts = max(1, min(npix, JOBS_PER_THREAD * self.num_cpus))
        bounds = np.linspace(0, npix, parts + 1).astype(int)
        return [
            slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    def process_approach(self):
        """Compute the series of mode images, store it and "bg_off" """
        self.start_workers()
        top_sums = self._compute_series()
        rows = min(OFFSET_ROWS, self.image_shape[0])
        bg_idx = assign_background_index(self.time, self.step_times, self.split_time)
        self.output.store_internal_basin(
            name="background images",
            description=f"Pipeline identifier: {self.get_ppid()}",
            features={"image_bg": SeriesImages(self.distinct_images, self.step_index)},
            mapping=bg_idx,
        )
        if self.offset_correction:
            distinct_mean = np.mean(self.distinct_images[:, :rows, :], axis=(1, 2))
            frame_mean = top_sums.astype(np.float64) / (rows * self.image_shape[1])
            bg_mean = distinct_mean[self.step_index][bg_idx]
            self.output.store_feature("bg_off", frame_mean - bg_mean)
        self.image_proc.value = 1.0

    def _start_task(self, task, frames: np.ndarray, sums: np.ndarray | None):
        """Start the mode images of `task`'s windows; returns `finish()`

        The kernel jobs run on the worker threads while the caller goes on
        reading (chunk decompression has priority over them); ``finish()``
        waits for them and stores the images.
        """
        k = self.kernel_size
        targets = np.flatnonzero(task.targets >= 0)
        index = task.targets[targets]
        if sums is None:
            shifts = np.zeros(len(frames), dtype=np.int32)
            levels = np.zeros(targets.size, dtype=np.int64)
        else:
            pixels = min(OFFSET_ROWS, self.image_shape[0]) * self.image_shape[1]
            if self._reference is None:
                # the first distinct window's level: a constant for all
                # tasks, so that overlapping windows share their counts
                self._reference = window_level(sums[:k], 0, pixels)
            shifts = frame_shifts(sums, self._reference, pixels)
            levels = np.array(
                [
                    window_level(sums[s : s + k], self._reference, pixels)
                    for s in targets
                ]
            )
        out = np.empty((targets.size, frames.shape[1]), dtype=np.uint8)
        jobs = [
            self.pool.submit(window_modes_pixels, frames, k, targets, shifts, out, pix)
            for pix in self._pixel_slices()
        ]

        def finish():
            wait_all(jobs)
            images = out.astype(np.int64) + levels[:, np.newaxis]
            flat = self.distinct_images.reshape(self.distinct_images.shape[0], -1)
            flat[index] = np.clip(images, 0, 255)

        return finish

    def _compute_series(self) -> np.ndarray | None:
        """One pass over the input: the mode windows and the top-row sums"""
        count = self.image_count
        tasks = self._tasks
        self._reference = None
        rows = min(OFFSET_ROWS, self.image_shape[0])
        npix = int(np.prod(self.image_shape))
        spans = [(task.first, task.stop) for task in tasks]
        top_sums = np.zeros(count, dtype=np.int64)
        block_frames = max(self.input_data.chunk_frames, READ_BLOCK_FRAMES)
        ranges = [(0, count)] if self.offset_correction else merge_ranges(spans)
        blocks = [
            block
            for lo, hi in ranges
            for block in self.input_data.iter_blocks(block_frames, lo, hi)
        ]
        merged = merge_ranges(spans)
        merged_starts = [lo for lo, _ in merged]

        def in_window(lo, hi):
            at = bisect.bisect_right(merged_starts, hi - 1) - 1
            return at >= 0 and merged[at][1] > lo

        def read(lo, hi):
            if in_window(lo, hi):
                frames = self.input_data.read(lo, hi, pool=self.pool)
                return frames.reshape(hi - lo, npix), None
            sums = self.input_data.sum_top_rows(lo, hi, rows, pool=self.pool)
            return None, sums

        open_tasks = {}
        running = collections.deque()
        next_task = 0
        reading = self.io_pool.submit(read, *blocks[0]) if blocks else None
        try:
            for bi, (lo, hi) in enumerate(blocks):
                frames, sums = wait_all([reading])[0]
                if bi + 1 < len(blocks):
                    reading = self.io_pool.submit(read, *blocks[bi + 1])
                if sums is None:
                    top = frames.reshape(hi - lo, -1)[:, : rows * self.image_shape[1]]
                    sums = top.sum(axis=1, dtype=np.int64)
                top_sums[lo:hi] = sums
                if frames is not None:
                    while next_task < len(tasks) and tasks[next_task].first < hi:
                        task = tasks[next_task]
                        open_tasks[next_task] = np.empty(
                            (task.stop - task.first, npix), dtype=np.uint8
                        )
                        next_task += 1
                    for ti in sorted(open_tasks):
                        task = tasks[ti]
                        a, b = max(task.first, lo), min(task.stop, hi)
                        if a < b:
                            open_tasks[ti][a - task.first : b - task.first] = frames[
                                a - lo : b - lo
                            ]
                        if task.stop <= hi:
                            buf = open_tasks.pop(ti)
                            task_sums = (
                                top_sums[task.first : task.stop]
                                if self.offset_correction
                                else None
                            )
                            running.append(self._start_task(task, buf, task_sums))
                    # bounded memory: at most this many tasks' frames held
                    while len(running) > RUNNING_TASKS:
                        running.popleft()()
                self.image_proc.value = hi / count
            while running:
                running.popleft()()
        except BaseException:
            if reading is not None:
                reading.cancel()
            raise
        return top_sums
