"""Realistic synthetic RT-DC measurements for tests and benchmarks.

Frames are assembled from the bundled real measurement
:data:`REFERENCE_MEASUREMENT` (an 80x320 px CytoShot recording):

- the real background image (cropped or mirror-tiled to other shapes),
- Gaussian sensor noise, taken as random windows of a precomputed noise
  bank (drawing fresh normals for every pixel would dominate the runtime),
- a slow drift of the illumination over the whole measurement,
- a frame-to-frame flicker offset added to the whole frame,
- real cells (``image - image_bg`` inside a slightly dilated ``mask`` of the
  real events) pasted near the channel centre into a random subset of frames,
- optional "streaks": time intervals in which almost every frame has a cell
  at nearly the same position; these end up in median backgrounds and are
  what the sparse-median cleansing step has to remove.

All random draws happen up front (per frame and per cell) from independent
streams of one :class:`numpy.random.SeedSequence`, so a frame does not depend
on how the stack is split into chunks, and the in-memory stack of
:func:`make_synthetic_stack` equals the file content written by
:func:`make_synthetic_measurement` for the same parameters.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import pathlib
import uuid
from collections.abc import Iterator, Sequence

import h5py
import hdf5plugin
import numpy as np

#: real measurement the synthetic frames are built from
REFERENCE_MEASUREMENT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "data"
    / "cytoshot_2024_80x320.rtdc"
)

#: target HDF5 chunk size in bytes (same rule as dclab's ``RTDCWriter``)
CHUNK_SIZE_BYTES = 1024**2

#: allowed values for ``time_source``
TIME_SOURCES = ("time", "frame", "rate", "none")

#: masks smaller than this (in pixels) are segmentation debris, not cells
_MIN_CELL_AREA = 100
#: width (px) over which a cell cut-out fades to zero outside its mask;
#: keeps the bright diffraction rim around the cell
_HALO_PX = 4
#: metadata sections copied from the reference file (``pipeline:*`` is left
#: out on purpose: the synthetic file is raw data, not dcnum output)
_META_SECTIONS = ("experiment", "imaging", "online_filter", "setup")


@dataclasses.dataclass(frozen=True)
class _Reference:
    """Content extracted once from the reference measurement"""

    #: background image (float32, 80x320)
    background: np.ndarray
    #: cell cut-outs: background-free residuals (float32, bounding boxes)
    sprites: tuple[np.ndarray, ...]
    #: HDF5 root attributes (str values decoded)
    attrs: dict


@functools.lru_cache(maxsize=1)
def _load_reference() -> _Reference:
    from scipy import ndimage

    with h5py.File(REFERENCE_MEASUREMENT, "r") as h5:
        events = h5["events"]
        image = events["image"][:].astype(np.float32)
        image_bg = events["image_bg"][:].astype(np.float32)
        mask = events["mask"][:] > 0
        attrs = {
            key: val.decode("utf-8") if isinstance(val, bytes) else val
            for key, val in h5.attrs.items()
        }

    sprites = []
    for img, img_bg, msk in zip(image, image_bg, mask, strict=True):
        if msk.sum() < _MIN_CELL_AREA:
            continue
        resid = img - img_bg
        # The residual also carries the flicker offset of that frame; the
        # generator adds its own flicker, so remove it from the cell.
        resid -= np.median(resid[~msk])
        dist = ndimage.distance_transform_edt(~msk)
        weight = np.clip(1 - dist / _HALO_PX, 0, 1)
        ys, xs = np.nonzero(weight > 0)
        region = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        sprites.append(np.ascontiguousarray((resid * weight)[region]))

    return _Reference(
        background=image_bg[0].copy(),
        sprites=tuple(sprites),
        attrs=attrs,
    )


def fit_background(background: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop or extend a channel background image to another shape

    Parameters
    ----------
    background: np.ndarray
        2D background image; the channel runs along axis 1 (x) and the
        channel walls are near the first and last rows.
    shape: tuple of int
        Target shape ``(height, width)`` in pixels.

    Returns
    -------
    np.ndarray
        Background image of the requested shape (same dtype). Smaller
        shapes are centred crops. Wider images are mirror-tiled along x,
        which avoids seams. Taller images get extra channel-centre rows
        inserted in the middle, so the walls stay at the image borders.
    """
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"Invalid image shape {shape}")
    bh, bw = background.shape
    if height <= bh:
        r0 = (bh - height) // 2
        rows = np.arange(r0, r0 + height)
    else:
        centre = bh // 2
        band = np.arange(max(0, centre - 8), min(bh, centre + 8))
        pingpong = np.concatenate([band, band[::-1]])
        fill = pingpong[np.arange(height - bh) % pingpong.size]
        rows = np.concatenate([np.arange(centre), fill, np.arange(centre, bh)])
    if width <= bw:
        c0 = (bw - width) // 2
        cols = np.arange(c0, c0 + width)
    else:
        mirror = np.concatenate([np.arange(bw), np.arange(bw)[::-1]])
        cols = mirror[np.arange(width) % mirror.size]
    return np.ascontiguousarray(background[np.ix_(rows, cols)])


