"""Untrusted input: the basin policy, declared sizes, errors naming the file

Measurements are crafted here with h5py and dclab's writer from the
bundled example (13 frames of 80x320).
"""

import http.server
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import dclab
import h5py
import hdf5plugin
import numpy as np
import pytest
from click.testing import CliRunner
from dclab.rtdc_dataset.copier import rtdc_copy

from dcbg import BackgroundCopy, BackgroundRollMed, BackgroundSparseMed
from dcbg.cli import make_cli
from dcbg.cluster import FileResult, process_file, process_many
from dcbg.io import open_input
from dcbg.io.conventions import read_basin_definition
from dcbg.io.input import BasinPolicy
from dcbg.run_options import cpu_count

#: the example measurements of the package
BUNDLED = pathlib.Path(__file__).resolve().parents[1] / "dcbg" / "data"

CYTOSHOT = (
    pathlib.Path(__file__).resolve().parents[1]
    / "dcbg"
    / "data"
    / "cytoshot_2024_80x320.rtdc"
)
ROLL = {"kernel_size": 4, "batch_size": 6}


def run_cli(*args):
    return CliRunner().invoke(make_cli(), [str(arg) for arg in args])


def craft(path, basins=(), image=True, src=CYTOSHOT):
    """A copy of `src` (without 'image' unless `image`) with extra basins

    Parameters
    ----------
    basins: list of dict
        Keyword arguments of ``RTDCWriter.store_basin`` (``verify=False``),
        or {"raw": dict} for a definition written as it is
    """
    path = pathlib.Path(path)
    with h5py.File(src) as h5src, h5py.File(path, "w") as h5:
        if image:
            rtdc_copy(h5src, h5, features="all")
        else:
            rtdc_copy(h5src, h5, features="scalar")
            for name in list(h5["events"]):
                if h5["events"][name].ndim > 1:
                    del h5["events"][name]
        with dclab.RTDCWriter(h5) as hw:
            for kwargs in basins:
                if "raw" in kwargs:
                    lines = json.dumps(kwargs["raw"], indent=2).split("\n")
                    hw.write_text(h5.require_group("basins"), f"raw{id(kwargs)}", lines)
                    continue
                hw.store_basin(verify=False, **kwargs)
    return path


def file_basin(*locs, feats=("image",), name="crafted", **kwargs):
    return dict(
        basin_name=name,
        basin_type="file",
        basin_format="hdf5",
        basin_locs=[str(loc) for loc in locs],
        basin_feats=list(feats),
        **kwargs,
    )


def remote_basin(fmt, url, feats=("image",)):
    return dict(
        basin_name=f"remote {fmt}",
        basin_type="remote",
        basin_format=fmt,
        basin_locs=[url],
        basin_feats=list(feats),
    )


def output_basin_locations(path) -> list[str]:
    """Every path and URL in the basin definitions of a file"""
    locs = []
    with h5py.File(path) as h5:
        for key in h5.get("basins", {}):
            bdict = read_basin_definition(h5["basins"][key])
            locs += bdict.get("paths", []) + bdict.get("urls", [])
    return locs


def no_output_left(out: pathlib.Path) -> bool:
    """Nothing at the output path and no temporary sibling either"""
    leftovers = [p for p in out.parent.iterdir() if out.name in p.name]
    return not out.exists() and not leftovers


@pytest.fixture
def tree(tmp_path):
    """A basin root holding inputs, and a measurement outside of it"""
    root = tmp_path / "root"
    root.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    raw = other / "raw.rtdc"
    raw.write_bytes(CYTOSHOT.read_bytes())
    return root, raw


# basin policy: file basins --------------------------------------------------


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_basin_root_refuses_basins_outside(tree, tmp_path, kind):
    root, raw = tree
    if kind == "absolute":
        loc = raw
    elif kind == "dotdot":
        loc = "../other/raw.rtdc"
    else:
        (root / "link.rtdc").symlink_to(raw)
        loc = "link.rtdc"
    inp = craft(root / "in.rtdc", [file_basin(loc)], image=False)
    out = tmp_path / "out.rtdc"

    # without a basin root the basin is followed: the images come from it
    with BackgroundRollMed(inp, out, **ROLL) as bg:
        bg.process()
    with dclab.new_dataset(out) as ds:
        assert ds["image_bg"].shape == (13, 80, 320)
    out.unlink()

    with pytest.raises(ValueError) as info:
        BackgroundRollMed(inp, out, basin_root=root, **ROLL)
    message = str(info.value)
    assert f"Input file '{inp}' has no 'image' feature of its own" in message
    assert "basin 'crafted'" in message
    assert f"resolves to '{raw.resolve()}', outside the basin root" in message
    assert no_output_left(out)

    result = run_cli(
        "compute",
        inp,
        "-o",
        out,
        "--method",
        "rollmed",
        "--kernel-size",
        4,
        "--basin-root",
        root,
    )
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: Input file '{inp}' has no 'image' feature")
    assert "outside the basin root" in line
    assert no_output_left(out)


