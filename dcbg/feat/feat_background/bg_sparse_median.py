"""Sparse median background with cleansing

dcnum's method, computed by distinct windows (:mod:`.sparse_series`) in
one pass over the input (:class:`.sparse_base.SparseSeriesBackground`).
"""

from __future__ import annotations

import numpy as np

from ...kernels import rolling_median_pixels, window_median_pixels
from ...kernels.rolling_median import BAND_BLOCK_SIZE
from ...run_options import warn
from .checks import check_real
from .sparse_base import (  # noqa: F401 (named here before)
    BYTES_PER_SERIES_STEP,
    GUESSED_FRAME_RATE,
    GUESSED_FRAMES_PER_EVENT,
    OFFSET_ROWS,
    READ_BLOCK_FRAMES,
    SERIES_MEMORY_BUDGET,
    SparseSeriesBackground,
    check_series_kwargs,
)
from .sparse_series import (  # noqa: F401 (dcnum's constants, named here before)
    CLEANSING_BASELINE_IMAGES,
    CLEANSING_HALF_ROWS_DIVISOR,
    CLEANSING_MIN_HALF_ROWS,
    CLEANSING_VARIANCE_FACTOR,
    SeriesImages,
    assign_background_index,
    cleanse_background_series,
    cleanse_profiles,
    plan_windows,
)

#: Fewest windows per rolling-median task (at least the kernel size is
#: used): the rolling kernel counts its first window from scratch, then
#: slides, so a task of as many windows as frames per window spends at
#: most half its time starting; the task holds its windows' frames and
#: images (windows + kernel_size frames plus windows images).
ROLLING_TASK_MIN_WINDOWS = 256


class BackgroundSparseMed(SparseSeriesBackground):
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
                warn(self.logger, msg, stacklevel=2)
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
            self.plan_series_times()
            self._warn_more_steps_than_frames()
            self.plan_windows(plan_windows, max(kernel_size, ROLLING_TASK_MIN_WINDOWS))
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
        check_series_kwargs(kernel_size, split_time, offset_correction)
        check_real("thresh_cleansing", thresh_cleansing, low=0)
        check_real("frac_cleansing", frac_cleansing, low=0, high=1, low_open=True)

    def _warn_more_steps_than_frames(self):
        """A series with more images than frames: most serve no frame"""
        steps = self.step_times.size
        if steps > self.image_count:
            per_frame = self.duration / self.image_count
            msg = (
                f"split_time={self.split_time} s gives {steps} background "
                f"images for the {self.image_count} frames of {self.describe_input()}; "
                f"most of them serve no frame (split_time >= {per_frame:.3g} s "
                f"gives at most one per frame)"
            )
            warn(self.logger, msg, stacklevel=3, parameters=("split_time",))

    def get_window(self, second: float) -> tuple[int, int]:
        """First and stop frame of the median window for a series time"""
        start = int(np.argmin(np.abs(second - self.time)))
        stop = start + self.kernel_size
        if stop >= self.image_count:
            stop = self.image_count
            start = max(0, stop - self.kernel_size)
        return start, stop

    def _median(self, window: np.ndarray, out: np.ndarray):
        """Median (sorted position k // 2) of a (k, pixels) window into `out`"""
        flat = out.reshape(-1)
        rank = window.shape[0] // 2
        self.pool.run_all(
            window_median_pixels,
            [(window, rank, flat, pix) for pix in self.pixel_slices(flat.size)],
        )

    def _rolling_median(self, frames: np.ndarray, out: np.ndarray):
        """Medians of every window of `kernel_size` consecutive `frames`"""
        self.pool.run_all(
            rolling_median_pixels,
            [
                (frames, self.kernel_size, out, pix)
                for pix in self.pixel_slices(frames.shape[1], BAND_BLOCK_SIZE)
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
        # one pass over the input: distinct median windows, top-row sums
        top_sums = self.read_pass(
            READ_BLOCK_FRAMES,
            lambda task, frames, _: self._run_task(task, frames),
            progress_total=self.image_count * (1 + self.offset_correction),
            spare_buffers=[self.shared_input],
        )
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
        self.store_series(self.step_index[used], self.step_times[used], top_sums)

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
