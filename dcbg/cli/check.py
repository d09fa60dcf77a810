"""``dcbg check``: judge a background without ground truth

A thin layer over :func:`dcbg.check.check_background`: exit status 0 when
the background passes, 1 when it finds a problem (ghosts, or flicker the
background does not correct), 2 on a usage or input error (click's usage
errors and every error reading the file), 130/143 when interrupted.
"""

from __future__ import annotations

import contextlib

import click

from .commands import command
from .runtime import (
    Interrupted,
    command_guard,
    configure_logging,
    echo_result,
)
from .shared_options import basin_options, input_argument

#: exit status when the check finds a problem
EXIT_PROBLEM = 1
#: exit status of usage and input errors (click's usage errors use it too)
EXIT_INPUT_ERROR = 2


class InputError(click.ClickException):
    """An input error of ``dcbg check``: exit status 2, as usage errors

    Exit status 1 means that the check found a problem, so an unreadable
    file must not share it.
    """

    exit_code = EXIT_INPUT_ERROR


@contextlib.contextmanager
def input_errors_exit_2():
    """Errors (not interrupts) leave with `InputError` (exit status 2)"""
    try:
        yield
    except Interrupted:
        raise
    except click.ClickException as exc:
        if exc.exit_code == EXIT_INPUT_ERROR:
            raise
        raise InputError(exc.message) from exc


def make_check_command() -> click.Command:
    """``dcbg check``: cell ghosts and flicker, without ground truth"""

    @command("check")
    @input_argument()
    @click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON object (ghost_fraction, flicker, per-event "
        "details; see the docs) instead of the report.",
    )
    @click.option(
        "--max-events",
        type=click.IntRange(min=1),
        default=None,
        help="Check at most N events, evenly spread. Default: all.",
    )
    @basin_options()
    @click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
    def check(path, as_json, max_events, basin_root, allow_remote_basins, debug):
        """INPUT is any .rtdc file with image and image_bg (made by dcbg,
        dcnum or Shape-In; bg_off optional). Without ground truth, each
        event's background is compared with the most frequent value of
        each pixel over the file's frames: a ghost is a region of more
        than 6 grey levels over at least 30 pixels of the channel band.
        The frames flicker when their brightness jumps by more than 2.5
        grey levels in more than 1% of the frames.

        Exit status: 0 the background passes, 1 ghosts or uncorrected
        flicker were found, 2 usage or input error.
        """
        configure_logging(debug)
        with (
            input_errors_exit_2(),
            command_guard(debug, "Interrupted; nothing written"),
        ):
            # numpy and dclab are imported only when a file is checked
            from ..check import check_background, format_report, result_to_dict

            result = check_background(
                path,
                basin_root=basin_root,
                allow_remote_basins=allow_remote_basins,
                max_events=max_events,
            )
        if as_json:
            import json

            echo_result(json.dumps(result_to_dict(result)))
        else:
            echo_result(format_report(result))
        if not result.passed:
            raise click.exceptions.Exit(EXIT_PROBLEM)

    return check
