"""Benchmark dcbg against dcnum 0.31.0 background computation

Both tools process the same realistic synthetic measurement (cached in
``benchmarks/_data/``). Every run happens in a fresh Python process that
times the constructor, ``process()`` and the context exit (end-to-end,
without interpreter start-up and imports); the parent samples the summed
RSS of that process and all of its children (dcnum spawns workers) every
20 ms. Examples::

    python benchmarks/bench_background.py --method rollmed --frames 4000
    python benchmarks/bench_background.py --method sparsemed --frames 30000
    python benchmarks/bench_background.py --method copy --only dcnum
    python benchmarks/bench_background.py --method rollmed --kernel-size 200 \\
        --kw batch_size=2000 --no-compress --num-cpus 1
    # the slow sample: 400 events over 20 minutes, sparse median defaults
    python benchmarks/bench_background.py --method sparsemed --frames 400 \\
        --duration 1200

A JSON summary is written to ``benchmarks/results/<method>_<frames>.json``;
runs of a single tool (``--only``) are merged into an existing summary with
the same settings.
"""

import argparse
import hashlib
import json
import os
import pathlib
import statistics
import sys
import time

# sibling scripts
from _common import (
    RESULTS_DIR,
    ROOT,
    add_common_arguments,
    machine_info,
    report_result,
    run_if_child,
    run_measured,
    write_summary,
)

DATA_DIR = ROOT / "benchmarks" / "_data"

TOOLS = ("dcnum", "dcbg")
MODULES = {
    "dcbg": "dcbg.feat.feat_background",
    "dcnum": "dcnum.feat.feat_background",
}
CLASSES = {
    "rollmed": "BackgroundRollMed",
    "sparsemed": "BackgroundSparseMed",
    "copy": "BackgroundCopy",
}


def run_child(spec: dict) -> None:
    """Run one background computation (inside the fresh subprocess)"""
    import importlib

    module = importlib.import_module(MODULES[spec["tool"]])
    cls = getattr(module, CLASSES[spec["method"]])
    if spec["tool"] == "dcbg":
        # dcbg imports these where first needed (fast start-up), dcnum with
        # its module: import them outside the timed region for both
        for name in ("dclab", "hdf5plugin", "scipy.ndimage"):
            importlib.import_module(name)
    t0 = time.perf_counter()
    with cls(
        pathlib.Path(spec["input"]),
        pathlib.Path(spec["output"]),
        compress=spec["compress"],
        num_cpus=spec["num_cpus"],
        **spec["kwargs"],
    ) as bg:
        bg.process()
    seconds = time.perf_counter() - t0
    report_result({"seconds": seconds})


def measure(spec: dict) -> dict:
    """Run `spec` in a fresh process, return its timing and peak memory"""
    output = pathlib.Path(spec["output"])
    output.unlink(missing_ok=True)
    result, wall, peak = run_measured(__file__, spec, f"{spec['tool']} run")
    result["process_wall"] = wall
    result["peak_rss_mib"] = peak / 1024**2
    result["output_size"] = output.stat().st_size
    return result


def compare_outputs(path_a: pathlib.Path, path_b: pathlib.Path) -> dict:
    """Compare ``image_bg`` (every frame) and ``bg_off`` through dclab"""
    import dclab
    import numpy as np

    info = {"image_bg": False, "bg_off": None, "mismatched_frames": None}
    with dclab.new_dataset(path_a) as ds_a, dclab.new_dataset(path_b) as ds_b:
        if len(ds_a) != len(ds_b):
            info["error"] = f"event counts differ: {len(ds_a)} vs {len(ds_b)}"
            return info
        bad = 0
        for start in range(0, len(ds_a), 1000):
            stop = min(start + 1000, len(ds_a))
            bg_a = np.asarray(ds_a["image_bg"][start:stop])
            bg_b = np.asarray(ds_b["image_bg"][start:stop])
            if bg_a.dtype != bg_b.dtype:
                info["error"] = f"dtypes differ: {bg_a.dtype} vs {bg_b.dtype}"
                return info
            bad += int(np.sum(np.any(bg_a != bg_b, axis=(1, 2))))
        info["mismatched_frames"] = bad
        info["image_bg"] = bad == 0
        has_a, has_b = "bg_off" in ds_a, "bg_off" in ds_b
        if has_a and has_b:
            info["bg_off"] = bool(
                np.allclose(ds_a["bg_off"], ds_b["bg_off"], rtol=0, atol=1e-9)
            )
        elif has_a or has_b:
            info["bg_off"] = False
    info["identical"] = info["image_bg"] and info["bg_off"] in (None, True)
    return info


