"""Feature computation: background image data from image data"""

from .base import Background, get_available_background_methods, resolve_method
from .bg_copy import BackgroundCopy
from .bg_roll_median import BackgroundRollMed
from .bg_sparse_median import BackgroundSparseMed
from .bg_sparse_mode import BackgroundSparseMode

__all__ = [
    "Background",
    "BackgroundCopy",
    "BackgroundRollMed",
    "BackgroundSparseMed",
    "BackgroundSparseMode",
    "get_available_background_methods",
    "resolve_method",
]
