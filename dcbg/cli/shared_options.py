"""Arguments and options that commands share, without the methods

``INPUT`` and the basin policy options of ``dcbg compute``, ``dcbg
batch``, ``dcbg plot`` and ``dcbg check``. Only click here: the help of
``dcbg plot`` and ``dcbg check`` imports no method (numpy, h5py).
"""

from __future__ import annotations

import pathlib

import click


def stacked(decorators: list):
    """One decorator applying `decorators` in the order they are listed

    As if they were written above the function one per line, the first
    on top: click lists the options in this order.
    """

    def decorate(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


def input_argument(name: str = "path"):
    """Decorator: the INPUT argument, a path the API checks (value: `name`)"""
    return click.argument(
        name, metavar="INPUT", type=click.Path(path_type=pathlib.Path)
    )


def basin_options():
    """Decorator: the ``--basin-root`` and ``--allow-remote-basins`` options

    Shared by ``dcbg compute``, ``dcbg batch``, ``dcbg plot`` and ``dcbg
    check``; their
    values arrive as ``basin_root`` (a path or None) and
    ``allow_remote_basins`` (bool).
    See :mod:`dcbg.io.input.policy` for the policy they set.
    """
    options = [
        click.option(
            "--basin-root",
            metavar="DIR",
            type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path),
            default=None,
            help="Follow file basins of the input only to files inside DIR "
            "(symbolic links resolved); other file basins are refused and "
            "not carried into the output. Default: file basins anywhere "
            "(regular HDF5 files only).",
        ),
        click.option(
            "--allow-remote-basins",
            is_flag=True,
            help="Follow remote basins (http, S3, DCOR) of the input: dcbg "
            "then contacts the hosts that the input names. Default: remote "
            "basins are refused and no network request is made.",
        ),
    ]

    return stacked(options)
