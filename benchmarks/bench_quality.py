"""Background quality against ground truth: ghosts and flicker

Synthetic measurements of :mod:`dcbg.testing` (the real 80x320 CytoShot
background of ``dcbg/data``, sensor noise, slow drift, real cell cut-outs
along the channel centre) whose true background of every frame is known
(:meth:`dcbg.testing.SyntheticModel.true_backgrounds`: background plus
drift plus flicker). For each condition, each method computes the
background and is scored on the channel band (the rows where cells flow,
:func:`dcbg.check.robust.channel_band`: rows 20-59 of 80):

- RMS of ``image_bg + bg_off - truth`` over all events (``bg_off`` = 0 when
  the method writes none), in grey levels;
- ghosts: the fraction of events whose ``image_bg + bg_off`` deviates from
  the truth by more than 6 grey levels over at least 30 pixels of the
  channel band;
- what ``dcbg check`` says without the truth: the fraction of events it
  flags, and whether it finds flicker (a property of the frames) and
  flicker the background leaves in the corrected images.

Methods: dcnum's rolling median (k=100, its default) and sparse median
(k=200, split_time=0.1 s: dcnum's default kernel, the split time scaled
to the 0.6 s the synthetic measurements last, where dcnum's default 1 s
would give a single background image), computed by dcbg's bit-identical
implementations, and every other registered method (dcbg's own) at its
defaults.

One command, a few minutes on 2 cores::

    python benchmarks/bench_quality.py
    python benchmarks/bench_quality.py --frames 1500 --conditions 4cells flicker_jumps

It prints one Markdown table and writes ``benchmarks/results/quality.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if importlib.util.find_spec("dcbg") is None:
    # allow running from a source checkout without installing dcbg
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "quality.json"
#: ghost definition (issue 19): deviation from the truth in grey levels ...
GHOST_LEVELS = 6.0
#: ... over at least this many pixels of the channel band
GHOST_MIN_PIXELS = 30
#: frames per condition (camera frames; "stored once per event" stores more)
DEFAULT_FRAMES = 2000
#: first frame of the stuck cell: a third into the measurement
STUCK_START_FRACTION = 1 / 3
#: how long the stuck cell stays (frames): longer than rollmed's window and
#: the sparse median's kernel, 0.09 s at 3,447.5 frames per second
STUCK_FRAMES = 300
#: Gaussian flicker of the "flicker" condition (grey levels): 9.5 % of the
#: frames are then more than 2.5 grey levels off (dcnum's flicker threshold)
FLICKER_SIGMA = 1.5
#: events read at once when scoring
BLOCK = 256

#: dcnum's methods and the parameters they run with here
DCNUM_RUNS = {
    "rollmed": {"kernel_size": 100},
    "sparsemed": {"kernel_size": 200, "split_time": 0.1},
}

#: condition name -> (label, model knobs); no flicker unless it is the
#: condition (the clean reference has none)
CONDITIONS = {
    "1cell": ("1 cell per frame", {"cells_per_frame": 1, "flicker_sigma": 0.0}),
    "3cells": ("3 cells per frame", {"cells_per_frame": 3, "flicker_sigma": 0.0}),
    "4cells": (
        "4 cells per frame (dense blood)",
        {"cells_per_frame": 4, "flicker_sigma": 0.0},
    ),
    "6cells": ("6 cells per frame", {"cells_per_frame": 6, "flicker_sigma": 0.0}),
    "stuck": (
        f"1 cell per frame, one cell stuck {STUCK_FRAMES} frames",
        {"cells_per_frame": 1, "flicker_sigma": 0.0, "stuck": True},
    ),
    "flicker_gauss": (
        f"flicker, Gaussian sigma {FLICKER_SIGMA:g}",
        {"cells_per_frame": 1, "flicker_sigma": FLICKER_SIGMA},
    ),
    "flicker_jumps": (
        "flicker, 10% of frames 4-6 grey levels off",
        {
            "cells_per_frame": 1,
            "flicker_sigma": 0.0,
            "flicker_jump_fraction": 0.1,
            "flicker_jump_levels": (4, 6),
        },
    ),
    "per_event": (
        "frames stored once per event (2 cells per frame)",
        {"cells_per_frame": 2, "flicker_sigma": 0.0, "store_per_event": True},
    ),
}


def model_kwargs(knobs: dict, frames: int) -> dict:
    kwargs = {key: value for key, value in knobs.items() if key != "stuck"}
    if knobs.get("stuck"):
        kwargs["stuck_cells"] = [(int(frames * STUCK_START_FRACTION), STUCK_FRAMES)]
    return kwargs


def methods_to_run() -> dict:
    """code -> (class, kwargs, label): dcnum's two and every other method"""
    from dcbg.feat.feat_background import get_available_background_methods

    available = get_available_background_methods()
    runs = {}
    for code, kwargs in DCNUM_RUNS.items():
        params = " ".join(
            f"{'k' if key == 'kernel_size' else 's'}={value:g}"
            for key, value in kwargs.items()
        )
        runs[code] = (available[code], kwargs, f"{code} {params}")
    for code in sorted(available):
        if code not in ("copy", *DCNUM_RUNS):
            runs[code] = (available[code], {}, f"{code} (defaults)")
    return runs