@pytest.mark.parametrize("kind", ["relative", "absolute", "symlinked root"])
def test_basin_root_follows_basins_inside(tree, tmp_path, kind):
    root, raw = tree
    sub = root / "data"
    sub.mkdir()
    inside = sub / "raw.rtdc"
    inside.write_bytes(raw.read_bytes())
    loc = "data/raw.rtdc" if kind == "relative" else inside
    inp = craft(root / "in.rtdc", [file_basin(loc)], image=False)
    given_root = root
    if kind == "symlinked root":
        given_root = tmp_path / "root_link"
        given_root.symlink_to(root)
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(inp, out, basin_root=given_root, **ROLL) as bg:
        assert bg.hdin.refused_basins == []
        bg.process()
    with dclab.new_dataset(out) as ds, dclab.new_dataset(inside) as dr:
        assert np.array_equal(ds["image"][:], dr["image"][:])
    assert str(inside.resolve()) in output_basin_locations(out)


def test_output_carries_no_refused_basin(tree, tmp_path):
    root, raw = tree
    # the images are in the input; an extra basin points outside the root
    inp = craft(root / "in.rtdc", [file_basin(raw, feats=["deform"], name="extra")])
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(inp, out, **ROLL) as bg:
        bg.process()
    assert any("other" in loc for loc in output_basin_locations(out)), "control"
    out.unlink()

    with BackgroundRollMed(inp, out, basin_root=root, **ROLL) as bg:
        [refused] = bg.hdin.refused_basins
        assert refused.name == "extra" and "outside the basin root" in refused.reason
        bg.process()
    locs = output_basin_locations(out)
    assert locs, "the output references its input"
    assert not any("other" in loc for loc in locs), locs
    with dclab.new_dataset(out) as ds:
        assert ds["image_bg"].shape == (13, 80, 320)


@pytest.mark.parametrize(
    "target, reason",
    [
        ("/dev/zero", "'/dev/zero' is in /dev, a virtual file system"),
        ("/proc/self/environ", "in /proc, a virtual file system"),
        ("/etc/passwd", "is not an HDF5 file (no HDF5 signature)"),
        ("{tmp}/missing.rtdc", "does not exist"),
        ("{tmp}", "is a directory, not a regular file"),
    ],
)
def test_basins_to_non_hdf5_files_are_refused(tmp_path, target, reason):
    target = target.format(tmp=tmp_path)
    if target == "/etc/passwd" and not os.path.exists(target):
        pytest.skip("no /etc/passwd here")
    inp = craft(tmp_path / "in.rtdc", [file_basin(target)], image=False)
    out = tmp_path / "out.rtdc"
    with pytest.raises(ValueError) as info:
        BackgroundSparseMed(inp, out)
    message = str(info.value)
    assert f"Input file '{inp}'" in message
    assert f"basin 'crafted' (file/hdf5, '{target}')" in message
    assert reason in message
    assert "file signature not found" not in message
    assert no_output_left(out)


