"""What the time-sparse methods share: frame times, the series, one read pass

:class:`~.bg_sparse_median.BackgroundSparseMed` and
:class:`~.bg_sparse_mode.BackgroundSparseMode` compute a background image
every `split_time` seconds from the `kernel_size` frames starting at the
frame closest in time, and give each frame the image closest to it. They
differ only in how an image is computed from its window (median or most
frequent value) and in cleansing. :class:`SparseSeriesBackground` holds
the rest:

- the frames' time axis (:func:`frame_times`, dcnum's rules) and the
  series steps, with the check that they fit in memory;
- the plan of distinct windows (:mod:`.sparse_series`);
- the one pass over the input that fills each task's frames and sums the
  top rows of every frame for "bg_off" (:meth:`~SparseSeriesBackground.read_pass`);
- storing the series as a mapped internal basin and "bg_off".
"""

from __future__ import annotations

import bisect
import collections
import numbers
from collections.abc import Callable

import numpy as np

from ...errors import InputFileError, ParameterError
from ...workers import wait_all
from .base import Background
from .checks import check_offset_correction, check_positive_int, check_real
from .sparse_series import SeriesImages, assign_background_index, nearest_frames

#: height of the top image slice used for ``bg_off``, pixels: dcnum's
#: definition; these rows show the channel wall, where no cells pass, so
#: their brightness follows the illumination alone
OFFSET_ROWS = 20

#: Time axis without "time" and "frame" features: dcnum's guesses, kept so
#: that the series times are dcnum's. The duration is taken as 1.5 times
#: events / frame rate; dcnum gives no reason, ours: events are stored only
#: for camera frames with a cell in them, so a measurement lasts longer
#: than its events would at the frame rate.
GUESSED_FRAMES_PER_EVENT = 1.5
#: frame rate assumed without "imaging:frame rate" (frames per second): of
#: the order of RT-DC cameras' (the bundled CytoShot example: 3447.5)
GUESSED_FRAME_RATE = 3600

#: Memory the per-step values of the background series may take, bytes.
#: The series has ``ceil(duration / split_time)`` steps whatever the number
#: of frames; images are computed and kept per distinct median window
#: (at most one per frame), but every step carries a few numbers (see
#: `BYTES_PER_SERIES_STEP`), so a tiny split_time is the one thing left
#: that grows without bound. 256 MiB allow 1.6 million steps: 19 days of
#: measurement at the default split_time of 1 s, 28 minutes at 1 ms
#: (dcnum's own tests go down to 1 ms on a 20-frame file, i.e. 949 steps).
SERIES_MEMORY_BUDGET = 256 * 1024**2
#: Bytes per series step at the peak: its time, window start, distinct
#: image index and the binary searches' temporaries (about 12 int64 /
#: float64 values), and cleansing's float64 values (centre profile,
#: baseline, deviation, reference and numpy's median/quantile copies,
#: about 8), rounded up.
BYTES_PER_SERIES_STEP = 160
#: Fewest frames the I/O thread reads at once outside median windows (where
#: only the top rows are summed for bg_off): whole chunks, and enough frames
#: that the per-block overhead stays small against decompression.
READ_BLOCK_FRAMES = 256


def check_series_kwargs(kernel_size, split_time, offset_correction):
    """The checks of the keyword arguments both sparse methods have"""
    check_positive_int("kernel_size", kernel_size)
    check_real("split_time", split_time, low=0, low_open=True)
    check_offset_correction(offset_correction)


def check_frame_rate(bg, rate) -> float:
    """The frame rate attribute as a positive number, or a clear error"""
    if isinstance(rate, np.ndarray) and rate.size == 1:
        rate = rate.reshape(-1)[0]
    if (
        isinstance(rate, (bool, np.bool_))
        or not isinstance(rate, numbers.Real)
        or not np.isfinite(rate)
        or rate <= 0
    ):
        raise InputFileError(
            bg.hdin.path,
            f"Input file {bg.describe_input()} declares the frame rate {rate!r} "
            f"(attribute 'imaging:frame rate'); expected a positive number "
            f"of frames per second",
        )
    return float(rate)


def frame_times(bg) -> np.ndarray:
    """Frame times of a time-sparse method's input, seconds from the first

    From the "time" feature; else from "frame" and the frame rate; else
    spread evenly over the duration the frame rate (or a typical one,
    `GUESSED_FRAME_RATE`) implies for `GUESSED_FRAMES_PER_EVENT` frames
    per event (dcnum's rules, so that the series times are dcnum's).

    Parameters
    ----------
    bg: Background
        A method with ``hdin`` (None for array input), ``image_count``
        and ``logger``

    Raises
    ------
    dcbg.errors.InputFileError
        If the file declares a frame rate that is not a positive number
    """
    count = bg.image_count
    if bg.hdin is not None:
        time = bg.hdin.get_feature("time")
        if time is not None:
            return time - time[0]
        rate = bg.hdin.get_frame_rate()
        if rate is not None:
            rate = check_frame_rate(bg, rate)
            frame = bg.hdin.get_feature("frame")
            if frame is not None:
                time = frame / rate
                return time - time[0]
            duration = count / rate * GUESSED_FRAMES_PER_EVENT
            bg.logger.info(f"Approximating duration: {duration / 60:.1f}min")
            return np.linspace(0, duration, count, endpoint=True)
    duration = count / GUESSED_FRAME_RATE * GUESSED_FRAMES_PER_EVENT
    bg.logger.info(f"Guessing duration: {duration / 60:.1f}min")
    return np.linspace(0, duration, count, endpoint=True)


