"""The background figure: panels, data shown, labels, errors"""

import h5py
import numpy as np
import pytest
from matplotlib.image import AxesImage

from dcbg import BackgroundRollMed, BackgroundSparseMed
from dcbg.plot import (
    load_background_data,
    plot_background,
    save_background_plot,
)
from dcbg.testing import make_synthetic_measurement


def titled_axes(fig):
    """The panels of a figure (colour bars have no title)"""
    return {ax.get_title(loc="left"): ax for ax in fig.axes if ax.get_title(loc="left")}


def panel(fig, title_start):
    (ax,) = [
        ax for title, ax in titled_axes(fig).items() if title.startswith(title_start)
    ]
    return ax


@pytest.fixture(scope="module")
def series_output(tmp_path_factory):
    """Sparse median output with a background series of 4 images"""
    folder = tmp_path_factory.mktemp("series")
    source = make_synthetic_measurement(folder / "slow.rtdc", 80, frame_rate=20, seed=3)
    output = folder / "slow_bg.rtdc"
    with BackgroundSparseMed(
        source, output, kernel_size=5, split_time=1.0, frac_cleansing=1
    ) as bg:
        bg.process()
    return output


def test_sparsemed_figure_has_six_panels(series_output):
    fig = plot_background(series_output, frame=30)
    titles = list(titled_axes(fig))
    assert len(titles) == 6, titles
    assert titles[0].startswith("Event 31 of 80 (index 30), t = ")
    assert titles[1].startswith("Background image_bg (+ bg_off = ")
    assert titles[2].startswith("Corrected: image - image_bg - bg_off")
    assert titles[3].startswith("Ghost map: ")
    assert titles[4] == "Brightness offset bg_off per event"
    assert titles[5].startswith("Background series (4 images)")
    assert "sparsemed:k=5^s=1^t=0^f=1^o=1" in fig.get_suptitle()
    assert "dcbg check: " in fig.get_suptitle()

    data = load_background_data(series_output, frame=30)
    corrected_ax = panel(fig, "Corrected")
    (shown,) = [im for im in corrected_ax.get_children() if isinstance(im, AxesImage)]
    expected = data.image.astype(float) - data.image_bg.astype(float) - data.bg_off[30]
    assert np.allclose(shown.get_array(), expected)
    low, high = shown.get_clim()
    assert high > 0 and low == -high  # symmetric colour scale

    offset_ax = panel(fig, "Brightness offset")
    assert offset_ax.get_xlabel() == "Time [s]"
    assert offset_ax.get_ylabel() == "bg_off [grey levels]"
    series_ax = panel(fig, "Background series")
    assert series_ax.get_ylabel() == "Series image index"
    with h5py.File(series_output) as h5:
        mapping = h5["events/basinmap0"][:]
    # the step plot is the mapping over time
    step_line = series_ax.get_lines()[0]
    assert np.array_equal(step_line.get_ydata(), mapping)
    assert np.allclose(step_line.get_xdata(), data.time)
    assert np.array_equal(np.unique(mapping), np.arange(4))
    for title in titles[:3]:
        ax = titled_axes(fig)[title]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("x [px]", "y [px]")


def test_rollmed_figure_has_image_panels_only(cytoshot, tmp_path):
    output = tmp_path / "roll.rtdc"
    with BackgroundRollMed(cytoshot, output, kernel_size=4, batch_size=6) as bg:
        bg.process()
    fig = plot_background(output)
    titles = list(titled_axes(fig))
    assert len(titles) == 4, titles
    assert titles[0].startswith("Event 7 of 13 (index 6)")  # the middle event
    assert titles[2].startswith("Corrected: image - image_bg (")
    assert titles[3].startswith("Ghost map: ")


def test_frame_index_axis_without_time(tmp_path):
    source = make_synthetic_measurement(
        tmp_path / "untimed.rtdc", 30, time_source="none"
    )
    output = tmp_path / "untimed_bg.rtdc"
    with BackgroundSparseMed(
        source, output, kernel_size=5, offset_correction=False
    ) as bg:
        bg.process()
    fig = plot_background(output, frame=-1)
    titles = list(titled_axes(fig))
    assert len(titles) == 5, titles  # no bg_off panel
    assert titles[0] == "Event 30 of 30 (index 29) (image)"
    assert panel(fig, "Background series").get_xlabel() == "Event index"


def test_raw_file_with_plain_background(legacy_with_bg):
    """A measurement that carries its own image_bg can be plotted too"""
    fig = plot_background(legacy_with_bg, frame=0)
    titles = list(titled_axes(fig))
    assert len(titles) == 4
    # 11 events of 6 distinct frames: too few for dcbg check's reference
    assert titles[3].startswith("Ghost map: not judged")
    assert "PASS" in fig.get_suptitle()


