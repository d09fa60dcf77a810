"""Sparse median background with cleansing"""

from __future__ import annotations

import bisect
import numbers
import warnings

import numpy as np

from ...kernels import rolling_median_pixels, window_median_pixels
from ...kernels.rolling_median import BAND_BLOCK_SIZE
from ...workers import JOBS_PER_THREAD, wait_all
from .base import Background, check_positive_int, check_real
from .sparse_series import (  # noqa: F401 (dcnum's constants, named here before)
    CLEANSING_BASELINE_IMAGES,
    CLEANSING_HALF_ROWS_DIVISOR,
    CLEANSING_MIN_HALF_ROWS,
    CLEANSING_VARIANCE_FACTOR,
    SeriesImages,
    assign_background_index,
    cleanse_profiles,
    nearest_frames,
    plan_windows,
)

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
#: Fewest windows per rolling-median task (at least the kernel size is
#: used): the rolling kernel counts its first window from scratch, then
#: slides, so a task of as many windows as frames per window spends at
#: most half its time starting; the task holds its windows' frames and
#: images (windows + kernel_size frames plus windows images).
ROLLING_TASK_MIN_WINDOWS = 256


class BackgroundSparseMed(Background):
    def __init__(
        self,
        input_data,
        output_path,
        kernel_size=200,
        split_time=1.0,
        thresh_cleansing=0,
        frac_cleansing=0.8,
        offset_correction=True,
        compress=True,
        num_cpus=None,
        **framework,
    ):
        """Sparse median background correction with cleansing

        In contrast to the rolling median, this method computes a
        background image only every ``split_time`` seconds, from a larger
        window (default 200 frames). The result is identical to dcnum's.

        1. At time stamps every `split_time` seconds, a background image
           is computed from the `kernel_size` frames starting at the frame
           closest in time, resulting in a background series.
        2. Cleansing: background images that contain streaks of cells are
           removed from the series (see :func:`cleanse_background_series`).
        3. Each frame gets the background image closest to it in time.
           The series is stored once, as an internal basin mapped to the
           frames ("basin_events/image_bg" plus "events/basinmapN").
        4. With `offset_correction`, the per-frame brightness offset
           "bg_off" is computed from the top 20 pixel rows of each frame.

        The input is read once, in chunk-aligned blocks: the median
        windows are filled and the top-slice sums for "bg_off" computed
        in the same pass, medians run on `num_cpus` worker threads (no
        processes, no ``if __name__ == "__main__":`` guard needed).

        Parameters
        ----------
        input_data: array-like or pathlib.Path or str
            Path to an .rtdc file with the "image" feature (possibly in a
            basin) or an array-like image stack (first axis: frames).
        output_path: pathlib.Path or str
            Output file; may be the input file (written in place).
        kernel_size: int
            Number of frames whose median gives one background image.
            Larger than the number of frames: a warning, and all frames
            are used (the PPID keeps the requested value).
        split_time: float
            Time between background images in the series, in seconds
        thresh_cleansing: float
            Positive factor scaling the threshold that excludes background
            images from the series; larger values exclude more. 0 enforces
            the fixed fraction `frac_cleansing`.
        frac_cleansing: float
            Fraction (0, 1] of background images that must remain after
            cleansing. 1 disables cleansing.
        offset_correction: bool
            Compute the per-frame offset "bg_off" (median-free: mean of
            the top 20 pixel rows of the frame minus that of its
            background image), so that ``image_bg + bg_off`` follows
            frame-to-frame flicker of the illumination.
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
            thresh_cleansing=thresh_cleansing,
            frac_cleansing=frac_cleansing,
            offset_correction=offset_correction,
        )
        try:
            if kernel_size > self.image_count:
                msg = (
                    f"The kernel size {kernel_size} is larger than the number "
                    f"of frames {self.image_count}; using all "
                    f"{self.image_count} frames"
                )
                self.logger.warning(msg)
                warnings.warn(msg, UserWarning, stacklevel=2)
                kernel_size = self.image_count
            #: kernel size used for median filtering
            self.kernel_size = kernel_size
            #: time between background images in the background series
            self.split_time = split_time
            #: cleansing threshold factor
            self.thresh_cleansing = thresh_cleansing
            #: keep at least this many background images from the series
            self.frac_cleansing = frac_cleansing
            #: offset/flickering correction
            self.offset_correction = offset_correction
            #: time of each frame relative to the first frame, seconds
            self.time = self._get_time_axis()
            #: duration of the measurement, seconds
            self.duration = self.time[-1] - self.time[0]
            # before the series is allocated (its size follows from these)
            self._check_series_size()
            #: times of the background series, seconds
            self.step_times = np.arange(0, self.duration, self.split_time)
            if self.step_times.size == 0:
                # one frame or no time span: one image serves every frame
                self.step_times = np.zeros(1)
            self._warn_more_steps_than_frames()
            # the window of every step (get_window's, for all steps at once)
            starts = np.minimum(
                nearest_frames(self.time, self.step_times),
                self.image_count - kernel_size,
            )
            #: first frames of the distinct median windows (sorted), the
            #: distinct window of each series step, and the tasks that
            #: compute them (rolling median over overlapping windows)
            self.distinct_starts, self.step_index, self._tasks = plan_windows(
                starts, kernel_size, max(kernel_size, ROLLING_TASK_MIN_WINDOWS)
            )
            #: one background image per distinct median window
            self.distinct_images = np.zeros(
                (self.distinct_starts.size, *self.image_shape), dtype=np.uint8
            )
            #: the background series, one image per step (dcnum's
            #: ``bg_images``), as a view on `distinct_images`
            self.bg_images = SeriesImages(self.distinct_images, self.step_index)
            npix = int(np.prod(self.image_shape))
            #: flat uint8 buffer for the frames of one median window
            self.shared_input_raw = np.empty(kernel_size * npix, dtype=np.uint8)
            #: flat uint8 buffer for one median background image
            self.shared_output_raw = np.empty(npix, dtype=np.uint8)
            #: (frames, pixels) view on `shared_input_raw`
            self.shared_input = self.shared_input_raw.reshape(kernel_size, npix)
            #: image-shaped view on `shared_output_raw`
            self.shared_output = self.shared_output_raw.reshape(self.image_shape)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def check_user_kwargs(
        *,
        kernel_size: int = 200,
        split_time: float = 1.0,
        thresh_cleansing: float = 0,
        frac_cleansing: float = 0.8,
        offset_correction: bool = True,
    ):
        """Initialize user-defined properties of this class

        This method primarily exists so that the CLI knows which keyword
        arguments can be passed to this class.

        Parameters
        ----------
        kernel_size: int
            Kernel size for median computation: the number of frames
            whose median gives one background image (> 0).
        split_time: float
            Time between background images in the background series,
            in seconds (> 0)
        thresh_cleansing: float
            Factor scaling the cleansing threshold (>= 0); larger values
            exclude more background images. 0 enforces `frac_cleansing`.
        frac_cleansing: float
            Fraction in (0, 1] of background images that must remain
            after cleansing; 1 disables cleansing.
        offset_correction: bool
            Compute the per-frame brightness offset "bg_off" from the top
            20 pixel rows (channel wall) of each frame.

        Raises
        ------
        ValueError
            If a value breaks its rule
        """
        check_positive_int("kernel_size", kernel_size)
        check_real("split_time", split_time, low=0, low_open=True)
        check_real("thresh_cleansing", thresh_cleansing, low=0)
        check_real("frac_cleansing", frac_cleansing, low=0, high=1, low_open=True)
        check_offset_correction(offset_correction)

    def _where(self) -> str:
        return describe_input(self)

    def _check_series_size(self):
        """Refuse a series whose per-step values exceed the memory budget"""
        check_series_size(self)

    def _warn_more_steps_than_frames(self):
        """A series with more images than frames: most serve no frame"""
        steps = self.step_times.size
        if steps > self.image_count:
            per_frame = self.duration / self.image_count
            msg = (
                f"split_time={self.split_time} s gives {steps} background "
                f"images for the {self.image_count} frames of {self._where()}; "
                f"most of them serve no frame (split_time >= {per_frame:.3g} s "
                f"gives at most one per frame)"
            )
            self.logger.warning(msg)
            warnings.warn(msg, UserWarning, stacklevel=3)

    def _get_time_axis(self) -> np.ndarray:
        """Frame times in seconds, from the best source available"""
        return frame_times(self)

    def get_window(self, second: float) -> tuple[int, int]:
        """First and stop frame of the median window for a series time"""
        start = int(np.argmin(np.abs(second - self.time)))
        stop = start + self.kernel_size
        if stop >= self.image_count:
            stop = self.image_count
            start = max(0, stop - self.kernel_size)
        return start, stop

    def _pixel_slices(self, align: int = 1):
        """Pixel ranges for the worker threads, starting at multiples of `align`"""
        npix = self.shared_input.shape[1]
        blocks = -(-npix // align)
        # several jobs per thread balance the load
        parts = min(blocks, JOBS_PER_THREAD * self.num_cpus)
        bounds = np.linspace(0, blocks, parts + 1).astype(int) * align
        return [
            slice(int(a), min(int(b), npix))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            if min(b, npix) > a
        ]

    def _median(self, window: np.ndarray, out: np.ndarray):
        """Median (sorted position k // 2) of a (k, pixels) window into `out`"""
        flat = out.reshape(-1)
        rank = window.shape[0] // 2
        self.pool.run_all(
            window_median_pixels,
            [(window, rank, flat, pix) for pix in self._pixel_slices()],
        )

    def _rolling_median(self, frames: np.ndarray, out: np.ndarray):
        """Medians of every window of `kernel_size` consecutive `frames`"""
        self.pool.run_all(
            rolling_median_pixels,
            [
                (frames, self.kernel_size, out, pix)
                for pix in self._pixel_slices(BAND_BLOCK_SIZE)
            ],
        )

    def process_second(self, ii: int, second: float | int):
        """Compute background image `ii` of the series from its window

        The image is stored as that of the step's distinct window (dcnum
        calls this with ``second = step_times[ii]``).

        Parameters
        ----------
        ii: int
            Index in the background series (`bg_images`)
        second: float
            Time of the series entry, seconds since the first frame
        """
        self.start_workers()
        start, stop = self.get_window(second)
        self.input_data.read(start, stop, out=self.shared_input, pool=self.pool)
        self._median(self.shared_input, self.shared_output)
        self.distinct_images[self.step_index[ii]] = self.shared_output
        self.image_proc.value = stop / (self.image_count * (1 + self.offset_correction))

    def process_approach(self):
        """Perform median computation on entire input data"""
        self.start_workers()
        top_sums = self._compute_series_and_sums()
        # ptp of uint8 is exact: the profiles of the distinct images are
        # those of every step that uses them
        profiles = np.ptp(self.distinct_images, axis=2)
        used = cleanse_profiles(
            profiles,
            self.step_index,
            self.thresh_cleansing,
            self.frac_cleansing,
            self.logger,
        )
        used_index = self.step_index[used]
        step_times = self.step_times[used]
        bg_idx = assign_background_index(self.time, step_times, self.split_time)
        # the series is stored as dcnum stores it (one image per kept step),
        # written chunk by chunk from the distinct images
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

    def _run_task(self, task, frames: np.ndarray):
        """Compute the distinct images of `task` from its `frames`"""
        images = self.distinct_images.reshape(self.distinct_images.shape[0], -1)
        targets = task.targets
        if not task.rolling:
            self._median(frames, images[targets[0]])
            return
        if np.all(targets >= 0):
            # consecutive distinct windows: straight into their images
            self._rolling_median(frames, images[targets[0] : targets[-1] + 1])
            return
        out = np.empty((targets.size, images.shape[1]), dtype=np.uint8)
        self._rolling_median(frames, out)
        wanted = targets >= 0
        images[targets[wanted]] = out[wanted]

    def _compute_series_and_sums(self) -> np.ndarray | None:
        """One pass over the input: distinct median windows, top-slice sums"""
        count = self.image_count
        tasks = self._tasks
        spans = merge_ranges([(task.first, task.stop) for task in tasks])
        span_starts = [lo for lo, _ in spans]
        top_sums = np.zeros(count, dtype=np.int64) if self.offset_correction else None
        ranges = [(0, count)] if self.offset_correction else spans
        blocks = [
            block
            for lo, hi in ranges
            for block in self.input_data.iter_blocks(
                max(self.input_data.chunk_frames, READ_BLOCK_FRAMES), lo, hi
            )
        ]
        # A task's frame buffer is allocated when its first frame arrives
        # and reused after its medians; only consecutive rolling tasks
        # overlap (by kernel_size - 1 frames), so few are open at once.
        open_tasks = {}
        free_buffers = {self.shared_input.shape: [self.shared_input]}
        npix = self.shared_input.shape[1]
        next_task = 0
        total = count * (1 + self.offset_correction)

        def in_window(lo, hi):
            at = bisect.bisect_right(span_starts, hi - 1) - 1
            return at >= 0 and spans[at][1] > lo

        def read(lo, hi):
            # frames outside all windows only contribute their top-row sums
            if in_window(lo, hi):
                frames = self.input_data.read(lo, hi, pool=self.pool)
                return frames.reshape(hi - lo, npix), None
            sums = self.input_data.sum_top_rows(lo, hi, OFFSET_ROWS, pool=self.pool)
            return None, sums

        reading = self.io_pool.submit(read, *blocks[0]) if blocks else None
        try:
            for bi, (lo, hi) in enumerate(blocks):
                frames, sums = wait_all([reading])[0]
                if bi + 1 < len(blocks):
                    reading = self.io_pool.submit(read, *blocks[bi + 1])
                if top_sums is not None:
                    if sums is None:
                        top = frames.reshape(hi - lo, *self.image_shape)[
                            :, :OFFSET_ROWS
                        ]
                        sums = top.sum(axis=(1, 2), dtype=np.int64)
                    top_sums[lo:hi] = sums
                if frames is None:
                    self.image_proc.value = hi / total
                    continue
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
                        self._run_task(task, buf)
                        free_buffers.setdefault(buf.shape, []).append(buf)
                self.image_proc.value = hi / total
        except BaseException:
            if reading is not None:
                reading.cancel()
            raise
        return top_sums


def describe_input(bg) -> str:
    """How messages name the input of `bg`: its quoted path or "the input array" """
    return f"'{bg.hdin.path}'" if bg.hdin is not None else "the input array"


def check_offset_correction(value):
    """Raise ValueError unless `value` is a boolean (or 0/1)"""
    if not isinstance(value, (bool, np.bool_, numbers.Integral)) or (
        value not in (0, 1)
    ):
        raise ValueError(f"offset_correction must be True or False, got {value!r}")


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
        raise ValueError(
            f"Input file {describe_input(bg)} declares the frame rate {rate!r} "
            f"(attribute 'imaging:frame rate'); expected a positive number "
            f"of frames per second"
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
        raise ValueError(
            f"The frame times of {describe_input(bg)} (feature 'time', or "
            f"'frame' and the frame rate) hold non-finite values; expected "
            f"finite times in seconds"
        )
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        steps = np.ceil(np.float64(bg.duration) / np.float64(bg.split_time))
    max_steps = SERIES_MEMORY_BUDGET // BYTES_PER_SERIES_STEP
    if not steps <= max_steps:
        need = steps * BYTES_PER_SERIES_STEP / 1024**2
        raise ValueError(
            f"split_time={bg.split_time} s gives {steps:.4g} background "
            f"series steps for the {bg.duration:.4g} s of {describe_input(bg)}; "
            f"their per-step values would need {need:.3g} MiB, more than "
            f"the {SERIES_MEMORY_BUDGET // 1024**2} MiB allowed; expected "
            f"split_time >= {bg.duration / max_steps:.3g} s"
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
    same from the distinct images of its series
    (:func:`~dcbg.feat.feat_background.sparse_series.cleanse_profiles`).

    Parameters
    ----------
    bg_images: np.ndarray
        Background series, uint8 (images, height, width)
    thresh_cleansing: float
        Threshold factor; 0 selects the quantile method
    frac_cleansing: float
        Fraction of images to keep at least; 1 disables cleansing
    logger: logging.Logger
        Where to report what was removed

    Returns
    -------
    used: np.ndarray
        Boolean mask over the series: True for images to keep
    """
    profiles = np.ptp(np.asarray(bg_images), axis=2)
    return cleanse_profiles(
        profiles,
        np.arange(len(profiles)),
        thresh_cleansing,
        frac_cleansing,
        logger,
    )
