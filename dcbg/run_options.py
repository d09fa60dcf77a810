"""How a background computation runs, as one object built at the edge

The options that are not a method's own (compression, CPUs, which
basins are followed) are checked once where a user gives them (the
Python API, the command line, a batch) and then passed down as one
frozen :class:`RunOptions`; no layer below re-declares or re-checks them.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
import warnings

import numpy as np

from .io.input import BasinPolicy

__all__ = ["FRAMEWORK_KEYWORDS", "RunOptions", "cpu_count", "warn"]

#: Keyword arguments every method accepts besides its own: the fields of
#: :meth:`RunOptions.create`. The command line reserves their flags.
FRAMEWORK_KEYWORDS = ("compress", "num_cpus", "basin_root", "allow_remote_basins")


def cpu_count() -> int:
    """Number of CPUs this process may run on"""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def warn(logger: logging.Logger, message: str, stacklevel: int = 2, parameters=()):
    """Report a warning once: a Python warning plus a log record

    The Python warning is what a user sees (printed once, filterable,
    ``pytest.warns``); the log record goes to the handlers an application
    configures (log files, dcnum's job log through
    :func:`dcbg.dcnum.use_dcbg`), never a second time to the console by
    Python's last-resort handler (dcbg's logger has a NullHandler).

    Parameters
    ----------
    logger: logging.Logger
        Logger of the reporting code (a child of the "dcbg" logger)
    message: str
        The warning, one line
    stacklevel: int
        As for :func:`warnings.warn`, counted from the caller of this
        function (2: the caller's caller)
    parameters: tuple of str
        The keyword arguments the message names: the warning is then a
        :class:`dcbg.errors.ParameterWarning` carrying them (the command
        line names its options instead)
    """
    from .errors import ParameterWarning

    logger.warning(message)
    if parameters:
        warnings.warn(ParameterWarning(message, parameters), stacklevel=stacklevel + 1)
    else:
        warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Checked framework options of one background computation

    Build it with :meth:`create`, which checks the user's values.

    Attributes
    ----------
    compress: bool
        Compress the background features (Zstandard)
    num_cpus: int
        Worker threads for the kernels (at most the CPUs available)
    basin_policy: dcbg.io.input.BasinPolicy
        Which basins of the input are followed
    """

    compress: bool = True
    num_cpus: int = 1
    basin_policy: BasinPolicy = dataclasses.field(default_factory=BasinPolicy)

    @classmethod
    def create(
        cls,
        compress=True,
        num_cpus=None,
        basin_root=None,
        allow_remote_basins=False,
        logger: logging.Logger | None = None,
        stacklevel: int = 2,
    ) -> RunOptions:
        """Options from user values, with clear errors for bad ones

        Parameters
        ----------
        compress: bool
            Whether to compress the background features
        num_cpus: int or None
            Worker threads; None: the CPUs available to this process.
            More than that is reduced to it, with a warning.
        basin_root: str or pathlib.Path or None
            Directory that confines file basins (see
            :meth:`BasinPolicy.create`)
        allow_remote_basins: bool
            Follow remote basins (network access)
        logger: logging.Logger or None
            Where the warning about `num_cpus` is logged (default: "dcbg")
        stacklevel: int
            Stack level of that warning, counted from the caller

        Raises
        ------
        ValueError
            For a value of the wrong type or range
        """
        from .errors import ParameterError

        available = cpu_count()
        if num_cpus is None:
            num_cpus = available
        if (
            isinstance(num_cpus, bool)
            or not isinstance(num_cpus, numbers.Integral)
            or num_cpus < 1
        ):
            raise ParameterError(
                "num_cpus", f"num_cpus must be a positive integer, got {num_cpus!r}"
            )
        if num_cpus > available:
            # more threads than CPUs only cost memory and switching
            warn(
                logger or logging.getLogger("dcbg"),
                f"num_cpus={num_cpus} is more than the {available} CPU(s) "
                f"available to this process; using {available} worker threads",
                stacklevel=stacklevel + 1,
                parameters=("num_cpus",),
            )
            num_cpus = available
        if not isinstance(compress, (bool, np.bool_)):
            raise ParameterError(
                "compress",
                f"compress must be True or False, got {compress!r} "
                f"({type(compress).__name__})",
            )
        return cls(
            compress=bool(compress),
            num_cpus=int(num_cpus),
            basin_policy=BasinPolicy.create(basin_root, allow_remote_basins),
        )