def test_fifo_basin_fails_within_seconds(tmp_path):
    fifo = tmp_path / "pipe.rtdc"
    os.mkfifo(fifo)
    inp = craft(tmp_path / "in.rtdc", [file_basin(fifo)], image=False)
    out = tmp_path / "out.rtdc"
    outcome = {}

    def run():
        try:
            BackgroundRollMed(inp, out, **ROLL)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():
        # release a reader blocked in open() before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("a FIFO basin blocked dcbg for more than 5 s")
    message = str(outcome["error"])
    assert f"'{fifo}' is a FIFO (named pipe), not a regular file" in message
    assert no_output_left(out)

    # the command line too (in a process of its own: a hang cannot block us)
    run_cmd = subprocess.run(
        [
            sys.executable,
            "-m",
            "dcbg",
            "compute",
            str(inp),
            "-o",
            str(out),
            "--method",
            "rollmed",
            "--kernel-size",
            "4",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run_cmd.returncode == 1
    [line] = run_cmd.stderr.strip().splitlines()
    assert "is a FIFO (named pipe), not a regular file" in line


def test_fifo_as_input_fails(tmp_path):
    fifo = tmp_path / "pipe.rtdc"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"pipe.rtdc' is a FIFO \(named pipe\)"):
        BackgroundRollMed(fifo, tmp_path / "out.rtdc", **ROLL)


def test_cyclic_and_self_basins_are_refused(tmp_path):
    a, b = tmp_path / "a.rtdc", tmp_path / "b.rtdc"
    craft(a, [file_basin(b, name="to b")], image=False)
    craft(b, [file_basin(a, name="to a")], image=False)
    with pytest.raises(ValueError) as info:
        BackgroundRollMed(a, tmp_path / "out.rtdc", **ROLL)
    message = str(info.value)
    assert "no 'image' feature of its own" in message
    assert "(a cycle)" in message


def test_basin_with_other_identifier_is_refused(tmp_path):
    raw = tmp_path / "raw.rtdc"
    raw.write_bytes(CYTOSHOT.read_bytes())
    inp = craft(
        tmp_path / "in.rtdc", [file_basin(raw, basin_id="someone-else")], image=False
    )
    with pytest.raises(ValueError, match="the basin definition expects 'someone-else'"):
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)


def test_basin_with_other_measurement_is_refused(tmp_path):
    """The referrer's identifier must match the basin's (dclab's rule)"""
    raw = tmp_path / "raw.rtdc"
    raw.write_bytes(CYTOSHOT.read_bytes())
    with h5py.File(raw, "a") as h5:
        h5.attrs["experiment:run identifier"] = "another-measurement"
    inp = craft(tmp_path / "in.rtdc", [file_basin(raw)], image=False)
    with pytest.raises(ValueError, match="differs from that of"):
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)


def test_malformed_basin_definitions_are_refused(tmp_path):
    raw = tmp_path / "raw.rtdc"
    raw.write_bytes(CYTOSHOT.read_bytes())
    definitions = [
        {"raw": {"type": "file", "format": "hdf5", "paths": 5}},
        {"raw": {"type": "file", "format": "zip", "paths": [str(raw)]}},
        {"raw": {"type": "file", "format": "hdf5", "paths": [str(raw)],
                 "mapping": "basinmap7"}},
        {"raw": {"type": "magic", "format": "hdf5", "paths": [str(raw)]}},
        {"raw": {"type": "remote", "format": "http", "urls": "http://x"}},
    ]  # fmt: skip
    inp = craft(tmp_path / "in.rtdc", definitions)
    measurement = open_input(inp)
    try:
        reasons = [rb.reason for rb in measurement.refused_basins]
        assert len(measurement.images) == 13  # the images are in the file
        assert measurement.followed_basins() == []
    finally:
        measurement.close()
    assert len(reasons) == 5
    for expected in (
        "its 'paths' is not a list of strings",
        "unknown format 'zip' for a file basin",
        "its mapping feature 'basinmap7' is not in the file",
        "unknown basin type 'magic'",
        "its 'urls' is not a list of strings",
    ):
        assert any(expected in reason for reason in reasons), (expected, reasons)
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(inp, out, **ROLL) as bg:
        bg.process()
    assert output_basin_locations(out) == [str(inp.resolve()), "../in.rtdc"] or (
        output_basin_locations(out) == [str(inp.resolve()), "in.rtdc"]
    )


@pytest.mark.parametrize(
    "lines, reason",
    [
        ([b"{not json"], "Expecting property name"),
        ([b'["a", "list"]'], "not a JSON object"),
        ([b'{"format": "hdf5", "paths": ["x"]}'], "no basin 'type'"),
        ([b'{"type": "internal", "format": "h5dataset", "paths": ["x"]}'],
         "an internal basin without a list of features"),
    ],
)  # fmt: skip
def test_unreadable_basin_definition_is_an_error(tmp_path, lines, reason):
    inp = craft(tmp_path / "in.rtdc")
    with h5py.File(inp, "a") as h5:
        h5.require_group("basins").create_dataset("broken", data=lines)
    out = tmp_path / "out.rtdc"
    with pytest.raises(ValueError) as info:
        BackgroundRollMed(inp, out, **ROLL)
    message = str(info.value)
    assert message.startswith(f"Basin definition 'broken' of '{inp}' cannot be read")
    assert reason in message
    assert no_output_left(out)


