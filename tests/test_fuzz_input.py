"""Fuzz test: mutated real measurements through the API and the CLI

Hypothesis mutates the bundled measurements -- truncation at any byte,
bit flips in metadata and in chunks, wrong shapes, dtypes and
attributes, crafted basins -- and every case runs in a worker process
with a time limit. Each case must end, within seconds, in a correct
result or a one-line error that names the input file; never a hang, a
crash, a network request, or a file at the output path after an error.

The default run tries a small budget of cases (``DEFAULT_EXAMPLES`` per
test); ``pytest -m slow tests/test_fuzz_input.py`` runs the large one
(``SLOW_EXAMPLES``), new cases each run unless ``DCBG_FUZZ_REPLAY`` is
set (as CI does). The number of cases run is printed at the end of each
test (``-s`` shows it).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pathlib
import selectors
import shutil
import subprocess
import sys
import threading
import time

import h5py
import hdf5plugin
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcbg.io.conventions import read_basin_definition

DATA_DIR = pathlib.Path(__file__).resolve().parents[1] / "dcbg" / "data"
#: the measurements that are mutated (13 frames 80x320 with time and
#: image_bg; 11 frames 80x400 without frame rate, chunks larger than the
#: data; 0 frames)
BASES = (
    "cytoshot_2024_80x320.rtdc",
    "cytoshot_legacy_with_bg_80x400.rtdc",
    "shapein_empty_80x250.rtdc",
)

#: cases per test in the default run (all three tests: about 10 s here)
DEFAULT_EXAMPLES = 100
#: cases per test behind the ``slow`` marker
SLOW_EXAMPLES = 2500
#: the slow budget explores new cases each run, except where this
#: environment variable is set (CI: a run must not fail on a case that no
#: earlier run saw; a developer's run explores and records what it finds)
REPLAY_ENV = "DCBG_FUZZ_REPLAY"

#: seconds a case may take: a case needs well under one second, a loaded
#: 2-core CI machine may be ten times slower; a hang is caught all the same
CASE_TIMEOUT = 30

#: exception types a user error is raised as (anything else is a bug)
#: (dcbg.errors' types derive from ValueError and OSError: they carry the
#: file, feature or parameter concerned)
USER_ERRORS = ("ValueError", "OSError", "TypeError", "FileNotFoundError",
               "ImageReadError", "ChecksumError", "PermissionError",
               "DamagedAttributeError", "InputFileError", "StoredDataError",
               "DataReadError", "ReadError", "ChunkSizeError",
               "BasinWorkExceeded", "ParameterError")  # fmt: skip

#: methods tried on every mutated file (small kernels: 11-13 frames)
METHODS = {
    "rollmed": ("rollmed", {"kernel_size": 4, "batch_size": 6}),
    "sparsemed": ("sparsemed", {"kernel_size": 5}),
    "copy": ("copy", {}),
}

WORKER_CODE = r"""
import json, os, sys, traceback, warnings

warnings.simplefilter("ignore")
replies = os.fdopen(os.dup(1), "w")
sys.stdout = sys.stderr  # nothing but replies on the pipe

from click.testing import CliRunner
from dcbg.cli import make_cli
from dcbg.feat.feat_background import get_available_background_methods

methods = get_available_background_methods()
cli = make_cli()


def run(case):
    if case["mode"] == "api":
        cls = methods[case["method"]]
        kwargs = dict(case["kwargs"])
        if case.get("basin_root"):
            kwargs["basin_root"] = case["basin_root"]
        try:
            with cls(case["input"], case["output"], num_cpus=2, **kwargs) as bg:
                bg.process()
                return {"status": "ok", "frames": int(bg.image_count)}
        except Exception as exc:
            return {
                "status": "error",
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(),
            }
    args = ["compute", case["input"], "-o", case["output"], "--method",
            case["method"], "-q", "--num-cpus", "2"]
    for name, value in case["kwargs"].items():
        args += ["--" + name.replace("_", "-"), str(value)]
    if case.get("basin_root"):
        args += ["--basin-root", case["basin_root"]]
    result = CliRunner().invoke(cli, args)
    return {
        "status": "ok" if result.exit_code == 0 else "error",
        "exit_code": result.exit_code,
        "stderr": result.stderr,
        "stdout": result.stdout,
        "type": type(result.exception).__name__ if result.exception else None,
    }


