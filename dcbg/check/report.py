"""What ``dcbg check`` says: verdict, time ranges, advice, JSON

:func:`result_to_dict` is the JSON contract of ``dcbg check --json``
(one object; see its docstring for every key), :func:`format_report` the
human-readable report.
"""

from __future__ import annotations

import numpy as np

from .analysis import (
    FLICKER_LEVELS,
    FLICKER_MIN_FRACTION,
    FLICKER_MIN_FRAMES,
    FLICKER_WINDOW,
    GHOST_FRACTION_LIMIT,
    GHOST_LEVELS,
    GHOST_MIN_PIXELS,
    MIN_REFERENCE_FRAMES,
    CheckResult,
)

#: dcnum's methods: every other registered method is one of dcbg's own
#: (the robust methods the advice points to)
DCNUM_METHODS = ("copy", "rollmed", "sparsemed")
#: ghost time ranges listed in the human report (the JSON has all)
MAX_RANGES_SHOWN = 8
#: runs of ghosted events separated by at most this many checked events
#: without a ghost are one range: a few clean backgrounds inside a dense
#: stretch are not a new episode (at 3,500 frames per second, 7 ms)
RANGE_MERGE_GAP = 25
#: decimals of the per-event floats in the JSON (grey levels): far below
#: the thresholds, and it keeps the output of long files small
JSON_DECIMALS = 3


def robust_methods() -> list[str]:
    """Codes of the registered methods that are not dcnum's"""
    from ..feat.feat_background import get_available_background_methods

    return sorted(
        code for code in get_available_background_methods() if code not in DCNUM_METHODS
    )


def ghost_ranges(result: CheckResult) -> list[dict]:
    """Runs of checked events whose background holds a ghost

    Runs separated by at most ``RANGE_MERGE_GAP`` checked events without a
    ghost are merged.

    Returns
    -------
    list of dict
        ``first_event``, ``last_event`` (indices, inclusive), ``events``
        (ghosted events checked in the range) and ``start_s``/``stop_s``
        (time in seconds, None without a time axis)
    """
    events = result.events
    ranges = []
    for pos in np.flatnonzero(events.ghost):
        if ranges and pos - ranges[-1][-1] <= RANGE_MERGE_GAP + 1:
            ranges[-1].append(pos)
        else:
            ranges.append([pos])
    out = []
    for run in ranges:
        first, last = run[0], run[-1]
        times = (
            (float(events.time[first]), float(events.time[last]))
            if events.time is not None
            else (None, None)
        )
        out.append(
            {
                "first_event": int(events.index[first]),
                "last_event": int(events.index[last]),
                "events": len(run),
                "start_s": times[0],
                "stop_s": times[1],
            }
        )
    return out


def advice(result: CheckResult) -> list[str]:
    """What to do instead, one sentence per problem (empty if it passed)"""
    robust = robust_methods()
    lines = []
    if result.ghosts_found:
        if robust:
            names = " or ".join(robust)
            commands = " or ".join(
                f"dcbg compute MEASUREMENT --method {code}" for code in robust
            )
            lines.append(
                f"Recompute the background with dcbg's robust method {names} at "
                f"its defaults ({commands}): it takes the most frequent grey "
                f"value of each pixel, not the median, so cells that cover a "
                f"pixel in most frames or stay put leave no ghost."
            )
        lines.append(
            "With dcnum's methods: sparsemed with a longer --kernel-size and "
            "--thresh-cleansing 1 (drops series images that hold cells); a "
            "median cannot help where cells cover a pixel in more than half "
            "of its frames: dilute the sample."
        )
    if not result.flicker_corrected:
        writers = ["sparsemed (--offset-correction, its default)", *robust]
        lines.append(
            "The background does not follow the frames' brightness jumps: use "
            "a method that writes the per-frame offset bg_off: "
            + " or ".join(writers)
            + "."
        )
    return lines


def _problems(result: CheckResult) -> list[str]:
    found = []
    if result.ghosts_found:
        found.append("ghosts")
    if not result.flicker_corrected:
        found.append("flicker not corrected")
    return found