def test_remote_basins_make_no_request(tmp_path, http_server):
    import requests  # noqa: F401  (dclab's http basins are usable)

    url, seen = http_server
    basins = [
        remote_basin("http", f"{url}/raw.rtdc"),
        remote_basin("s3", f"{url}/bucket/raw.rtdc"),
        remote_basin("dcor", f"{url}/api/3/action/dcserv?id=abc"),
    ]
    with_image = craft(tmp_path / "with_image.rtdc", basins)
    only_remote = craft(tmp_path / "only_remote.rtdc", basins, image=False)
    out = tmp_path / "out.rtdc"

    with BackgroundRollMed(with_image, out, **ROLL) as bg:
        assert {rb.format for rb in bg.hdin.refused_basins} == {"http", "s3", "dcor"}
        bg.process()
    assert not any(url in loc for loc in output_basin_locations(out))
    result = run_cli(
        "compute",
        with_image,
        "-o",
        tmp_path / "cli.rtdc",
        "--method",
        "sparsemed",
        "--kernel-size",
        4,
    )
    assert result.exit_code == 0, result.output

    with pytest.raises(ValueError) as info:
        BackgroundSparseMed(only_remote, tmp_path / "out2.rtdc")
    assert "remote basins are not followed" in str(info.value)
    assert "--allow-remote-basins" in str(info.value)
    result = run_cli("compute", only_remote, "--method", "sparsemed")
    assert result.exit_code == 1
    assert "remote basins are not followed" in result.stderr

    # dcbg plot reads the output and, through it, the input's basins
    from dcbg.plot import save_background_plot

    save_background_plot(out, tmp_path / "out.png")

    time.sleep(1)  # dclab checks basins in background threads
    assert seen == []

    # control: opting in makes dclab contact the server
    with pytest.raises(ValueError, match="remote basin 'remote http'"):
        BackgroundSparseMed(
            only_remote, tmp_path / "out3.rtdc", allow_remote_basins=True
        )
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen, "the control request did not arrive"


def test_dcor_basins_only_over_https(tmp_path):
    inp = craft(
        tmp_path / "in.rtdc",
        [remote_basin("dcor", "http://127.0.0.1:9/api/3/action/dcserv?id=x")],
    )
    measurement = open_input(inp, BasinPolicy.create(allow_remote_basins=True))
    try:
        [refused] = measurement.refused_basins
    finally:
        measurement.close()
    assert refused.reason.startswith("DCOR basins are followed only over https")


@pytest.fixture
def http_server():
    """A local HTTP server that records every request (and answers 404)"""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self):
            seen.append((self.command, self.path))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_POST = do_PUT = _record

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_external_link_is_refused(tmp_path):
    raw = tmp_path / "raw.rtdc"
    raw.write_bytes(CYTOSHOT.read_bytes())
    inp = craft(tmp_path / "in.rtdc", image=False)
    with h5py.File(inp, "a") as h5:
        h5["events/image"] = h5py.ExternalLink(str(raw), "/events/image")
    with pytest.raises(ValueError, match="'/events/image' in .* external link"):
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)


def test_virtual_and_external_storage_are_refused(tmp_path):
    raw = tmp_path / "raw.rtdc"
    raw.write_bytes(CYTOSHOT.read_bytes())
    inp = craft(tmp_path / "in.rtdc", image=False)
    layout = h5py.VirtualLayout(shape=(13, 80, 320), dtype=np.uint8)
    layout[:] = h5py.VirtualSource(str(raw), "events/image", shape=(13, 80, 320))
    with h5py.File(inp, "a") as h5:
        h5["events"].create_virtual_dataset("image", layout)
    with pytest.raises(ValueError, match="is an HDF5 virtual dataset"):
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)

    inp2 = craft(tmp_path / "in2.rtdc", image=False)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(13 * 80 * 320))
    with h5py.File(inp2, "a") as h5:
        h5["events"].create_dataset(
            "image",
            shape=(13, 80, 320),
            dtype=np.uint8,
            external=[(str(blob), 0, h5py.h5f.UNLIMITED)],
        )
    with pytest.raises(ValueError, match="external raw file"):
        BackgroundRollMed(inp2, tmp_path / "out.rtdc", **ROLL)