def get_input(args) -> pathlib.Path:
    """Return the cached synthetic input file, generate it if missing"""
    height, width = args.shape
    # bench_dcnum_pipeline.py passes its own arguments (no --duration)
    duration = getattr(args, "duration", None)
    name = (
        f"synthetic_{args.frames}_{height}x{width}_seed{args.seed}"
        f"_streaks{args.streaks}{'_bg' if args.method == 'copy' else ''}"
        f"{f'_{duration:g}s' if duration else ''}.rtdc"
    )
    path = DATA_DIR / name
    if not path.exists():
        from dcbg.testing import make_synthetic_measurement

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        print(f"generating {path.name} ...", flush=True)
        t0 = time.perf_counter()
        timing = {}
        if duration:
            # frames evenly spread over the duration (a slow sample)
            timing["frame_rate"] = (args.frames - 1) / duration
        make_synthetic_measurement(
            tmp,
            args.frames,
            **timing,
            shape=args.shape,
            seed=args.seed,
            streaks=args.streaks,
            with_image_bg=args.method == "copy",
        )
        os.replace(tmp, path)
        dt = time.perf_counter() - t0
        print(f"  {args.frames / dt:.0f} frames/s", flush=True)
    return path


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark dcbg against dcnum background computation"
    )
    parser.add_argument("--method", choices=sorted(CLASSES), default="rollmed")
    parser.add_argument("--frames", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kernel-size", type=int, help="kernel_size kwarg")
    parser.add_argument(
        "--kw",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="further method kwarg, value parsed as JSON (repeatable)",
    )
    parser.add_argument(
        "--num-cpus", type=int, default=os.cpu_count(), help="num_cpus for both tools"
    )
    parser.add_argument("--no-compress", action="store_true", help="compress=False")
    parser.add_argument("--only", choices=TOOLS, help="run only one tool")
    add_common_arguments(parser)
    parser.add_argument(
        "--duration",
        type=float,
        help="spread the frames over this many seconds (a slow sample: "
        "few events over a long measurement); default: the camera's rate",
    )
    return parser


def summarize(tool: str, runs: list[dict], frames: int) -> dict:
    seconds = [r["seconds"] for r in runs]
    median = statistics.median(seconds)
    return {
        "seconds": seconds,
        "median_seconds": median,
        "min_seconds": min(seconds),
        "frames_per_second": frames / median,
        "process_wall": [r["process_wall"] for r in runs],
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "output_size": runs[-1]["output_size"],
    }


def print_table(results: dict) -> None:
    header = (
        f"{'tool':<7}{'median s':>10}{'min s':>9}{'frames/s':>11}"
        f"{'out MiB':>10}{'peak MiB':>10}"
    )
    print(header)
    print("-" * len(header))
    for tool, res in results.items():
        print(
            f"{tool:<7}{res['median_seconds']:>10.2f}{res['min_seconds']:>9.2f}"
            f"{res['frames_per_second']:>11.0f}"
            f"{res['output_size'] / 1024**2:>10.2f}{res['peak_rss_mib']:>10.0f}"
        )


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if run_if_child(args, run_child):
        return 0

    kwargs = {}
    if args.kernel_size is not None:
        kwargs["kernel_size"] = args.kernel_size
    for item in args.kw:
        key, _, value = item.partition("=")
        kwargs[key.replace("-", "_")] = parse_value(value)
    tools = [args.only] if args.only else list(TOOLS)

    input_path = get_input(args)
    out_dir = DATA_DIR / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "method": args.method,
        "frames": args.frames,
        "shape": list(args.shape),
        "seed": args.seed,
        "streaks": args.streaks,
        "duration": args.duration,
        "kwargs": kwargs,
        "num_cpus": args.num_cpus,
        "compress": not args.no_compress,
    }
    print(
        f"input: {input_path.name} ({input_path.stat().st_size / 1024**2:.1f} MiB), "
        f"method={args.method} kwargs={kwargs} num_cpus={args.num_cpus} "
        f"compress={not args.no_compress}"
    )
    load_before = os.getloadavg()

    # outputs are kept per configuration, so that a later ``--only`` run
    # can still be compared with the other tool's output
    cfg_hash = hashlib.md5(json.dumps(config, sort_keys=True).encode()).hexdigest()
    outputs = {
        tool: out_dir / f"{args.method}_{args.frames}_{cfg_hash[:8]}_{tool}.rtdc"
        for tool in TOOLS
    }
    runs = {tool: [] for tool in tools}
    # alternate the tools so that load changes hit both alike
    for rep in range(args.repeats):
        for tool in tools:
            spec = {
                "tool": tool,
                "method": args.method,
                "input": str(input_path),
                "output": str(outputs[tool]),
                "kwargs": kwargs,
                "num_cpus": args.num_cpus,
                "compress": not args.no_compress,
            }
            res = measure(spec)
            runs[tool].append(res)
            print(
                f"  run {rep + 1}/{args.repeats} {tool}: {res['seconds']:.2f} s, "
                f"peak {res['peak_rss_mib']:.0f} MiB",
                flush=True,
            )

    results = {tool: summarize(tool, runs[tool], args.frames) for tool in tools}
    print()
    print_table(results)

    stem = f"{args.method}_{args.frames}"
    if args.duration:
        stem += f"_{args.duration:g}s"
    summary_path = RESULTS_DIR / f"{stem}.json"
    summary = {"config": config, "results": {}}
    if summary_path.exists():
        previous = json.loads(summary_path.read_text())
        if previous.get("config") == config:
            # keep the other tool's numbers from an earlier run
            summary["results"] = previous.get("results", {})
            summary["comparison"] = previous.get("comparison")
    summary["results"].update(results)

    res = summary["results"]
    cmp = None
    if "dcnum" in res and "dcbg" in res and all(p.exists() for p in outputs.values()):
        cmp = compare_outputs(outputs["dcnum"], outputs["dcbg"])
        summary["comparison"] = cmp
    if "dcnum" in res and "dcbg" in res:
        summary["time_ratio_dcnum_over_dcbg"] = (
            res["dcnum"]["median_seconds"] / res["dcbg"]["median_seconds"]
        )
        summary["size_ratio_dcbg_over_dcnum"] = (
            res["dcbg"]["output_size"] / res["dcnum"]["output_size"]
        )
        print(
            f"\nspeed-up (dcnum time / dcbg time): "
            f"{summary['time_ratio_dcnum_over_dcbg']:.2f}x"
        )
        print(
            f"output size ratio (dcbg / dcnum): "
            f"{summary['size_ratio_dcbg_over_dcnum']:.3f}"
        )
    if cmp is not None:
        print(f"identical: {'yes' if cmp['identical'] else 'no'} ({cmp})")

    summary["machine"] = machine_info(load_before)
    write_summary(stem, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
