"""File-format I/O: input measurements, image stacks and output files

Every .rtdc convention (names, basins, staged and lock files) lives in
this package; the background methods reach files only through it:
:mod:`dcbg.io.input` opens what a method reads (:func:`open_input`),
:mod:`dcbg.io.output` writes the output file (:class:`OutputFile`).
"""

from .conventions import BACKGROUND_FEATURES
from .images import ImageStack
from .input import open_input
from .output import (
    OutputFile,
    check_output_dir,
    get_compression_kwargs,
)

__all__ = [
    "BACKGROUND_FEATURES",
    "ImageStack",
    "OutputFile",
    "check_output_dir",
    "get_compression_kwargs",
    "open_input",
]