def test_ghost_map_marks_ghosts_and_verdict(tmp_path):
    """A dense sample's rolling median holds cells: outlined, PROBLEM"""
    from matplotlib.contour import ContourSet

    source = make_synthetic_measurement(
        tmp_path / "dense.rtdc", 200, cells_per_frame=4, flicker_sigma=0, seed=4
    )
    output = tmp_path / "dense_bg.rtdc"
    with BackgroundRollMed(source, output, kernel_size=30) as bg:
        bg.process()
    fig = plot_background(output, frame=100)
    assert "dcbg check: PROBLEM: ghosts in" in fig.get_suptitle()
    ghost_ax = panel(fig, "Ghost map")
    assert "this event: GHOST" in ghost_ax.get_title(loc="left")
    assert [c for c in ghost_ax.get_children() if isinstance(c, ContourSet)]


def test_save_writes_png_of_expected_size(series_output, tmp_path):
    from PIL import Image

    png = save_background_plot(series_output, tmp_path / "figure.png", dpi=80)
    with Image.open(png) as image:
        width, height = image.size
    fig = plot_background(series_output)
    fig_width, fig_height = fig.get_size_inches()
    assert (width, height) == (round(fig_width * 80), round(fig_height * 80))


def test_default_plot_path_differs_for_input_and_output(tmp_path):
    """The plots of a measurement and of its output never share a name"""
    from dcbg.io.conventions import default_plot_path

    assert default_plot_path(tmp_path / "m.rtdc") == tmp_path / "m_plot.png"
    assert default_plot_path(tmp_path / "m_bg.rtdc") == tmp_path / "m_bg_plot.png"


def test_plot_never_overwrites_a_measurement(series_output, cytoshot, tmp_path):
    """-o onto an .rtdc file (or any HDF5 file) is refused, even with force"""
    target = tmp_path / "other.rtdc"
    target.write_bytes(cytoshot.read_bytes())
    before = target.read_bytes()
    with pytest.raises(ValueError, match="must end with '.png'"):
        save_background_plot(series_output, target, force=True)
    disguised = tmp_path / "measurement.png"
    disguised.write_bytes(before)
    with pytest.raises(ValueError, match="is an HDF5 file"):
        save_background_plot(series_output, disguised, force=True)
    with pytest.raises(ValueError, match="must end with '.png'"):
        save_background_plot(series_output, series_output)
    assert target.read_bytes() == before
    assert disguised.read_bytes() == before


def test_plot_replaces_a_png_only_with_force(series_output, tmp_path):
    png = tmp_path / "figure.png"
    png.write_bytes(b"\x89PNG old")
    with pytest.raises(FileExistsError, match="use --force"):
        save_background_plot(series_output, png)
    assert png.read_bytes() == b"\x89PNG old"
    save_background_plot(series_output, png, force=True, dpi=30)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 1000
    # nothing staged is left beside it
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_errors(cytoshot, tmp_path):
    no_background = tmp_path / "no_bg.rtdc"
    no_background.write_bytes(cytoshot.read_bytes())
    with h5py.File(no_background, "a") as h5:
        del h5["events/image_bg"]
    with pytest.raises(ValueError, match="has no 'image_bg' feature; compute it"):
        plot_background(no_background)
    with pytest.raises(ValueError, match="Event -14 is out of range"):
        plot_background(cytoshot, frame=-14)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_background(tmp_path / "missing.rtdc")
    with pytest.raises(FileNotFoundError, match="Output folder"):
        save_background_plot(cytoshot, tmp_path / "nowhere" / "figure.png")


def test_plot_follows_basins_as_compute_does(tmp_path):
    """dcbg plot takes compute's basin options: an output whose images live
    in a basin outside --basin-root is refused by both, and followed with a
    basin root that holds the basin"""
    from click.testing import CliRunner

    from dcbg.cli import make_cli

    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    results.mkdir()
    source = make_synthetic_measurement(data / "m.rtdc", 20, seed=4)
    output = results / "m_bg.rtdc"
    with BackgroundRollMed(source, output, kernel_size=4, batch_size=6) as bg:
        bg.process()  # the output finds "image" in its file basin, data/m.rtdc

    def run(*args):
        return CliRunner().invoke(make_cli(), [str(arg) for arg in args])

    with pytest.raises(ValueError, match="has no 'image' feature"):
        load_background_data(output, basin_root=results)
    png = tmp_path / "figure.png"
    refused = run("plot", output, "-o", png, "--basin-root", results)
    assert refused.exit_code == 1, refused.output
    assert f"File '{output}' has no 'image' feature" in refused.output
    assert not png.exists()
    computed = run(
        "compute", output, "-o", tmp_path / "again.rtdc", "--method", "rollmed",
        "--kernel-size", 4, "--basin-root", results,
    )  # fmt: skip
    assert computed.exit_code == 1, computed.output
    assert "has no 'image' feature" in computed.output

    followed = run("plot", output, "-o", png, "--basin-root", tmp_path)
    assert followed.exit_code == 0, followed.output
    assert png.stat().st_size > 0
    assert load_background_data(output, basin_root=data).frame_count == 20
