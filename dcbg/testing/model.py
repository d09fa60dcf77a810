"""A realistic image model of RT-DC measurements, for tests and benchmarks

Frames are assembled from the bundled real measurement (an 80x320 px
CytoShot recording, see :mod:`dcbg.testing.reference`):

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

Knobs for background-quality studies (all off by default; the defaults
render exactly the frames of earlier versions):

- ``cells_per_frame=N``: every frame holds exactly N cells (0 to 6 are
  realistic; 4 is a dense blood sample in which cells cover a pixel of the
  channel centre in most frames), instead of `cell_probability`;
- ``stuck_cells=[(first_frame, n_frames), ...]``: a cell that sits still at
  one position for that many frames (a cell stuck in the channel);
- ``flicker_sigma``: Gaussian frame-to-frame flicker (as before), plus
  ``flicker_jump_fraction``/``flicker_jump_levels``: a fraction of frames
  whose brightness jumps by a random amount in that range (random sign),
  e.g. ``0.1`` and ``(4, 6)``: 10 % of frames 4 to 6 grey levels off;
- ``drift_amplitude``: the slow drift of the illumination (as before);
- ``store_per_event=True``: frames are stored once per event, as in files
  of segmented events (dcnum, Shape-In): a frame with k >= 1 cells is
  stored k times, with the same frame number and time; a frame without a
  cell once.

The ground truth of every stored frame is
:meth:`SyntheticModel.true_backgrounds` (background plus drift plus
flicker, float32, unrounded); :meth:`SyntheticModel.backgrounds` is its
rounded part without the flicker and ``flicker`` the rest, which is what a
perfect ``image_bg`` and ``bg_off`` hold. :attr:`SyntheticModel.cell_counts`
gives the number of cells in every stored frame.

All random draws happen up front (per frame and per cell) from independent
streams of one :class:`numpy.random.SeedSequence`, so a frame does not depend
on how the stack is split into chunks, and the in-memory stack of
:func:`make_synthetic_stack` equals the file content written by
:func:`dcbg.testing.make_synthetic_measurement` for the same parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .reference import fit_background, load_reference

#: allowed values for ``time_source``
TIME_SOURCES = ("time", "frame", "rate", "none")

#: range of the random first camera frame number: real files start at a
#: nonzero frame number, which time axes must not assume away
_FIRST_FRAME_RANGE = (1_000, 100_000)
#: dropped camera frames after a gap (1 to 3), as cameras drop frames
_GAP_SIZES = (1, 4)
#: (frequency over the whole measurement, relative amplitude) of the
#: sinusoids of the slow drift: a few slow oscillations at most
_DRIFT_COMPONENTS = ((0.5, 1.0), (1.3, 0.5), (2.7, 0.25))
#: chance that a frame with a cell has a second one (RT-DC frames mostly
#: hold one cell; a second tests several events per frame)
_SECOND_CELL_PROBABILITY = 0.15
#: standard deviation (px) of the cells' distance from the channel axis:
#: cells flow near the centre of the channel
_CELL_Y_SIGMA = 1.5
#: jitter (px, inclusive) of streak cells around their nominal position:
#: small enough that a median over the streak still shows the cell
_STREAK_JITTER_Y = 1
_STREAK_JITTER_X = 2
#: grey values are clipped just below 256 before the truncating cast to
#: uint8, so that 255.5 and above stay 255
_GREY_MAX = 255.99
#: the noise bank holds at least this many values, so that frame windows
#: of tiny images still vary
_MIN_NOISE_BANK = 2**16
#: stuck cells sit in the middle half of the channel length, so that the
#: whole cell is inside the image
_STUCK_X_MARGIN_FRACTION = 0.25


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
    cells_per_frame: int or None
        If given, every frame holds exactly this many randomly placed cells
        (>= 0) and `cell_probability` is ignored. Cells may overlap.
    stuck_cells: sequence of (int, int)
        Cells stuck in the channel: ``(first_frame, n_frames)`` each, a cell
        at one fixed position (channel centre, random x in the middle half
        of the image) in camera frames ``first_frame`` to
        ``first_frame + n_frames - 1``, on top of the other cells.
    flicker_jump_fraction: float
        Fraction of frames (0..1) whose brightness jumps, in addition to
        the Gaussian flicker, by a random amount in `flicker_jump_levels`
        with random sign.
    flicker_jump_levels: tuple of float
        Range ``(low, high)`` of the jumps in grey levels.
    store_per_event: bool
        Store each camera frame once per event: a frame with k >= 1 cells
        is stored k times in a row (same frame number, time, noise and
        offset), a frame without a cell once. `n_frames` still counts
        camera frames; the attribute :attr:`n_frames` then counts the
        stored frames (events).

    Attributes
    ----------
    n_frames: int
        Number of stored frames (events); the rows of ``events/image``.
    n_camera_frames: int
        Number of camera frames (differs from `n_frames` only with
        `store_per_event`).
    event_camera_frame: np.ndarray
        Camera-frame index of every stored frame (int64).
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
    cell_is_stuck: np.ndarray
        Whether a cell is a stuck cell.
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
        cells_per_frame: int | None = None,
        stuck_cells: Sequence[tuple[int, int]] = (),
        flicker_jump_fraction: float = 0.0,
        flicker_jump_levels: tuple[float, float] = (4.0, 6.0),
        store_per_event: bool = False,
    ):
        n_frames = int(n_frames)
        if n_frames < 0:
            raise ValueError(f"`n_frames` must be >= 0, got {n_frames}")
        if cells_per_frame is not None and int(cells_per_frame) < 0:
            raise ValueError(
                f"`cells_per_frame` must be >= 0 or None, got {cells_per_frame}"
            )
        if not 0 <= flicker_jump_fraction <= 1:
            raise ValueError("`flicker_jump_fraction` must be in [0, 1]")
        low, high = (float(v) for v in flicker_jump_levels)
        if not 0 <= low <= high:
            raise ValueError(
                "`flicker_jump_levels` must be (low, high) with 0 <= low <= high,"
                f" got {flicker_jump_levels}"
            )
        stuck_cells = [(int(f0), int(num)) for f0, num in stuck_cells]
        for f0, num in stuck_cells:
            if f0 < 0 or num < 1:
                raise ValueError(
                    "`stuck_cells` entries must be (first_frame >= 0, n_frames >= 1),"
                    f" got {(f0, num)}"
                )
        if time_source not in TIME_SOURCES:
            raise ValueError(
                f"`time_source` must be one of {TIME_SOURCES}, got {time_source!r}"
            )
        if not 0 <= cell_probability <= 1:
            raise ValueError("`cell_probability` must be in [0, 1]")
        if frame_rate <= 0:
            raise ValueError("`frame_rate` must be positive")
        ref = load_reference()
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
        # (the streams of the knobs added later come last: spawn(n)[:6] is
        # spawn(6), so the default frames stay those of earlier versions)
        (
            s_frame,
            s_drift,
            s_flicker,
            s_noise,
            s_cells,
            s_streaks,
            s_dense,
            s_stuck,
            s_jumps,
        ) = np.random.SeedSequence(seed).spawn(9)

        # time axis
        rng = np.random.default_rng(s_frame)
        frame0 = int(rng.integers(*_FIRST_FRAME_RANGE))
        steps = np.ones(n_frames, dtype=np.int64)
        gaps = rng.random(n_frames) < frame_gap_probability
        gap_sizes = rng.integers(*_GAP_SIZES, n_frames)
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
        phases = rng.uniform(0, 2 * np.pi, len(_DRIFT_COMPONENTS))
        u = np.arange(n_frames) / max(n_frames - 1, 1)
        curve = np.zeros(n_frames)
        for (freq, amp), phase in zip(_DRIFT_COMPONENTS, phases, strict=True):
            curve += amp * np.sin(2 * np.pi * freq * u + phase)
        peak = np.abs(curve).max() if n_frames else 0
        self.drift = curve / peak * drift_amplitude if peak > 0 else curve

        rng = np.random.default_rng(s_flicker)
        self.flicker = rng.normal(0, flicker_sigma, n_frames)
        if flicker_jump_fraction > 0:
            rng = np.random.default_rng(s_jumps)
            jumps = rng.random(n_frames) < flicker_jump_fraction
            size = rng.uniform(low, high, n_frames)
            sign = np.where(rng.random(n_frames) < 0.5, -1.0, 1.0)
            self.flicker = self.flicker + np.where(jumps, sign * size, 0.0)
        self.offsets = (self.drift + self.flicker).astype(np.float32)

        # noise bank: one long vector; each frame takes a random window
        rng = np.random.default_rng(s_noise)
        bank_len = max(int(noise_bank_frames) * hw, _MIN_NOISE_BANK)
        self._noise = rng.standard_normal(bank_len + hw, dtype=np.float32)
        self._noise *= np.float32(noise_sigma)
        self._noise_start = rng.integers(0, bank_len + 1, n_frames)

        # random cells
        if cells_per_frame is None:
            rng = np.random.default_rng(s_cells)
            has_cell = rng.random(n_frames) < cell_probability
            counts = has_cell * (1 + (rng.random(n_frames) < _SECOND_CELL_PROBABILITY))
        else:
            rng = np.random.default_rng(s_dense)
            counts = np.full(n_frames, int(cells_per_frame), dtype=np.int64)
        total = int(counts.sum())
        c_frame = np.repeat(np.arange(n_frames), counts)
        c_sprite = rng.integers(0, len(self.sprites), total)
        c_y = np.rint(height / 2 + rng.normal(0, _CELL_Y_SIGMA, total))
        c_y = c_y.astype(np.int64)
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
                    sy
                    + rng.integers(-_STREAK_JITTER_Y, _STREAK_JITTER_Y + 1, idx.size),
                    sx
                    + rng.integers(-_STREAK_JITTER_X, _STREAK_JITTER_X + 1, idx.size),
                    np.ones(idx.size, dtype=bool),
                )
            )
        parts = [(*p, np.zeros(p[0].size, dtype=bool)) for p in parts]
        rng = np.random.default_rng(s_stuck)
        margin = int(width * _STUCK_X_MARGIN_FRACTION)
        for f0, num in stuck_cells:
            idx = np.arange(f0, min(f0 + num, n_frames))
            sprite = int(rng.integers(0, len(self.sprites)))
            sx = int(rng.integers(margin, width - margin + 1))
            parts.append(
                (
                    idx,
                    np.full(idx.size, sprite),
                    np.full(idx.size, height // 2),
                    np.full(idx.size, sx),
                    np.zeros(idx.size, dtype=bool),
                    np.ones(idx.size, dtype=bool),
                )
            )
        c_frame, c_sprite, c_y, c_x, c_streak, c_stuck = (
            np.concatenate(p) for p in zip(*parts, strict=True)
        )
        order = np.argsort(c_frame, kind="stable")
        self.cell_frame = c_frame[order]
        self.cell_sprite = c_sprite[order]
        self.cell_y = c_y[order]
        self.cell_x = c_x[order]
        self.cell_is_streak = c_streak[order]
        self.cell_is_stuck = c_stuck[order]

        self.n_camera_frames = n_frames
        self.event_camera_frame = np.arange(n_frames, dtype=np.int64)
        if store_per_event:
            self._store_per_event()

    def _store_per_event(self):
        """Repeat every camera frame once per cell in it (at least once)"""
        n_cam = self.n_camera_frames
        counts = np.bincount(self.cell_frame, minlength=n_cam)
        repeats = np.maximum(counts, 1)
        rows = np.repeat(np.arange(n_cam, dtype=np.int64), repeats)
        first_row = np.concatenate([[0], np.cumsum(repeats)[:-1]]).astype(np.int64)
        self.event_camera_frame = rows
        self.n_frames = int(rows.size)
        for name in ("frame_numbers", "time", "time_rel", "drift", "flicker"):
            setattr(self, name, getattr(self, name)[rows])
        self.offsets = self.offsets[rows]
        self._noise_start = self._noise_start[rows]
        # every cell of a camera frame appears in each of its stored copies
        cell_rep = repeats[self.cell_frame]
        cell_idx = np.repeat(np.arange(self.cell_frame.size), cell_rep)
        # copy number of each repeated cell: 0..repeats-1 within its cell
        starts = np.concatenate([[0], np.cumsum(cell_rep)[:-1]])
        copy_no = np.arange(cell_idx.size) - np.repeat(starts, cell_rep)
        new_frame = first_row[self.cell_frame[cell_idx]] + copy_no
        order = np.argsort(new_frame, kind="stable")
        self.cell_frame = new_frame[order]
        for name in (
            "cell_sprite",
            "cell_y",
            "cell_x",
            "cell_is_streak",
            "cell_is_stuck",
        ):
            setattr(self, name, getattr(self, name)[cell_idx][order])

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
    def cell_counts(self) -> np.ndarray:
        """Number of cells in every stored frame (int64)"""
        return np.bincount(self.cell_frame, minlength=self.n_frames)

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
        start, stop = self._clip_range(start, stop)
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

        return _to_uint8(buf)

    def backgrounds(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The true background of frames ``start:stop`` (as :meth:`frames`)

        The clean background plus the slow drift, without the flicker
        (that is ``bg_off``), rounded to uint8.
        """
        start, stop = self._clip_range(start, stop)
        drift = self.drift[start:stop].astype(np.float32)[:, None, None]
        return _to_uint8(self.background[None] + drift + np.float32(0.5))

    def true_backgrounds(
        self, start: int = 0, stop: int | None = None, *, with_flicker: bool = True
    ) -> np.ndarray:
        """The exact background of frames ``start:stop``: the ground truth

        Parameters
        ----------
        start, stop: int
            Stored-frame (event) index range, as in :meth:`frames`.
        with_flicker: bool
            Include the per-frame flicker (Gaussian and jumps); False gives
            background plus drift only, the part a background image
            without ``bg_off`` can hold.

        Returns
        -------
        np.ndarray
            float32 array ``(stop - start, height, width)`` in grey levels,
            unrounded: the clean background plus the slow drift (plus the
            flicker). A frame is this truth plus sensor noise plus its
            cells, rounded. A background method is exact when ``image_bg +
            bg_off`` equals it (up to rounding).
        """
        start, stop = self._clip_range(start, stop)
        shift = self.drift[start:stop]
        if with_flicker:
            shift = shift + self.flicker[start:stop]
        return self.background[None] + shift.astype(np.float32)[:, None, None]

    def _clip_range(self, start, stop) -> tuple[int, int]:
        """A frame range ``start:stop`` inside ``0:n_frames`` (stop: None = end)"""
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        return max(0, min(start, stop)), stop

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


def _to_uint8(buf: np.ndarray) -> np.ndarray:
    """Grey values (already +0.5) clipped and cast: rounded to nearest uint8"""
    np.clip(buf, 0, _GREY_MAX, out=buf)
    return buf.astype(np.uint8)


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
