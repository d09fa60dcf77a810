"""Helpers for tests and benchmarks: realistic synthetic RT-DC measurements

- :mod:`dcbg.testing.model`: the image model (:class:`SyntheticModel`,
  :func:`make_synthetic_stack`), built from the bundled real measurement
  (``dcbg/data/cytoshot_2024_80x320.rtdc``): its background image, sensor
  noise, slow drift, frame-to-frame flicker and the real cells cut out of it
- :mod:`dcbg.testing.reference`: the real measurement the model is built
  from, and :func:`fit_background` that fits its background to other shapes
- :mod:`dcbg.testing.writer`: :func:`make_synthetic_measurement` writes the
  model as an .rtdc file
- :mod:`dcbg.testing.fixtures`: :func:`make_basin_variants` writes files
  whose images come from basins, :func:`store_internal_basin` one such
  basin
"""

from .fixtures import make_basin_variants, store_internal_basin
from .model import SyntheticModel, make_synthetic_stack
from .reference import REFERENCE_MEASUREMENT, fit_background
from .writer import make_synthetic_measurement

__all__ = [
    "REFERENCE_MEASUREMENT",
    "SyntheticModel",
    "fit_background",
    "make_basin_variants",
    "make_synthetic_measurement",
    "make_synthetic_stack",
    "store_internal_basin",
]
