"""Feature computation: background image data from image data

- :mod:`.base`: :class:`Background`, dcnum's facade and the base class of
  every method, and the method registry (:func:`resolve_method`);
- :mod:`.run`: the run behind a Background (open the input and the staged
  output, run the worker threads, commit or discard);
- :mod:`.checks`: checks of a method's keyword arguments;
- the methods :mod:`.bg_copy`, :mod:`.bg_roll_median`,
  :mod:`.bg_sparse_median` and :mod:`.bg_sparse_mode`; the time-sparse
  ones share :mod:`.sparse_base` (frame times, the read pass) and
  :mod:`.sparse_series` (distinct windows, cleansing).
"""

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
