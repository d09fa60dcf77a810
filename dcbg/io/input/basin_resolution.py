"""The work of resolving one input's basins: each file once, bounded

File basins may name file basins of their own. A crafted measurement
fans out: three basins per level, each to the three files of the level
below, make 3**depth paths through 3 * depth files (eight levels took
238 s of opening files before anything was computed). One
:class:`BasinResolution` per input therefore

- opens each distinct file once (by device and inode, whatever name or
  link reached it) and hands the same measurement to every referrer;
- counts the basin files opened and the steps taken (basin definitions
  read, locations tried) and stops with an error naming the input beyond
  :data:`MAX_BASIN_FILES` and :data:`MAX_BASIN_STEPS`;
- is where a stop request that Python dropped is noticed: a signal's
  ``KeyboardInterrupt`` raised while h5py or dclab close an object (in a
  ``__del__`` or a weak reference callback) is printed and ignored by
  Python; :meth:`BasinResolution.safe_point` asks :mod:`dcbg.stop` after
  each file opened and raises it again.
"""

from __future__ import annotations

import pathlib

from ... import stop
from ...errors import InputFileError

#: basin files opened per input (distinct files, each opened once, plus
#: files opened again nearer the input, see BasinResolution.reuse): real
#: measurements reach 1 to 5 (raw data, processed features, background);
#: 64 leaves room for hand-built chains and bounds the opening to about
#: 2 s (about 30 ms per small file with dclab's metadata)
MAX_BASIN_FILES = 64

#: basin definitions read and basin locations tried per input, each at
#: most a few system calls or one small dataset: real files define a few
#: basins with one or two locations (dclab tries up to 4 paths each);
#: 4096 bounds a crafted file's thousands of definitions or paths to
#: about a second
MAX_BASIN_STEPS = 4096


class BasinWorkExceeded(InputFileError):
    """An input's basins reach more files or definitions than dcbg examines

    Its ``path`` is the input measurement.
    """


class BasinResolution:
    """Basin files opened for one input, and the work done so far

    Parameters
    ----------
    input_path: pathlib.Path
        The input measurement (named in errors)
    """

    def __init__(self, input_path: pathlib.Path):
        self.input_path = pathlib.Path(input_path)
        self.files_opened = 0
        self.steps = 0
        #: (device, inode) -> (measurement, depth at which it was resolved)
        self._measurements: dict[tuple, tuple] = {}
        #: measurements replaced by one resolved nearer the input: still in
        #: use by their referrers, closed with the others
        self._retired: list = []

    def count_file(self):
        """One more basin file is opened; BasinWorkExceeded beyond the bound"""
        if self.files_opened >= MAX_BASIN_FILES:
            raise BasinWorkExceeded(
                self.input_path,
                f"Input file '{self.input_path}' reaches more than "
                f"{MAX_BASIN_FILES} basin files through its basins (and theirs); "
                f"dcbg opens at most {MAX_BASIN_FILES} per input, expected a "
                f"measurement with a few basins",
            )
        self.files_opened += 1

    def count_steps(self, count: int, what: str, referrer: pathlib.Path):
        """`count` more definitions or locations; BasinWorkExceeded beyond it"""
        self.steps += count
        if self.steps > MAX_BASIN_STEPS:
            raise BasinWorkExceeded(
                self.input_path,
                f"Input file '{self.input_path}' makes dcbg examine more than "
                f"{MAX_BASIN_STEPS} basin definitions and locations (too many "
                f"{what} in '{referrer}'); expected a measurement with a few "
                f"basins",
            )

    def reuse(self, identity: tuple, depth: int):
        """The measurement of an already opened file, if it can serve here

        A file resolved farther from the input had fewer levels of basins
        left (:data:`~dcbg.io.input.followers.MAX_BASIN_DEPTH`): it serves only at
        the same depth or deeper, else it is opened again.
        """
        known = self._measurements.get(identity)
        if known is not None and known[1] <= depth:
            return known[0]
        return None

    def remember(self, identity: tuple, measurement, depth: int):
        """`measurement` serves every later basin to the same file"""
        known = self._measurements.get(identity)
        if known is not None and known[0] is not measurement:
            self._retired.append(known[0])
        self._measurements[identity] = (measurement, depth)

    def safe_point(self):
        """Raise KeyboardInterrupt if a stop was requested (and maybe lost)"""
        stop.raise_if_requested()

    def close(self):
        """Close every basin measurement opened for the input"""
        measurements = [m for m, _ in self._measurements.values()] + self._retired
        self._measurements.clear()
        self._retired.clear()
        for measurement in measurements:
            measurement.close()
