"""Reading input measurements and writing output .rtdc files

All knowledge of the .rtdc format (basins, metadata, compression) lives
here and is delegated to dclab wherever dclab offers it. The background
methods only see :class:`InputMeasurement` and :class:`OutputFile`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import time
import uuid
import weakref

import dclab
import h5py
import hdf5plugin
import numpy as np
from dclab.rtdc_dataset.copier import rtdc_copy
from dclab.rtdc_dataset.fmt_hdf5 import RTDC_HDF5
from dclab.util import hashobj

from .._version import __version__
from .images import ImageStack

#: features written by background computation
BACKGROUND_FEATURES = ("image_bg", "bg_off")


#: Zstandard level of dclab and dcnum (metadata, logs, basins, bg_off)
ZSTD_LEVEL = 5
#: Zstandard level for streamed background image stacks: on rolling-median
#: images level 1 compresses 4x faster than level 5 and into smaller
#: files (measured: 6.70 MB vs 7.11 MB for 3,880 80x320 frames)
ZSTD_LEVEL_IMAGES = 1


def get_compression_kwargs(compress: bool, level: int = ZSTD_LEVEL) -> dict:
    """HDF5 dataset keyword arguments for the ecosystem's compression

    Zstandard through hdf5plugin, as dclab and dcnum write it; fletcher32
    checksums are always added by the writer.
    """
    if compress:
        return dict(hdf5plugin.Zstd(clevel=level))
    return {"compression": None}


def check_input_path(path: pathlib.Path) -> pathlib.Path:
    """Raise a clear error if `path` is not an existing HDF5 file"""
    if not path.exists():
        raise FileNotFoundError(f"Input file '{path}' does not exist")
    if path.is_dir():
        raise ValueError(f"Input path '{path}' is a directory, expected an .rtdc file")
    if not h5py.is_hdf5(path):
        raise ValueError(
            f"Input file '{path}' is not an HDF5 file; expected an .rtdc "
            f"measurement with the 'image' feature"
        )
    return path


class InputMeasurement:
    """An .rtdc measurement opened for background computation

    Basins (file basins with absolute or relative paths, internal basins,
    mapped basins) are resolved by dclab.

    Parameters
    ----------
    path: pathlib.Path
        Path to the .rtdc file
    writable: bool
        Open the file in append mode (when it is also the output file)

    Attributes
    ----------
    ds: dclab.rtdc_dataset.RTDC_HDF5
        The dclab dataset
    h5: h5py.File
        The file handle dclab opened
    images: ImageStack
        The ``image`` feature, wherever it is stored
    """

    def __init__(self, path: pathlib.Path, writable: bool = False):
        self.path = check_input_path(pathlib.Path(path))
        h5kwargs = {"mode": "a" if writable else "r"}
        try:
            self.ds = RTDC_HDF5(self.path, h5kwargs=h5kwargs)
        except OSError as exc:
            raise ValueError(f"Cannot open input file '{self.path}': {exc}") from exc
        except Exception as exc:  # dclab rejects files that are not RT-DC
            raise ValueError(
                f"Input file '{self.path}' is not a valid .rtdc measurement: {exc}"
            ) from exc
        self.h5 = self.ds.h5file
        try:
            if "image" not in self.ds:
                found = sorted(self.ds.features_innate + self.ds.features_basin)
                raise ValueError(
                    f"Input file '{self.path}' has no 'image' feature (also "
                    f"not in its basins); features found: {found}"
                )
            self.images = ImageStack(
                self.ds["image"], name=f"'image' feature of '{self.path}'"
            )
        except BaseException:
            self.close()
            raise

    def close(self):
        self.ds.close()

    @property
    def config(self):
        return self.ds.config

    def get_feature(self, name: str) -> np.ndarray | None:
        """A scalar feature as an array, resolving basins, or None"""
        if name in self.ds.features_innate or name in self.ds.features_basin:
            return np.asarray(self.ds[name][:])
        return None

    def get_frame_rate(self) -> float | None:
        return self.ds.config.get("imaging", {}).get("frame rate")

    def get_basin_features(self) -> list[str]:
        """Features the output takes from this file when it is a file basin

        These are the features stored in the file itself (``events`` and
        internal basins). Features of the file's own file basins are not
        listed: the output carries copies of those basins, and dcnum does
        not follow nested basins.
        """
        feats = set(self.h5.get("events", {}).keys())
        for bn_dict in self.ds.basins_get_dicts():
            if bn_dict.get("type") == "internal":
                feats |= set(bn_dict.get("features") or [])
        return sorted(
            f
            for f in feats
            if dclab.dfn.feature_exists(f)
            and f not in BACKGROUND_FEATURES
            and not f.startswith("basinmap")
        )


class OutputFile:
    """The output .rtdc file of a background computation

    A new output is written to a hidden temporary sibling of `path` and
    moved into place by :meth:`commit`; :meth:`discard` (also called when
    the object is garbage-collected uncommitted) removes it, so that an
    interrupted run never leaves a half-written file at `path`. If
    `path` is the input file, the data are written into the input file
    and :meth:`discard` removes what was written.

    Parameters
    ----------
    path: pathlib.Path
        Final output path
    measurement: InputMeasurement or None
        The input measurement; a new output references it as a file basin
        and carries its metadata, logs, tables and basins.
    compress: bool
        Compress the written features with Zstandard
    """

    def __init__(
        self,
        path: pathlib.Path,
        measurement: InputMeasurement | None = None,
        compress: bool = True,
    ):
        self.path = pathlib.Path(path)
        self.compress = compress
        self.compression_kwargs = get_compression_kwargs(compress)
        self.in_place = measurement is not None and same_file(
            measurement.path, self.path
        )
        self.committed = False
        self._created = []
        if self.in_place:
            self.temp_path = None
            self.h5 = measurement.h5
        else:
            check_output_dir(self.path)
            self.temp_path = self.path.with_name(
                f".{self.path.name}.{uuid.uuid4().hex[:8]}.dcbg-partial"
            )
            self._finalizer = weakref.finalize(self, _remove_file, self.temp_path)
            try:
                if self.path.exists():
                    # Keep what the existing output holds, replace only
                    # the background features (as the spec's process() does).
                    shutil.copy2(self.path, self.temp_path)
                    self.h5 = h5py.File(self.temp_path, "a", locking=False)
                else:
                    self.h5 = h5py.File(self.temp_path, "w", locking=False)
                    if measurement is not None:
                        self._init_from_input(measurement)
            except BaseException:
                self.discard()
                raise
        self.writer = dclab.RTDCWriter(
            self.h5, mode="append", compression_kwargs=self.compression_kwargs
        )

    def _init_from_input(self, measurement: InputMeasurement):
        # metadata, logs and tables (no features: they stay in the input)
        rtdc_copy(
            src_h5file=measurement.h5,
            dst_h5file=self.h5,
            features="none",
            include_basins=False,
            include_logs=True,
            include_tables=True,
        )
        writer = dclab.RTDCWriter(self.h5, compression_kwargs=self.compression_kwargs)
        for bn_dict in measurement.ds.basins_get_dicts():
            self._copy_basin(writer, measurement, bn_dict)
        # The temporary file is a sibling of the output, so dclab's
        # relative path is valid for the output too.
        key = writer.store_basin(
            basin_name=measurement.path.name,
            basin_type="file",
            basin_format="hdf5",
            basin_locs=[measurement.path],
            basin_descr=f"Input measurement (dcbg {__version__})",
            basin_feats=measurement.get_basin_features(),
            verify=True,
        )
        _drop_same_mapping(self.h5, key)

    def _copy_basin(self, writer, measurement: InputMeasurement, bn_dict: dict):
        """Carry one of the input's own basins over to the output"""
        btype = bn_dict.get("type")
        if btype == "internal":
            # reachable through the input's file basin (dclab nests basins)
            return
        mapping = bn_dict.get("mapping", "same")
        basin_map = None
        if mapping not in (None, "same"):
            basin_map = (mapping, np.asarray(measurement.h5["events"][mapping][:]))
        if btype == "file":
            locs = []
            for loc in bn_dict.get("paths", []):
                loc = pathlib.Path(loc)
                if not loc.is_absolute():
                    loc = measurement.path.parent / loc
                locs.append(str(loc.resolve()))
                rel = os.path.relpath(loc.resolve(), self.path.parent.resolve())
                locs.append(rel)
            locs = list(dict.fromkeys(locs))
        else:
            locs = bn_dict.get("urls", bn_dict.get("paths", []))
        feats = bn_dict.get("features")
        if feats is not None:
            feats = [f for f in feats if f not in BACKGROUND_FEATURES]
        key = writer.store_basin(
            basin_name=bn_dict.get("name", "basin"),
            basin_type=btype,
            basin_format=bn_dict.get("format", "hdf5"),
            basin_locs=locs,
            basin_descr=bn_dict.get("description"),
            basin_feats=feats,
            basin_map=basin_map,
            basin_id=bn_dict.get("identifier"),
            verify=False,
            perishable=bn_dict.get("perishable", False),
        )
        _drop_same_mapping(self.h5, key)

    def remove_background_features(self):
        """Remove ``image_bg``/``bg_off`` and the internal basins holding them"""
        for grp in ("events", "basin_events"):
            for feat in BACKGROUND_FEATURES:
                if grp in self.h5 and feat in self.h5[grp]:
                    del self.h5[grp][feat]
        basins = self.h5.get("basins", {})
        stale_maps = set()
        for key in list(basins):
            lines = [
                ln.decode() if isinstance(ln, bytes) else ln for ln in basins[key][:]
            ]
            bn = json.loads(" ".join(lines))
            if bn.get("type") == "internal" and set(bn.get("features") or []) & set(
                BACKGROUND_FEATURES
            ):
                del basins[key]
                if bn.get("mapping") not in (None, "same"):
                    stale_maps.add(bn["mapping"])
        used = set()
        for key in basins:
            text = " ".join(
                ln.decode() if isinstance(ln, bytes) else ln for ln in basins[key][:]
            )
            used.add(json.loads(text).get("mapping"))
        for name in stale_maps - used:
            if name in self.h5["events"]:
                del self.h5["events"][name]

    def create_image_feature(self, name: str, count: int, frame_shape, group="events"):
        """Create an empty uint8 image dataset of `count` frames to fill in blocks

        Chunks, compression filter, checksums and image attributes are
        those of dclab's writer, so the file reads like any other .rtdc
        file; the Zstandard level is `ZSTD_LEVEL_IMAGES`.
        """
        grp = self.h5.require_group(group)
        chunks = self.writer.get_best_nd_chunks(tuple(frame_shape), np.uint8)
        dset = grp.create_dataset(
            name,
            shape=(count, *frame_shape),
            dtype=np.uint8,
            maxshape=(None, *frame_shape),
            chunks=chunks,
            fletcher32=True,
            **get_compression_kwargs(self.compress, ZSTD_LEVEL_IMAGES),
        )
        dset.attrs.create("CLASS", np.bytes_("IMAGE"))
        dset.attrs.create("IMAGE_VERSION", np.bytes_("1.2"))
        dset.attrs.create("IMAGE_SUBCLASS", np.bytes_("IMAGE_GRAYSCALE"))
        self._created.append(dset.name)
        return dset

    def store_feature(self, name: str, data: np.ndarray):
        """Write a whole feature through dclab's writer"""
        self._created.append(f"/events/{name}")
        self.writer.store_feature(name, data)

    def store_internal_basin(self, name, description, features: dict, mapping):
        """Store data as an internal basin mapped through a basinmap feature"""
        key = self.writer.store_basin(
            basin_name=name,
            basin_type="internal",
            basin_format="h5dataset",
            basin_locs=["basin_events"],
            basin_descr=description,
            basin_feats=sorted(features),
            basin_map=np.asarray(mapping, dtype=np.int64),
            internal_data=features,
        )
        self._created.extend(f"/basin_events/{f}" for f in features)
        self._created.append(f"/basins/{key}")
        return key

    def set_feature_attrs(self, attrs: dict):
        """Set attributes on every background feature present in the file"""
        for grp in ("events", "basin_events"):
            for feat in BACKGROUND_FEATURES:
                if grp in self.h5 and feat in self.h5[grp]:
                    self.h5[grp][feat].attrs.update(attrs)

    def store_log(self, name: str, lines: list[str]):
        logs = self.h5.require_group("logs")
        if name in logs:
            del logs[name]
        self.writer.store_log(name, lines)
        self._created.append(f"/logs/{name}")

    def commit(self):
        """Flush and move the finished output into place"""
        if self.committed:
            return
        self.h5.flush()
        if not self.in_place:
            self.h5.close()
            os.replace(self.temp_path, self.path)
            self._finalizer.detach()
        self.committed = True

    def discard(self):
        """Undo everything written (remove the temporary file)"""
        if self.committed:
            return
        if self.in_place:
            for name in reversed(self._created):
                if name in self.h5:
                    del self.h5[name]
            self._created.clear()
            self.h5.flush()
        else:
            h5 = getattr(self, "h5", None)
            if h5 is not None and h5.id.valid:
                h5.close()
            _remove_file(self.temp_path)
            self._finalizer.detach()

    def close(self):
        """Close a committed output, discard an uncommitted one"""
        if not self.committed:
            self.discard()
        elif not self.in_place and self.h5.id.valid:
            self.h5.close()


