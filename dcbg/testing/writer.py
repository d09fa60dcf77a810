"""Writing synthetic measurements as .rtdc files

:func:`make_synthetic_measurement` renders the frames of a
:class:`~dcbg.testing.model.SyntheticModel` chunk by chunk and writes
them as dclab does (dclab's writer for metadata and scalar features,
dclab's chunk rule, Zstandard through hdf5plugin, Fletcher-32 checksums),
so memory use does not grow with the number of frames. Image chunks are
encoded by :class:`dcbg.io.chunks.ChunkCodec` on worker threads: HDF5
would compress them one at a time under its global lock, and Zstandard
at level 5 compresses noisy frames at only about 50 MB/s per core.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import inspect
import json
import pathlib

import numpy as np

from .model import SyntheticModel
from .reference import load_reference

#: metadata sections copied from the reference file (``pipeline:*`` is left
#: out on purpose: the synthetic file is raw data, not dcnum output)
_META_SECTIONS = ("experiment", "imaging", "online_filter", "setup")
#: prefix of the run identifiers of synthetic files (dclab derives the
#: measurement identifier that basins must match from it)
_RUN_ID_PREFIX = "dcbg-synthetic-"
#: hex digits of the run identifier's hash: unique enough for any test run
_RUN_ID_DIGITS = 20
#: chunks encoded ahead per worker thread: enough to keep the threads busy
#: while this thread renders, few enough to bound memory
_CHUNKS_AHEAD_PER_WORKER = 2


def make_synthetic_measurement(
    path: str | pathlib.Path,
    n_frames: int,
    *,
    image_dtype=np.uint8,
    chunk_frames: int | None = None,
    compression: bool | dict = True,
    with_image_bg: bool = False,
    num_workers: int = 0,
    **model_kwargs,
) -> pathlib.Path:
    """Write a realistic synthetic RT-DC measurement (.rtdc file)

    The image stack is rendered and written chunk by chunk, so memory use
    does not grow with `n_frames`. The file opens with
    :func:`dclab.new_dataset` and :class:`dcnum.read.HDF5Data`; its
    ``events/image`` equals :func:`~dcbg.testing.make_synthetic_stack`
    for the same model parameters.

    Parameters
    ----------
    path: str or pathlib.Path
        Output file; an existing file is overwritten.
    n_frames: int
        Number of frames (events), >= 1.
    image_dtype: numpy dtype
        dtype of ``events/image``; ``np.float64`` stores a float array
        holding integer grey values.
    chunk_frames: int or None
        HDF5 chunk length in frames; defaults to dclab's rule
        ``max(10, 1 MiB // frame_bytes)``.
    compression: bool or dict
        True: Zstandard at dclab's level (``dcbg.io.output.ZSTD_LEVEL``, 5);
        False: no compression; a dict: keyword arguments for
        :meth:`h5py.Group.create_dataset` (e.g. ``hdf5plugin.Zstd(clevel=1)``).
    with_image_bg: bool
        Also write the ground-truth background: ``image_bg`` (background
        plus drift, rounded, uint8) and ``bg_off`` (the flicker offset in
        grey levels), like a file that already went through a background
        step (input for the "copy" method).
    num_workers: int
        Number of threads that encode uint8 image chunks (Zstandard and
        checksum) while this thread renders the next ones; 0: encode in
        this thread. Other image dtypes are written through h5py.
    **model_kwargs:
        Parameters of :class:`~dcbg.testing.SyntheticModel` (`shape`,
        `seed`, `frame_rate`, `noise_sigma`, `cell_probability`,
        `streaks`, and the background-quality knobs `cells_per_frame`,
        `stuck_cells`, `flicker_jump_fraction`, `flicker_jump_levels`,
        `store_per_event`, ...). Same parameters and seed give the same
        images; ``SyntheticModel(n_frames, **model_kwargs)`` gives the
        ground truth (:meth:`~dcbg.testing.SyntheticModel.true_backgrounds`).
        With `store_per_event` the file holds
        ``SyntheticModel(...).n_frames`` events (frames repeated once per
        cell, same ``frame`` and ``time``).
        `time_source` also decides what the file carries for the time
        axis:

        - "time" (default): ``time`` feature in seconds (``frame /
          frame_rate``, starting at a nonzero offset, constant steps) plus
          the matching ``frame`` feature and ``imaging:frame rate``
        - "frame": only the ``frame`` feature (nonzero start, occasional
          gaps) and the frame-rate attribute
        - "rate": only the frame-rate attribute
        - "none": neither time/frame features nor a frame rate

        The parameters are stored as JSON in ``user:dcbg synthetic``.

    Returns
    -------
    pathlib.Path
        Path of the written file.
    """
    import h5py
    from dclab.rtdc_dataset.writer import RTDCWriter

    path = pathlib.Path(path)
    if int(n_frames) < 1:
        raise ValueError("`n_frames` must be at least 1")
    model = SyntheticModel(n_frames, **model_kwargs)
    time_source = model.time_source
    dtype = np.dtype(image_dtype)
    comp = compression_kwargs(compression)
    run_id = _run_identifier(path, model.seed, model.n_frames, model.shape, time_source)

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5, RTDCWriter(h5, compression_kwargs=comp) as hw:
        hw.store_metadata(_metadata(model, run_id, model_kwargs))
        if time_source in ("time", "frame"):
            hw.store_feature("frame", model.frame_numbers)
        if time_source == "time":
            hw.store_feature("time", model.time)
        events = h5.require_group("events")
        ds_image = create_image_dataset(
            events, "image", model.n_frames, model.shape, dtype, comp, chunk_frames
        )
        write_images(
            ds_image,
            (
                (start, frames.astype(dtype, copy=False))
                for start, _, frames in model.iter_chunks(ds_image.chunks[0])
            ),
            num_workers,
        )
        if with_image_bg:
            hw.store_feature("bg_off", model.flicker)
            ds_bg = create_image_dataset(
                events, "image_bg", model.n_frames, model.shape, np.uint8, comp
            )
            step = ds_bg.chunks[0]
            write_images(
                ds_bg,
                (
                    (start, model.backgrounds(start, start + step))
                    for start in range(0, model.n_frames, step)
                ),
                num_workers,
            )
    return path


def compression_kwargs(compression) -> dict:
    """HDF5 dataset keyword arguments for `compression` (see above)"""
    from ..io.output import get_compression_kwargs

    if compression is True:
        return get_compression_kwargs(True)
    if compression is False or compression is None:
        return {}
    return dict(compression)


def create_image_dataset(
    group, name, n_frames, frame_shape, dtype, comp, chunk_frames=None
):
    """An empty image dataset as dclab's writer creates one

    Chunks of `chunk_frames` whole frames (default: dclab's rule), the
    compression keyword arguments `comp`, Fletcher-32 checksums and the
    attributes with which HDFView shows images.
    """
    from dclab.rtdc_dataset.writer import RTDCWriter

    frame_shape = tuple(frame_shape)
    if chunk_frames is None:
        chunk_frames = RTDCWriter.get_best_nd_chunks(frame_shape, dtype)[0]
    ds = group.create_dataset(
        name,
        shape=(n_frames, *frame_shape),
        dtype=dtype,
        maxshape=(None, *frame_shape),
        chunks=(min(chunk_frames, n_frames), *frame_shape),
        fletcher32=True,
        **comp,
    )
    ds.attrs.create("CLASS", np.bytes_("IMAGE"))
    ds.attrs.create("IMAGE_VERSION", np.bytes_("1.2"))
    ds.attrs.create("IMAGE_SUBCLASS", np.bytes_("IMAGE_GRAYSCALE"))
    return ds


def write_images(ds, chunks, num_workers: int = 0) -> None:
    """Write ``(start, frames)`` blocks of one chunk each into `ds`

    uint8 chunks in a layout :class:`~dcbg.io.chunks.ChunkCodec` handles
    are encoded on `num_workers` threads (0: in this thread) and stored
    raw; other datasets are written through h5py.
    """
    from ..io.chunks import ChunkCodec

    codec = ChunkCodec.for_dataset(ds)
    if codec is None:
        for start, frames in chunks:
            ds[start : start + len(frames)] = frames
        return

    def encode(frames):
        if len(frames) < codec.chunk_frames:
            # HDF5 stores edge chunks at full size
            padded = np.zeros((codec.chunk_frames, *frames.shape[1:]), np.uint8)
            padded[: len(frames)] = frames
            frames = padded
        return codec.encode(frames)

    def store(start, raw):
        ds.id.write_direct_chunk((start,) + (0,) * (ds.ndim - 1), raw)

    if num_workers < 1:
        for start, frames in chunks:
            store(start, encode(frames))
        return
    pending = collections.deque()
    ahead = _CHUNKS_AHEAD_PER_WORKER * num_workers
    with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
        for start, frames in chunks:
            pending.append((start, pool.submit(encode, frames)))
            if len(pending) > ahead:
                start_done, job = pending.popleft()
                store(start_done, job.result())
        while pending:
            start_done, job = pending.popleft()
            store(start_done, job.result())


def _run_identifier(path: pathlib.Path, seed, n_frames, shape, time_source) -> str:
    token = json.dumps(
        [str(path.resolve()), str(seed), n_frames, list(shape), time_source]
    )
    digest = hashlib.sha256(token.encode()).hexdigest()
    return _RUN_ID_PREFIX + digest[:_RUN_ID_DIGITS]


#: model parameters stored first in ``user:dcbg synthetic`` (in this
#: order), with their values; the other parameters follow as given
_STORED_PARAMETERS = (
    "seed",
    "n_frames",
    "shape",
    "frame_rate",
    "noise_sigma",
    "flicker_sigma",
    "drift_amplitude",
    "cell_probability",
    "streak_intervals",
    "streak_positions",
    "time_source",
)


def _parameters(model: SyntheticModel, model_kwargs: dict) -> dict:
    """The model's parameters as stored in the file (JSON-ready)"""
    defaults = {
        name: param.default
        for name, param in inspect.signature(SyntheticModel).parameters.items()
        if param.default is not param.empty
    }
    values = {
        **defaults,
        **model_kwargs,
        "n_frames": model.n_camera_frames,
        "shape": list(model.shape),
        "frame_rate": model.frame_rate,
        "streak_intervals": model.streak_intervals,
        "streak_positions": model.streak_positions,
    }
    stored = {name: values[name] for name in _STORED_PARAMETERS}
    # the others as given; `streaks` is stored as the intervals it gave
    rest = {
        name: value
        for name, value in model_kwargs.items()
        if name not in stored and name != "streaks"
    }
    return stored | rest


def _metadata(model: SyntheticModel, run_id: str, model_kwargs: dict) -> dict:
    import dclab.definitions as dfn

    meta: dict[str, dict] = {}
    for key, val in load_reference().attrs.items():
        sec, _, name = key.partition(":")
        if sec in _META_SECTIONS and dfn.config_key_exists(sec, name):
            meta.setdefault(sec, {})[name] = val
    meta["experiment"]["event count"] = model.n_frames
    meta["experiment"]["run identifier"] = run_id
    meta["imaging"]["roi size x"] = model.shape[1]
    meta["imaging"]["roi size y"] = model.shape[0]
    if model.time_source == "none":
        meta["imaging"].pop("frame rate", None)
    else:
        meta["imaging"]["frame rate"] = model.frame_rate
    meta["user"] = {"dcbg synthetic": json.dumps(_parameters(model, model_kwargs))}
    return meta
