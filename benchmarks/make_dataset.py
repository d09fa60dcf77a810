"""Write a realistic synthetic RT-DC measurement for benchmarks

Example::

    python benchmarks/make_dataset.py OUT.rtdc --frames 4000 --shape 80x320 \\
        --seed 0 --streaks 2

Prints the generation speed (frames/s) and the file size.
"""

import argparse
import importlib.util
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if importlib.util.find_spec("dcbg") is None:
    # allow running from a source checkout without installing dcbg
    sys.path.insert(0, str(ROOT))


def parse_shape(text: str) -> tuple[int, int]:
    """Parse "HxW" (e.g. "80x320") into ``(height, width)``"""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}") from exc
    return height, width


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", type=pathlib.Path, help="output .rtdc file")
    parser.add_argument("--frames", type=int, default=4000, help="number of frames")
    parser.add_argument(
        "--shape", type=parse_shape, default=(80, 320), help="HxW in pixels"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--streaks", type=int, default=0, help="number of dense cell streaks"
    )
    parser.add_argument(
        "--cell-probability", type=float, default=0.25, help="fraction of cell frames"
    )
    parser.add_argument(
        "--time-source", choices=["time", "frame", "rate", "none"], default="time"
    )
    parser.add_argument(
        "--with-image-bg",
        action="store_true",
        help="also write ground-truth image_bg/bg_off (input for 'copy')",
    )
    parser.add_argument(
        "--no-compress", action="store_true", help="store images uncompressed"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="threads that compress image chunks (0: in this thread)",
    )
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    from dcbg.testing import make_synthetic_measurement

    t0 = time.perf_counter()
    path = make_synthetic_measurement(
        args.output,
        args.frames,
        shape=args.shape,
        seed=args.seed,
        streaks=args.streaks,
        cell_probability=args.cell_probability,
        time_source=args.time_source,
        with_image_bg=args.with_image_bg,
        compression=not args.no_compress,
        num_workers=args.workers,
    )
    duration = time.perf_counter() - t0
    size = os.path.getsize(path)
    print(f"wrote {path}")
    print(
        f"{args.frames} frames {args.shape[0]}x{args.shape[1]} in {duration:.2f} s: "
        f"{args.frames / duration:.0f} frames/s"
    )
    print(f"file size: {size / 1024**2:.1f} MiB ({size / args.frames:.0f} B/frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
