"""Names of the hidden files beside an output, and whether they fit

An output ``<name>`` is staged in ``.<name>.<token>.dcbg-partial`` and
locked with ``.<name>.dcbg-lock`` in the same folder (see
:mod:`dcbg.io.transaction`). These names are longer than the output's:
an output name close to the file system's limit per name (NAME_MAX, 255
bytes on Linux and macOS, 255 UTF-16 units on Windows) leaves no room for
them, which :func:`check_name_fits` says before anything is created.
"""

from __future__ import annotations

import os
import pathlib
import sys

#: suffix of staged output files
PARTIAL_SUFFIX = ".dcbg-partial"
#: suffix of lock files
LOCK_SUFFIX = ".dcbg-lock"
#: hex digits of the random token of a staged file: 32 bits, so that two
#: runs (or a run and a killed run's leftover) never pick the same name
STAGED_TOKEN_CHARS = 8

#: NAME_MAX where the file system does not say (Windows, and the limit of
#: ext4, XFS, APFS, NTFS)
DEFAULT_NAME_MAX = 255

#: characters the longest hidden file adds to the output's name:
#: "." + name + "." + token + PARTIAL_SUFFIX
HIDDEN_NAME_EXTRA = 2 + STAGED_TOKEN_CHARS + len(PARTIAL_SUFFIX)


def name_max(folder: pathlib.Path, platform: str = sys.platform) -> int:
    """The longest file name the file system of `folder` takes"""
    if platform != "win32" and hasattr(os, "pathconf"):
        try:
            return int(os.pathconf(folder, "PC_NAME_MAX"))
        except (OSError, ValueError):
            pass
    return DEFAULT_NAME_MAX


def name_length(name: str, platform: str = sys.platform) -> int:
    """Length of `name` in the units of NAME_MAX (bytes; UTF-16 on Windows)"""
    if platform == "win32":
        return len(name.encode("utf-16-le", "surrogatepass")) // 2
    return len(os.fsencode(name))


def check_name_fits(output_path: pathlib.Path, platform: str = sys.platform):
    """Raise ValueError if the hidden files of `output_path` cannot be named

    Raises
    ------
    ValueError
        Naming the output, its length, the limit and the longest name that
        fits
    """
    output_path = pathlib.Path(output_path)
    folder = output_path.parent
    limit = name_max(folder if folder.is_dir() else pathlib.Path("."), platform)
    length = name_length(output_path.name, platform)
    if length + HIDDEN_NAME_EXTRA <= limit:
        return
    unit = "UTF-16 units" if platform == "win32" else "bytes"
    raise ValueError(
        f"Output file name '{output_path.name}' (in '{folder}') is {length} "
        f"{unit} long; dcbg writes it through hidden files beside it, named "
        f"'.<name>.{'x' * STAGED_TOKEN_CHARS}{PARTIAL_SUFFIX}' "
        f"({HIDDEN_NAME_EXTRA} {unit} more), and the file system allows "
        f"{limit} per name: choose an output name of at most "
        f"{limit - HIDDEN_NAME_EXTRA} {unit}"
    )