class SyntheticModel:
    """Ground truth and frame renderer of a synthetic measurement

    All per-frame and per-cell random quantities are drawn in the
    constructor; :meth:`frames` only renders.

    Parameters
    ----------
    n_frames: int
        Number of frames (events), >= 0.
    shape: tuple of int
        Frame shape ``(height, width)`` in pixels.
    seed: int
        Seed for all random draws.
    frame_rate: float
        Camera frame rate in frames per second (Hz).
    noise_sigma: float
        Standard deviation of the per-pixel sensor noise in grey levels.
    flicker_sigma: float
        Standard deviation of the per-frame brightness offset (flicker) in
        grey levels; the offset is added to the whole frame before rounding.
    drift_amplitude: float
        Maximum absolute slow drift of the brightness over the measurement
        in grey levels (smooth, a few oscillations at most).
    cell_probability: float
        Fraction of frames (0..1) that contain at least one randomly
        placed cell; some of these frames get a second cell.
    streaks: int or sequence of (float, float) or None
        Dense cell streaks. A sequence gives ``(t_start, t_stop)``
        intervals in seconds relative to the first frame. An integer gives
        the number of streaks; each starts at a whole second (the default
        sparse-median time steps) and lasts ``streak_duration``. If there
        are more streaks than whole seconds, they are spread evenly.
        ``None`` or 0 means no streaks.
    streak_duration: float
        Duration of generated streaks in seconds (only if `streaks` is an
        integer). The default 0.1 s (345 frames at 3447.5 Hz) exceeds the
        default kernel sizes of the median methods (100, 200 frames).
    streak_fill: float
        Fraction of frames within a streak interval that show the streak
        cell.
    time_source: str
        Time axis the file will carry (see
        :func:`make_synthetic_measurement`). Only "frame" changes the
        ground truth: its frame numbers have occasional gaps.
    frame_gap_probability: float
        Probability that a frame number is followed by a gap of 1 to 3
        dropped frames (only for ``time_source="frame"``).
    noise_bank_frames: int
        Size of the noise bank in frames; the noise of each frame is a
        random contiguous window of the bank.

    Attributes
    ----------
    background: np.ndarray
        Clean background image (float32, grey levels).
    frame_numbers: np.ndarray
        Camera frame number of each frame (int64, starts at a random offset).
    time: np.ndarray
        Acquisition time ``frame_numbers / frame_rate`` in seconds.
    time_rel: np.ndarray
        Time in seconds relative to the first frame.
    drift, flicker: np.ndarray
        Brightness drift and flicker per frame in grey levels (float64).
    offsets: np.ndarray
        ``drift + flicker`` (float32), added to every pixel of a frame.
    cell_frame, cell_sprite, cell_y, cell_x: np.ndarray
        Frame index, cell cut-out index and centre position (px) of each
        pasted cell, sorted by frame index.
    cell_is_streak: np.ndarray
        Whether a cell belongs to a streak.
    streak_intervals: list of (float, float)
        Streak time intervals in seconds relative to the first frame.
    streak_positions: list of (int, int)
        Nominal centre ``(y, x)`` of the streak cells (jitter +-1 px in y,
        +-2 px in x).
    """

    def __init__(
        self,
        n_frames: int,
        *,
        shape: tuple[int, int] = (80, 320),
        seed: int = 0,
        frame_rate: float = 3447.5,
        noise_sigma: float = 2.0,
        flicker_sigma: float = 0.7,
        drift_amplitude: float = 3.0,
        cell_probability: float = 0.25,
        streaks: int | Sequence[tuple[float, float]] | None = None,
        streak_duration: float = 0.1,
        streak_fill: float = 0.95,
        time_source: str = "time",
        frame_gap_probability: float = 0.01,
        noise_bank_frames: int = 128,
    ):
        n_frames = int(n_frames)
        if n_frames < 0:
            raise ValueError(f"`n_frames` must be >= 0, got {n_frames}")
        if time_source not in TIME_SOURCES:
            raise ValueError(
                f"`time_source` must be one of {TIME_SOURCES}, got {time_source!r}"
            )
        if not 0 <= cell_probability <= 1:
            raise ValueError("`cell_probability` must be in [0, 1]")
        if frame_rate <= 0:
            raise ValueError("`frame_rate` must be positive")
        ref = _load_reference()
        self.n_frames = n_frames
        self.shape = (int(shape[0]), int(shape[1]))
        self.seed = seed
        self.frame_rate = float(frame_rate)
        self.time_source = time_source
        self.sprites = ref.sprites
        self.background = fit_background(ref.background, self.shape)
        height, width = self.shape
        hw = height * width

        # independent streams: changing e.g. the cell probability must not
        # change the noise or the flicker
        s_frame, s_drift, s_flicker, s_noise, s_cells, s_streaks = (
            np.random.SeedSequence(seed).spawn(6)
        )

        # time axis
        rng = np.random.default_rng(s_frame)
        frame0 = int(rng.integers(1_000, 100_000))
        steps = np.ones(n_frames, dtype=np.int64)
        gaps = rng.random(n_frames) < frame_gap_probability
        gap_sizes = rng.integers(1, 4, n_frames)
        if time_source == "frame":
            steps[gaps] += gap_sizes[gaps]
        if n_frames:
            steps[0] = 0
        self.frame_numbers = frame0 + np.cumsum(steps)
        self.time = self.frame_numbers / self.frame_rate
        self.time_rel = (self.frame_numbers - frame0) / self.frame_rate

        # slow drift: a few random low-frequency sinusoids, scaled to the
        # requested amplitude
        rng = np.random.default_rng(s_drift)
        phases = rng.uniform(0, 2 * np.pi, 3)
        u = np.arange(n_frames) / max(n_frames - 1, 1)
        curve = np.zeros(n_frames)
        components = zip((0.5, 1.3, 2.7), (1, 0.5, 0.25), phases, strict=True)
        for freq, amp, phase in components:
            curve += amp * np.sin(2 * np.pi * freq * u + phase)
        peak = np.abs(curve).max() if n_frames else 0
        self.drift = curve / peak * drift_amplitude if peak > 0 else curve

        rng = np.random.default_rng(s_flicker)
        self.flicker = rng.normal(0, flicker_sigma, n_frames)
        self.offsets = (self.drift + self.flicker).astype(np.float32)

        # noise bank: one long vector; each frame takes a random window
        rng = np.random.default_rng(s_noise)
        bank_len = max(int(noise_bank_frames) * hw, 2**16)
        self._noise = rng.standard_normal(bank_len + hw, dtype=np.float32)
        self._noise *= np.float32(noise_sigma)
        self._noise_start = rng.integers(0, bank_len + 1, n_frames)

        # random cells
        rng = np.random.default_rng(s_cells)
        has_cell = rng.random(n_frames) < cell_probability
        counts = has_cell * (1 + (rng.random(n_frames) < 0.15))
        total = int(counts.sum())
        c_frame = np.repeat(np.arange(n_frames), counts)
        c_sprite = rng.integers(0, len(self.sprites), total)
        c_y = np.rint(height / 2 + rng.normal(0, 1.5, total)).astype(np.int64)
        c_x = rng.integers(0, width, total)
        c_streak = np.zeros(total, dtype=bool)

        # streaks
        rng = np.random.default_rng(s_streaks)
        self.streak_intervals = self._get_streak_intervals(
            streaks, streak_duration, rng
        )
        self.streak_positions = []
        parts = [(c_frame, c_sprite, c_y, c_x, c_streak)]
        for t0, t1 in self.streak_intervals:
            sy = height // 2
            sx = int(rng.integers(width // 4, width - width // 4 + 1))
            sprite = int(rng.integers(0, len(self.sprites)))
            self.streak_positions.append((sy, sx))
            inside = (self.time_rel >= t0) & (self.time_rel < t1)
            filled = rng.random(n_frames) < streak_fill
            idx = np.flatnonzero(inside & filled)
            parts.append(
                (
                    idx,
                    np.full(idx.size, sprite),
                    sy + rng.integers(-1, 2, idx.size),
                    sx + rng.integers(-2, 3, idx.size),
                    np.ones(idx.size, dtype=bool),
                )
            )
        c_frame, c_sprite, c_y, c_x, c_streak = (
            np.concatenate(p) for p in zip(*parts, strict=True)
        )
        order = np.argsort(c_frame, kind="stable")
        self.cell_frame = c_frame[order]
        self.cell_sprite = c_sprite[order]
        self.cell_y = c_y[order]
        self.cell_x = c_x[order]
        self.cell_is_streak = c_streak[order]

    def _get_streak_intervals(self, streaks, duration, rng):
        if streaks is None:
            return []
        if isinstance(streaks, (int, np.integer)):
            count = int(streaks)
            if count <= 0:
                return []
            total = self.time_rel[-1] if self.n_frames else 0
            seconds = np.arange(0, total, 1.0)
            if count <= seconds.size:
                starts = np.sort(rng.choice(seconds, size=count, replace=False))
            else:
                starts = np.linspace(0, total, count, endpoint=False)
            return [(float(s), float(s + duration)) for s in starts]
        return [(float(t0), float(t1)) for t0, t1 in streaks]

    @property
    def has_cell(self) -> np.ndarray:
        """Boolean array: whether a frame contains at least one cell"""
        out = np.zeros(self.n_frames, dtype=bool)
        out[self.cell_frame] = True
        return out

    @property
    def streak_frames(self) -> np.ndarray:
        """Boolean array: whether a frame contains a streak cell"""
        out = np.zeros(self.n_frames, dtype=bool)
        out[self.cell_frame[self.cell_is_streak]] = True
        return out

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Render frames ``start:stop`` as uint8 array

        Parameters
        ----------
        start, stop: int
            Frame index range (stop defaults to `n_frames`).

        Returns
        -------
        np.ndarray
            uint8 array of shape ``(stop - start, height, width)``.
        """
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        start = max(0, min(start, stop))
        height, width = self.shape
        hw = height * width
        buf = np.empty((stop - start, height, width), dtype=np.float32)
        # +0.5, so that the final truncating cast rounds to nearest
        base = self.background + np.float32(0.5)
        noise = self._noise
        for jj, ns in enumerate(self._noise_start[start:stop]):
            np.add(noise[ns : ns + hw].reshape(height, width), base, out=buf[jj])
        buf += self.offsets[start:stop, None, None]

        c0, c1 = np.searchsorted(self.cell_frame, [start, stop])
        for ci in range(c0, c1):
            sprite = self.sprites[self.cell_sprite[ci]]
            sh, sw = sprite.shape
            y0 = self.cell_y[ci] - sh // 2
            x0 = self.cell_x[ci] - sw // 2
            ya, yb = max(y0, 0), min(y0 + sh, height)
            xa, xb = max(x0, 0), min(x0 + sw, width)
            if ya < yb and xa < xb:
                buf[self.cell_frame[ci] - start, ya:yb, xa:xb] += sprite[
                    ya - y0 : yb - y0, xa - x0 : xb - x0
                ]

        np.clip(buf, 0, 255.99, out=buf)
        return buf.astype(np.uint8)

    def backgrounds(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Return the true background (with drift, without flicker) as uint8

        Parameters
        ----------
        start, stop: int
            Frame index range (stop defaults to `n_frames`).

        Returns
        -------
        np.ndarray
            uint8 array of shape ``(stop - start, height, width)``.
        """
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        start = max(0, min(start, stop))
        drift = self.drift[start:stop].astype(np.float32)[:, None, None]
        buf = self.background[None] + drift + np.float32(0.5)
        np.clip(buf, 0, 255.99, out=buf)
        return buf.astype(np.uint8)

    def iter_chunks(self, chunk_frames: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(start, stop, frames)`` for consecutive chunks

        Parameters
        ----------
        chunk_frames: int
            Number of frames per chunk (the last chunk may be shorter).
        """
        for start in range(0, self.n_frames, chunk_frames):
            stop = min(start + chunk_frames, self.n_frames)
            yield start, stop, self.frames(start, stop)


def make_synthetic_stack(
    n_frames: int,
    shape: tuple[int, int] = (80, 320),
    seed: int = 0,
    *,
    dtype=np.uint8,
    **kwargs,
) -> np.ndarray:
    """Return a synthetic image stack in memory

    Parameters
    ----------
    n_frames: int
        Number of frames.
    shape: tuple of int
        Frame shape ``(height, width)`` in pixels.
    seed: int
        Random seed.
    dtype: numpy dtype
        Output dtype; values are always integers in 0..255 (``np.float64``
        gives a float array holding integers).
    **kwargs:
        Further model parameters, see :class:`SyntheticModel`
        (e.g. `noise_sigma`, `cell_probability`, `streaks`).

    Returns
    -------
    np.ndarray
        Array of shape ``(n_frames, height, width)``; identical to the
        ``events/image`` data :func:`make_synthetic_measurement` writes for
        the same parameters.
    """
    model = SyntheticModel(n_frames, shape=shape, seed=seed, **kwargs)
    return model.frames().astype(dtype, copy=False)


def _compression_kwargs(compression) -> dict:
    if compression is True:
        return dict(hdf5plugin.Zstd(clevel=5))
    if compression is False or compression is None:
        return {}
    return dict(compression)


def _run_identifier(path: pathlib.Path, seed, n_frames, shape, time_source) -> str:
    token = json.dumps(
        [str(path.resolve()), str(seed), n_frames, list(shape), time_source]
    )
    return "dcbg-synthetic-" + hashlib.sha256(token.encode()).hexdigest()[:20]


def _metadata(model: SyntheticModel, run_id: str, params: dict) -> dict:
    import dclab.definitions as dfn

    meta: dict[str, dict] = {}
    for key, val in _load_reference().attrs.items():
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
    meta["user"] = {"dcbg synthetic": json.dumps(params)}
    return meta


def _compress_chunk(data: np.ndarray, ds_kwargs: dict) -> tuple[int, bytes]:
    """Run the HDF5 filter pipeline on one chunk (in a worker process)

    Returns the filter mask and the filtered bytes for
    :meth:`h5py.h5d.DatasetID.write_direct_chunk`.
    """
    name = f"dcbg-chunk-{os.getpid()}-{uuid.uuid4().hex}.h5"
    with h5py.File(name, "w", driver="core", backing_store=False) as h5:
        ds = h5.create_dataset("chunk", data=data, **ds_kwargs)
        return ds.id.read_direct_chunk((0,) * data.ndim)


def _write_threaded(chunks) -> None:
    # h5py releases the GIL while HDF5 compresses, so rendering the next
    # chunk overlaps with writing the current one.
    pending = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        for ds, start, data in chunks:
            sl = slice(start, start + len(data))
            pending.append(pool.submit(ds.__setitem__, sl, data))
            if len(pending) > 2:
                pending.popleft().result()
        while pending:
            pending.popleft().result()


def _write_parallel(chunks, num_workers: int, comp: dict) -> None:
    # HDF5 runs the filters serially; compress whole chunks in worker
    # processes and store the filtered bytes directly.
    pending = collections.deque()
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=ctx) as pool:
        for ds, start, data in chunks:
            chunk_len = ds.chunks[0]
            if len(data) < chunk_len:
                # HDF5 stores edge chunks at full size
                pad = np.zeros((chunk_len - len(data),) + data.shape[1:], data.dtype)
                data = np.concatenate([data, pad])
            ds_kwargs = {"chunks": ds.chunks, "fletcher32": ds.fletcher32, **comp}
            future = pool.submit(_compress_chunk, data, ds_kwargs)
            pending.append((ds, start, future))
            if len(pending) >= 2 * num_workers + 1:
                _write_direct(*pending.popleft())
        while pending:
            _write_direct(*pending.popleft())


def _write_direct(ds, start, future):
    filter_mask, raw = future.result()
    ds.id.write_direct_chunk((start,) + (0,) * (ds.ndim - 1), raw, filter_mask)


def _create_image_dataset(group, name, n_frames, shape, dtype, chunk_frames, comp):
    ds = group.create_dataset(
        name,
        shape=(n_frames,) + tuple(shape),
        dtype=dtype,
        maxshape=(None,) + tuple(shape),
        chunks=(min(chunk_frames, n_frames),) + tuple(shape),
        fletcher32=True,
        **comp,
    )
    # attributes dclab's writer sets so that HDFView shows images
    ds.attrs.create("CLASS", np.bytes_("IMAGE"))
    ds.attrs.create("IMAGE_VERSION", np.bytes_("1.2"))
    ds.attrs.create("IMAGE_SUBCLASS", np.bytes_("IMAGE_GRAYSCALE"))
    return ds


def _default_chunk_frames(shape, dtype) -> int:
    frame_bytes = shape[0] * shape[1] * np.dtype(dtype).itemsize
    return max(10, CHUNK_SIZE_BYTES // frame_bytes)


def make_synthetic_measurement(
    path: str | pathlib.Path,
    n_frames: int,
    *,
    shape: tuple[int, int] = (80, 320),
    seed: int = 0,
    frame_rate: float = 3447.5,
    noise_sigma: float = 2.0,
    flicker_sigma: float = 0.7,
    drift_amplitude: float = 3.0,
    cell_probability: float = 0.25,
    streaks: int | Sequence[tuple[float, float]] | None = None,
    time_source: str = "time",
    image_dtype=np.uint8,
    chunk_frames: int | None = None,
    compression: bool | dict = True,
    with_image_bg: bool = False,
    num_workers: int = 0,
    **kwargs,
) -> pathlib.Path:
    """Write a realistic synthetic RT-DC measurement (.rtdc file)

    The image stack is rendered and written chunk by chunk, so memory use
    does not grow with `n_frames`. The file opens with
    :func:`dclab.new_dataset` and :class:`dcnum.read.HDF5Data`.

    Parameters
    ----------
    path: str or pathlib.Path
        Output file; an existing file is overwritten.
    n_frames: int
        Number of frames (events), >= 1.
    shape: tuple of int
        Frame shape ``(height, width)`` in pixels.
    seed: int
        Random seed; same parameters and seed give the same images.
    frame_rate: float
        Frame rate in Hz, stored as ``imaging:frame rate`` (except for
        ``time_source="none"``) and used for the time axis.
    noise_sigma: float
        Sensor noise standard deviation in grey levels.
    flicker_sigma: float
        Standard deviation of the per-frame brightness offset in grey levels.
    drift_amplitude: float
        Maximum slow brightness drift over the measurement in grey levels.
    cell_probability: float
        Fraction of frames (0..1) containing randomly placed cells.
    streaks: int or sequence of (float, float) or None
        Dense cell streaks: a count or ``(t_start, t_stop)`` intervals in
        seconds relative to the first frame, see :class:`SyntheticModel`.
    time_source: str
        What the file carries for the time axis:

        - "time": ``time`` feature in seconds (``frame / frame_rate``,
          starting at a nonzero offset, constant steps) plus the matching
          ``frame`` feature and the frame-rate attribute
        - "frame": only the ``frame`` feature (nonzero start, occasional
          gaps) and the frame-rate attribute
        - "rate": only the frame-rate attribute
        - "none": neither time/frame features nor a frame rate
    image_dtype: numpy dtype
        dtype of ``events/image``; ``np.float64`` stores a float array
        holding integer grey values.
    chunk_frames: int or None
        HDF5 chunk length in frames; defaults to dclab's rule
        ``max(10, 1 MiB // frame_bytes)``.
    compression: bool or dict
        True: Zstandard level 5 (``hdf5plugin.Zstd(clevel=5)``, as dclab
        writes); False: no compression; a dict: keyword arguments for
        :meth:`h5py.Group.create_dataset` (e.g. ``hdf5plugin.Zstd(clevel=1)``).
    with_image_bg: bool
        Also write the ground-truth background: ``image_bg`` (background
        plus drift, rounded, uint8) and ``bg_off`` (the flicker offset in
        grey levels), like a file that already went through a background
        step (input for the "copy" method).
    num_workers: int
        Number of worker processes that compress image chunks in parallel
        (0: compress in this process). Zstd level 5 runs at only ~50 MB/s
        per core on noisy frames, so this speeds up large files. Workers
        are spawned: call this from an ``if __name__ == "__main__":``
        guarded script.
    **kwargs:
        Further parameters of :class:`SyntheticModel` (`streak_duration`,
        `streak_fill`, `frame_gap_probability`, `noise_bank_frames`).

    Returns
    -------
    pathlib.Path
        Path of the written file.
    """
    from dclab.rtdc_dataset.writer import RTDCWriter

    path = pathlib.Path(path)
    if int(n_frames) < 1:
        raise ValueError("`n_frames` must be at least 1")
    model = SyntheticModel(
        n_frames,
        shape=shape,
        seed=seed,
        frame_rate=frame_rate,
        noise_sigma=noise_sigma,
        flicker_sigma=flicker_sigma,
        drift_amplitude=drift_amplitude,
        cell_probability=cell_probability,
        streaks=streaks,
        time_source=time_source,
        **kwargs,
    )
    dtype = np.dtype(image_dtype)
    if chunk_frames is None:
        chunk_frames = _default_chunk_frames(model.shape, dtype)
    comp = _compression_kwargs(compression)
    params = {
        "seed": seed,
        "n_frames": model.n_frames,
        "shape": list(model.shape),
        "frame_rate": model.frame_rate,
        "noise_sigma": noise_sigma,
        "flicker_sigma": flicker_sigma,
        "drift_amplitude": drift_amplitude,
        "cell_probability": cell_probability,
        "streak_intervals": model.streak_intervals,
        "streak_positions": model.streak_positions,
        "time_source": time_source,
        **kwargs,
    }
    run_id = _run_identifier(path, seed, model.n_frames, model.shape, time_source)

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5, RTDCWriter(h5, compression_kwargs=comp) as hw:
        hw.store_metadata(_metadata(model, run_id, params))
        if time_source in ("time", "frame"):
            hw.store_feature("frame", model.frame_numbers)
        if time_source == "time":
            hw.store_feature("time", model.time)
        events = h5.require_group("events")
        ds_image = _create_image_dataset(
            events, "image", model.n_frames, model.shape, dtype, chunk_frames, comp
        )
        chunks = (
            (ds_image, start, data.astype(dtype, copy=False))
            for start, _, data in model.iter_chunks(chunk_frames)
        )
        if with_image_bg:
            hw.store_feature("bg_off", model.flicker)
            bg_chunk = _default_chunk_frames(model.shape, np.uint8)
            ds_bg = _create_image_dataset(
                events,
                "image_bg",
                model.n_frames,
                model.shape,
                np.uint8,
                bg_chunk,
                comp,
            )
            chunks = itertools.chain(
                chunks,
                (
                    (ds_bg, start, model.backgrounds(start, start + bg_chunk))
                    for start in range(0, model.n_frames, bg_chunk)
                ),
            )
        if num_workers > 0:
            _write_parallel(chunks, num_workers, comp)
        else:
            _write_threaded(chunks)
    return path


def _copy_attrs(src_attrs, h5: h5py.File, run_id: str, event_count: int) -> None:
    for key, val in src_attrs.items():
        if key.split(":", 1)[0] != "pipeline":
            h5.attrs[key] = val
    h5.attrs["experiment:run identifier"] = run_id
    h5.attrs["experiment:event count"] = event_count


def _drop_same_mapping(hw, key: str) -> None:
    """Remove ``"mapping": "same"`` from a basin definition

    dclab writes it for unmapped basins and treats a missing entry the same
    way, but dcnum 0.31.0 takes "same" for the name of a basinmap feature
    and silently ignores the basin.
    """
    from dclab.util import hashobj

    basins = hw.h5file["basins"]
    lines = [line.decode("utf-8") for line in basins[key][:].tolist()]
    bdict = json.loads("\n".join(lines))
    if bdict.get("mapping") == "same":
        del bdict["mapping"]
        del basins[key]
        new_lines = json.dumps(bdict, indent=2, sort_keys=True).split("\n")
        hw.write_text(basins, hashobj(new_lines), new_lines)


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
                _drop_same_mapping(hw, bn_key)
        variants[key] = path

    # (c) internal basin with repeated frames
    extra = rng.choice(n_src, size=n_src // 5, replace=False)
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
            ds = grp.create_dataset(
                "image",
                shape=image.shape,
                dtype=image.dtype,
                chunks=image.chunks,
                fletcher32=True,
                **hdf5plugin.Zstd(clevel=5),
            )
            for key in ("CLASS", "IMAGE_VERSION", "IMAGE_SUBCLASS"):
                if key in image.attrs:
                    ds.attrs[key] = image.attrs[key]
            step = image.chunks[0] if image.chunks else 100
            for start in range(0, n_src, step):
                ds[start : start + step] = image[start : start + step]
            hw.store_basin(
                basin_name="unique frames",
                basin_type="internal",
                basin_format="h5dataset",
                basin_locs=["basin_events"],
                basin_feats=["image"],
                basin_map=mapping,
                internal_data=grp,
            )
    variants["internal_mapped"] = path

    # (d) file basin with a subset mapping
    subset = np.sort(rng.choice(n_src, size=max(1, 3 * n_src // 4), replace=False))
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
