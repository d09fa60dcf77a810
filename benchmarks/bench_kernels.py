"""Time the median kernels alone (no I/O) on a realistic uint8 stack

Usage::

    python benchmarks/bench_kernels.py [--frames 10000] [--repeats 5]
    python benchmarks/bench_kernels.py --data drift --threads 1

For the rolling median, the histogram tracker alone is timed as well
(``kernel_size <= 255`` uses the faster band tracker). The default stack
(``--data rtdc``) imitates RT-DC data: a static 80 x 320 background image
plus Gaussian noise (sigma 4 grey levels) and 5 % darker "cell" pixels.
Data that are hard for the band tracker: ``uniform`` (random grey
values), ``drift`` (the whole image brightens by 0.5 grey levels per
frame, with noise) and ``binary`` (random 0 or 255).
Reported times are medians over the repeats (the best repeat in
brackets, useful on a shared machine); the first (warm-up) call is
excluded. The kernels are compiled ahead of time (Cython), so that call
costs no compilation, only page faults and cold caches.
"""

import argparse
import importlib
import os
import statistics
import time

import numpy as np

from dcbg.kernels import rolling_median, window_median
from dcbg.kernels.checksum import fletcher32

rm_module = importlib.import_module("dcbg.kernels.rolling_median")
# compiled core: (stack, k, rank, out, pix_start, pix_stop, use_band)
rolling_median_core = rm_module._rolling_median_core


def make_stack(n_frames, height=80, width=320, seed=42, data="rtdc"):
    rng = np.random.default_rng(seed)
    n_pixels = height * width
    bg = rng.integers(40, 220, (height, width)).astype(np.float32)
    stack = np.empty((n_frames, n_pixels), dtype=np.uint8)
    # in chunks to keep float32 temporaries small
    for start in range(0, n_frames, 500):
        stop = min(start + 500, n_frames)
        shape = (stop - start, n_pixels)
        if data == "uniform":
            stack[start:stop] = rng.integers(0, 256, shape, dtype=np.uint8)
            continue
        if data == "binary":
            stack[start:stop] = rng.integers(0, 2, shape, dtype=np.uint8) * 255
            continue
        frames = bg.reshape(1, -1) + rng.normal(0, 4, shape).astype(np.float32)
        if data == "drift":
            # sweeps the grey levels up and down, 0.5 per frame
            level = np.arange(start, stop, dtype=np.float32) * 0.5 % 200
            frames = level[:, None] + 0.3 * frames
        else:
            frames[rng.random(shape) < 0.05] -= 60
        np.clip(frames, 0, 255, out=frames)
        stack[start:stop] = frames
    return stack


def median_time(func, repeats):
    func()  # warm-up: page faults, cold caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--kernel-size", type=int, default=100)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--data", choices=["rtdc", "uniform", "drift", "binary"], default="rtdc"
    )
    parser.add_argument(
        "--checksum-bytes",
        type=int,
        default=600_000,
        help="buffer size for fletcher32 (about one compressed image chunk)",
    )
    args = parser.parse_args()

    stack = make_stack(args.frames, data=args.data)
    n_frames, n_pixels = stack.shape
    k = args.kernel_size
    print(
        f"{args.data} stack {n_frames} x {n_pixels} uint8 (80x320 frames), "
        f"{os.cpu_count()} CPUs, median of {args.repeats} repeats"
    )

    out = np.empty((n_frames - k + 1, n_pixels), dtype=np.uint8)
    print(f"\nrolling_median, kernel_size={k}")
    base = None
    for threads in args.threads:
        t, best = median_time(
            lambda threads=threads: rolling_median(
                stack, k, out=out, num_threads=threads
            ),
            args.repeats,
        )
        base = base or t
        print(
            f"  num_threads={threads}: {t:6.3f} s ({best:.3f})  "
            f"{n_frames / t:7,.0f} frames/s  "
            f"{n_frames * n_pixels / t / 1e6:6.1f} M pixel-frames/s  "
            f"(speed-up {base / t:.2f})"
        )

    # the general tracker alone, for comparison (k <= 255 uses the band one)
    t, best = median_time(
        lambda: rolling_median_core(stack, k, k // 2, out, 0, n_pixels, False),
        args.repeats,
    )
    handed_over = rolling_median_core(stack, k, k // 2, out, 0, n_pixels, True)
    n_blocks = -(-n_pixels // rm_module.BAND_BLOCK_SIZE)
    print(
        f"  band tracker handed {handed_over} of {n_blocks} pixel blocks "
        f"to the histogram tracker"
    )
    print(
        f"  histogram tracker only, 1 thread: {t:6.3f} s ({best:.3f})  "
        f"{n_frames * n_pixels / t / 1e6:6.1f} M pixel-frames/s"
    )

    w = args.window
    window = np.ascontiguousarray(stack[:w])
    print(f"\nwindow_median, {w} frames")
    t_np, _ = median_time(
        lambda: np.partition(window, w // 2, axis=0)[w // 2], args.repeats
    )
    print(f"  np.partition:    {t_np * 1e3:7.2f} ms")
    for threads in args.threads:
        t, best = median_time(
            lambda threads=threads: window_median(window, num_threads=threads),
            args.repeats,
        )
        print(
            f"  num_threads={threads}:   {t * 1e3:7.2f} ms ({best * 1e3:.2f})  "
            f"{w * n_pixels / t / 1e6:7.1f} M pixel-frames/s  "
            f"({t_np / t:.1f}x np.partition)"
        )

    n_bytes = args.checksum_bytes
    # compressed chunks look random
    buffer = np.random.default_rng(1).bytes(n_bytes)
    t, best = median_time(lambda: fletcher32(buffer), max(args.repeats, 20) * 5)
    print(f"\nfletcher32, {n_bytes:,} bytes")
    print(f"  {t * 1e3:7.3f} ms ({best * 1e3:.3f})  {n_bytes / t / 1e9:5.2f} GB/s")


if __name__ == "__main__":
    main()
