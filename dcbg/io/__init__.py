"""File-format I/O: input measurements, image stacks and output files

Every .rtdc convention (names, basins, staged and lock files) lives in
this package; the background methods reach files only through it.
"""

from .conventions import BACKGROUND_FEATURES
from .images import ImageStack
from .rtdc import (
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
