"""Former home of the synthetic-measurement helpers (kept for importers)

The helpers now live in :mod:`dcbg.testing.model` (the image model),
:mod:`dcbg.testing.writer` (.rtdc files) and :mod:`dcbg.testing.fixtures`
(basin variants); import them from :mod:`dcbg.testing`.
"""

from . import *  # noqa: F403 (the names of dcbg.testing)
from . import __all__  # noqa: F401