def check_output_dir(path: pathlib.Path):
    """Raise a clear error if the output cannot be created at `path`"""
    parent = path.parent
    if path.exists() and path.is_dir():
        raise ValueError(f"Output path '{path}' is a directory, expected a file path")
    if not parent.exists():
        raise FileNotFoundError(
            f"Output folder '{parent}' does not exist (output path '{path}')"
        )
    if not parent.is_dir():
        raise ValueError(f"Output folder '{parent}' is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Output folder '{parent}' is not writable (output path '{path}')"
        )


def check_replaceable(output_path: pathlib.Path):
    """Raise ValueError if an existing `output_path` holds raw images

    A background output never holds images itself; replacing a file that
    does (a measurement) would destroy raw data, which forcing an
    overwrite is not meant for.
    """
    try:
        with h5py.File(output_path, "r", locking=False) as h5:
            holds_images = "events" in h5 and "image" in h5["events"]
    except OSError:  # missing or not HDF5: nothing of value to protect
        return
    if holds_images:
        raise ValueError(
            f"Output file '{output_path}' holds raw images ('events/image'); "
            f"refusing to replace it even with --force, choose another output path"
        )


@contextlib.contextmanager
def replacing(output_path: pathlib.Path):
    """Yield a temporary path whose file replaces `output_path` on success

    The background API updates an existing output in place; a replaced
    output must not inherit anything from the old file, so it is computed
    as a fresh file next to it and moved over it only when complete. On
    failure the old output stays untouched.
    """
    check_replaceable(output_path)
    target = output_path.with_name(
        f".{output_path.name}.{uuid.uuid4().hex[:8]}.dcbg-replace"
    )
    try:
        yield target
        os.replace(target, output_path)
    finally:
        target.unlink(missing_ok=True)


def log_lines(record: dict) -> list[str]:
    """A log entry as indented JSON lines"""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
    return json.dumps(record, indent=2, default=str).split("\n")


def _drop_same_mapping(h5: h5py.File, key: str):
    """Remove ``"mapping": "same"`` from an unmapped basin definition

    dclab writes it, dclab also reads a basin without it as unmapped, but
    dcnum 0.31.0 skips basins whose mapping is not a feature of the file.
    """
    basins = h5["basins"]
    lines = [ln.decode() if isinstance(ln, bytes) else ln for ln in basins[key][:]]
    bn_dict = json.loads(" ".join(lines))
    if bn_dict.get("mapping") != "same":
        return
    bn_dict.pop("mapping")
    new_lines = json.dumps(bn_dict, indent=2, sort_keys=True).split("\n")
    del basins[key]
    dclab.RTDCWriter(h5).write_text(basins, hashobj(new_lines), new_lines)


def same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Whether two paths name the same file"""
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _remove_file(path: pathlib.Path):
    try:
        pathlib.Path(path).unlink()
    except FileNotFoundError:
        pass
