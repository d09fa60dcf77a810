"""Sparse median background with cleansing"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from ...kernels import window_median_pixels
from ...workers import JOBS_PER_THREAD, wait_all
from .base import Background, check_positive_int, check_real

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

# Cleansing of the background series (dcnum's values, see
# cleanse_background_series; any other value changes which images are
# removed, and with it the output).
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


#: Upper bound of background images per frame in the series: above it,
#: memory grows without bound (a tiny split_time). dcnum computes every image
#: of the series and its own tests use up to 1.8 images per frame, so the
#: bound leaves room for that and still limits the series to a few times
#: the size of the decompressed input.
MAX_SERIES_IMAGES_PER_FRAME = 4
#: Fewest frames the I/O thread reads at once outside median windows (where
#: only the top rows are summed for bg_off): whole chunks, and enough frames
#: that the per-block overhead stays small against decompression.
READ_BLOCK_FRAMES = 256


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
        *,
        basin_root=None,
        allow_remote_basins=False,
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
        basin_root: str or pathlib.Path or None
            Keyword-only. Follow file basins of the input only to files
            inside this directory tree (symbolic links resolved); None:
            anywhere (regular HDF5 files only). See :mod:`dcbg.io.basins`.
        allow_remote_basins: bool
            Keyword-only. Follow remote basins (http, S3, DCOR) of the
            input; default False: no network access.
        """
        super().__init__(
            input_data=input_data,
            output_path=output_path,
            compress=compress,
            num_cpus=num_cpus,
            basin_root=basin_root,
            allow_remote_basins=allow_remote_basins,
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
            #: array containing all background images
            self.bg_images = np.zeros(
                (self.step_times.size, *self.image_shape), dtype=np.uint8
            )
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
        if not isinstance(offset_correction, (bool, np.bool_, numbers.Integral)) or (
            offset_correction not in (0, 1)
        ):
            raise ValueError(
                f"offset_correction must be True or False, got {offset_correction!r}"
            )

    def _where(self) -> str:
        return f"'{self.hdin.path}'" if self.hdin is not None else "the input array"

    def _check_frame_rate(self, rate) -> float:
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
                f"Input file {self._where()} declares the frame rate {rate!r} "
                f"(attribute 'imaging:frame rate'); expected a positive number "
                f"of frames per second"
            )
        return float(rate)

    def _check_series_size(self):
        """Warn about a series larger than the data, refuse a runaway one

        The series holds ``ceil(duration / split_time)`` images, whatever
        the number of frames. A `split_time` shorter than the time between
        frames gives more images than frames (dcnum computes them all, and
        its own tests do this with up to 1.8 images per frame, so dcbg
        does too, with a warning); a tiny `split_time` would need memory
        and time without bound, which is an error.
        """
        if not np.all(np.isfinite(self.time)):
            raise ValueError(
                f"The frame times of {self._where()} (feature 'time', or "
                f"'frame' and the frame rate) hold non-finite values; expected "
                f"finite times in seconds"
            )
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            images = np.float64(self.duration) / np.float64(self.split_time)
        per_frame = self.duration / self.image_count
        limit = MAX_SERIES_IMAGES_PER_FRAME * self.image_count
        if not images <= limit:
            raise ValueError(
                f"split_time={self.split_time} s asks for {images:.3g} background "
                f"images for the {self.image_count} frames ({self.duration:.3g} s) "
                f"of {self._where()}; expected at most "
                f"{MAX_SERIES_IMAGES_PER_FRAME} background images per frame, i.e. "
                f"split_time >= {per_frame / MAX_SERIES_IMAGES_PER_FRAME:.3g} s"
            )
        if images > self.image_count:
            msg = (
                f"split_time={self.split_time} s gives {images:.3g} background "
                f"images for the {self.image_count} frames of {self._where()}; "
                f"most of them serve no frame (split_time >= {per_frame:.3g} s "
                f"gives at most one per frame)"
            )
            self.logger.warning(msg)
            warnings.warn(msg, UserWarning, stacklevel=3)

    def _get_time_axis(self) -> np.ndarray:
        """Frame times in seconds, from the best source available"""
        count = self.image_count
        if self.hdin is not None:
            time = self.hdin.get_feature("time")
            if time is not None:
                return time - time[0]
            rate = self.hdin.get_frame_rate()
            if rate is not None:
                rate = self._check_frame_rate(rate)
                frame = self.hdin.get_feature("frame")
                if frame is not None:
                    time = frame / rate
                    return time - time[0]
                duration = count / rate * GUESSED_FRAMES_PER_EVENT
                self.logger.info(f"Approximating duration: {duration / 60:.1f}min")
                return np.linspace(0, duration, count, endpoint=True)
        duration = count / GUESSED_FRAME_RATE * GUESSED_FRAMES_PER_EVENT
        self.logger.info(f"Guessing duration: {duration / 60:.1f}min")
        return np.linspace(0, duration, count, endpoint=True)

    def get_window(self, second: float) -> tuple[int, int]:
        """First and stop frame of the median window for a series time"""
        start = int(np.argmin(np.abs(second - self.time)))
        stop = start + self.kernel_size
        if stop >= self.image_count:
            stop = self.image_count
            start = max(0, stop - self.kernel_size)
        return start, stop

    def _pixel_slices(self):
        npix = self.shared_input.shape[1]
        # several jobs per thread balance the load
        parts = min(npix, JOBS_PER_THREAD * self.num_cpus)
        bounds = np.linspace(0, npix, parts + 1).astype(int)
        return [
            slice(int(a), int(b))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            if b > a
        ]

    def _median(self, window: np.ndarray, out: np.ndarray):
        """Median (sorted position k // 2) of a (k, pixels) window into `out`"""
        flat = out.reshape(-1)
        rank = window.shape[0] // 2
        self.pool.run_all(
            window_median_pixels,
            [(window, rank, flat, pix) for pix in self._pixel_slices()],
        )

    def process_second(self, ii: int, second: float | int):
        """Compute background image `ii` of the series from its window

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
        self.bg_images[ii] = self.shared_output
        self.image_proc.value = stop / (self.image_count * (1 + self.offset_correction))

    def process_approach(self):
        """Perform median computation on entire input data"""
        self.start_workers()
        top_sums = self._compute_series_and_sums()
        used = cleanse_background_series(
            self.bg_images, self.thresh_cleansing, self.frac_cleansing, self.logger
        )
        step_times = self.step_times[used]
        bg_images = self.bg_images[used]
        bg_idx = assign_background_index(self.time, step_times, self.split_time)
        self.output.store_internal_basin(
            name="background images",
            description=f"Pipeline identifier: {self.get_ppid()}",
            features={"image_bg": bg_images},
            mapping=bg_idx,
        )
        if self.offset_correction:
            rows = min(OFFSET_ROWS, self.image_shape[0])
            bg_mean = np.mean(bg_images[:, :OFFSET_ROWS, :], axis=(1, 2))
            frame_mean = top_sums.astype(np.float64) / (rows * self.image_shape[1])
            self.output.store_feature("bg_off", frame_mean - bg_mean[bg_idx])
        self.image_proc.value = 1.0

    def _compute_series_and_sums(self) -> np.ndarray | None:
        """One pass over the input: median windows and top-slice sums"""
        count = self.image_count
        windows = [self.get_window(t) for t in self.step_times]
        top_sums = np.zeros(count, dtype=np.int64) if self.offset_correction else None
        if self.offset_correction:
            ranges = [(0, count)]
        else:
            ranges = _merge_ranges(windows)
        blocks = [
            block
            for lo, hi in ranges
            for block in self.input_data.iter_blocks(
                max(self.input_data.chunk_frames, READ_BLOCK_FRAMES), lo, hi
            )
        ]
        # A window buffer is allocated when its first frame arrives and
        # freed after its median; windows overlap only for short split times.
        open_windows = {}
        free_buffers = [self.shared_input]
        npix = self.shared_input.shape[1]
        next_window = 0
        total = count * (1 + self.offset_correction)

        def in_window(lo, hi):
            return any(start < hi and lo < stop for start, stop in windows)

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
                while next_window < len(windows) and windows[next_window][0] < hi:
                    if free_buffers:
                        buf = free_buffers.pop()
                    else:
                        buf = np.empty_like(self.shared_input)
                    open_windows[next_window] = buf
                    next_window += 1
                for wi in sorted(open_windows):
                    start, stop = windows[wi]
                    a, b = max(start, lo), min(stop, hi)
                    if a < b:
                        open_windows[wi][a - start : b - start] = frames[
                            a - lo : b - lo
                        ]
                    if stop <= hi:
                        buf = open_windows.pop(wi)
                        self._median(buf[: stop - start], self.bg_images[wi])
                        free_buffers.append(buf)
                self.image_proc.value = hi / total
        except BaseException:
            if reading is not None:
                reading.cancel()
            raise
        return top_sums


def _merge_ranges(windows):
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
    instead (with a warning).

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
    if frac_cleansing == 1:
        logger.info("Background series cleansing disabled")
        return np.ones(len(bg_images), dtype=bool)
    profiles = np.ptp(bg_images, axis=2)
    profiles_norm = profiles - np.median(profiles, axis=0).reshape(1, -1)
    height = profiles.shape[1]
    spread = max(CLEANSING_MIN_HALF_ROWS, height // CLEANSING_HALF_ROWS_DIVISOR)
    center = slice(height // 2 - spread, height // 2 + spread)
    profiles_center = np.mean(profiles_norm[:, center], axis=1)
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
        logger.warning(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
    logger.info(f"Cleansed {frac_remove:.2%}")
    return used


def assign_background_index(time, step_times, split_time) -> np.ndarray:
    """Index into the background series for every frame

    Frame ranges switch from one series image to the next at the frame
    closest to half a split time after the earlier image's time.
    """
    bg_idx = np.zeros(time.size, dtype=np.int64)
    idx0 = 0
    idx1 = None
    ii = 0
    for ii, t1 in enumerate(step_times):
        idx1 = int(np.argmin(np.abs(time - t1 - split_time / 2)))
        bg_idx[idx0:idx1] = ii
        idx0 = idx1
    if idx1 is not None:
        bg_idx[idx1:] = ii
    return bg_idx
