"""Copy an existing background from the input to the output file"""

from __future__ import annotations

from ...io import ImageStack
from ...io.rtdc import copy_pipeline_background
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
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            if self.hdin is None:
                raise ValueError(
                    "BackgroundCopy needs an .rtdc file as input_data (the "
                    "background is copied from its 'image_bg' feature), got "
                    "an array"
                )
            ds = self.hdin.ds
            if "image_bg" not in ds.features_innate + ds.features_basin:
                measurement = self.hdin.measurement
                if any(rb.provides("image_bg") for rb in measurement.all_refused()):
                    # say which basin was refused and why
                    raise measurement.missing_feature_error("image_bg")
                raise ValueError(
                    f"Input file '{self.hdin.path}' has no 'image_bg' feature to copy"
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
        path = self.hdin.path
        source = self.hdin.measurement.locate("image_bg")
        if source is None:
            raise self.hdin.measurement.missing_feature_error("image_bg")
        name = source.describe("image_bg", path)
        if len(source) != self.image_count:
            raise ValueError(
                f"The {name} has {len(source)} entries for {self.image_count} "
                f"frames; expected one background image per frame"
            )
        stack = ImageStack(source.as_array_like(), name=name)
        if stack.frame_shape != self.image_shape:
            raise ValueError(
                f"The {name} has images of shape {stack.frame_shape}, the "
                f"frames {self.image_shape}; expected the same shape"
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
        except (OSError, RuntimeError, KeyError) as exc:
            text = " ".join(str(exc).split()) or type(exc).__name__
            if str(self.hdin.path) in text:
                raise
            raise OSError(
                f"Cannot copy the background of input file '{self.hdin.path}': "
                f"{text}; the file is damaged"
            ) from exc

    def _copy_background(self):
        """Copy ``image_bg`` and ``bg_off`` from the input to the output

        The output is always a staged file apart from the input (also in
        place), so the copy reads the input as it was when the run began.
        """
        self.image_proc.value = 0.0
        events_in = self.h5in.get("events", {})
        copied = set()
        for feat in ("image_bg", "bg_off"):
            if feat in events_in:
                self._output.copy_dataset(events_in[feat], feat)
                copied.add(feat)
        if "image_bg" not in copied and not self._copy_internal_basin():
            self._copy_image_bg_frames()
        if "bg_off" not in copied and self.hdin.get_feature("bg_off") is not None:
            # bg_off in a basin (file or internal): one value per event
            self._output.store_feature("bg_off", self.hdin.get_feature("bg_off"))
        self.image_proc.value = 1.0

    def _copy_internal_basin(self) -> bool:
        for bn_dict in self.hdin.ds.basins_get_dicts():
            if bn_dict.get("type") != "internal":
                continue
            if "image_bg" not in (bn_dict.get("features") or []):
                continue
            group = self.h5in[bn_dict.get("paths", ["basin_events"])[0]]
            data = {"image_bg": group["image_bg"][:]}
            mapping = bn_dict.get("mapping", "same")
            if mapping in (None, "same"):
                self._output.store_feature("image_bg", data["image_bg"])
            else:
                self._output.store_internal_basin(
                    name=bn_dict.get("name", "background images"),
                    description=bn_dict.get("description"),
                    features=data,
                    mapping=self.h5in["events"][mapping][:],
                )
            return True
        return False

    def _copy_image_bg_frames(self):
        # image_bg only reachable through a (possibly mapped) file basin
        stack = ImageStack(
            self.hdin.ds["image_bg"], name=f"'image_bg' of '{self.hdin.path}'"
        )
        dset = self._output.create_image_feature(
            "image_bg", len(stack), stack.frame_shape
        )
        for start, stop in stack.iter_blocks():
            dset[start:stop] = stack.read(start, stop)
            self.image_proc.value = stop / len(stack)

    def stamp_pipeline(self):
        """Keep the input's pipeline claims: the copied data are the input's"""
        copy_pipeline_background(self.h5in, self._output.h5)

    def stamp_ppid(self):
        """Keep the PPID of the copied data (it names how they were made)"""
        for grp in ("events", "basin_events"):
            for feat in ("image_bg", "bg_off"):
                path = f"{grp}/{feat}"
                if path in self.h5out and self.h5in is not None and path in self.h5in:
                    continue  # attributes were copied with the dataset
                attrs = self.h5out[path].attrs if path in self.h5out else {}
                if path in self.h5out and "dcnum ppid background" not in attrs:
                    attrs["dcnum ppid background"] = self.get_ppid()
