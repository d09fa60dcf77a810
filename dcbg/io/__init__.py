"""File-format I/O: input measurements, image stacks and output files"""

from .images import ImageStack
from .rtdc import (
    BACKGROUND_FEATURES,
    InputMeasurement,
    OutputFile,
    check_output_dir,
    get_compression_kwargs,
)

__all__ = [
    "BACKGROUND_FEATURES",
    "ImageStack",
    "InputMeasurement",
    "OutputFile",
    "check_output_dir",
    "get_compression_kwargs",
]
