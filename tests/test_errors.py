"""Errors that carry what they concern (dcbg.errors) and the run options

The command line, the batch table and Dask's workers act on an error's
attributes (file, feature, parameter), never on its words: the attributes
must survive pickling (Dask ships exceptions between processes) and the
errors must stay the built-in types that callers catch.
"""

import pathlib
import pickle

import pytest

from dcbg.errors import InputFileError, ParameterError, ReadError, one_line
from dcbg.run_options import FRAMEWORK_KEYWORDS, RunOptions, cpu_count


@pytest.mark.parametrize(
    ("exc", "builtin", "attrs"),
    [
        (
            ParameterError("kernel_size", "kernel_size must be positive, got 0"),
            ValueError,
            {"parameter": "kernel_size"},
        ),
        (
            InputFileError("/d/a.rtdc", "'/d/a.rtdc' is not HDF5", feature="image"),
            ValueError,
            {"path": pathlib.Path("/d/a.rtdc"), "feature": "image"},
        ),
        (
            ReadError("/d/a.rtdc", "chunk 3 of 'image' is damaged", feature="image"),
            OSError,
            {"path": pathlib.Path("/d/a.rtdc"), "feature": "image"},
        ),
    ],
)
def test_error_attributes_survive_pickling(exc, builtin, attrs):
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert isinstance(copy, builtin)
    assert str(copy) == str(exc)
    for name, value in attrs.items():
        assert getattr(copy, name) == value


def test_read_error_without_path():
    exc = ReadError(None, "frames 0-9 of the input array: not uint8")
    assert exc.path is None
    assert pickle.loads(pickle.dumps(exc)).path is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "Unable to open file\n   (file signature not found)",
            "Unable to open file (file signature not found)",
        ),
        (OSError("a\tb\n\n c  "), "a b c"),
        (KeyError(), "KeyError"),
        (ValueError(""), "ValueError"),
        ("", ""),
    ],
)
def test_one_line(given, expected):
    assert one_line(given) == expected


def test_run_options_defaults_and_checks():
    options = RunOptions.create()
    assert options.compress is True
    assert options.num_cpus == cpu_count()
    assert options.basin_policy.basin_root is None
    assert options.basin_policy.allow_remote_basins is False
    with pytest.raises(AttributeError):
        options.compress = False  # frozen: built once at the edge
    with pytest.raises(ParameterError, match="num_cpus must be a positive") as info:
        RunOptions.create(num_cpus=0)
    assert info.value.parameter == "num_cpus"
    with pytest.raises(ParameterError, match="compress must be True or False") as info:
        RunOptions.create(compress="yes")
    assert info.value.parameter == "compress"


def test_framework_keywords_are_the_create_parameters():
    import inspect

    params = inspect.signature(RunOptions.create).parameters
    assert set(FRAMEWORK_KEYWORDS) <= set(params)
    assert {"logger", "stacklevel"} | set(FRAMEWORK_KEYWORDS) == set(params)
