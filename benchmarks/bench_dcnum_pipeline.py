"""Benchmark dcnum's whole pipeline, native vs with dcbg's backgrounds

dcnum 0.31.0's ``DCNumJobRunner`` (background, segmentation, feature
extraction, basins) processes the same realistic synthetic measurement
(cached in ``benchmarks/_data/``) twice per method: natively, and inside
``dcbg.dcnum.use_dcbg()``. Every run happens in a fresh Python process
that times the background step (``task_background``) and the whole job
(``run()``); the parent samples the summed RSS of that process and its
children (dcnum spawns workers) every 20 ms. The two outputs are compared
feature by feature. Example::

    python benchmarks/bench_dcnum_pipeline.py --frames 4000 \\
        --method rollmed --method sparsemed

A JSON summary is written to
``benchmarks/results/dcnum_pipeline_<frames>.json``.
"""

import argparse
import os
import pathlib
import statistics
import sys
import time

# sibling scripts: the same data and memory sampling as bench_background.py
from _common import (
    add_common_arguments,
    machine_info,
    report_result,
    run_if_child,
    run_measured,
    write_summary,
)
from bench_background import DATA_DIR
from bench_background import get_input as bench_input

TOOLS = ("dcnum", "dcbg")
#: background keyword arguments per method (dcnum's defaults)
METHOD_KWARGS = {"rollmed": {}, "sparsemed": {}}


def run_child(spec: dict) -> None:
    """Run one dcnum pipeline job (inside the fresh subprocess)"""
    import contextlib

    from dcnum.logic import DCNumJobRunner, DCNumPipelineJob

    from dcbg.dcnum import use_dcbg

    job = DCNumPipelineJob(
        path_in=spec["input"],
        path_out=spec["output"],
        background_code=spec["method"],
        background_kwargs=spec["kwargs"],
        num_procs=spec["num_procs"],
    )
    timing = {}
    context = use_dcbg() if spec["tool"] == "dcbg" else contextlib.nullcontext()
    with context, DCNumJobRunner(job=job) as runner:
        task_background = runner.task_background

        def timed_background():
            t0 = time.perf_counter()
            task_background()
            timing["background"] = time.perf_counter() - t0

        runner.task_background = timed_background
        t0 = time.perf_counter()
        runner.run()
        timing["job"] = time.perf_counter() - t0
    if runner.error_tb:
        raise RuntimeError(runner.error_tb)
    report_result(timing)


def measure(spec: dict) -> dict:
    """Run `spec` in a fresh process, return its timings and peak memory"""
    output = pathlib.Path(spec["output"])
    output.unlink(missing_ok=True)
    output.with_suffix(".log").unlink(missing_ok=True)
    result, _, peak = run_measured(__file__, spec, f"{spec['tool']} run")
    result["peak_rss_mib"] = peak / 1024**2
    return result


def compare_outputs(path_a: pathlib.Path, path_b: pathlib.Path) -> dict:
    """Compare every feature and the pipeline attributes of two outputs"""
    import h5py
    import hdf5plugin  # noqa: F401 (filters for compressed datasets)
    import numpy as np

    differ = []
    with h5py.File(path_a) as ha, h5py.File(path_b) as hb:
        for grp in ("events", "basin_events"):
            names = set(ha.get(grp, {})) | set(hb.get(grp, {}))
            for name in sorted(names):
                key = f"{grp}/{name}"
                if key not in ha or key not in hb:
                    differ.append(key)
                    continue
                da, db = ha[key], hb[key]
                if da.shape != db.shape or da.dtype != db.dtype:
                    differ.append(key)
                    continue
                step = 500  # frames per comparison block (memory)
                for start in range(0, max(1, da.shape[0]), step):
                    sl = slice(start, start + step)
                    if not np.array_equal(da[sl], db[sl]):
                        differ.append(key)
                        break
        pipeline = {
            k: (ha.attrs.get(k), hb.attrs.get(k))
            for k in set(ha.attrs) | set(hb.attrs)
            if k.startswith("pipeline:")
        }
        events = len(ha["events/deform"]) if "events/deform" in ha else None
    attrs_equal = all(str(a) == str(b) for a, b in pipeline.values())
    return {
        "events": events,
        "features_differing": differ,
        "pipeline_attrs_equal": attrs_equal,
        "identical": not differ and attrs_equal,
    }


