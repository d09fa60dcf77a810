"""Helpers for tests and benchmarks: realistic synthetic RT-DC measurements.

The generator builds frames from the bundled real measurement
(``dcbg/data/cytoshot_2024_80x320.rtdc``): its background image, sensor
noise, slow drift, frame-to-frame flicker and the real cells cut out of it.
"""

from .synthetic import (
    REFERENCE_MEASUREMENT,
    SyntheticModel,
    make_basin_variants,
    make_synthetic_measurement,
    make_synthetic_stack,
)

__all__ = [
    "REFERENCE_MEASUREMENT",
    "SyntheticModel",
    "make_basin_variants",
    "make_synthetic_measurement",
    "make_synthetic_stack",
]