def check_series_size(bg):
    """Refuse a series whose per-step values exceed the memory budget

    The series holds ``ceil(duration / split_time)`` steps whatever the
    number of frames. Images are computed once per distinct window (at
    most one per frame), so the steps cost only their per-step values
    (`BYTES_PER_SERIES_STEP` each); a tiny `split_time` would still make
    them grow without bound, which is an error beyond
    `SERIES_MEMORY_BUDGET`. Non-finite frame times are an error too.

    Parameters
    ----------
    bg: Background
        A time-sparse method with ``time``, ``duration`` and ``split_time``
    """
    if not np.all(np.isfinite(bg.time)):
        raise InputFileError(
            bg.hdin.path if bg.hdin is not None else None,
            f"The frame times of {bg.describe_input()} (feature 'time', or "
            f"'frame' and the frame rate) hold non-finite values; expected "
            f"finite times in seconds",
            feature="time",
        )
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        steps = np.ceil(np.float64(bg.duration) / np.float64(bg.split_time))
    max_steps = SERIES_MEMORY_BUDGET // BYTES_PER_SERIES_STEP
    if not steps <= max_steps:
        need = steps * BYTES_PER_SERIES_STEP / 1024**2
        raise ParameterError(
            "split_time",
            f"split_time={bg.split_time} s gives {steps:.4g} background "
            f"series steps for the {bg.duration:.4g} s of {bg.describe_input()}; "
            f"their per-step values would need {need:.3g} MiB, more than "
            f"the {SERIES_MEMORY_BUDGET // 1024**2} MiB allowed; expected "
            f"split_time >= {bg.duration / max_steps:.3g} s",
        )


def merge_ranges(windows):
    """Union of frame ranges as sorted, disjoint ranges"""
    merged = []
    for start, stop in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [tuple(r) for r in merged]


