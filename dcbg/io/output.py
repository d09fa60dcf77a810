"""The output .rtdc file of a background computation, written as a transaction

:class:`OutputFile` stages the output beside its path, writes it through
dclab's writer and moves it into place in one step (see
:mod:`dcbg.io.transaction`); a new output references the input
measurement (:class:`~dcbg.io.input.RtdcMeasurement`) as a file basin.
HDF5's failures while writing are handled in :mod:`dcbg.io.hdf5_failures`.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import weakref
from typing import TYPE_CHECKING

import h5py
import numpy as np

from .. import stop
from .._version import __version__
from .chunks import ImageFeature
from .conventions import (
    BACKGROUND_FEATURES,
    INTERNAL_BASIN_GROUP,
    PPID_ATTR,
    clear_pipeline_background,
    copy_pipeline_background,
    ensure_hdf5_filters,
    read_basin_definition,
    set_pipeline_background,
)
from .existing_output import (
    check_fits_output,
    check_replaceable,
    keep_ownership,
    prepare_staged_copy,
    remove_background_features,
    warn_hard_links,
)
from .hdf5_failures import close_discarded, write_errors_named
from .images import ImageStack
from .transaction import (
    WriterLock,
    file_identity,
    move_into_place,
    remove_temporary_files,
    signals_deferred,
    staged_path,
)

if TYPE_CHECKING:
    from .input import RtdcMeasurement

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
        import hdf5plugin  # 0.15 s to import: where data are first written

        return dict(hdf5plugin.Zstd(clevel=level))
    return {"compression": None}


class OutputFile:
    """The output .rtdc file of a background computation, as a transaction

    Everything is written to a staged hidden sibling of the output (see
    :mod:`dcbg.io.transaction`): a new output starts as a file that
    references the input as a basin; an existing output, also the input
    file itself (in place), starts as a copy of that file without its
    background features. :meth:`commit` moves the complete staged file
    over the output path in one step; :meth:`discard` (also called when
    the object is garbage-collected uncommitted) removes it. The output
    path thus holds the previous file or the new one, never a mixture,
    whatever happens to the process. A :class:`~dcbg.io.transaction.WriterLock`
    keeps other dcbg processes from writing the same output meanwhile.

    Parameters
    ----------
    path: pathlib.Path
        Final output path
    measurement: RtdcMeasurement or None
        The input measurement; a new output references it as a file basin
        and carries its metadata, logs, tables and basins.
    compress: bool
        Compress the written features with Zstandard
    event_count: int or None
        Number of events the background is computed for; an existing
        output that holds another number of events is refused (its
        background would not fit its events)

    Raises
    ------
    OutputLockedError
        If another process (or object) is writing the same output
    UnsafeLockFileError
        If something else than a dcbg lock file lies at the lock file's
        path (see :mod:`dcbg.io.lockfile`)
    PermissionError
        If an existing output is read-only or not writable by this user
        (see :func:`dcbg.io.existing_output.check_replaceable`)
    ValueError
        If an existing output is another measurement's file (raw images of
        its own, another number of events or another measurement
        identifier; see :func:`dcbg.io.existing_output.check_fits_output`)
        or the output's name is too long for its hidden siblings
    """

    def __init__(
        self,
        path: pathlib.Path,
        measurement: RtdcMeasurement | None = None,
        compress: bool = True,
        event_count: int | None = None,
    ):
        self.path = pathlib.Path(path)
        self.compress = compress
        self.compression_kwargs = get_compression_kwargs(compress)
        self.in_place = measurement is not None and same_file(
            measurement.path, self.path
        )
        #: whether the staged file has been moved to the output path
        self.committed = False
        #: whether background data were written (see :meth:`mark_started`)
        self.started = False
        self.h5 = None
        self.writer = None
        check_output_dir(self.path)
        ensure_hdf5_filters()  # existing files and their copies are compressed
        # An existing output may be a symbolic link: the file it points
        # to is what gets replaced.
        self.target = pathlib.Path(os.path.realpath(self.path))
        self._lock = WriterLock(self.target)
        self._lock.acquire()
        self.staged_path = staged_path(self.target)
        self._finalizer = weakref.finalize(self, _abandon, self.staged_path, self._lock)
        # a stop at once (a later Ctrl-C) removes the staged file too
        self._abrupt_cleanup = stop.add_abrupt_cleanup(
            functools.partial(_remove_file, self.staged_path)
        )
        try:
            # we hold the lock: staged files of this output are leftovers
            # of killed runs
            remove_temporary_files(self.target)
            self._expected = file_identity(self.target)
            #: os.stat of the file the output replaces (None: a new file)
            self._replaced_stat = None
            with write_errors_named(self.path):
                if self._expected is not None:
                    # before anything is computed: a file dcbg may not
                    # replace fails now, not after the computation
                    check_replaceable(self.path, self.target)
                    if not self.in_place:
                        check_fits_output(
                            self.path,
                            event_count,
                            identifier=measurement.ds.get_measurement_identifier()
                            if measurement is not None
                            else None,
                        )
                    self._replaced_stat = os.stat(self.target)
                    warn_hard_links(self.path, self._replaced_stat)
                    # Keep what the existing file holds, replace only the
                    # background features (as the spec's process() does).
                    shutil.copy2(self.target, self.staged_path)
                    prepare_staged_copy(self.staged_path)
                    self.h5 = h5py.File(self.staged_path, "a", locking=False)
                    self.remove_background_features()
                else:
                    self.h5 = h5py.File(self.staged_path, "w", locking=False)
                    if measurement is not None:
                        self._init_from_input(measurement)
                import dclab

                self.writer = dclab.RTDCWriter(
                    self.h5, mode="append", compression_kwargs=self.compression_kwargs
                )
        except BaseException:
            self.discard()
            self.close()
            raise

    def _init_from_input(self, measurement: RtdcMeasurement):
        import dclab
        from dclab.rtdc_dataset.copier import rtdc_copy

        # metadata, logs and tables (no features: they stay in the input)
        rtdc_copy(
            src_h5file=measurement.h5,
            dst_h5file=self.h5,
            features="none",
            include_basins=False,
            include_logs=True,
            include_tables=True,
        )
        # every .rtdc file has it (dclab reads it), also an output whose
        # features all stay in the input (a copy without a background)
        self.h5.require_group("events")
        writer = dclab.RTDCWriter(self.h5, compression_kwargs=self.compression_kwargs)
        # only basins the basin policy followed (file basins: resolved path)
        for bn_dict in measurement.followed_basins():
            self._copy_basin(writer, measurement, bn_dict)
        key = writer.store_basin(
            basin_name=measurement.path.name,
            basin_type="file",
            basin_format="hdf5",
            basin_locs=basin_file_locations(measurement.path, self.target),
            basin_descr=f"Input measurement (dcbg {__version__})",
            basin_feats=measurement.get_basin_features(),
            basin_id=measurement.ds.get_measurement_identifier() or None,
            verify=False,
        )
        drop_same_mapping(self.h5, key)

    def _copy_basin(self, writer, measurement: RtdcMeasurement, bn_dict: dict):
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
                locs.extend(basin_file_locations(loc, self.target))
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
        drop_same_mapping(self.h5, key)

    def remove_background_features(self):
        """Remove ``image_bg``/``bg_off``, keeping what serves other features

        See :func:`dcbg.io.existing_output.remove_background_features`.
        """
        remove_background_features(self.h5)

    def mark_started(self):
        """Note that background data were written: a clean exit keeps them"""
        self.started = True

    def create_image_feature(
        self, name: str, count: int, frame_shape, group="events"
    ) -> ImageFeature:
        """Create an empty uint8 image feature of `count` frames to fill in blocks

        Chunks, compression filter, checksums and image attributes are
        those of dclab's writer, so the file reads like any other .rtdc
        file; the Zstandard level is `ZSTD_LEVEL_IMAGES`.
        """
        self.mark_started()
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
        return ImageFeature(dset)

    def store_feature(self, name: str, data: np.ndarray):
        """Write a whole feature through dclab's writer"""
        self.mark_started()
        self.writer.store_feature(name, data)

    def copy_dataset(self, source, name: str, group: str = "events"):
        """Copy an h5py dataset as it is stored (filters, attributes)"""
        self.mark_started()
        source.file.copy(source, self.h5.require_group(group), name=name)

    def copy_background_from(
        self, measurement: RtdcMeasurement, progress=None, image_bg: bool = True
    ):
        """Copy ``image_bg`` and ``bg_off`` of `measurement` as they are stored

        Plain features are copied dataset by dataset (keeping their
        compression and attributes, the PPID among them), an ``image_bg``
        held in an internal basin is stored again as one (mapped as in
        the input), and an ``image_bg`` reachable only through a file basin
        is copied block by block; ``bg_off`` is copied wherever it is
        stored. The output is a staged file apart from the input (also in
        place), so the copy reads the input as it was when the run began.

        Parameters
        ----------
        measurement: RtdcMeasurement
            The input
        progress: object or None
            Its ``value`` is set to the fraction of frames copied
        image_bg: bool
            Whether the input has ``image_bg``; False: only ``bg_off`` is
            copied, if there is one (dcnum's copy of an input without a
            background)
        """
        h5in = measurement.h5
        events_in = h5in.get("events", {})
        copied = set()
        for feat in BACKGROUND_FEATURES:
            if feat in events_in:
                self.copy_dataset(events_in[feat], feat)
                copied.add(feat)
        if (
            image_bg
            and "image_bg" not in copied
            and not self._copy_internal_background(measurement)
        ):
            # image_bg only reachable through a (possibly mapped) file basin
            stack = ImageStack(
                measurement.ds["image_bg"], name=f"'image_bg' of '{measurement.path}'"
            )
            feature = self.create_image_feature(
                "image_bg", len(stack), stack.frame_shape
            )
            for start, stop in stack.iter_blocks():
                feature.dataset[start:stop] = stack.read(start, stop)
                if progress is not None:
                    progress.value = stop / len(stack)
        bg_off = None if "bg_off" in copied else measurement.get_feature("bg_off")
        if bg_off is not None:
            # bg_off in a basin (file or internal): one value per event
            self.store_feature("bg_off", bg_off)

    def _copy_internal_background(self, measurement: RtdcMeasurement) -> bool:
        """Copy an ``image_bg`` held in an internal basin; False if there is none"""
        for bn_dict in measurement.ds.basins_get_dicts():
            if bn_dict.get("type") != "internal":
                continue
            if "image_bg" not in (bn_dict.get("features") or []):
                continue
            group = measurement.h5[bn_dict.get("paths", [INTERNAL_BASIN_GROUP])[0]]
            data = {"image_bg": group["image_bg"][:]}
            mapping = bn_dict.get("mapping", "same")
            if mapping in (None, "same"):
                self.store_feature("image_bg", data["image_bg"])
            else:
                self.store_internal_basin(
                    name=bn_dict.get("name", "background images"),
                    description=bn_dict.get("description"),
                    features=data,
                    mapping=measurement.h5["events"][mapping][:],
                )
            return True
        return False

    def set_missing_ppid(self, bg_ppid: str, source: RtdcMeasurement | None = None):
        """Stamp `bg_ppid` on background features that carry no PPID

        Features copied as datasets from `source` keep the attributes
        they had there, also none.
        """
        for grp in ("events", INTERNAL_BASIN_GROUP):
            for feat in BACKGROUND_FEATURES:
                path = f"{grp}/{feat}"
                if path not in self.h5:
                    continue
                if source is not None and path in source.h5:
                    continue  # attributes were copied with the dataset
                if PPID_ATTR not in self.h5[path].attrs:
                    self.h5[path].attrs[PPID_ATTR] = bg_ppid

    def set_pipeline_background(self, bg_ppid: str, generation: str):
        """Make the file's pipeline attributes claim its new background"""
        set_pipeline_background(self.h5, bg_ppid, generation)

    def copy_pipeline_background(self, source: RtdcMeasurement):
        """Carry the pipeline claims of `source` (a copied background)"""
        copy_pipeline_background(source.h5, self.h5)

    def clear_pipeline_background(self):
        """Claim no background until a new one is complete"""
        clear_pipeline_background(self.h5)

    def store_internal_basin(self, name, description, features: dict, mapping):
        """Store data as an internal basin mapped through a basinmap feature"""
        self.mark_started()
        return self.writer.store_basin(
            basin_name=name,
            basin_type="internal",
            basin_format="h5dataset",
            basin_locs=[INTERNAL_BASIN_GROUP],
            basin_descr=description,
            basin_feats=sorted(features),
            basin_map=np.asarray(mapping, dtype=np.int64),
            internal_data=features,
        )

    def set_feature_attrs(self, attrs: dict):
        """Set attributes on every background feature present in the file"""
        for grp in ("events", INTERNAL_BASIN_GROUP):
            for feat in BACKGROUND_FEATURES:
                if grp in self.h5 and feat in self.h5[grp]:
                    self.h5[grp][feat].attrs.update(attrs)

    def store_log(self, name: str, lines: list[str]):
        logs = self.h5.require_group("logs")
        if name in logs:
            del logs[name]
        self.writer.store_log(name, lines)

    def commit(self, release_input=None):
        """Move the finished output into place and open it for reading

        Parameters
        ----------
        release_input: callable or None
            Called after the staged file is closed and before it is moved:
            closes the input file where it is the output (Windows cannot
            replace an open file).
        """
        if self.committed:
            return
        with write_errors_named(self.path):
            self.h5.close()
        if self._replaced_stat is not None:
            keep_ownership(self.staged_path, self._replaced_stat)
        if release_input is not None:
            release_input()
        stop.pause_point("committing")  # a test hook, see dcbg.stop
        # a stop whose KeyboardInterrupt Python dropped (raised in a
        # __del__ or weak reference callback) still stops before the commit
        stop.raise_if_requested()
        # One rename; the stop signals wait until it is done, so that the
        # message after an interrupt says what is on disk.
        with signals_deferred():
            move_into_place(self.staged_path, self.target, self._expected)
            self.committed = True
        stop.pause_point("committed")  # a test hook, see dcbg.stop
        self.h5 = h5py.File(self.target, "r")

    def discard(self):
        """Remove the staged file; the output path stays as it was"""
        if self.committed:
            return
        h5, self.h5 = self.h5, None
        if h5 is not None and h5.id.valid:
            close_discarded(h5)
        _remove_file(self.staged_path)

    def close(self):
        """Close the output, discard it if uncommitted, release the lock"""
        if not self.committed:
            self.discard()
        elif self.h5 is not None and self.h5.id.valid:
            self.h5.close()
        self._lock.release()
        self._finalizer.detach()
        stop.discard_abrupt_cleanup(self._abrupt_cleanup)


