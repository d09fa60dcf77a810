"""Basin resolution against an adversary (issue 18, items 6 to 9)

- 6: what is opened is what was checked: a basin file swapped for a FIFO,
  or a folder swapped for a link out of the basin root, between the
  check and the open (deterministic hooks at the open);
- 7: no basin through ``/proc``, ``/sys`` or ``/dev``, as written or
  through links (``/proc/self/cwd`` depends on the working folder);
- 8: a fan-out of file basins opens each file once, the work per input
  is bounded (opens counted, time not asserted);
- 9: a SIGTERM whose ``KeyboardInterrupt`` Python drops (raised inside a
  ``__del__``) still stops ``dcbg compute`` (exit 143, nothing written).
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from test_untrusted_input import CYTOSHOT, ROLL, craft, file_basin, no_output_left

from dcbg import BackgroundRollMed
from dcbg.io import open_input
from dcbg.io.input import BasinPolicy
from dcbg.io.input import measurement as measurement_module

pytestmark = pytest.mark.skipif(
    os.name != "posix", reason="FIFOs, /proc and signals as on POSIX"
)


@contextlib.contextmanager
def opened_input(path, **kwargs):
    measurement = open_input(path, BasinPolicy.create(**kwargs))
    try:
        yield measurement
    finally:
        measurement.close()


def count_opens(monkeypatch, before_open=None):
    """Count the files dcbg's basin code opens with HDF5 (dclab datasets)

    `before_open(call_number)` runs before each open: the moment between
    the check of a file and HDF5's open of it in the code before issue 18.
    """
    real_open = measurement_module.open_rtdc
    calls = []

    def counting_open(path, *args, **kwargs):
        calls.append(path)
        if before_open is not None:
            before_open(len(calls))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(measurement_module, "open_rtdc", counting_open)
    return calls


def cytoshot_images() -> np.ndarray:
    with h5py.File(CYTOSHOT) as h5:
        return h5["events/image"][:]


def with_images(path: pathlib.Path, images: np.ndarray) -> pathlib.Path:
    """A copy of the bundled measurement whose images are `images`"""
    path.write_bytes(CYTOSHOT.read_bytes())
    with h5py.File(path, "a") as h5:
        h5["events/image"][:] = images
    return path


# 6: what is opened is what was checked ----------------------------------


#: opens a measurement whose basin file is swapped for a FIFO right before
#: its HDF5 open (the second one, after the input's); in a process of its
#: own: h5py blocked in open() holds the interpreter lock
FIFO_SWAP_RUN = textwrap.dedent(
    """
    import os, pathlib, sys
    import numpy as np
    import dcbg.io.input.measurement as basins
    from dcbg.io import open_input

    inp, raw = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    real_open = basins.open_rtdc
    calls = []

    def open_rtdc(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raw.rename(raw.with_name("moved.rtdc"))
            os.mkfifo(raw)
        return real_open(*args, **kwargs)

    basins.open_rtdc = open_rtdc
    m = open_input(inp)
    try:
        images = m.images.read(0, 13)
    finally:
        m.close()
    np.save(sys.argv[3], images)
    print(len(calls))
    """
)


def test_basin_swapped_for_fifo_before_open_does_not_block(tmp_path):
    raw = with_images(tmp_path / "raw.rtdc", cytoshot_images())
    inp = craft(tmp_path / "in.rtdc", [file_basin(raw)], image=False)
    saved = tmp_path / "images.npy"
    try:
        run = subprocess.run(
            [sys.executable, "-c", FIFO_SWAP_RUN, str(inp), str(raw), str(saved)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a basin file swapped for a FIFO blocked dcbg in open()")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["2"]
    # HDF5 read the file that was checked, not what is at the path now
    assert raw.is_fifo()
    assert np.array_equal(np.load(saved), cytoshot_images())


def test_folder_swap_cannot_escape_the_basin_root(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "other" / "sub").mkdir(parents=True)
    inside = cytoshot_images()
    outside = 255 - inside
    with_images(root / "sub" / "raw.rtdc", inside)
    with_images(tmp_path / "other" / "sub" / "raw.rtdc", outside)
    inp = craft(root / "in.rtdc", [file_basin("sub/raw.rtdc")], image=False)

    def swap_folder(call):
        if call == 2:
            (root / "sub").rename(root / "sub-moved")
            (root / "sub").symlink_to(tmp_path / "other" / "sub")

    count_opens(monkeypatch, swap_folder)
    with opened_input(inp, basin_root=root) as m:
        assert m.refused_basins == []
        images = m.images.read(0, 13)
    assert np.array_equal(images, inside)
    assert not np.array_equal(images, outside)


def test_swaps_at_the_open_itself_are_refused(tmp_path, monkeypatch):
    """The last moment: between the look at a name and its ``open``"""
    from dcbg.io.input import safe_open

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    raw = with_images(root / "sub" / "raw.rtdc", cytoshot_images())
    with_images(tmp_path / "other" / "raw.rtdc", cytoshot_images())
    real_os_open = os.open

    def fifo_at_open(name, flags, *args, **kwargs):
        if name == "raw.rtdc" and not raw.is_fifo():
            raw.rename(root / "sub" / "moved.rtdc")
            os.mkfifo(raw)
        return real_os_open(name, flags, *args, **kwargs)

    def link_at_open(name, flags, *args, **kwargs):
        if name == "sub" and not (root / "sub").is_symlink():
            (root / "sub").rename(root / "sub-moved")
            (root / "sub").symlink_to(tmp_path / "other")
        return real_os_open(name, flags, *args, **kwargs)

    # a FIFO at the name when it is opened: no block, refused
    monkeypatch.setattr(safe_open.os, "open", fifo_at_open)
    with pytest.raises(safe_open.FileRefused, match="changed while it was opened"):
        safe_open.open_regular_file(root / "sub" / "raw.rtdc", root)
    monkeypatch.undo()
    os.unlink(raw)
    (root / "sub" / "moved.rtdc").rename(raw)
    # a folder replaced by a link out of the root when it is opened
    monkeypatch.setattr(safe_open.os, "open", link_at_open)
    with pytest.raises(safe_open.FileRefused, match="changed while it was opened"):
        safe_open.open_regular_file(root / "sub" / "raw.rtdc", root)


# 7: no basins through virtual file systems --------------------------------


@pytest.mark.parametrize("route", ["proc-cwd", "link-to-proc-cwd", "dev-fd"])
def test_basins_through_virtual_file_systems_are_refused(tmp_path, monkeypatch, route):
    data = tmp_path / "data"
    data.mkdir()
    raw = with_images(data / "raw.rtdc", cytoshot_images())
    monkeypatch.chdir(data)  # /proc/self/cwd/raw.rtdc is raw.rtdc now
    fd = os.open(raw, os.O_RDONLY)
    try:
        if route == "proc-cwd":
            location, reason = "/proc/self/cwd/raw.rtdc", "is in /proc, a virtual"
        elif route == "link-to-proc-cwd":
            location = tmp_path / "raw-link.rtdc"
            location.symlink_to("/proc/self/cwd/raw.rtdc")
            reason = "leads through a symbolic link to '/proc' in /proc"
        else:
            location, reason = f"/dev/fd/{fd}", "is in /dev, a virtual"
        inp = craft(tmp_path / "in.rtdc", [file_basin(location)], image=False)
        out = tmp_path / "out.rtdc"
        with pytest.raises(ValueError) as info:
            BackgroundRollMed(inp, out, **ROLL)
    finally:
        os.close(fd)
    message = str(info.value)
    assert f"basin 'crafted' (file/hdf5, '{location}')" in message
    assert reason in message
    assert no_output_left(out)


# 8: fan-out -----------------------------------------------------------------


def fan_out(tmp_path, depth: int, width: int = 3) -> pathlib.Path:
    """`width` file basins per level, each to all files of the level below"""
    level = [
        with_images(tmp_path / f"L{depth}-{i}.rtdc", cytoshot_images())
        for i in range(width)
    ]
    for k in range(depth - 1, 0, -1):
        level = [
            craft(
                tmp_path / f"L{k}-{i}.rtdc",
                [file_basin(p, name=f"to {p.name}") for p in level],
                image=False,
            )
            for i in range(width)
        ]
    return craft(
        tmp_path / "in.rtdc",
        [file_basin(p, name=f"to {p.name}") for p in level],
        image=False,
    )


def test_basin_fan_out_opens_each_file_once(tmp_path, monkeypatch):
    depth = 4
    inp = fan_out(tmp_path, depth)
    distinct_files = 3 * depth
    opens = count_opens(monkeypatch)
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(inp, out, **ROLL) as bg:
        bg.process()
    # 1 + 3 + 9 + 27 + 81 opens before (one per path through the fan-out)
    assert len(opens) == 1 + distinct_files
    with h5py.File(out) as h5:
        assert h5["events/image_bg"].shape == (13, 80, 320)


def test_basin_work_is_bounded_per_input(tmp_path, monkeypatch):
    from dcbg.io.input import basin_resolution

    # files: a chain longer than the bound (the bound made small here)
    monkeypatch.setattr(basin_resolution, "MAX_BASIN_FILES", 3)
    inp = fan_out(tmp_path, depth=3, width=1)  # a chain of 3 basin files
    opens = count_opens(monkeypatch)
    with opened_input(inp) as m:
        assert m.images is not None
    monkeypatch.setattr(basin_resolution, "MAX_BASIN_FILES", 2)
    opens.clear()
    with pytest.raises(ValueError) as info:
        open_input(inp)
    assert str(info.value).startswith(
        f"Input file '{inp}' reaches more than 2 basin files through its basins"
    )
    assert len(opens) == 1 + 2


def test_basin_definitions_and_locations_are_bounded(tmp_path):
    # 5,000 locations (up to 10,000 paths tried before): beyond the bound
    many = [f"sub/missing-{i}.rtdc" for i in range(5000)]
    inp = craft(tmp_path / "many.rtdc", [file_basin(*many)], image=False)
    with pytest.raises(ValueError) as info:
        open_input(inp)
    assert str(info.value).startswith(
        f"Input file '{inp}' makes dcbg examine more than 4096 basin definitions "
        f"and locations (too many basin locations in '{inp}')"
    )


# 9: a stop request Python dropped -------------------------------------------

#: runs `dcbg compute` (argv[2:]); at the moment argv[1] names (the
#: second HDF5 open: a basin file; or the commit of the output), it deletes
#: an object whose ``__del__`` waits for the signal: the KeyboardInterrupt
#: of the SIGTERM handler is raised inside ``__del__``, where Python prints
#: "Exception ignored in ..." and goes on, as when h5py or dclab objects
#: are closed by the garbage collector at that moment
DROPPING_RUN = textwrap.dedent(
    """
    import os, sys, time
    import dcbg.io.input.measurement as basins
    import dcbg.io.output as rtdc

    moment = sys.argv[1]

    class WaitsForTheSignal:
        def __del__(self):
            os.write(2, b"dcbg-test-waiting\\n")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.01)

    def drop_a_signal():
        obj = WaitsForTheSignal()
        del obj

    real_open = basins.open_rtdc
    real_commit = rtdc.OutputFile.commit
    calls = []

    def open_rtdc(*args, **kwargs):
        ds = real_open(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2 and moment == "basin":
            drop_a_signal()
        return ds

    def commit(*args, **kwargs):
        if moment == "commit":
            drop_a_signal()
        return real_commit(*args, **kwargs)

    basins.open_rtdc = open_rtdc
    rtdc.OutputFile.commit = commit
    from dcbg.cli import main

    sys.argv = ["dcbg", *sys.argv[2:]]
    main()
    """
)


@pytest.mark.parametrize(
    "moment, runs",
    [
        ("basin", 1),
        ("commit", 1),
        # the issue saw it in 4 of 13 runs: the same, again and again
        pytest.param("basin", 6, marks=pytest.mark.slow),
    ],
)
def test_sigterm_python_dropped_still_stops(tmp_path, moment, runs):
    raw = with_images(tmp_path / "raw.rtdc", cytoshot_images())
    inp = craft(tmp_path / "in.rtdc", [file_basin(raw)], image=False)
    out = tmp_path / "out" / "bg.rtdc"
    out.parent.mkdir()
    for _ in range(runs):
        proc = subprocess.Popen(
            [sys.executable, "-c", DROPPING_RUN, moment, "compute", str(inp)]
            + ["-o", str(out), "--method", "rollmed", "--kernel-size", "4", "-q"],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = proc.stderr.readline()
            assert line == "dcbg-test-waiting\n", line + proc.stderr.read()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            stderr = proc.stderr.read()
        finally:
            proc.kill()
            proc.wait()
            proc.stderr.close()
        assert "Exception ignored" in stderr  # Python did drop it
        assert proc.returncode == 128 + signal.SIGTERM, stderr
        assert list(out.parent.iterdir()) == [], stderr
