"""``dcbg plot``: one figure to judge a computed background

A thin layer over :func:`dcbg.plot.save_background_plot`; matplotlib is
imported only when a plot is made. The input is opened with the same
basin options as ``dcbg compute`` (``--basin-root``,
``--allow-remote-basins``).
"""

from __future__ import annotations

import pathlib

import click

from .commands import command
from .runtime import configure_logging, echo_result, errors_as_messages
from .shared_options import basin_options, input_argument


def make_plot_command() -> click.Command:
    """``dcbg plot``: one figure to judge a computed background"""

    @command("plot")
    @input_argument()
    @click.option(
        "-o",
        "--output",
        "png_path",
        metavar="PNG",
        type=click.Path(path_type=pathlib.Path),
        help="PNG file to write (name ending with .png). Default: "
        "<stem>_plot.png beside INPUT.",
    )
    @click.option(
        "--frame",
        type=int,
        default=None,
        help="Index (0-based) of the event to show. Default: the middle "
        "event. Negative values count from the end.",
    )
    @click.option("--dpi", type=click.IntRange(min=20), default=100, show_default=True)
    @click.option(
        "--force",
        is_flag=True,
        help="Replace an existing PNG file (a measurement is never replaced).",
    )
    @basin_options()
    @click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
    def plot(path, png_path, frame, dpi, force, basin_root, allow_remote_basins, debug):
        """One figure: a frame, its background, the corrected image, the
        offset bg_off over time and, for sparse-median backgrounds, which
        image of the background series serves which frames.
        """
        configure_logging(debug)
        with errors_as_messages(debug):
            # matplotlib is imported only when a plot is made
            from ..plot import save_background_plot

            written = save_background_plot(
                path,
                png_path,
                frame=frame,
                dpi=dpi,
                force=force,
                basin_root=basin_root,
                allow_remote_basins=allow_remote_basins,
            )
        echo_result(f"Wrote {written}")

    return plot