def score(path: pathlib.Path, model) -> dict:
    """RMS and ghost fraction of a computed background against the truth"""
    from dcbg.check.robust import channel_band
    from dcbg.io.input import RtdcMeasurement

    band = channel_band(model.shape[0])
    measurement = RtdcMeasurement(path)
    try:
        ds = measurement.ds
        count = len(ds)
        assert count == model.n_frames, (count, model.n_frames)
        bg_off = (
            np.asarray(ds["bg_off"][:], dtype=np.float32)
            if "bg_off" in ds
            else np.zeros(count, np.float32)
        )
        squares = 0.0
        pixels = 0
        ghosts = 0
        for start in range(0, count, BLOCK):
            stop = min(count, start + BLOCK)
            background = np.asarray(ds["image_bg"][start:stop], dtype=np.float32)
            background += bg_off[start:stop, None, None]
            error = (background - model.true_backgrounds(start, stop))[:, band]
            squares += float(np.sum(error.astype(np.float64) ** 2))
            pixels += error.size
            off = np.count_nonzero(np.abs(error) > GHOST_LEVELS, axis=(1, 2))
            ghosts += int(np.count_nonzero(off >= GHOST_MIN_PIXELS))
    finally:
        measurement.close()
    return {"rms": (squares / pixels) ** 0.5, "ghost_fraction": ghosts / count}


def run_condition(name: str, frames: int, seed: int, runs: dict, folder) -> dict:
    from dcbg.check import check_background
    from dcbg.testing import SyntheticModel, make_synthetic_measurement

    label, knobs = CONDITIONS[name]
    kwargs = model_kwargs(knobs, frames)
    model = SyntheticModel(frames, seed=seed, **kwargs)
    source = make_synthetic_measurement(
        folder / f"{name}.rtdc", frames, seed=seed, **kwargs
    )
    frames_flicker = bool(
        np.count_nonzero(np.abs(model.flicker) > 2.5) > 0.01 * model.n_frames
    )
    row = {
        "condition": name,
        "label": label,
        "events": model.n_frames,
        "model": {k: v for k, v in kwargs.items()},
        "frames_flicker": frames_flicker,
        "methods": {},
    }
    for code, (cls, method_kwargs, _) in runs.items():
        output = folder / f"{name}_{code}.rtdc"
        start = time.perf_counter()
        with cls(source, output, **method_kwargs) as bg:
            bg.process()
            ppid = bg.get_ppid()
        seconds = time.perf_counter() - start
        found = score(output, model)
        checked = check_background(output)
        found.update(
            ppid=ppid,
            seconds=seconds,
            check_ghost_fraction=checked.ghost_fraction,
            check_flicker=checked.flicker,
            check_flicker_corrected=checked.flicker_corrected,
            check_passed=checked.passed,
        )
        row["methods"][code] = found
        output.unlink()
    source.unlink()
    return row


def cell(found: dict) -> str:
    text = (
        f"RMS {found['rms']:.2f}, ghosts {found['ghost_fraction']:.0%} "
        f"(check {found['check_ghost_fraction']:.0%}"
    )
    if not found["check_flicker_corrected"]:
        text += ", flicker left"
    return text + ")"


def table(rows: list[dict], runs: dict, style: str = "markdown") -> str:
    """The results as a Markdown table or an RST list-table"""
    head = [
        "condition",
        *(label for _, _, label in runs.values()),
        "flicker: truth / check",
    ]
    body = []
    for row in rows:
        checks = {found["check_flicker"] for found in row["methods"].values()}
        check = "yes" if checks == {True} else "no" if checks == {False} else "mixed"
        truth = "yes" if row["frames_flicker"] else "no"
        cells = [row["label"], *(cell(row["methods"][code]) for code in runs)]
        body.append([*cells, f"{truth} / {check}"])
    if style == "rst":
        lines = [".. list-table::", "   :header-rows: 1", ""]
        for cells in [head, *body]:
            lines.append(f"   * - {cells[0]}")
            lines.extend(f"     - {text}" for text in cells[1:])
        return "\n".join(lines)
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    lines.extend("| " + " | ".join(cells) + " |" for cells in body)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--conditions", nargs="+", choices=sorted(CONDITIONS), default=list(CONDITIONS)
    )
    parser.add_argument("--json", type=pathlib.Path, default=RESULTS)
    parser.add_argument(
        "--rst", action="store_true", help="Also print the table as RST (docs)."
    )
    args = parser.parse_args(argv)

    runs = methods_to_run()
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dcbg-quality-") as tmp:
        for name in args.conditions:
            rows.append(
                run_condition(name, args.frames, args.seed, runs, pathlib.Path(tmp))
            )
            print(
                f"... {name} done ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
    print(
        f"Background quality, {args.frames} frames of 80x320 px per condition "
        f"(seed {args.seed}); RMS of image_bg + bg_off - truth (grey levels) in the "
        f"channel band; ghosts: events off the truth by > {GHOST_LEVELS:g} grey "
        f"levels over >= {GHOST_MIN_PIXELS} px; (check: events dcbg check flags "
        f"without the truth)\n"
    )
    print(table(rows, runs))
    if args.rst:
        print()
        print(table(rows, runs, "rst"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "frames": args.frames,
                "seed": args.seed,
                "methods": {code: label for code, (_, _, label) in runs.items()},
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"\nWrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