def basin_file_locations(basin: pathlib.Path, referrer: pathlib.Path) -> list[str]:
    """Locations under which `referrer` stores the file basin `basin`

    The absolute path first (dcnum reads the first location), then the
    path relative to the referrer's folder: moving a folder that holds
    both files keeps the basin reachable.
    """
    absolute = pathlib.Path(os.path.realpath(basin))
    relative = os.path.relpath(absolute, pathlib.Path(referrer).resolve().parent)
    return list(dict.fromkeys([str(absolute), relative]))


def _abandon(staged: pathlib.Path, lock: WriterLock):
    """Clean-up of an output that was never closed (garbage collection)"""
    _remove_file(staged)
    lock.release()


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


def drop_same_mapping(h5: h5py.File, key: str):
    """Remove ``"mapping": "same"`` from an unmapped basin definition

    dclab writes it, dclab also reads a basin without it as unmapped, but
    dcnum 0.31.0 skips basins whose mapping is not a feature of the file.
    """
    import dclab
    from dclab.util import hashobj

    basins = h5["basins"]
    bn_dict = read_basin_definition(basins[key])
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


__all__ = [
    "ZSTD_LEVEL",
    "ZSTD_LEVEL_IMAGES",
    "OutputFile",
    "basin_file_locations",
    "check_output_dir",
    "drop_same_mapping",
    "get_compression_kwargs",
    "same_file",
    "write_errors_named",
]
