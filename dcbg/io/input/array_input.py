"""The array-like input kind: an image stack given as an array

dcnum's ``Background`` takes an array-like image stack (numpy, h5py,
dask, or an :class:`~dcbg.io.images.ImageStack`) instead of a file. Such
an input has images only: no file, no metadata, no basins and no other
features. This module is the whole of that input kind (see
:mod:`dcbg.io.input.registry`).
"""

from __future__ import annotations

import os

from ..images import ImageStack
from .registry import register_input_kind


@register_input_kind
class ArrayInput:
    """An image stack given as an array (no file)

    Parameters
    ----------
    images: ImageStack
        The frames

    Attributes
    ----------
    path, h5, config: None
        An array has no file and no metadata
    """

    is_file = False
    path = None
    h5 = None
    config = None
    refused_basins: list = []

    def __init__(self, images: ImageStack):
        self.images = images

    @classmethod
    def accepts(cls, input_data) -> bool:
        """Anything that is not a path (ImageStack checks it is an array)"""
        return not isinstance(input_data, (str, os.PathLike))

    @classmethod
    def open(cls, input_data, policy=None) -> ArrayInput:
        """The frames of `input_data`; `policy` does not apply

        Raises
        ------
        TypeError, ValueError
            If `input_data` is not a stack of 2-D images (see
            :class:`~dcbg.io.images.ImageStack`)
        """
        if isinstance(input_data, ImageStack):
            return cls(input_data)
        return cls(ImageStack(input_data))

    def get_feature(self, name: str) -> None:
        """An array has no features besides its images"""
        return None

    def get_frame_rate(self) -> None:
        """An array declares no frame rate"""
        return None

    def followed_basins(self) -> list:
        return []

    def get_basin_features(self) -> list:
        return []

    def close(self):
        """Nothing to release: the caller owns the array"""


__all__ = ["ArrayInput"]
