"""One figure to judge a computed background at a glance

The figure shows, for one frame of a measurement that has ``image_bg``:

- the raw frame and its background image (same grey scale),
- the corrected image ``image - image_bg - bg_off`` with a symmetric
  diverging colour scale (a good background leaves only cells and noise),
- the per-frame offset ``bg_off`` over time, if the file has it,
- for sparse-median outputs (``image_bg`` held once per series image in
  the internal basin ``basin_events/image_bg`` and mapped to the frames by
  ``events/basinmapN``): which series image serves which frames, coloured
  by the mean brightness of each series image,
- the ghost map of :func:`dcbg.check.check_background`: where the
  background of the frame deviates from the file's own robust reference
  (cells left in the background are outlined), and the check's verdict
  in the title.

Use :func:`plot_background` for a :class:`matplotlib.figure.Figure` or
:func:`save_background_plot` for a PNG file. Only the Agg backend is used
(no display needed). The file is opened once, as
:func:`dcbg.workflow.open_measurement` opens an input: its basins are
followed under the same policy as for computing (``basin_root``,
``allow_remote_basins``; ``dcbg plot --basin-root``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .io.conventions import (
    default_plot_path,
    read_background_ppid,
    read_background_series,
)
from .io.input import BasinPolicy
from .io.output import check_output_dir
from .io.transaction import (
    file_identity,
    move_into_place,
    staged_path,
)
from .workflow import open_measurement

#: figure width in inches; the height follows from the panels shown
FIGURE_WIDTH = 10.0
#: events the check behind the ghost map looks at (evenly spread): enough
#: for the verdict's fractions, quick for long measurements
PLOT_CHECK_EVENTS = 2000


@dataclasses.dataclass
class BackgroundSeries:
    """The background series of a sparse-median output

    Attributes
    ----------
    mapping: np.ndarray
        Series image index of each frame (``events/basinmapN``)
    mean_brightness: np.ndarray
        Mean grey level of each series image
    """

    mapping: np.ndarray
    mean_brightness: np.ndarray


@dataclasses.dataclass
class BackgroundData:
    """What the figure shows, read from an .rtdc file

    Attributes
    ----------
    name: str
        File name
    ppid: str or None
        Background pipeline identifier stored with ``image_bg``
    frame: int
        Index of the frame shown
    frame_count: int
        Number of frames in the file
    image: np.ndarray
        The raw frame
    image_bg: np.ndarray
        Its background image
    frame_offset: float
        ``bg_off`` of the frame (0 if the file has no ``bg_off``)
    bg_off: np.ndarray or None
        ``bg_off`` of every frame
    time: np.ndarray or None
        Time of every frame in seconds; None if the file has no time
    series: BackgroundSeries or None
        The background series of a sparse-median output
    """

    name: str
    ppid: str | None
    frame: int
    frame_count: int
    image: np.ndarray
    image_bg: np.ndarray
    frame_offset: float
    bg_off: np.ndarray | None
    time: np.ndarray | None
    series: BackgroundSeries | None

    @property
    def corrected(self) -> np.ndarray:
        """``image - image_bg - bg_off`` of the frame, in grey levels"""
        return (
            self.image.astype(np.float64)
            - self.image_bg.astype(np.float64)
            - self.frame_offset
        )

    @property
    def frame_axis(self) -> tuple[np.ndarray, str]:
        """x values of the frames and their axis label (time or index)"""
        if self.time is not None:
            return self.time, "Time [s]"
        return np.arange(self.frame_count), "Event index"


def _check_frame_index(frame: int | None, count: int, path) -> int:
    if frame is None:
        return count // 2
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise TypeError(f"frame must be an integer, got {frame!r}")
    if not -count <= frame < count:
        raise ValueError(
            f"Event {frame} is out of range for '{path}' with {count} events "
            f"(valid: {-count} to {count - 1})"
        )
    return int(frame) % count


def _read_series(h5, basins: list[dict]) -> BackgroundSeries | None:
    """The background series if ``image_bg`` is in a mapped internal basin"""
    found = read_background_series(h5, basins)
    if found is None:
        return None
    images, mapping = found
    mean_brightness = np.array(
        [float(np.mean(images[ii])) for ii in range(len(images))]
    )
    return BackgroundSeries(mapping=mapping, mean_brightness=mean_brightness)


def load_background_data(
    path, frame: int | None = None, *, basin_root=None, allow_remote_basins=False
) -> BackgroundData:
    """Read what :func:`plot_background` shows

    Parameters
    ----------
    path: str or pathlib.Path
        .rtdc file with the features "image" and "image_bg" (possibly in
        basins), e.g. the output of ``dcbg compute``
    frame: int or None
        Index of the frame to show; negative values count from the end.
        Default: the middle frame.
    basin_root: str or pathlib.Path or None
        Follow file basins only to files inside this directory (symbolic
        links resolved); None: anywhere (regular HDF5 files only)
    allow_remote_basins: bool
        Follow remote basins (http, S3, DCOR; network access)

    Raises
    ------
    FileNotFoundError
        If the file does not exist
    ValueError
        If it is not an .rtdc file with "image" and "image_bg" or the
        frame is out of range
    """
    path, measurement = _open(path, basin_root, allow_remote_basins)
    with contextlib.closing(measurement):
        return _read_background_data(measurement.ds, path, frame)


def _open(path, basin_root, allow_remote_basins):
    """The checked path and the measurement, basins as for computing"""
    policy = BasinPolicy.create(basin_root, allow_remote_basins)
    return open_measurement(path, policy)


def _read_background_data(ds, path: pathlib.Path, frame: int | None):
    """:func:`load_background_data` of an open measurement"""
    # the file handle dclab opened: the basin structure is read from it
    h5 = ds.h5file
    for feature in ("image_bg", "image"):
        if feature not in ds:
            hint = (
                "; compute it first, e.g. with 'dcbg compute'"
                if feature == "image_bg"
                else " (is the input measurement it references missing?)"
            )
            raise ValueError(f"File '{path}' has no '{feature}' feature{hint}")
    count = len(ds)
    if count == 0:
        raise ValueError(f"File '{path}' has zero events; nothing to plot")
    frame = _check_frame_index(frame, count, path)
    bg_off = np.asarray(ds["bg_off"][:], dtype=np.float64) if "bg_off" in ds else None
    frame_time = np.asarray(ds["time"][:], dtype=np.float64) if "time" in ds else None
    return BackgroundData(
        name=path.name,
        ppid=read_background_ppid(h5),
        frame=frame,
        frame_count=count,
        image=np.asarray(ds["image"][frame]),
        image_bg=np.asarray(ds["image_bg"][frame]),
        frame_offset=float(bg_off[frame]) if bg_off is not None else 0.0,
        bg_off=bg_off,
        time=frame_time,
        series=_read_series(h5, ds.basins_get_dicts()),
    )


def _show_image(fig, ax, image, title, colorbar_label, **imshow_kwargs):
    shown = ax.imshow(image, interpolation="nearest", **imshow_kwargs)
    ax.set_title(title, loc="left", fontsize="medium")
    ax.set_xlabel("x [px]")
    ax.set_ylabel("y [px]")
    colorbar = fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.015)
    colorbar.set_label(colorbar_label)


def _plot_offset(ax, data: BackgroundData):
    x_values, x_label = data.frame_axis
    # markers only while single frames can be told apart
    marker = "." if data.frame_count <= 500 else None
    ax.plot(x_values, data.bg_off, lw=0.8, color="tab:blue", marker=marker, ms=3)
    ax.axvline(
        x_values[data.frame], color="tab:red", lw=1, ls="--", label="event shown"
    )
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_title("Brightness offset bg_off per event", loc="left", fontsize="medium")
    ax.set_xlabel(x_label)
    ax.set_ylabel("bg_off [grey levels]")
    ax.legend(loc="best", fontsize="small")


def _plot_series(fig, ax, data: BackgroundData):
    series = data.series
    x_values, x_label = data.frame_axis
    mapping = series.mapping
    # runs of frames that share one series image: [start, stop)
    change = np.flatnonzero(np.diff(mapping)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [len(mapping)]])
    ax.step(x_values, mapping, where="post", color="0.5", lw=0.8, zorder=1)
    segments = [
        [(x_values[start], mapping[start]), (x_values[stop - 1], mapping[start])]
        for start, stop in zip(starts, stops, strict=True)
    ]
    brightness = series.mean_brightness[mapping[starts]]
    lines = LineCollection(segments, cmap="viridis", linewidths=6, zorder=2)
    lines.set_array(brightness)
    if np.ptp(brightness) == 0:
        lines.set_clim(brightness[0] - 0.5, brightness[0] + 0.5)
    ax.add_collection(lines)
    # single-frame runs are points, not lines
    ax.scatter(
        x_values[starts],
        mapping[starts],
        c=brightness,
        cmap="viridis",
        s=12,
        norm=lines.norm,
        zorder=3,
    )
    ax.axvline(x_values[data.frame], color="tab:red", lw=1, ls="--")
    count = len(series.mean_brightness)
    ax.set_ylim(-0.5, count - 0.5)
    if count <= 10:
        ax.set_yticks(range(count))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    images = "1 image" if count == 1 else f"{count} images"
    ax.set_title(
        f"Background series ({images}): which image serves which events",
        loc="left",
        fontsize="medium",
    )
    ax.set_xlabel(x_label)
    ax.set_ylabel("Series image index")
    colorbar = fig.colorbar(lines, ax=ax, pad=0.02)
    colorbar.set_label("Mean grey level of series image")


def _plot_ghost_map(fig, ax, check, frame: int):
    """The check's deviation of this frame's background, ghosts outlined"""
    from .check.analysis import GHOST_LEVELS
    from .check.robust import channel_band

    ghost_map = check.ghost_map
    if ghost_map is None:
        ax.set_axis_off()
        ax.set_title(
            "Ghost map: not judged (too few distinct frames for a reference)",
            loc="left",
            fontsize="medium",
        )
        return
    position = int(np.searchsorted(check.events.index, frame))
    pixels = int(check.events.ghost_pixels[position])
    verdict = "GHOST" if check.events.ghost[position] else "no ghost"
    limit = max(2 * GHOST_LEVELS, float(np.nanmax(np.abs(ghost_map), initial=0)))
    _show_image(
        fig,
        ax,
        ghost_map,
        f"Ghost map: background - robust reference; outlined > {GHOST_LEVELS:g} "
        f"grey levels; this event: {verdict} ({pixels} px)",
        "Deviation [grey levels]",
        cmap="PuOr_r",
        vmin=-limit,
        vmax=limit,
    )
    band = channel_band(ghost_map.shape[0])
    for row in (band.start - 0.5, band.stop - 0.5):
        ax.axhline(row, color="0.4", lw=0.6, ls=":")
    outside = np.zeros(ghost_map.shape, dtype=bool)
    outside[band] = np.abs(np.nan_to_num(ghost_map[band])) > GHOST_LEVELS
    if outside.any():
        ax.contour(outside, levels=[0.5], colors="red", linewidths=1.0)


def plot_background(
    path, frame: int | None = None, *, basin_root=None, allow_remote_basins=False
) -> Figure:
    """A figure to judge the background of an .rtdc file at a glance

    Parameters
    ----------
    path: str or pathlib.Path
        .rtdc file with "image" and "image_bg" (e.g. ``dcbg compute``'s
        output, which finds "image" in the input through its basin)
    frame: int or None
        Index of the frame to show; default: the middle frame
    basin_root, allow_remote_basins:
        Which basins of the file are followed, as for
        :func:`load_background_data` (and ``dcbg compute``)

    Returns
    -------
    fig: matplotlib.figure.Figure
        Image panels (frame, background, corrected image, ghost map of
        :func:`dcbg.check.check_background`), plus a ``bg_off`` panel if
        the file has ``bg_off`` and a series panel for sparse-median
        outputs. Every panel has a title; colour bars do not. The title
        carries the check's verdict.
    """
    from .check.analysis import check_measurement

    path, measurement = _open(path, basin_root, allow_remote_basins)
    with contextlib.closing(measurement):
        data = _read_background_data(measurement.ds, path, frame)
        check = check_measurement(
            measurement.ds, path, max_events=PLOT_CHECK_EVENTS, map_event=data.frame
        )
    return _figure(data, check)


def _figure(data: BackgroundData, check) -> Figure:
    """The figure of :func:`plot_background` from what it read"""
    from .check import verdict_line

    lower_panels = [p for p in (data.bg_off, data.series) if p is not None]
    image_height, image_width = data.image.shape
    # image rows just as tall as the image is at full width
    image_row_height = max(1.2, 0.85 * FIGURE_WIDTH * image_height / image_width) + 0.6
    lower_height = 2.8 if lower_panels else 0.0
    fig = Figure(
        figsize=(FIGURE_WIDTH, 4 * image_row_height + lower_height + 0.5),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    height_ratios = [image_row_height] * 4 + ([lower_height] if lower_panels else [])
    grid = fig.add_gridspec(len(height_ratios), 2, height_ratios=height_ratios)

    when = f", t = {data.time[data.frame]:.4f} s" if data.time is not None else ""
    grey_range = {
        "vmin": float(min(data.image.min(), data.image_bg.min())),
        "vmax": float(max(data.image.max(), data.image_bg.max())),
    }
    _show_image(
        fig,
        fig.add_subplot(grid[0, :]),
        data.image,
        f"Event {data.frame + 1} of {data.frame_count} (index {data.frame})"
        f"{when} (image)",
        "Grey level",
        cmap="gray",
        **grey_range,
    )
    offset_note = (
        f" (+ bg_off = {data.frame_offset:+.2f})" if data.bg_off is not None else ""
    )
    _show_image(
        fig,
        fig.add_subplot(grid[1, :]),
        data.image_bg,
        f"Background image_bg{offset_note}, same grey scale",
        "Grey level",
        cmap="gray",
        **grey_range,
    )
    corrected = data.corrected
    subtraction = "image - image_bg" + (" - bg_off" if data.bg_off is not None else "")
    limit = max(1.0, float(np.max(np.abs(corrected))))
    _show_image(
        fig,
        fig.add_subplot(grid[2, :]),
        corrected,
        f"Corrected: {subtraction} (ideally only cells on noise, no channel structure)",
        "Difference [grey levels]",
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
    )
    _plot_ghost_map(fig, fig.add_subplot(grid[3, :]), check, data.frame)
    if data.bg_off is not None and data.series is not None:
        _plot_offset(fig.add_subplot(grid[4, 0]), data)
        _plot_series(fig, fig.add_subplot(grid[4, 1]), data)
    elif data.bg_off is not None:
        _plot_offset(fig.add_subplot(grid[4, :]), data)
    elif data.series is not None:
        _plot_series(fig, fig.add_subplot(grid[4, :]), data)

    fig.suptitle(
        f"{data.name}   background {data.ppid or '(PPID unknown)'}\n"
        f"dcbg check: {verdict_line(check)}",
        fontsize="large",
    )
    return fig


#: the first bytes of every HDF5 file (hence of every .rtdc measurement):
#: a plot never overwrites such a file, whatever its name
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_png_target(png_path: pathlib.Path, force: bool):
    """Refuse a PNG path that would overwrite data

    Raises
    ------
    ValueError
        If the name does not end with ".png", or the path is a measurement
        (an HDF5 file) or not a regular file
    FileExistsError
        If the file exists and `force` is not set
    """
    if png_path.suffix.lower() != ".png":
        raise ValueError(
            f"Plot file '{png_path}' must end with '.png' (dcbg plot writes "
            f"PNG images; a measurement is never overwritten by a plot)"
        )
    if not os.path.lexists(png_path):
        return
    if png_path.is_symlink() or not png_path.is_file():
        raise ValueError(
            f"Plot file '{png_path}' exists and is not a regular file; "
            f"expected a new or existing PNG file"
        )
    with open(png_path, "rb") as fd:
        head = fd.read(len(HDF5_SIGNATURE))
    if head == HDF5_SIGNATURE:
        raise ValueError(
            f"Plot file '{png_path}' is an HDF5 file (a measurement?); "
            f"dcbg plot never overwrites it, choose another name"
        )
    if not force:
        raise FileExistsError(
            f"Plot file '{png_path}' already exists; use --force to replace it"
        )


def save_background_plot(
    path,
    png_path=None,
    frame: int | None = None,
    dpi=100,
    force: bool = False,
    *,
    basin_root=None,
    allow_remote_basins=False,
):
    """Save the figure of :func:`plot_background` as a PNG file

    The PNG is written beside its final name and moved into place when
    complete; an existing file is replaced only with `force`, and never
    when it is a measurement (HDF5).

    Parameters
    ----------
    path: str or pathlib.Path
        .rtdc file with "image" and "image_bg"
    png_path: str or pathlib.Path or None
        Output PNG, ending with ".png"; default:
        :func:`dcbg.io.conventions.default_plot_path` (``<stem>_plot.png``)
    frame: int or None
        Index of the frame to show; default: the middle frame
    dpi: int
        Resolution; the image is ``FIGURE_WIDTH * dpi`` pixels wide
    force: bool
        Replace an existing PNG file
    basin_root, allow_remote_basins:
        Which basins of the file are followed, as for
        :func:`load_background_data`

    Returns
    -------
    png_path: pathlib.Path
        The file written

    Raises
    ------
    FileExistsError
        If `png_path` exists and `force` is not set
    ValueError
        If `png_path` does not end with ".png" or is a measurement
    """
    png_path = (
        pathlib.Path(png_path) if png_path is not None else default_plot_path(path)
    )
    check_output_dir(png_path)
    _check_png_target(png_path, force)
    expected = file_identity(png_path)
    fig = plot_background(
        path,
        frame=frame,
        basin_root=basin_root,
        allow_remote_basins=allow_remote_basins,
    )
    staged = staged_path(png_path)
    try:
        fig.savefig(staged, dpi=dpi, format="png")
        move_into_place(staged, png_path, expected)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
    return png_path