def result_to_dict(result: CheckResult) -> dict:
    """The JSON object of ``dcbg check --json`` (JSON-ready types only)

    Returns
    -------
    dict
        With the keys:

        - ``path`` (str): the file checked
        - ``verdict`` (str): "pass", or "problem" (ghosts in more than
          ``GHOST_FRACTION_LIMIT`` of the events, or flicker the background
          does not correct); ``problems``: list of "ghosts", "flicker not
          corrected"
        - ``ghost_fraction`` (float, 0-1): fraction of the judged events
          whose background (``image_bg + bg_off``) holds a ghost: it
          deviates from the file's robust reference by more than
          ``ghost_levels`` grey levels over at least ``ghost_min_pixels``
          pixels of the channel band; 0 if no event could be judged
        - ``ghosts_judged`` (bool): False if too few distinct frames
          (``min_reference_frames``) to judge ghosts; ``judged_fraction``
          (float): share of the channel band in which the reference was
          certain enough to judge (lowest over the segments);
          ``ghost_events`` (int): events found with a ghost
        - ``flicker`` (bool): the frames flicker: at least
          ``flicker_min_frames`` and more than ``flicker_min_fraction`` of
          the events jump in brightness by more than ``flicker_levels``
          grey levels against their running median; ``flicker_fraction``:
          the fraction that jumps
        - ``flicker_corrected`` (bool): False if ``image - image_bg -
          bg_off`` still jumps by that rule; ``residual_flicker_fraction``
        - ``has_bg_off`` (bool), ``ppid`` (str or None: the background's
          pipeline identifier), ``event_count`` and ``events_checked``
          (int)
        - ``ghost_ranges``: list of ``first_event``, ``last_event``,
          ``events``, ``start_s``, ``stop_s`` of each range of ghosted
          events (times None without a time axis)
        - ``advice``: list of str, what to use instead
        - ``thresholds``: the constants the verdict used
        - ``events``: equal-length lists, one entry per checked event:
          ``index`` (0-based), ``judged``, ``ghost``, ``ghost_pixels``,
          ``max_deviation`` (grey levels, channel band), ``frame_offset``
          and ``residual_offset`` (brightness against its running median,
          grey levels, of the frame and of the corrected image), ``time``
          (seconds, or None)
    """
    events = result.events

    def floats(values):
        return [round(float(v), JSON_DECIMALS) for v in values]

    return {
        "path": str(result.path),
        "verdict": "pass" if result.passed else "problem",
        "problems": _problems(result),
        "ghost_fraction": result.ghost_fraction,
        "ghosts_judged": result.ghosts_judged,
        "judged_fraction": result.judged_fraction,
        "ghost_events": int(events.ghost.sum()),
        "flicker": result.flicker,
        "flicker_fraction": result.flicker_fraction,
        "flicker_corrected": result.flicker_corrected,
        "residual_flicker_fraction": result.residual_flicker_fraction,
        "has_bg_off": result.has_bg_off,
        "ppid": result.ppid,
        "event_count": result.event_count,
        "events_checked": int(events.index.size),
        "ghost_ranges": ghost_ranges(result),
        "advice": advice(result),
        "thresholds": {
            "ghost_levels": GHOST_LEVELS,
            "ghost_min_pixels": GHOST_MIN_PIXELS,
            "ghost_fraction_limit": GHOST_FRACTION_LIMIT,
            "flicker_levels": FLICKER_LEVELS,
            "flicker_min_frames": FLICKER_MIN_FRAMES,
            "flicker_min_fraction": FLICKER_MIN_FRACTION,
            "flicker_window": FLICKER_WINDOW,
            "min_reference_frames": MIN_REFERENCE_FRAMES,
        },
        "events": {
            "index": [int(v) for v in events.index],
            "judged": [bool(v) for v in events.judged],
            "ghost": [bool(v) for v in events.ghost],
            "ghost_pixels": [int(v) for v in events.ghost_pixels],
            "max_deviation": floats(events.max_deviation),
            "frame_offset": floats(events.frame_offset),
            "residual_offset": floats(events.residual_offset),
            "time": None if events.time is None else floats(events.time),
        },
    }


def verdict_line(result: CheckResult) -> str:
    """One line: the verdict with the ghost fraction and flicker"""
    if result.ghosts_judged:
        ghosts = (
            f"ghosts in {result.ghost_fraction:.1%} of events "
            f"({int(result.events.ghost.sum())} of {int(result.events.judged.sum())})"
        )
    else:
        ghosts = "ghosts not judged (too few frames)"
    if result.flicker:
        flicker = "flicker " + (
            "corrected by bg_off" if result.flicker_corrected else "NOT corrected"
        )
    elif not result.flicker_corrected:
        flicker = "no flicker in the frames, but the corrected images jump"
    else:
        flicker = "no flicker"
    head = "PASS" if result.passed else "PROBLEM"
    return f"{head}: {ghosts}; {flicker}"


def format_report(result: CheckResult) -> str:
    """The human-readable report of ``dcbg check``"""
    events = result.events
    lines = [
        f"{result.path}: background {result.ppid or '(PPID unknown)'}",
        verdict_line(result),
        f"  events checked: {events.index.size} of {result.event_count}",
    ]
    if result.ghosts_judged:
        lines.append(
            f"  ghost: image_bg{' + bg_off' if result.has_bg_off else ''} off the "
            f"file's own most-frequent-value reference by > "
            f"{GHOST_LEVELS:g} grey levels over >= "
            f"{GHOST_MIN_PIXELS} pixels of the channel band"
        )
        if result.judged_fraction < 1:
            lines.append(
                f"  judged in {result.judged_fraction:.0%} of the channel band "
                f"(elsewhere cells cover the pixels in almost every frame)"
            )
    else:
        lines.append(
            f"  ghosts need at least {MIN_REFERENCE_FRAMES} distinct "
            f"frames per segment to be judged"
        )
    ranges = ghost_ranges(result)
    for item in ranges[:MAX_RANGES_SHOWN]:
        span = f"events {item['first_event']}-{item['last_event']}"
        if item["start_s"] is not None:
            span += f" ({item['start_s']:.3f}-{item['stop_s']:.3f} s)"
        lines.append(f"  ghosts: {span}")
    if len(ranges) > MAX_RANGES_SHOWN:
        lines.append(f"  ... and {len(ranges) - MAX_RANGES_SHOWN} more ranges (--json)")
    lines.append(
        f"  flicker: {result.flicker_fraction:.1%} of frames jump by > "
        f"{FLICKER_LEVELS:g} grey levels; after correction "
        f"{result.residual_flicker_fraction:.1%}"
        + ("" if result.has_bg_off else " (no bg_off in the file)")
    )
    for text in advice(result):
        lines.append(f"Advice: {text}")
    return "\n".join(lines)