def test_internal_mapped_basin_out_of_range(tmp_path):
    inp = craft(tmp_path / "in.rtdc", image=False)
    with h5py.File(CYTOSHOT) as src, h5py.File(inp, "a") as h5:
        frames = src["events/image"][:4]
        with dclab.RTDCWriter(h5) as hw:
            hw.store_basin(
                basin_name="unique frames",
                basin_type="internal",
                basin_format="h5dataset",
                basin_locs=["basin_events"],
                basin_feats=["image"],
                basin_map=np.arange(13) % 7,  # entries 4..6 do not exist
                internal_data={"image": frames},
            )
    with pytest.raises(ValueError) as info:
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)
    message = str(info.value)
    assert f"basin mapping 'basinmap0' of '{inp}'" in message
    assert "expected indices in 0..3" in message


# declared sizes ----------------------------------------------------------------


def replace_image(path, frames, declared=None, chunks=None, event_count=None):
    """Write `frames` as events/image, declaring `declared` frames"""
    with h5py.File(path, "a") as h5:
        if "image" in h5["events"]:
            del h5["events/image"]
        shape = (declared or len(frames), *frames.shape[1:])
        dset = h5["events"].create_dataset(
            "image",
            shape=shape,
            dtype=np.uint8,
            chunks=chunks or (1, *frames.shape[1:]),
            fletcher32=True,
            **hdf5plugin.Zstd(clevel=1),
        )
        dset[: len(frames)] = frames
        if event_count is not None:
            h5.attrs["experiment:event count"] = event_count


def cytoshot_frames():
    with h5py.File(CYTOSHOT) as h5:
        return h5["events/image"][:]


@pytest.mark.timeout(60)
def test_declared_frames_not_stored(tmp_path):
    """10^8 declared frames, 13 stored: an error, not hours on fill values"""
    inp = craft(tmp_path / "in.rtdc", image=False)
    replace_image(inp, cytoshot_frames(), declared=10**8, event_count=10**8)
    assert inp.stat().st_size < 2 * 1024**2
    out = tmp_path / "out.rtdc"
    for cls, kwargs in [(BackgroundRollMed, ROLL), (BackgroundSparseMed, {})]:
        with pytest.raises(ValueError) as info:
            cls(inp, out, **kwargs)
        message = str(info.value)
        assert f"'image' feature of '{inp}'" in message
        assert "stores only 13 of its 100000000 chunks" in message
        assert no_output_left(out)


def test_image_length_differs_from_event_count(tmp_path):
    inp = craft(tmp_path / "in.rtdc", image=False)
    replace_image(inp, cytoshot_frames()[:12])  # event count stays 13
    with pytest.raises(ValueError) as info:
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)
    assert str(info.value) == (
        f"The 'image' feature of '{inp}' has 12 entries, but '{inp}' declares "
        f"13 events; expected one entry per event"
    )


def test_file_basin_with_fewer_frames(tmp_path):
    raw = tmp_path / "raw.rtdc"
    raw.write_bytes(CYTOSHOT.read_bytes())
    replace_image(raw, cytoshot_frames()[:10], event_count=10)
    with h5py.File(raw, "a") as h5:
        for name in list(h5["events"]):
            if name != "image":
                del h5["events"][name]
    inp = craft(tmp_path / "in.rtdc", [file_basin(raw)], image=False)
    with pytest.raises(ValueError) as info:
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)
    message = str(info.value)
    assert f"The 'image' feature of '{inp}' (from basin 'crafted'" in message
    assert f"has 10 entries, but '{inp}' declares 13 events" in message


@pytest.mark.parametrize("value", [-5, 2.5, "many"])
def test_invalid_event_count(tmp_path, value):
    inp = craft(tmp_path / "in.rtdc")
    with h5py.File(inp, "a") as h5:
        h5.attrs["experiment:event count"] = value
    with pytest.raises(ValueError) as info:
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)
    message = str(info.value)
    assert f"'{inp}'" in message
    assert (
        "declares the event count" in message
        or "attribute 'experiment:event count' has the value" in message
    )


