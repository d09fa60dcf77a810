"""Measurements whose images come from basins, for tests and benchmarks

:func:`make_basin_variants` writes, for one source measurement, the
ways in which the ``image`` feature of a real .rtdc file can live
elsewhere: file basins by absolute or relative path, a mapped file basin
(a subset of the source's events) and a mapped internal basin (events
that repeat frames, as several events of one camera frame do).
"""

from __future__ import annotations

import os
import pathlib
from fractions import Fraction

import h5py
import numpy as np

from .writer import compression_kwargs, create_image_dataset

#: fraction of the source frames the "internal_mapped" variant repeats
#: (several events of one camera frame); exact, so counts are floored
REPEATED_FRAMES_FRACTION = Fraction(1, 5)
#: fraction of the source events the "file_mapped" variant keeps
SUBSET_FRACTION = Fraction(3, 4)


def store_internal_basin(h5, name, features, mapping, description=None) -> str:
    """Store `features` once in ``basin_events``, mapped to the events

    As background outputs store the sparse-median series and as files
    with several events per camera frame store their images: a mapped
    internal basin whose ``events/basinmapN`` gives, for every event, the
    index of its entry.

    Parameters
    ----------
    h5: h5py.File
        The file, open for writing
    name: str
        Basin name
    features: dict or h5py.Group
        Feature name to data (a dict of arrays, or ``h5["basin_events"]``
        already holding the data)
    mapping: array-like of int
        Index into the basin's data for every event
    description: str or None
        Basin description (background outputs name their PPID in it)

    Returns
    -------
    str
        The basin's key in ``h5["basins"]``
    """
    from dclab.rtdc_dataset.writer import RTDCWriter

    with RTDCWriter(h5) as hw:
        return hw.store_basin(
            basin_name=name,
            basin_type="internal",
            basin_format="h5dataset",
            basin_locs=["basin_events"],
            basin_descr=description,
            basin_feats=sorted(features),
            basin_map=np.asarray(mapping, dtype=np.int64),
            internal_data=features,
        )


def _copy_attrs(src_attrs, h5: h5py.File, run_id: str, event_count: int) -> None:
    for key, val in src_attrs.items():
        if key.split(":", 1)[0] != "pipeline":
            h5.attrs[key] = val
    h5.attrs["experiment:run identifier"] = run_id
    h5.attrs["experiment:event count"] = event_count


def make_basin_variants(
    src_path: str | pathlib.Path,
    out_dir: str | pathlib.Path,
    *,
    seed: int = 0,
) -> dict[str, pathlib.Path]:
    """Write files that get their images from basins

    Parameters
    ----------
    src_path: str or pathlib.Path
        Source measurement with ``events/image`` (e.g. from
        :func:`make_synthetic_measurement`).
    out_dir: str or pathlib.Path
        Output directory (created if missing).
    seed: int
        Seed for the random mappings.

    Returns
    -------
    dict of str to pathlib.Path
        - "file_absolute": no own features, all features (image, time, ...)
          from a file basin referencing `src_path` by absolute path only;
          event ``i`` is source event ``i``
        - "file_relative": same, with a path relative to `out_dir` only
        - "internal_mapped": all source images stored once in an internal
          basin (``basin_events/image``); ``events/basinmap0`` is a sorted
          mapping that repeats about 20 % of them (like several events from
          one frame); ``time``/``frame`` (if present in the source) are
          stored mapped in ``events``
        - "file_mapped": file basin (absolute path) with
          ``events/basinmap0`` selecting a sorted random 3/4 subset of the
          source events

        For the mapped variants, event ``i`` shows source image
        ``events/basinmap0[i]``.
    """
    from dclab import new_dataset
    from dclab.rtdc_dataset.writer import RTDCWriter

    # dclab writes "mapping": "same" for unmapped basins, which dcnum
    # 0.31.0 takes for the name of a basinmap feature (and ignores the
    # basin); dcbg's writer drops it, and so do these files
    from ..io.output import drop_same_mapping

    src = pathlib.Path(src_path).resolve()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with new_dataset(src) as ds:
        src_id = ds.get_measurement_identifier()
    with h5py.File(src, "r") as h5:
        src_attrs = dict(h5.attrs)
        src_image = h5["events/image"]
        n_src = len(src_image)
        scalars = {
            feat: h5["events"][feat][:]
            for feat in ("frame", "time")
            if feat in h5["events"]
        }
    rng = np.random.default_rng(seed)
    stem = src.stem
    variants = {}

    # (a, b) whole source via file basin, absolute or relative path only
    for key, loc in [
        ("file_absolute", str(src)),
        ("file_relative", os.path.relpath(src, out_dir.resolve())),
    ]:
        path = out_dir / f"{stem}_{key}.rtdc"
        with h5py.File(path, "w") as h5:
            _copy_attrs(src_attrs, h5, src_id, n_src)
            with RTDCWriter(h5) as hw:
                # verify=False: dclab would add the other kind of path
                bn_key = hw.store_basin(
                    basin_name=f"source ({key})",
                    basin_type="file",
                    basin_format="hdf5",
                    basin_locs=[loc],
                    basin_id=src_id,
                    verify=False,
                )
                drop_same_mapping(h5, bn_key)
        variants[key] = path

    # (c) internal basin with repeated frames
    extra = rng.choice(n_src, size=int(n_src * REPEATED_FRAMES_FRACTION), replace=False)
    mapping = np.sort(np.concatenate([np.arange(n_src), extra])).astype(np.int64)
    path = out_dir / f"{stem}_internal_mapped.rtdc"
    with h5py.File(path, "w") as h5, h5py.File(src, "r") as h5src:
        _copy_attrs(src_attrs, h5, f"{src_id}_internal", mapping.size)
        with RTDCWriter(h5) as hw:
            for feat, values in scalars.items():
                hw.store_feature(feat, values[mapping])
        # stream the images chunk by chunk (sources can be large)
        image = h5src["events/image"]
        grp = h5.require_group("basin_events")
        ds = create_image_dataset(
            grp,
            "image",
            n_src,
            image.shape[1:],
            image.dtype,
            compression_kwargs(True),
            image.chunks[0] if image.chunks else None,
        )
        step = ds.chunks[0]
        for start in range(0, n_src, step):
            ds[start : start + step] = image[start : start + step]
        store_internal_basin(h5, "unique frames", grp, mapping)
    variants["internal_mapped"] = path

    # (d) file basin with a subset mapping
    count = max(1, int(n_src * SUBSET_FRACTION))
    subset = np.sort(rng.choice(n_src, size=count, replace=False))
    path = out_dir / f"{stem}_file_mapped.rtdc"
    with h5py.File(path, "w") as h5:
        # mapped basins must have an ID that starts with the basin ID
        _copy_attrs(src_attrs, h5, f"{src_id}_subset", subset.size)
        with RTDCWriter(h5) as hw:
            hw.store_basin(
                basin_name="source subset",
                basin_type="file",
                basin_format="hdf5",
                basin_locs=[src],
                basin_map=subset.astype(np.int64),
            )
    variants["file_mapped"] = path
    return variants
