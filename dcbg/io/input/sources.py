"""Where a feature of a measurement is stored, and a mapped view of it

:meth:`dcbg.io.input.RtdcMeasurement.locate` answers with a
:class:`FeatureSource`; a mapped basin's data are read through
:class:`MappedData`, which reads only the entries asked for.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np


@dataclasses.dataclass
class FeatureSource:
    """Where the data of one feature of a measurement are stored

    Attributes
    ----------
    data: h5py.Dataset or array-like
        The stored data (an HDF5 dataset, or dclab's object for remote data)
    index: np.ndarray or None
        For each event of the measurement, the entry of `data` holding
        it (mapped basins); None: entry i is event i
    path: str
        The file (or URL) that stores `data`
    route: list of str
        The basins followed to get there (for messages)
    """

    data: object
    index: np.ndarray | None
    path: str
    route: list

    def __len__(self):
        return len(self.index) if self.index is not None else int(self.data.shape[0])

    def describe(self, feat: str, referrer: pathlib.Path) -> str:
        """E.g. "'image' feature of 'a.rtdc' (from basin 'raw' -> '/b.rtdc')" """
        text = f"'{feat}' feature of '{referrer}'"
        if self.route:
            text += f" (from {', '.join(self.route)})"
        return text

    def as_array_like(self):
        """The data indexed like the events (a :class:`MappedData` if mapped)"""
        if self.index is None:
            return self.data
        return MappedData(self.data, self.index)


class MappedData:
    """Read-only view of ``data[index]`` that reads only what is asked for

    It has the attributes ``feat_obj`` and ``basinmap`` of dclab's
    ``BasinProxyFeature``, so :class:`~dcbg.io.images.ImageStack` reads it in
    blocks.
    """

    def __init__(self, data, index: np.ndarray):
        self.feat_obj = data
        self.basinmap = index
        self.shape = (len(index), *data.shape[1:])
        self.dtype = data.dtype

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        indices = self.basinmap[key]
        if np.ndim(indices) == 0:
            return np.asarray(self.feat_obj[int(indices)])
        if len(indices) == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        lo, hi = int(indices.min()), int(indices.max()) + 1
        return np.asarray(self.feat_obj[lo:hi])[indices - lo]


__all__ = ["FeatureSource", "MappedData"]
