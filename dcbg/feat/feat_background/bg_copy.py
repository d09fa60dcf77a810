"""Copy an existing background from the input to the output file"""

from __future__ import annotations

from ...errors import InputFileError, ParameterError, ReadError, one_line
from ...io import ImageStack
from ...run_options import warn
from .base import Background


class BackgroundCopy(Background):
    """Copy the input background data to the output file

    ``image_bg`` and ``bg_off`` are copied as they are stored in the
    input: plain features are copied dataset by dataset (keeping their
    compression and PPID attributes), an ``image_bg`` held in a mapped
    internal basin is stored again as a mapped internal basin, and an
    ``image_bg`` reachable only through a file basin is copied frame
    block by frame block. ``bg_off`` is copied wherever it is stored.
    Written in place, the input keeps its background exactly.

    An input without ``image_bg`` gives an output without a background
    (only its ``bg_off``, if it has one), as dcnum 0.31.0 writes it, and
    one warning naming the input. An ``image_bg`` in a basin that the basin
    policy refused is an error (the output would silently lack it).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            if self.hdin is None:
                raise ParameterError(
                    "input_data",
                    "BackgroundCopy needs an .rtdc file as input_data (the "
                    "background is copied from its 'image_bg' feature), got "
                    "an array",
                )
            ds = self.hdin.ds
            #: whether the input has an ``image_bg`` to copy (dcbg extension)
            self.has_background = "image_bg" in ds.features_innate + ds.features_basin
            if not self.has_background:
                measurement = self.hdin
                if any(rb.provides("image_bg") for rb in measurement.all_refused()):
                    # say which basin was refused and why
                    raise measurement.missing_feature_error("image_bg")
                # dcnum copies nothing and reports nothing: an output
                # without a background must not pass unnoticed
                warn(
                    self.logger,
                    f"Input file '{self.hdin.path}' has no 'image_bg': the output "
                    f"holds no background",
                    stacklevel=2,
                )
            self._check_input_background()
        except BaseException:
            self.close()
            raise

    def _check_input_background(self):
        """Check ``image_bg``/``bg_off`` against the frames, before any copy

        Declared sizes must fit (one background image and one offset per
        frame, all chunks stored) and the first chunk must be readable.
        """
        if not self.has_background:
            self.hdin.get_feature("bg_off")  # copied alone: checked all the same
            return
        path = self.hdin.path
        source = self.hdin.locate("image_bg")
        if source is None:
            raise self.hdin.missing_feature_error("image_bg")
        name = source.describe("image_bg", path)
        if len(source) != self.image_count:
            raise InputFileError(
                path,
                f"The {name} has {len(source)} entries for {self.image_count} "
                f"frames; expected one background image per frame",
                feature="image_bg",
            )
        stack = ImageStack(source.as_array_like(), name=name)
        if stack.frame_shape != self.image_shape:
            raise InputFileError(
                path,
                f"The {name} has images of shape {stack.frame_shape}, the "
                f"frames {self.image_shape}; expected the same shape",
                feature="image_bg",
            )
        stack.read(0, 1)
        self.hdin.get_feature("bg_off")  # checks length and type

    @staticmethod
    def check_user_kwargs():
        """BackgroundCopy has no keyword arguments"""

    def process_approach(self):
        """Copy ``image_bg`` and ``bg_off``; read errors name the input file"""
        try:
            self._copy_background()
        except ReadError:
            raise  # dcbg's read errors name the data and file they concern
        except (OSError, RuntimeError, KeyError) as exc:
            # h5py's and HDF5's words: say which file and what it means
            raise OSError(
                f"Cannot copy the background of input file '{self.hdin.path}': "
                f"{one_line(exc)}; the file is damaged"
            ) from exc

    def _copy_background(self):
        self.image_proc.value = 0.0
        self.output.copy_background_from(
            self.hdin, progress=self.image_proc, image_bg=self.has_background
        )
        self.image_proc.value = 1.0

    def stamp_pipeline(self):
        """Keep the input's pipeline claims: the copied data are the input's"""
        self.output.copy_pipeline_background(self.hdin)

    def stamp_ppid(self):
        """Keep the PPID of the copied data (it names how they were made)"""
        self.output.set_missing_ppid(self.get_ppid(), source=self.hdin)
