"""Checks of a method's keyword arguments, for ``check_user_kwargs``

Each check raises :class:`dcbg.errors.ParameterError` (a ``ValueError``)
that names the parameter as an attribute, so that the command line shows
its option (``kernel_size`` -> ``--kernel-size``) without reading the
message.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ...errors import ParameterError

__all__ = ["check_offset_correction", "check_positive_int", "check_real"]


def check_positive_int(name: str, value, even: bool = False):
    """Raise ParameterError unless `value` is a positive (even) integer"""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(name, f"{name} must be an integer, got {value!r}")
    if value <= 0:
        raise ParameterError(name, f"{name} must be positive, got {value}")
    if even and value % 2:
        raise ParameterError(name, f"{name} must be an even number, got {value}")


def check_real(name: str, value, low=None, high=None, low_open=False):
    """Raise ParameterError unless `value` is a finite number in the range

    Parameters
    ----------
    name: str
        The parameter's name
    value:
        Its value
    low, high: float or None
        Lower and upper bound (None: unbounded); `high` is included
    low_open: bool
        Whether `low` itself is excluded
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(name, f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ParameterError(name, f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        rule = ">" if low_open else ">="
        raise ParameterError(name, f"{name} must be {rule} {low}, got {value}")
    if high is not None and value > high:
        raise ParameterError(name, f"{name} must be <= {high}, got {value}")


def check_offset_correction(value):
    """Raise ParameterError unless `value` is a boolean (or 0/1)"""
    if not isinstance(value, (bool, np.bool_, numbers.Integral)) or (
        value not in (0, 1)
    ):
        raise ParameterError(
            "offset_correction",
            f"offset_correction must be True or False, got {value!r}",
        )
