"""``dcbg methods``: the registered methods and their keyword arguments

For each method its description, its default PPID and every keyword
argument with its type, default, the option of ``dcbg compute`` that sets
it (read from that command, so a renamed flag shows as it is) and the
description from the method's docstring.
"""

from __future__ import annotations

import textwrap

import click

from .. import ppid
from ..feat.feat_background import get_available_background_methods
from .commands import command
from .options import (
    format_default,
    get_method_description,
    option_labels,
    parse_parameter_docs,
)
from .runtime import echo_result

#: width of the listing (a terminal's 80 columns and a margin)
LISTING_WIDTH = 88


def describe_method(code: str, cls: type, labels: dict[str, str]) -> str:
    """The block of ``dcbg methods`` for one method

    Parameters
    ----------
    code: str
        The method's code, e.g. "rollmed"
    cls: type
        The method's class
    labels: dict
        Keyword argument name -> its option in ``dcbg compute``
    """
    docs = parse_parameter_docs(cls.check_user_kwargs.__doc__)
    lines = [f"{code}: {get_method_description(cls)}"]
    spec = ppid.get_kwarg_spec(cls)
    lines.append(f"  PPID (defaults): {cls.get_ppid_from_ppkw({})}")
    if not spec:
        lines.append("  (no keyword arguments)")
    for name, (dtype, default) in spec.items():
        type_name = getattr(dtype, "__name__", str(dtype))
        lines.append(
            f"  {name} ({type_name}, default {format_default(default)})  {labels[name]}"
        )
        if docs.get(name):
            lines.extend(
                textwrap.wrap(
                    docs[name],
                    width=LISTING_WIDTH,
                    initial_indent="      ",
                    subsequent_indent="      ",
                )
            )
    return "\n".join(lines)


def make_methods_command(methods: dict | None = None) -> click.Command:
    """``dcbg methods``: the registered methods and their keyword arguments"""

    @command("methods")
    def methods_command():
        """For each method: its description, its default PPID, and each
        keyword argument with its type, default, command-line option and
        meaning.
        """
        from .compute import make_compute_command

        registry = (
            methods if methods is not None else get_available_background_methods()
        )
        labels = option_labels(make_compute_command(registry))
        blocks = [
            describe_method(code, registry[code], labels) for code in sorted(registry)
        ]
        echo_result("\n\n".join(blocks))

    return methods_command