class SparseSeriesBackground(Background):
    """A background series every `split_time` seconds (abstract)

    A subclass sets `kernel_size`, `split_time` and `offset_correction`,
    then calls :meth:`plan_series_times` and :meth:`plan_windows`, and in
    its ``process_approach`` :meth:`read_pass` and :meth:`store_series`.
    """

    def plan_series_times(self):
        """Frame times, duration and the times of the series steps"""
        #: time of each frame relative to the first frame, seconds
        self.time = frame_times(self)
        #: duration of the measurement, seconds
        self.duration = self.time[-1] - self.time[0]
        # before the series is allocated (its size follows from these)
        check_series_size(self)
        #: times of the background series, seconds
        self.step_times = np.arange(0, self.duration, self.split_time)
        if self.step_times.size == 0:
            # one frame or no time span: one image serves every frame
            self.step_times = np.zeros(1)

    def plan_windows(self, planner: Callable, task_span: int):
        """The distinct windows of the series steps and the tasks for them

        Parameters
        ----------
        planner: callable
            :func:`.sparse_series.plan_windows` (as the method module
            names it)
        task_span: int
            Most window starts one task spans
        """
        # the window of every step (dcnum's get_window, for all at once)
        starts = np.minimum(
            nearest_frames(self.time, self.step_times),
            self.image_count - self.kernel_size,
        )
        #: first frames of the distinct windows (sorted), the distinct
        #: window of each series step, and the tasks that compute them
        self.distinct_starts, self.step_index, self._tasks = planner(
            starts, self.kernel_size, task_span
        )
        #: one background image per distinct window
        self.distinct_images = np.zeros(
            (self.distinct_starts.size, *self.image_shape), dtype=np.uint8
        )

    def read_pass(
        self,
        block_frames: int,
        on_task: Callable,
        progress_total: int,
        running_max: int = 0,
        spare_buffers=(),
    ) -> np.ndarray | None:
        """One pass over the input: each task's frames, the top-row sums

        Frames are read in chunk-aligned blocks by the I/O thread while
        the previous block is handed on. With `offset_correction` every
        frame is read (blocks outside all windows only for their top-row
        sums), else only the frames of the windows.

        Parameters
        ----------
        block_frames: int
            Fewest frames per read (whole chunks are read)
        on_task: callable
            ``on_task(task, frames, top_sums)`` when all frames of a task
            are in `frames` (task frames x pixels; `top_sums` its frames'
            sums or None): computes its images, or starts that and returns
            a callable that waits for them (the frames stay untouched
            until then)
        progress_total: int
            Frames that make the progress 1 (the pass counts to the frames)
        running_max: int
            Tasks whose jobs may still run while the next blocks are read
        spare_buffers: sequence of np.ndarray
            Buffers (task frames x pixels) to reuse for task frames

        Returns
        -------
        top_sums: np.ndarray of int64 or None
            Sum of the top `OFFSET_ROWS` rows of each frame (None without
            `offset_correction`)
        """
        count = self.image_count
        tasks = self._tasks
        rows = min(OFFSET_ROWS, self.image_shape[0])
        npix = int(np.prod(self.image_shape))
        spans = merge_ranges([(task.first, task.stop) for task in tasks])
        span_starts = [lo for lo, _ in spans]
        top_sums = np.zeros(count, dtype=np.int64) if self.offset_correction else None
        ranges = [(0, count)] if self.offset_correction else spans
        block_frames = max(self.input_data.chunk_frames, block_frames)
        blocks = [
            block
            for lo, hi in ranges
            for block in self.input_data.iter_blocks(block_frames, lo, hi)
        ]

        def in_window(lo, hi):
            at = bisect.bisect_right(span_starts, hi - 1) - 1
            return at >= 0 and spans[at][1] > lo

        def read(lo, hi):
            # frames outside all windows only contribute their top-row sums
            if in_window(lo, hi):
                frames = self.input_data.read(lo, hi, pool=self.pool)
                return frames.reshape(hi - lo, npix), None
            return None, self.input_data.sum_top_rows(lo, hi, rows, pool=self.pool)

        # A task's frame buffer is allocated when its first frame arrives
        # and reused when its images are done; only consecutive tasks
        # overlap (by kernel_size - 1 frames), so few are open at once.
        open_tasks = {}
        free_buffers = {}
        for buf in spare_buffers:
            free_buffers.setdefault(buf.shape, []).append(buf)
        running = collections.deque()
        next_task = 0

        def finish_oldest():
            finish, buf = running.popleft()
            if finish is not None:
                finish()
            free_buffers.setdefault(buf.shape, []).append(buf)

        reading = self.io_pool.submit(read, *blocks[0]) if blocks else None
        try:
            for bi, (lo, hi) in enumerate(blocks):
                frames, sums = wait_all([reading])[0]
                if bi + 1 < len(blocks):
                    reading = self.io_pool.submit(read, *blocks[bi + 1])
                if top_sums is not None:
                    if sums is None:
                        top = frames[:, : rows * self.image_shape[1]]
                        sums = top.sum(axis=1, dtype=np.int64)
                    top_sums[lo:hi] = sums
                if frames is not None:
                    while next_task < len(tasks) and tasks[next_task].first < hi:
                        task = tasks[next_task]
                        shape = (task.stop - task.first, npix)
                        spare = free_buffers.get(shape)
                        buf = spare.pop() if spare else np.empty(shape, dtype=np.uint8)
                        open_tasks[next_task] = buf
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
                                if top_sums is not None
                                else None
                            )
                            running.append((on_task(task, buf, task_sums), buf))
                    # bounded memory: at most this many tasks' frames held
                    while len(running) > running_max:
                        finish_oldest()
                self.image_proc.value = hi / progress_total
            while running:
                finish_oldest()
        except BaseException:
            if reading is not None:
                reading.cancel()
            raise
        return top_sums

    def store_series(self, used_index, step_times, top_sums):
        """Store the series as a mapped internal basin, and "bg_off"

        Parameters
        ----------
        used_index: np.ndarray of int
            Distinct image of each series step kept
        step_times: np.ndarray
            Times of the steps kept, seconds
        top_sums: np.ndarray of int64 or None
            Top-row sums of the frames (with `offset_correction`)
        """
        bg_idx = assign_background_index(self.time, step_times, self.split_time)
        # the series is stored as dcnum stores it (one image per kept
        # step), written chunk by chunk from the distinct images
        self.output.store_internal_basin(
            name="background images",
            description=f"Pipeline identifier: {self.get_ppid()}",
            features={"image_bg": SeriesImages(self.distinct_images, used_index)},
            mapping=bg_idx,
        )
        if self.offset_correction:
            rows = min(OFFSET_ROWS, self.image_shape[0])
            # means of uint8 sums in float64 are exact sums divided once:
            # per distinct image they equal dcnum's per step
            distinct_mean = np.mean(
                self.distinct_images[:, :OFFSET_ROWS, :], axis=(1, 2)
            )
            bg_mean = distinct_mean[used_index]
            frame_mean = top_sums.astype(np.float64) / (rows * self.image_shape[1])
            self.output.store_feature("bg_off", frame_mean - bg_mean[bg_idx])
        self.image_proc.value = 1.0
