"""Former home of the synthetic-measurement helpers (kept for importers)

The helpers now live in :mod:`dcbg.testing.model` (the image model),
:mod:`dcbg.testing.writer` (.rtdc files) and :mod:`dcbg.testing.fixtures`
(basin variants); import them from :mod:`dcbg.testing`.
"""

from .fixtures import make_basin_variants
from .model import (
    REFERENCE_MEASUREMENT,
    SyntheticModel,
    fit_background,
    make_synthetic_stack,
)
from .writer import make_synthetic_measurement

__all__ = [
    "REFERENCE_MEASUREMENT",
    "SyntheticModel",
    "fit_background",
    "make_basin_variants",
    "make_synthetic_measurement",
    "make_synthetic_stack",
]
