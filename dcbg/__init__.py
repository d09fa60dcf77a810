"""dcbg: fast, reproducible background images for RT-DC measurements"""

from ._version import __version__
from .feat.feat_background import (
    Background,
    BackgroundCopy,
    BackgroundRollMed,
    BackgroundSparseMed,
    get_available_background_methods,
)

__all__ = [
    "Background",
    "BackgroundCopy",
    "BackgroundRollMed",
    "BackgroundSparseMed",
    "__version__",
    "get_available_background_methods",
]