def test_contiguous_image_beyond_end_of_file(tmp_path):
    inp = craft(tmp_path / "in.rtdc", image=False)
    with h5py.File(inp, "a") as h5:
        h5["events"].create_dataset("image", data=cytoshot_frames())
    size = inp.stat().st_size
    with open(inp, "r+b") as fd:
        fd.truncate(size - 5000)
    with pytest.raises(ValueError) as info:
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)
    # HDF5 notices the truncation, or dcbg the missing bytes
    assert f"'{inp}'" in str(info.value)


def corrupt_chunk(path, index, offset=40):
    """Flip bytes in stored chunk `index` of events/image"""
    with h5py.File(path) as h5:
        info = h5["events/image"].id.get_chunk_info(index)
    with open(path, "r+b") as fd:
        fd.seek(info.byte_offset + offset)
        data = bytearray(fd.read(8))
        fd.seek(info.byte_offset + offset)
        fd.write(bytes(b ^ 0xFF for b in data))


def test_corrupt_first_chunk_named_before_computation(tmp_path):
    inp = tmp_path / "in.rtdc"
    inp.write_bytes(CYTOSHOT.read_bytes())
    corrupt_chunk(inp, 0)
    out = tmp_path / "out.rtdc"
    with pytest.raises(OSError) as info:
        BackgroundRollMed(inp, out, **ROLL)
    message = str(info.value)
    assert f"Cannot read frames 0..0 of the 'image' feature of '{inp}'" in message
    assert no_output_left(out)


@pytest.mark.parametrize("offset", [40, -6])  # compressed data, checksum
def test_corrupt_chunk_during_computation(tmp_path, offset):
    inp = craft(tmp_path / "in.rtdc", image=False)
    replace_image(inp, cytoshot_frames(), chunks=(2, 80, 320))
    with h5py.File(inp) as h5:
        size = h5["events/image"].id.get_chunk_info(3).size
    corrupt_chunk(inp, 3, offset if offset > 0 else size + offset)
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(inp, out, **ROLL) as bg:
        with pytest.raises(OSError) as info:
            bg.process()
    message = str(info.value)
    assert f"of the 'image' feature of '{inp}'" in message
    assert no_output_left(out)


def test_hdf5_file_without_events(tmp_path):
    inp = tmp_path / "plain.h5"
    with h5py.File(inp, "w") as h5:
        h5.attrs["experiment:event count"] = 3
        h5["data"] = np.zeros(3)
    with pytest.raises(ValueError) as info:
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)
    assert str(info.value) == (
        f"File '{inp}' has no 'events' group; expected an RT-DC measurement "
        f"(.rtdc) with the 'image' feature"
    )
    result = run_cli("compute", inp, "--method", "rollmed")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: File '{inp}' has no 'events' group")
    assert "KeyError" not in result.stderr


def test_image_group_instead_of_dataset(tmp_path):
    inp = craft(tmp_path / "in.rtdc", image=False)
    with h5py.File(inp, "a") as h5:
        h5["events"].create_group("image")
    with pytest.raises(
        ValueError, match=f"'image' feature of '{inp}' is an HDF5 group"
    ):
        BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL)


# parameters ------------------------------------------------------------------


@pytest.mark.parametrize("split_time", [1e-12, 1e-300])
def test_split_time_beyond_the_series_budget(cytoshot, tmp_path, split_time):
    # the per-step values of ~10^9 (or 10^297) series steps: refused before
    # anything is allocated; dcnum would run out of memory
    with pytest.raises(ValueError) as info:
        BackgroundSparseMed(cytoshot, tmp_path / "out.rtdc", split_time=split_time)
    message = str(info.value)
    assert message.startswith(f"split_time={split_time} s gives")
    assert "series steps" in message and f"of '{cytoshot}'" in message
    assert "more than the 256 MiB allowed; expected split_time >=" in message
    assert "\n" not in message
    result = run_cli(
        "compute", cytoshot, "--method", "sparsemed", "--split-time", split_time
    )
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    # the command line names the option
    assert last.startswith(f"Error: --split-time={split_time} s gives")


def test_split_time_with_a_few_images_per_frame_warns(cytoshot, tmp_path):
    # dcnum computes such a series (its own tests do, with 1.8 per frame)
    with h5py.File(cytoshot) as h5:
        time_ = h5["events/time"][:]
    per_frame = (time_[-1] - time_[0]) / 13
    with pytest.warns(UserWarning, match="most of them serve no frame"):
        with BackgroundSparseMed(
            cytoshot, tmp_path / "out.rtdc", split_time=per_frame / 2, kernel_size=3
        ) as bg:
            bg.process()
    assert len(bg.step_times) > 13


