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

import numpy as np

from ...kernels import window_modes_pixels
from ...workers import wait_all
from .sparse_base import (
    OFFSET_ROWS,
    READ_BLOCK_FRAMES,
    SparseSeriesBackground,
    check_series_kwargs,
)
from .sparse_series import plan_windows

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


class BackgroundSparseMode(SparseSeriesBackground):
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
        kernel_size: int
            Frames per window (default 1000). More frames than the input
            has: all frames are used (logged).
        split_time: float
            Time between background images in the series, in seconds
        offset_correction: bool
            Correct each frame's brightness offset before counting, and
            write the per-frame offset "bg_off".
        input_data, output_path, compress, num_cpus, framework:
            As for :class:`.Background` (framework: its keyword-only
            basin and run options)
        """
        super().__init__(
            input_data,
            output_path,
            compress,
            num_cpus,
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
            self.plan_series_times()
            self.plan_windows(plan_windows, max(self.kernel_size, TASK_MIN_SPAN))
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
        check_series_kwargs(kernel_size, split_time, offset_correction)

    def stamp_pipeline(self):
        """Claim nothing in dcnum's pipeline attributes

        dcnum 0.31.0 knows no "sparsemode" method and cannot read a
        background held in an internal basin; its job runner recomputes.
        """

    def process_approach(self):
        """Compute the series of mode images, store it and "bg_off" """
        self.start_workers()
        self._reference = None
        top_sums = self.read_pass(
            READ_BLOCK_FRAMES,
            self._start_task,
            progress_total=self.image_count,
            running_max=RUNNING_TASKS,
        )
        self.store_series(self.step_index, self.step_times, top_sums)

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
            for pix in self.pixel_slices(frames.shape[1])
        ]

        def finish():
            wait_all(jobs)
            images = out.astype(np.int64) + levels[:, np.newaxis]
            flat = self.distinct_images.reshape(self.distinct_images.shape[0], -1)
            flat[index] = np.clip(images, 0, 255)

        return finish
