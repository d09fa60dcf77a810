"""Rolling median background"""

from __future__ import annotations

import numpy as np

from ...errors import ParameterError
from ...kernels import rolling_median_pixels
from ...kernels.rolling_median import BAND_BLOCK_SIZE
from ...workers import wait_all
from .base import Background
from .checks import check_positive_int

#: Fewest frames of a pipeline block (at least 4 kernels): while the
#: workers compute one block, the I/O thread reads the next and writes the
#: last; blocks of ~1,000 80x320 frames (25 MB) keep the kernels' start-up
#: cost per block small and the buffers in the CPU caches' reach.
MIN_BLOCK_FRAMES = 1000


class BackgroundRollMed(Background):
    def __init__(
        self,
        input_data,
        output_path,
        kernel_size=100,
        batch_size=10000,
        compress=True,
        num_cpus=None,
        **framework,
    ):
        """Rolling median RT-DC background image computation

        For every frame ``i`` and pixel, the background is the element at
        sorted position ``kernel_size // 2`` of the following
        ``kernel_size`` frames ``image[i:i + kernel_size]``; the last
        ``kernel_size`` frames get the background of frame
        ``N - kernel_size - 1``. The result is identical to dcnum's.

        1. Input frames are read in batches of ``batch_size +
           kernel_size`` frames into `shared_input`.
        2. Each batch is processed in blocks: while worker threads
           compute the rolling median of one block with a compiled
           kernel that tracks each pixel's median incrementally (see
           :mod:`dcbg.kernels.rolling_median`; O(1) per pixel and frame
           for noisy images, GIL released), an I/O thread reads the next
           block and writes (compresses) the previous one.
        3. The medians land in `shared_output` and are written to the
           "image_bg" feature of the output file.

        The workers are threads, not processes: no spawn overhead and no
        ``if __name__ == "__main__":`` guard needed.

        Parameters
        ----------
        kernel_size: int
            Number of frames whose median gives the background of a frame;
            positive and even.
        batch_size: int
            Number of frames processed per batch (> kernel_size). Memory
            use is about ``2 * batch_size`` frames; the result does not
            depend on it.
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
            batch_size=batch_size,
        )
        try:
            if kernel_size > self.image_count:
                # kernel_size must be even (check_user_kwargs)
                largest = self.image_count - self.image_count % 2
                hint = (
                    f"the largest valid kernel_size is {largest}"
                    if largest
                    else "the rolling median needs at least 2 frames"
                )
                raise ParameterError(
                    "kernel_size",
                    f"Cannot compute background: kernel_size={kernel_size} is "
                    f"larger than the number of frames N={self.image_count} of "
                    f"{self.describe_input()}; {hint}",
                )
            #: kernel size used for median filtering
            self.kernel_size = kernel_size
            #: number of events processed at once
            self.batch_size = batch_size
            npix = int(np.prod(self.image_shape))
            # Buffers never need to be larger than the data.
            in_rows = min(batch_size + kernel_size, self.image_count)
            out_rows = max(1, min(batch_size, self.image_count - kernel_size))
            #: flat uint8 buffer for the batch input frames
            self.shared_input_raw = np.empty(in_rows * npix, dtype=np.uint8)
            #: flat uint8 buffer for the batch median frames
            self.shared_output_raw = np.empty(out_rows * npix, dtype=np.uint8)
            #: batch input (frames, pixels) view on `shared_input_raw`
            self.shared_input = self.shared_input_raw.reshape(in_rows, npix)
            #: batch output (frames, pixels) view on `shared_output_raw`
            self.shared_output = self.shared_output_raw.reshape(out_rows, npix)
            #: number of batches processed (see `process_next_batch`)
            self.current_batch = 0
            self._feature = None
        except BaseException:
            self.close()
            raise

    @staticmethod
    def check_user_kwargs(*, kernel_size: int = 100, batch_size: int = 10000):
        """Check user-defined properties of this class

        This method primarily exists so that the CLI knows which keyword
        arguments can be passed to this class.

        Parameters
        ----------
        kernel_size: int
            Kernel size for median computation. This is the number of
            events that are used to compute the median for each pixel;
            positive and even.
        batch_size: int
            Number of events to process at the same time; larger than
            ``kernel_size``. Larger values need more memory and do not
            change the result.

        Raises
        ------
        ValueError
            If a value breaks its rule
        """
        check_positive_int("kernel_size", kernel_size, even=True)
        check_positive_int("batch_size", batch_size)
        if batch_size <= kernel_size:
            raise ParameterError(
                "batch_size",
                f"batch_size must be larger than kernel_size, got "
                f"batch_size={batch_size}, kernel_size={kernel_size}",
            )

    def get_slices_for_batch(self, batch_index=0):
        """Returns slices for getting the input and writing to output

        The input slice is `self.kernel_size` longer than the output slice.

        Returns
        -------
        slice_in: slice
            Input frames of the batch
        slice_out: slice
            Frames whose background the batch computes
        output_size: int
            Number of frames in `slice_out` (0 past the end)
        """
        start = batch_index * self.batch_size
        stop_in = (batch_index + 1) * self.batch_size + self.kernel_size
        stop_out = (batch_index + 1) * self.batch_size
        if stop_in > self.image_count:
            stop_in = self.image_count
            stop_out = self.image_count - self.kernel_size
            if self.image_count == self.kernel_size and batch_index == 0:
                # one full window: its median serves every frame
                stop_out = 1
        output_size = max(0, stop_out - start)
        return slice(start, stop_in), slice(start, start + output_size), output_size

    def map_iterator(self):
        """Iterate over the pixel ranges the worker threads process

        Several ranges per thread keep the jobs short, so that chunk
        (de)compression jobs, which have priority, never wait long.
        Ranges start at multiples of the kernel's pixel block size.
        """
        yield from self.pixel_slices(self.shared_input.shape[1], BAND_BLOCK_SIZE)

    def _output_feature(self):
        if self._feature is None:
            self._feature = self.output.create_image_feature(
                "image_bg", self.image_count, self.image_shape
            )
        return self._feature

    def _block_rows(self):
        """Frames per pipeline block: whole output chunks, several kernels"""
        chunk = self._output_feature().chunk_frames
        rows = max(4 * self.kernel_size, MIN_BLOCK_FRAMES)
        return max(1, round(rows / chunk)) * chunk

    def process_approach(self):
        """Perform median computation on entire input data"""
        num_batches = int(np.ceil(self.image_count / self.batch_size))
        while self.current_batch < num_batches:
            self.process_next_batch()
        self._fill_tail()
        self.image_proc.value = 1.0

    def finish_partial_output(self):
        """Keep only the frames that batches processed by hand computed

        As in dcnum, the output of ``process_next_batch()`` steps followed
        by a clean exit holds the computed backgrounds, no empty frames.
        """
        if self._feature is None or self.current_batch == 0:
            return
        _, slice_out, _ = self.get_slices_for_batch(self.current_batch - 1)
        self._feature.truncate(slice_out.stop)

    def _fill_tail(self):
        """Frames without a full window get the last computed background"""
        feature = self._output_feature()
        first = max(1, self.image_count - self.kernel_size)
        feature.fill(first, self.image_count, feature.read(first - 1))

    def process_next_batch(self):
        """Process one batch of input data"""
        slice_in, slice_out, output_size = self.get_slices_for_batch(self.current_batch)
        if output_size:
            self.start_workers()
            self._process_batch(slice_in.start, output_size)
        self.current_batch += 1
        self.image_proc.value = min(
            1.0, self.current_batch * self.batch_size / self.image_count
        )

    def _process_batch(self, start, output_size):
        k = self.kernel_size
        feature = self._output_feature()
        rows = self._block_rows()
        # Blocks end on absolute chunk boundaries of the output dataset,
        # so every compressed chunk is written exactly once.
        ends = list(range((start // rows + 1) * rows - start, output_size, rows))
        ends.append(output_size)
        blocks = list(zip([0, *ends[:-1]], ends, strict=True))

        def read(lo, hi):
            self.input_data.read(
                start + lo, start + hi, out=self.shared_input[lo:hi], pool=self.pool
            )

        def write(lo, hi):
            feature.write(start + lo, self.shared_output[lo:hi], self.pool)

        pending = []
        read_end = blocks[0][1] + k - 1
        reading = self.io_pool.submit(read, 0, read_end)
        try:
            for ii, (lo, hi) in enumerate(blocks):
                wait_all([reading])
                if ii + 1 < len(blocks):
                    next_end = blocks[ii + 1][1] + k - 1
                    reading = self.io_pool.submit(read, read_end, next_end)
                    read_end = next_end
                self.pool.run_all(
                    rolling_median_pixels,
                    [
                        (
                            self.shared_input[lo : hi + k - 1],
                            k,
                            self.shared_output[lo:hi],
                            pix,
                        )
                        for pix in self.map_iterator()
                    ],
                )
                pending.append(self.io_pool.submit(write, lo, hi))
                self.image_proc.value = (start + hi) / self.image_count
            wait_all(pending)
        except BaseException:
            # let queued I/O finish or cancel before buffers go away
            for fut in [reading, *pending]:
                fut.cancel()
            raise