def test_split_time_of_one_image_per_frame_is_fine(cytoshot, tmp_path):
    with h5py.File(cytoshot) as h5:
        time_ = h5["events/time"][:]
    per_frame = (time_[-1] - time_[0]) / 13
    with BackgroundSparseMed(
        cytoshot, tmp_path / "out.rtdc", split_time=per_frame * 1.01, kernel_size=3
    ) as bg:
        bg.process()
        assert len(bg.step_times) <= 13


def test_non_finite_frame_times(tmp_path):
    inp = craft(tmp_path / "in.rtdc")
    with h5py.File(inp, "a") as h5:
        h5["events/time"][5] = np.nan
    with pytest.raises(ValueError, match=f"frame times of '{inp}'.*non-finite"):
        BackgroundSparseMed(inp, tmp_path / "out.rtdc")


@pytest.mark.parametrize("rate", [0.0, -3.0, "fast"])
def test_invalid_frame_rate(tmp_path, rate):
    inp = craft(tmp_path / "in.rtdc")
    with h5py.File(inp, "a") as h5:
        del h5["events/time"]
        h5.attrs["imaging:frame rate"] = rate
    with pytest.raises(ValueError) as info:
        BackgroundSparseMed(inp, tmp_path / "out.rtdc")
    message = str(info.value)
    assert f"'{inp}'" in message
    assert (
        "declares the frame rate" in message
        or "attribute 'imaging:frame rate' has the value 'fast'" in message
    )


def test_time_with_other_length(tmp_path):
    inp = craft(tmp_path / "in.rtdc")
    with h5py.File(inp, "a") as h5:
        time_ = h5["events/time"][:]
        del h5["events/time"]
        h5["events/time"] = time_[:7]
    with pytest.raises(ValueError, match=f"'time' feature of '{inp}' has 7 entries"):
        BackgroundSparseMed(inp, tmp_path / "out.rtdc")


def test_num_cpus_beyond_available_is_capped(cytoshot, tmp_path):
    with pytest.warns(UserWarning, match="num_cpus=10000 is more than the"):
        bg = BackgroundRollMed(cytoshot, tmp_path / "out.rtdc", num_cpus=10000, **ROLL)
    with bg:
        assert bg.num_cpus == cpu_count()
        bg.process()
        assert len(bg.workers) <= cpu_count()
    result = run_cli(
        "compute",
        cytoshot,
        "-o",
        tmp_path / "cli.rtdc",
        "--method",
        "rollmed",
        "--kernel-size",
        4,
        "--num-cpus",
        10000,
    )
    assert result.exit_code == 0, result.output
    # the command line names the option the user typed
    assert "Warning: --num-cpus=10000 is more than the" in result.stderr


@pytest.mark.parametrize("value", ["no", "False", 0, 1, None])
def test_compress_must_be_bool(cytoshot, tmp_path, value):
    with pytest.raises(
        ValueError, match=f"compress must be True or False, got {value!r}"
    ):
        BackgroundRollMed(cytoshot, tmp_path / "out.rtdc", compress=value, **ROLL)
    assert no_output_left(tmp_path / "out.rtdc")


def test_policy_option_values_are_checked(cytoshot, tmp_path):
    with pytest.raises(FileNotFoundError, match="Basin root .*nowhere' does not exist"):
        BackgroundRollMed(
            cytoshot, tmp_path / "o.rtdc", basin_root=tmp_path / "nowhere"
        )
    with pytest.raises(ValueError, match="Basin root .* is not a directory"):
        BackgroundRollMed(cytoshot, tmp_path / "o.rtdc", basin_root=cytoshot)
    with pytest.raises(ValueError, match="allow_remote_basins must be True or False"):
        BackgroundRollMed(cytoshot, tmp_path / "o.rtdc", allow_remote_basins="yes")
    with pytest.raises(TypeError, match="basin_root must be a directory path"):
        BasinPolicy.create(basin_root=3)
    # the options are not method keyword arguments: the PPID is unchanged
    with BackgroundRollMed(
        cytoshot, tmp_path / "o.rtdc", basin_root=tmp_path, **ROLL
    ) as bg:
        assert bg.get_ppid() == "rollmed:k=4^b=6"
    assert BackgroundCopy.get_ppid_from_ppkw({}) == "copy:"