def get_input(args) -> pathlib.Path:
    """The cached synthetic input of bench_background.py (made if missing)"""
    # the plain measurement (bench_background adds image_bg only for copy)
    return bench_input(argparse.Namespace(**{**vars(args), "method": "rollmed"}))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--method",
        action="append",
        choices=sorted(METHOD_KWARGS),
        help="background method (repeatable; default: rollmed and sparsemed)",
    )
    parser.add_argument("--frames", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--num-procs", type=int, default=os.cpu_count(), help="dcnum's num_procs"
    )
    add_common_arguments(parser)
    return parser


def summarize(runs: list[dict], frames: int) -> dict:
    background = statistics.median(r["background"] for r in runs)
    job = statistics.median(r["job"] for r in runs)
    return {
        "background_seconds": [r["background"] for r in runs],
        "job_seconds": [r["job"] for r in runs],
        "median_background_seconds": background,
        "median_job_seconds": job,
        "background_frames_per_second": frames / background,
        "job_frames_per_second": frames / job,
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
    }


def print_table(results: dict, frames: int) -> None:
    header = (
        f"{'method':<11}{'tool':<7}{'background s':>14}{'frames/s':>10}"
        f"{'job s':>9}{'frames/s':>10}{'peak MiB':>10}"
    )
    print(header)
    print("-" * len(header))
    for method, per_tool in results.items():
        for tool, res in per_tool["tools"].items():
            print(
                f"{method:<11}{tool:<7}{res['median_background_seconds']:>14.2f}"
                f"{res['background_frames_per_second']:>10.0f}"
                f"{res['median_job_seconds']:>9.2f}"
                f"{res['job_frames_per_second']:>10.0f}{res['peak_rss_mib']:>10.0f}"
            )
        ratio_bg = per_tool["background_ratio_dcnum_over_dcbg"]
        ratio_job = per_tool["job_ratio_dcnum_over_dcbg"]
        print(
            f"{method:<11}{'ratio':<7}{ratio_bg:>13.1f}x{'':>10}{ratio_job:>8.2f}x"
            f"   (dcnum time / dcbg time; identical outputs: "
            f"{'yes' if per_tool['comparison']['identical'] else 'NO'})"
        )


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if run_if_child(args, run_child):
        return 0
    methods = args.method or sorted(METHOD_KWARGS)
    input_path = get_input(args)
    out_dir = DATA_DIR / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"input: {input_path.name} ({input_path.stat().st_size / 1024**2:.1f} MiB), "
        f"methods={methods} num_procs={args.num_procs} repeats={args.repeats}"
    )
    load_before = os.getloadavg()
    results = {}
    for method in methods:
        outputs = {
            tool: out_dir / f"pipeline_{method}_{args.frames}_{tool}.rtdc"
            for tool in TOOLS
        }
        runs = {tool: [] for tool in TOOLS}
        # alternate the tools so that load changes hit both alike
        for rep in range(args.repeats):
            for tool in TOOLS:
                spec = {
                    "tool": tool,
                    "method": method,
                    "kwargs": METHOD_KWARGS[method],
                    "input": str(input_path),
                    "output": str(outputs[tool]),
                    "num_procs": args.num_procs,
                }
                res = measure(spec)
                runs[tool].append(res)
                print(
                    f"  {method} run {rep + 1}/{args.repeats} {tool}: background "
                    f"{res['background']:.2f} s, job {res['job']:.2f} s, "
                    f"peak {res['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
        tools = {tool: summarize(runs[tool], args.frames) for tool in TOOLS}
        results[method] = {
            "tools": tools,
            "background_ratio_dcnum_over_dcbg": (
                tools["dcnum"]["median_background_seconds"]
                / tools["dcbg"]["median_background_seconds"]
            ),
            "job_ratio_dcnum_over_dcbg": (
                tools["dcnum"]["median_job_seconds"]
                / tools["dcbg"]["median_job_seconds"]
            ),
            "comparison": compare_outputs(outputs["dcnum"], outputs["dcbg"]),
        }
    print()
    print_table(results, args.frames)
    for method, res in results.items():
        if not res["comparison"]["identical"]:
            print(f"{method}: outputs differ: {res['comparison']}")

    summary = {
        "config": {
            "frames": args.frames,
            "shape": list(args.shape),
            "seed": args.seed,
            "streaks": args.streaks,
            "num_procs": args.num_procs,
            "repeats": args.repeats,
            "kwargs": {m: METHOD_KWARGS[m] for m in methods},
        },
        "results": results,
        "machine": machine_info(load_before),
    }
    write_summary(f"dcnum_pipeline_{args.frames}", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
