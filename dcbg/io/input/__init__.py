"""The input side: what a background method reads, opened safely

``input_data`` of a method is opened with :func:`open_input`, which
chooses the input kind from a registry (:mod:`.registry`): an .rtdc file
(:class:`RtdcMeasurement`, :mod:`.measurement`) or an array-like image
stack (:class:`ArrayInput`, :mod:`.array_input`). Every input file is
untrusted:

- :mod:`.checks`: the file is a regular HDF5 RT-DC measurement whose
  data are what it declares; :mod:`.safe_open`: what is opened is what
  was checked; :mod:`.hdf5_links`: no HDF5 external links;
- :mod:`.policy`: the basin policy (which basins are followed);
  :mod:`.followers`: one class per basin type (internal, file, remote),
  registered by type; :mod:`.basin_resolution`: each basin file once,
  the work per input bounded;
- :mod:`.dataset`: dclab's dataset, seeing only the followed basins;
  :mod:`.sources`: where a feature's data are stored.
"""

from .array_input import ArrayInput
from .checks import check_input_path
from .measurement import RtdcMeasurement
from .policy import BasinPolicy, FollowedBasin, RefusedBasin
from .registry import INPUT_KINDS, input_kind_of, open_input, register_input_kind
from .safe_open import FileRefused

__all__ = [
    "INPUT_KINDS",
    "ArrayInput",
    "BasinPolicy",
    "FileRefused",
    "FollowedBasin",
    "RefusedBasin",
    "RtdcMeasurement",
    "check_input_path",
    "input_kind_of",
    "open_input",
    "register_input_kind",
]