replies.write(json.dumps({"ready": True}) + "\n")
replies.flush()
for line in sys.stdin:
    reply = run(json.loads(line))
    replies.write(json.dumps(reply) + "\n")
    replies.flush()
"""


class Worker:
    """A process that runs cases; restarted after a hang or a crash"""

    def __init__(self, log_path: pathlib.Path):
        self.log_path = log_path
        self.proc = None
        self.cases = 0

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=self.log_path.parent,
        )
        reply = self._read(timeout=120)
        assert reply == {"ready": True}, reply

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
            self.log.close()
            self.proc = None

    def _read(self, timeout):
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"status": "crash"}

    def run(self, case: dict) -> dict:
        """The worker's reply, or {"status": "hang"} / {"status": "crash"}"""
        if self.proc is None:
            self.start()
        self.cases += 1
        start = time.monotonic()
        try:
            self.proc.stdin.write((json.dumps(case) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            reply = {"status": "crash"}
        else:
            reply = self._read(CASE_TIMEOUT)
        if reply is None:
            reply = {"status": "hang"}
        if reply["status"] in ("hang", "crash"):
            code = self.proc.poll()
            self.stop()
            reply["returncode"] = code
        reply["seconds"] = time.monotonic() - start
        return reply


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records every request it gets (remote basins must not make any)"""

    seen: list = []

    def _record(self):
        Recorder.seen.append((self.command, self.path))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = do_PUT = _record

    def log_message(self, *args):
        pass


class FuzzEnv(dict):
    """The fuzzing environment (short repr: Hypothesis prints arguments)"""

    def __repr__(self):
        return "<fuzz environment>"


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    """Worker, local http server, pristine copies and their region maps"""
    base = tmp_path_factory.mktemp("fuzz")
    shared = base / "shared"
    shared.mkdir()
    for name in BASES:
        shutil.copyfile(DATA_DIR / name, shared / name)
    fifo = shared / "pipe.rtdc"
    os.mkfifo(fifo)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    worker = Worker(base / "worker.log")
    env = FuzzEnv(
        {
            "base": base,
            "shared": shared,
            "fifo": fifo,
            "url": f"http://127.0.0.1:{server.server_address[1]}",
            "worker": worker,
            "regions": {name: region_map(shared / name) for name in BASES},
            "references": {},
            "counter": 0,
        }
    )
    try:
        yield env
    finally:
        # the number of cases run (shown with ``pytest -s``)
        for kind in ("bytes", "structure", "basins"):
            report(env, kind)
        worker.stop()
        server.shutdown()
        server.server_close()
        # release the FIFO in case a reader is stuck in it
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert Recorder.seen == [], f"requests to the local server: {Recorder.seen}"


def region_map(path: pathlib.Path) -> dict:
    """Byte ranges of stored chunks/contiguous data and of everything else"""
    data_ranges = []
    with h5py.File(path) as h5:

        def visit(_, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            if obj.chunks is not None:
                for index in range(obj.id.get_num_chunks()):
                    info = obj.id.get_chunk_info(index)
                    data_ranges.append((info.byte_offset, info.size))
            elif obj.id.get_offset() is not None:
                data_ranges.append((obj.id.get_offset(), obj.id.get_storage_size()))

        h5.visititems(visit)
    size = path.stat().st_size
    covered = np.zeros(size, dtype=bool)
    for offset, length in data_ranges:
        covered[offset : offset + length] = True
    return {
        "size": size,
        "chunks": np.flatnonzero(covered),
        "metadata": np.flatnonzero(~covered),
        "image_chunks": image_chunk_ranges(path),
    }


def image_chunk_ranges(path):
    with h5py.File(path) as h5:
        image = h5["events/image"]
        if image.chunks is None:
            return []
        return [
            (info.byte_offset, info.size)
            for info in (
                image.id.get_chunk_info(i) for i in range(image.id.get_num_chunks())
            )
        ]


# mutations ----------------------------------------------------------------------


@st.composite
def byte_mutation(draw):
    """Truncation or bit flips, in metadata, in chunks or anywhere"""
    kind = draw(st.sampled_from(["truncate", "metadata", "chunks", "image", "any"]))
    if kind == "truncate":
        return {"kind": kind, "fraction": draw(st.floats(0, 1, exclude_max=True))}
    flips = draw(
        st.lists(
            st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
            min_size=1,
            max_size=4,
        )
    )
    # images in chunks of 2 frames: damage past the first chunk shows only
    # while the background is computed
    rechunk = kind == "image" and draw(st.booleans())
    return {"kind": kind, "flips": flips, "rechunk": rechunk}


def apply_byte_mutation(src: pathlib.Path, dst: pathlib.Path, mutation, regions):
    if mutation.get("rechunk"):
        shutil.copyfile(src, dst)
        with h5py.File(dst, "a") as h5:
            image = h5["events/image"][:]
            _replace(
                h5["events"],
                "image",
                data=image,
                chunks=(2, *image.shape[1:]),
                maxshape=(None, *image.shape[1:]),
                fletcher32=True,
                **hdf5plugin.Zstd(clevel=1),
            )
        regions = {"image_chunks": image_chunk_ranges(dst)[1:]}
        src = dst
    data = bytearray(src.read_bytes())
    if mutation["kind"] == "truncate":
        cut = int(mutation["fraction"] * len(data))
        dst.write_bytes(bytes(data[:cut]))
        return f"truncated at byte {cut} of {len(data)}"
    if mutation["kind"] == "image" and regions["image_chunks"]:
        offsets = np.concatenate(
            [np.arange(o, o + n) for o, n in regions["image_chunks"]]
        )
    elif mutation["kind"] in ("metadata", "chunks") and len(regions[mutation["kind"]]):
        offsets = regions[mutation["kind"]]
    else:
        offsets = np.arange(len(data))
    done = []
    for fraction, bit in mutation["flips"]:
        offset = int(offsets[int(fraction * len(offsets))])
        data[offset] ^= 1 << bit
        done.append((offset, bit))
    dst.write_bytes(bytes(data))
    return f"bit flips (offset, bit) {done} in {mutation['kind']}"


def _replace(h5, name, **kwargs):
    if name in h5:
        del h5[name]
    return h5.create_dataset(name, **kwargs)


@st.composite
def structure_mutation(draw):
    """Wrong shapes, dtypes and attributes, written with h5py"""
    kind = draw(
        st.sampled_from(
            [
                "frames",
                "frame_shape",
                "ndim",
                "dtype",
                "declared",
                "event_count",
                "frame_rate",
                "time",
                "no_events",
                "image_group",
                "chunks",
                "image_bg",
            ]
        )
    )
    mutation = {"kind": kind}
    if kind == "frames":
        mutation["count"] = draw(st.integers(0, 20))
    elif kind == "frame_shape":
        mutation["shape"] = draw(st.tuples(st.integers(0, 90), st.integers(0, 90)))
    elif kind == "ndim":
        mutation["ndim"] = draw(st.sampled_from([1, 2, 4]))
    elif kind == "dtype":
        mutation["dtype"] = draw(
            st.sampled_from(["float32", "float64", "int16", "uint16", "bool", "S1"])
        )
        mutation["scale"] = draw(st.sampled_from([1.0, 0.5, 2.0, -1.0]))
    elif kind == "declared":
        mutation["declared"] = draw(st.sampled_from([14, 100, 10**6, 10**8]))
        mutation["count_attr"] = draw(st.booleans())
    elif kind == "event_count":
        mutation["value"] = draw(
            st.sampled_from([-1, 0, 1, 5, 12, 14, 10**8, 1.5, "abc", b"13"])
        )
    elif kind == "frame_rate":
        mutation["value"] = draw(
            st.sampled_from([0.0, -5.0, float("nan"), 1e-300, 1e300, "x"])
        )
        mutation["drop_time"] = draw(st.booleans())
    elif kind == "time":
        mutation["how"] = draw(
            st.sampled_from(["nan", "short", "2d", "reverse", "big"])
        )
    elif kind == "chunks":
        mutation["chunk"] = draw(st.integers(1, 7))
        mutation["compression"] = draw(st.sampled_from(["zstd", "gzip", "none"]))
    elif kind == "image_bg":
        mutation["how"] = draw(st.sampled_from(["short", "drop", "float"]))
    return mutation


def apply_structure_mutation(src, dst, mutation):
    shutil.copyfile(src, dst)
    kind = mutation["kind"]
    with h5py.File(dst, "a") as h5:
        events = h5["events"]
        image = events["image"][:]
        n = len(image)
        if kind == "frames":
            count = mutation["count"]
            frames = np.resize(image, (count, *image.shape[1:])) if n else image[:0]
            _replace(events, "image", data=frames[:count])
        elif kind == "frame_shape":
            h, w = mutation["shape"]
            frames = np.zeros((n, h, w), dtype=np.uint8)
            frames[:, : image.shape[1], : image.shape[2]] = image[:, :h, :w]
            _replace(events, "image", data=frames)
        elif kind == "ndim":
            shape = {1: (n,), 2: (n, 7), 4: (n, 2, 3, 4)}[mutation["ndim"]]
            _replace(events, "image", data=np.ones(shape, dtype=np.uint8))
        elif kind == "dtype":
            dtype = mutation["dtype"]
            values = image.astype(np.float64) * mutation["scale"]
            if dtype == "S1":
                data = np.full(image.shape, b"a", dtype="S1")
            else:
                data = values.astype(dtype)
            _replace(events, "image", data=data)
        elif kind == "declared":
            declared = mutation["declared"]
            dset = _replace(
                events,
                "image",
                shape=(declared, *image.shape[1:]),
                dtype=np.uint8,
                chunks=(1, *image.shape[1:]),
                fletcher32=True,
                **hdf5plugin.Zstd(clevel=1),
            )
            dset[:n] = image
            if mutation["count_attr"]:
                h5.attrs["experiment:event count"] = declared
        elif kind == "event_count":
            h5.attrs["experiment:event count"] = mutation["value"]
        elif kind == "frame_rate":
            h5.attrs["imaging:frame rate"] = mutation["value"]
            if mutation["drop_time"] and "time" in events:
                del events["time"]
        elif kind == "time":
            time_ = events["time"][:] if "time" in events else np.arange(n) / 100.0
            how = mutation["how"]
            if how == "nan" and n:
                time_ = time_.copy()
                time_[n // 2] = np.nan
            elif how == "short":
                time_ = time_[: max(0, n - 3)]
            elif how == "2d":
                time_ = np.stack([time_, time_], axis=1)
            elif how == "reverse":
                time_ = time_[::-1].copy()
            elif how == "big":
                with np.errstate(over="ignore"):
                    time_ = time_ * 1e300
            _replace(events, "time", data=time_)
        elif kind == "no_events":
            del h5["events"]
        elif kind == "image_group":
            del events["image"]
            events.create_group("image")
        elif kind == "chunks":
            compression = {
                "zstd": hdf5plugin.Zstd(clevel=1),
                "gzip": {"compression": "gzip"},
                "none": {},
            }[mutation["compression"]]
            _replace(
                events,
                "image",
                data=image,
                chunks=(mutation["chunk"], *image.shape[1:]),
                maxshape=(None, *image.shape[1:]),
                fletcher32=True,
                **compression,
            )
        elif kind == "image_bg" and "image_bg" in events:
            how = mutation["how"]
            if how == "drop":
                del events["image_bg"]
            elif how == "short":
                _replace(events, "image_bg", data=events["image_bg"][: max(0, n - 2)])
            else:
                _replace(events, "image_bg", data=events["image_bg"][:] + 0.5)
    return f"structure {mutation}"


@st.composite
def basin_mutation(draw):
    """A crafted basin, the images kept or moved to it"""
    btype = draw(st.sampled_from(["file", "file", "remote", "internal", "weird"]))
    fmt = {
        "file": "hdf5",
        "remote": draw(st.sampled_from(["http", "s3", "dcor"])),
        "internal": "h5dataset",
        "weird": draw(st.sampled_from(["zip", "hdf5", ""])),
    }[btype]
    target = draw(
        st.sampled_from(
            [
                "pristine_abs",
                "pristine_rel",
                "sibling",
                "self",
                "fifo",
                "/dev/zero",
                "/proc/self/environ",
                "/etc/passwd",
                "missing",
                "directory",
                "url",
                "basin_events",
                "symlink",
            ]
        )
    )
    return {
        "type": btype,
        "format": fmt,
        "target": target,
        "features": draw(
            st.sampled_from([None, ["image"], ["image", "time"], ["deform"]])
        ),
        "mapping": draw(st.sampled_from(["same", "same", "basinmap0", "basinmap3"])),
        "map_values": draw(st.sampled_from(["identity", "reverse", "out_of_range"])),
        "drop_image": draw(st.booleans()),
        "identifier": draw(st.sampled_from([None, None, "wrong-id"])),
    }


def apply_basin_mutation(src, dst, mutation, env, case_dir):
    shutil.copyfile(src, dst)
    shared = env["shared"]
    target = mutation["target"]
    locs = {
        "pristine_abs": [str(shared / src.name)],
        "pristine_rel": [os.path.relpath(shared / src.name, case_dir)],
        "sibling": ["sibling.rtdc"],
        "self": [dst.name],
        "fifo": [str(env["fifo"])],
        "missing": [str(case_dir / "missing.rtdc")],
        "directory": [str(case_dir)],
        "url": [f"{env['url']}/{src.name}"],
        "basin_events": ["basin_events"],
        "symlink": ["link.rtdc"],
    }.get(target, [target])
    if target == "sibling":
        shutil.copyfile(src, case_dir / "sibling.rtdc")
    if target == "symlink":
        (case_dir / "link.rtdc").symlink_to(shared / src.name)
    with h5py.File(dst, "a") as h5:
        n = int(h5.attrs.get("experiment:event count", len(h5["events/image"])))
        bdict = {
            "name": "fuzz",
            "type": mutation["type"],
            "format": mutation["format"],
            "features": mutation["features"],
        }
        bdict["urls" if mutation["type"] == "remote" else "paths"] = locs
        if mutation["identifier"]:
            bdict["identifier"] = mutation["identifier"]
        if mutation["mapping"] != "same":
            bdict["mapping"] = mutation["mapping"]
            if mutation["mapping"] == "basinmap0":
                values = {
                    "identity": np.arange(n),
                    "reverse": np.arange(n)[::-1],
                    "out_of_range": np.arange(n) + 5,
                }[mutation["map_values"]]
                _replace(h5["events"], "basinmap0", data=values.astype(np.int64))
        if mutation["type"] == "internal" and target == "basin_events":
            grp = h5.require_group("basin_events")
            grp["image"] = h5["events/image"][:]
        if mutation["drop_image"]:
            del h5["events/image"]
        lines = json.dumps(bdict, indent=2).split("\n")
        basins = h5.require_group("basins")
        basins.create_dataset("fuzz", data=[ln.encode() for ln in lines])
    return f"basin {mutation}"


# checks -------------------------------------------------------------------------


def reference_background(env, base: str, method: str) -> np.ndarray | None:
    """image_bg of the unmutated measurement (None if it has no frames)"""
    key = (base, method)
    if key not in env["references"]:
        case_dir = env["base"] / f"ref-{base}-{method}"
        case_dir.mkdir()
        out = case_dir / "out.rtdc"
        code, kwargs = METHODS[method]
        reply = env["worker"].run(
            {
                "mode": "api",
                "method": code,
                "kwargs": kwargs,
                "input": str(env["shared"] / base),
                "output": str(out),
            }
        )
        env["references"][key] = read_image_bg(out) if reply["status"] == "ok" else None
    return env["references"][key]


def read_image_bg(path) -> np.ndarray:
    """image_bg of every frame, as stored by dcbg (mapped series resolved)"""
    with h5py.File(path) as h5:
        if "image_bg" in h5.get("events", {}):
            return h5["events/image_bg"][:]
        series = h5["basin_events/image_bg"][:]
        for key in h5["basins"]:
            bdict = read_basin_definition(h5["basins"][key])
            if "image_bg" in (bdict.get("features") or []):
                return series[h5["events"][bdict["mapping"]][:]]
    raise AssertionError(f"no image_bg in {path}")


def stores_image_bg(path) -> bool:
    """Whether a file holds image_bg itself (events or an internal basin)"""
    with h5py.File(path) as h5:
        return any(
            "image_bg" in h5.get(group, {}) for group in ("events", "basin_events")
        )


def stored_frames(path) -> np.ndarray | None:
    """The frames of events/image as h5py reads them, None if unreadable"""
    try:
        with h5py.File(path) as h5:
            return h5["events/image"][:]
    except Exception:
        return None


def check_case(env, case, reply, description, base):
    """Assert that the case ended well; return a short outcome label"""
    out = pathlib.Path(case["output"])
    where = f"{description} ({case['mode']} {case['method']})"
    assert reply["status"] in ("ok", "error"), f"{reply['status']}: {where}\n{reply}"
    inp_name = pathlib.Path(case["input"]).name
    if reply["status"] == "error":
        if case["mode"] == "api":
            assert reply["type"] in USER_ERRORS, f"{where}: {reply['traceback']}"
            message = reply["message"]
        else:
            assert reply["exit_code"] == 1, f"{where}: {reply}"
            assert "Traceback" not in reply["stderr"], f"{where}: {reply['stderr']}"
            message = reply["stderr"].strip().splitlines()[-1]
            assert message.startswith("Error: "), f"{where}: {reply['stderr']}"
            assert "--debug for the traceback" not in message, f"{where}: {message}"
        assert "\n" not in message.strip(), f"{where}: not one line: {message}"
        assert inp_name in message, (
            f"{where}: the error does not name the file: {message}"
        )
        leftovers = [p.name for p in out.parent.iterdir() if out.name in p.name]
        assert not leftovers, f"{where}: left {leftovers} after: {message}"
        return "error"
    # success: a complete output whose background is right where we can tell
    assert out.exists(), where
    if case["method"] == "copy" and not stores_image_bg(out):
        # dcnum's copy of an input without image_bg (e.g. dropped): an
        # output without a background (dcbg warns); the input has none
        assert not stores_image_bg(case["input"]), f"{where}: image_bg not copied"
        return "ok"
    image_bg = read_image_bg(out)
    frames = stored_frames(pathlib.Path(case["input"]))
    with h5py.File(out) as h5:
        assert h5.attrs.get("experiment:event count") is None or len(image_bg) == int(
            h5.attrs["experiment:event count"]
        ), where
    if case["method"] == "rollmed" and frames is not None:
        original = stored_frames(env["shared"] / base)
        if frames.shape == original.shape and np.array_equal(frames, original):
            reference = reference_background(env, base, "rollmed")
            assert np.array_equal(image_bg, reference), f"{where}: wrong background"
    for loc in output_file_basins(out):
        real = pathlib.Path(os.path.realpath(loc))
        assert real.is_file(), f"{where}: output basin to {loc}"
        if case.get("basin_root"):
            assert real.is_relative_to(case["basin_root"]), f"{where}: {loc}"
    return "ok"


def output_file_basins(path) -> list[str]:
    """Absolute file basin locations of an output (relative ones resolved)"""
    locs = []
    with h5py.File(path) as h5:
        for key in h5.get("basins", {}):
            bdict = read_basin_definition(h5["basins"][key])
            assert bdict.get("type") != "remote", f"remote basin in output: {bdict}"
            if bdict.get("type") == "file":
                # dcbg writes the absolute path first
                locs.append(bdict["paths"][0])
    return locs


def run_case(env, base, kind, mutation, method, mode, use_root):
    env["counter"] += 1
    case_dir = env["base"] / f"case{env['counter']}"
    case_dir.mkdir()
    try:
        src = env["shared"] / base
        inp = case_dir / "input.rtdc"
        if kind == "bytes":
            description = apply_byte_mutation(src, inp, mutation, env["regions"][base])
        elif kind == "structure":
            description = apply_structure_mutation(src, inp, mutation)
        else:
            description = apply_basin_mutation(src, inp, mutation, env, case_dir)
        out_dir = case_dir / "out"
        out_dir.mkdir()
        code, kwargs = METHODS[method]
        case = {
            "mode": mode,
            "method": code,
            "kwargs": kwargs,
            "input": str(inp),
            "output": str(out_dir / "out.rtdc"),
            "basin_root": str(case_dir.resolve()) if use_root else None,
            "kind": kind,
        }
        reply = env["worker"].run(case)
        outcome = check_case(env, case, reply, f"{base}: {description}", base)
        env.setdefault("outcomes", {}).setdefault(kind, []).append(outcome)
    finally:
        shutil.rmtree(case_dir, ignore_errors=True)


def fuzz_settings(examples, explore=False):
    # The default budget runs the same cases every time (a CI run must not
    # fail on a case no earlier run saw); the slow budget explores anew,
    # unless REPLAY_ENV is set.
    explore = explore and not os.environ.get(REPLAY_ENV)
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=not explore,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
        ],
        print_blob=True,
    )


COMMON = dict(
    base=st.sampled_from(BASES),
    method=st.sampled_from(sorted(METHODS)),
    mode=st.sampled_from(["api", "api", "cli"]),
    use_root=st.booleans(),
)


def report(env, kind):
    outcomes = env.get("outcomes", {}).get(kind, [])
    print(
        f"\nfuzz {kind}: {len(outcomes)} cases, {outcomes.count('ok')} computed, "
        f"{outcomes.count('error')} one-line errors"
    )


def make_tests(examples, marks=()):
    """The three fuzz tests with a budget of `examples` cases each"""

    def decorate(func):
        for mark in marks:
            func = mark(func)
        return func

    @decorate
    @fuzz_settings(examples, explore=bool(marks))
    @given(mutation=byte_mutation(), **COMMON)
    def test_bytes(fuzz_env, base, mutation, method, mode, use_root):
        run_case(fuzz_env, base, "bytes", mutation, method, mode, use_root)

    @decorate
    @fuzz_settings(examples, explore=bool(marks))
    @given(mutation=structure_mutation(), **COMMON)
    def test_structure(fuzz_env, base, mutation, method, mode, use_root):
        run_case(fuzz_env, base, "structure", mutation, method, mode, use_root)

    @decorate
    @fuzz_settings(examples, explore=bool(marks))
    @given(mutation=basin_mutation(), **COMMON)
    def test_basins(fuzz_env, base, mutation, method, mode, use_root):
        run_case(fuzz_env, base, "basins", mutation, method, mode, use_root)

    return test_bytes, test_structure, test_basins


test_bytes, test_structure, test_basins = make_tests(DEFAULT_EXAMPLES)
test_bytes_slow, test_structure_slow, test_basins_slow = make_tests(
    SLOW_EXAMPLES, marks=(pytest.mark.slow, pytest.mark.timeout(3600))
)
