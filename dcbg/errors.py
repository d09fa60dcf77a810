"""Errors that carry what they concern, and one way to show them on one line

dcbg's own errors say which file, feature or parameter they are about as
attributes, so that the command line, the batch table and the cluster
act on those attributes, never on the words of a message. They derive
from the built-in exception a caller expects (``ValueError`` for a bad
value, ``OSError`` for a file that cannot be read), so ``except
ValueError`` in user code and in dcnum's pipeline keeps working.

Every exception that reaches a user as one line goes through
:func:`one_line`; HDF5's multi-line messages included.
"""

from __future__ import annotations

import pathlib

__all__ = [
    "InputFileError",
    "ParameterError",
    "ParameterWarning",
    "ReadError",
    "one_line",
]


def one_line(exc: BaseException | str) -> str:
    """The message of an exception (or a text) on one line

    h5py and HDF5 spread their messages over several lines and pad them
    with spaces; a table cell, a log line or a command-line error wants
    one. An exception without a message is named by its type.
    """
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, BaseException):
        return type(exc).__name__
    return text


class _Carrying:
    """Mixin: keyword attributes survive pickling (Dask ships errors)"""

    _fields: tuple[str, ...] = ()

    def __reduce__(self):
        fields = {name: getattr(self, name) for name in self._fields}
        return _rebuild, (type(self), self.args, fields)


def _rebuild(cls, args, fields):
    exc = cls.__new__(cls)
    exc.args = args
    for name, value in fields.items():
        setattr(exc, name, value)
    return exc


class ParameterError(_Carrying, ValueError):
    """A parameter (keyword argument) has a value that is not accepted

    Parameters
    ----------
    parameter: str
        The keyword argument's name as the API spells it, e.g.
        ``"kernel_size"``; the command line shows its option instead
    message: str
        What was expected and what was given, naming `parameter`
    """

    _fields = ("parameter",)

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


class ParameterWarning(UserWarning):
    """A warning about the values of parameters (keyword arguments)

    Parameters
    ----------
    message: str
        The warning, one line, naming the parameters
    parameters: tuple of str
        The names of the parameters the message names, as the API spells
        them (``"split_time"``); the command line shows its options instead
    """

    def __init__(self, message: str, parameters=()):
        super().__init__(message)
        self.parameters = tuple(parameters)


class InputFileError(_Carrying, ValueError):
    """An input file cannot be used as it is (message names the file)

    Parameters
    ----------
    path: pathlib.Path or str
        The file the error is about
    message: str
        What is wrong, naming the file
    feature: str or None
        The feature concerned, if any (e.g. ``"image"``)
    """

    _fields = ("path", "feature")

    def __init__(self, path, message: str, feature: str | None = None):
        super().__init__(message)
        self.path = pathlib.Path(path) if path is not None else None
        self.feature = feature


class ReadError(_Carrying, OSError):
    """Data of an input file could not be read or decoded

    Parameters
    ----------
    path: pathlib.Path or str or None
        The file read (None for array input)
    message: str
        What failed, naming the file and feature
    feature: str or None
        The feature read, e.g. ``"image"``
    """

    _fields = ("path", "feature")

    def __init__(self, path, message: str, feature: str | None = None):
        super().__init__(message)
        self.path = pathlib.Path(path) if path is not None else None
        self.feature = feature


class DataReadError(ReadError):
    """Stored data (e.g. frames of an image stack) could not be read or decoded

    Parameters
    ----------
    message: str
        What failed, naming `source`
    source: str or None
        What was read as messages name it (e.g. "'image' feature of
        'a.rtdc'"); a reader that names its data knows by this attribute
        whether the message names them already
    path, feature:
        As :class:`ReadError`, where known
    """

    _fields = ("path", "feature", "source")

    def __init__(
        self, message: str, source: str | None = None, path=None, feature=None
    ):
        super().__init__(path, message, feature)
        self.source = source


class StoredDataError(_Carrying, ValueError):
    """Stored data do not fit what they declare (shape, storage, values)

    Parameters
    ----------
    source: str
        The data as messages name them (see :class:`DataReadError`)
    message: str
        What is wrong, naming `source`
    """

    _fields = ("source",)

    def __init__(self, source: str | None, message: str):
        super().__init__(message)
        self.source = source