def test_background_copy_honours_the_policy(tree, tmp_path):
    root, raw = tree
    inp = craft(
        root / "in.rtdc", [file_basin(raw, feats=["image", "image_bg"])], image=False
    )
    with pytest.raises(ValueError, match="outside the basin root"):
        BackgroundCopy(inp, tmp_path / "out.rtdc", basin_root=root)
    with BackgroundCopy(inp, tmp_path / "out.rtdc") as bg:
        bg.process()


# command line and cluster ------------------------------------------------------


def test_batch_basin_root_reaches_process_many(tree, tmp_path, monkeypatch):
    root, raw = tree
    seen = {}

    def fake_process_many(input_paths, out_dir, ppid, **kwargs):
        seen.update(kwargs)
        return [
            FileResult(pathlib.Path(p), out_dir / "x.rtdc", ppid, "done")
            for p in input_paths
        ]

    monkeypatch.setattr("dcbg.cluster.process_many", fake_process_many)
    result = run_cli(
        "batch",
        raw,
        "--out-dir",
        tmp_path / "res",
        "--method",
        "rollmed",
        "--basin-root",
        root,
        "--allow-remote-basins",
    )
    assert result.exit_code == 0, result.output
    assert seen["basin_root"] == root
    assert seen["allow_remote_basins"] is True


def test_process_file_with_basin_root(tree, tmp_path):
    root, raw = tree
    inp = craft(root / "in.rtdc", [file_basin(raw)], image=False)
    out = tmp_path / "out.rtdc"
    refused = process_file(inp, out, "rollmed:k=4", basin_root=root, num_cpus=1)
    assert refused.status == "failed"
    assert "outside the basin root" in refused.error
    assert not out.exists()
    done = process_file(inp, out, "rollmed:k=4", num_cpus=1)
    assert done.status == "done", done.error


@pytest.mark.timeout(300)
def test_process_many_with_basin_root(tree, tmp_path):
    distributed = pytest.importorskip("distributed")
    root, raw = tree
    outside = craft(root / "outside.rtdc", [file_basin(raw)], image=False)
    inside = root / "inside.rtdc"
    inside.write_bytes(CYTOSHOT.read_bytes())
    with (
        warnings.catch_warnings(),
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        results = process_many(
            [outside, inside],
            tmp_path / "res",
            "rollmed:k=4",
            client=client,
            basin_root=root,
        )
    assert [r.status for r in results] == ["failed", "done"]
    assert "outside the basin root" in results[0].error


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_regular_files_in_dev_shm_are_fine(tmp_path):
    """/dev/shm is a RAM disk with regular files, not a device"""
    shm = pathlib.Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        raw = shm / "raw.rtdc"
        raw.write_bytes(CYTOSHOT.read_bytes())
        inp = craft(tmp_path / "in.rtdc", [file_basin(raw)], image=False)
        with BackgroundRollMed(inp, tmp_path / "out.rtdc", **ROLL) as bg:
            assert bg.hdin.refused_basins == []
            bg.process()
    finally:
        shutil.rmtree(shm)


def test_damaged_object_header_is_an_error_naming_the_file(tmp_path):
    # found by the fuzz test: one flipped bit in the object header of the
    # 'image' dataset made h5py raise a bare KeyError
    data = bytearray((BUNDLED / "shapein_empty_80x250.rtdc").read_bytes())
    data[20733] ^= 1
    inp = tmp_path / "damaged.rtdc"
    inp.write_bytes(data)
    with pytest.raises(ValueError, match=f"of '{inp}' cannot be read .*damaged"):
        BackgroundCopy(inp, tmp_path / "out.rtdc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.rtdc"]


def test_damaged_logs_group_is_an_error_naming_the_file(tmp_path):
    # found by the slow fuzz budget: one flipped bit in the object header
    # of 'logs' made h5py.Group.get() answer None, then dclab's copy of the
    # logs raised a bare KeyError
    data = bytearray(CYTOSHOT.read_bytes())
    data[7819] ^= 1
    inp = tmp_path / "damaged.rtdc"
    inp.write_bytes(data)
    with pytest.raises(ValueError, match=f"Cannot read 'logs' of '{inp}': .*damaged"):
        BackgroundCopy(inp, tmp_path / "out.rtdc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.rtdc"]
