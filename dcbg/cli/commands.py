"""The commands of ``dcbg``: where each is built and what it does, in one line

``dcbg --help`` lists the commands from :data:`COMMANDS` without
importing any of them: a command's module (and with it numpy, h5py and
the background methods) is imported only when the command runs or shows
its help. The one-line summary in the table is the only copy: the
``dcbg --help`` list shows it and :func:`command` makes it the first
paragraph of the command's own help.

A new command is one row here and a module with its factory.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import inspect

import click

from .runtime import CONTEXT_SETTINGS


@dataclasses.dataclass(frozen=True)
class CommandEntry:
    """Where a command is built, and its summary

    Attributes
    ----------
    module: str
        The module that builds the command, e.g. ``"dcbg.cli.compute"``
    factory: str
        Name of its function returning the :class:`click.Command`
    summary: str
        One line: what the command does
    takes_methods: bool
        Whether the factory takes the methods (code -> class) whose
        keyword arguments become options
    """

    module: str
    factory: str
    summary: str
    takes_methods: bool = False

    def build(self, methods: dict | None = None) -> click.Command:
        """Import the command's module and build the command"""
        factory = getattr(importlib.import_module(self.module), self.factory)
        return factory(methods) if self.takes_methods else factory()


#: command name -> where it is built and its one-line summary
COMMANDS = {
    "batch": CommandEntry(
        "dcbg.cli.batch",
        "make_batch_command",
        "Compute the backgrounds of many measurements on a Dask cluster",
        takes_methods=True,
    ),
    "check": CommandEntry(
        "dcbg.cli.check",
        "make_check_command",
        "Check the background of INPUT for cell ghosts and flicker",
    ),
    "compute": CommandEntry(
        "dcbg.cli.compute",
        "make_compute_command",
        "Compute the background of the RT-DC measurement INPUT",
        takes_methods=True,
    ),
    "methods": CommandEntry(
        "dcbg.cli.methods",
        "make_methods_command",
        "List the background methods and their keyword arguments",
        takes_methods=True,
    ),
    "plot": CommandEntry(
        "dcbg.cli.plot",
        "make_plot_command",
        "Plot the background of INPUT (an .rtdc file with image_bg)",
    ),
}


def command(name: str):
    """``click.command`` for the command `name` of :data:`COMMANDS`

    The command's help is its summary from the table followed by the
    decorated function's docstring, which therefore holds the rest of the
    help (from its second paragraph on).
    """
    summary = COMMANDS[name].summary

    def decorate(func):
        details = inspect.cleandoc(func.__doc__ or "")
        help_text = f"{summary}\n\n{details}" if details else summary
        return click.command(name, context_settings=CONTEXT_SETTINGS, help=help_text)(
            func
        )

    return decorate


class LazyCommands(collections.abc.MutableMapping):
    """Command name -> command, each built when it is first looked up

    What :class:`click.Group` keeps as ``commands``: the names (``in``,
    iteration, ``len``) come from the table, a command's module is imported
    on ``[name]`` or ``.get(name)``. Commands added with
    ``Group.add_command`` are kept as they are.

    Parameters
    ----------
    entries: dict
        Command name -> :class:`CommandEntry`
    methods: dict or None
        Method code -> class, passed to the factories that take methods
    """

    def __init__(self, entries: dict, methods: dict | None = None):
        self._entries = dict(entries)
        self._methods = methods
        self._built: dict[str, click.Command] = {}

    def listed(self, name: str) -> click.Command | None:
        """The command as ``dcbg --help`` lists it, without building it

        The command if it is built, else a stand-in with its summary as
        help (what the list shows of it); None for an unknown name.
        """
        if name in self._built:
            return self._built[name]
        if name not in self._entries:
            return None
        return click.Command(name, help=self._entries[name].summary)

    def __getitem__(self, name):
        if name not in self._built:
            # KeyError for an unknown name, as a dict (click: "No such command")
            self._built[name] = self._entries[name].build(self._methods)
        return self._built[name]

    def get(self, name, default=None):
        # not Mapping.get: a KeyError while a command is built is a bug to
        # show, not an unknown command
        return self[name] if name in self else default

    def __setitem__(self, name, cmd):
        self._built[name] = cmd

    def __delitem__(self, name):
        if name not in self:
            raise KeyError(name)
        self._entries.pop(name, None)
        self._built.pop(name, None)

    def __contains__(self, name):
        return name in self._entries or name in self._built

    def __iter__(self):
        return iter(dict.fromkeys([*self._entries, *self._built]))

    def __len__(self):
        return len(set(self._entries) | set(self._built))


class LazyGroup(click.Group):
    """A command group that imports a command only to run it or show its help

    click's lazy-loading pattern: the group knows each command's name and
    summary (:data:`COMMANDS`); listing them for ``--help`` builds none.

    Parameters
    ----------
    entries: dict
        Command name -> :class:`CommandEntry`
    methods: dict or None
        Method code -> class for the commands that take methods
    """

    def __init__(self, *args, entries: dict, methods: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(entries, methods)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter):
        """The list of commands with their summaries, without building them"""
        listed = [
            (name, self.commands.listed(name)) for name in self.list_commands(ctx)
        ]
        listed = [(name, cmd) for name, cmd in listed if cmd and not cmd.hidden]
        if not listed:
            return
        # as click.Group does: the summaries get the width the names leave
        limit = formatter.width - 6 - max(len(name) for name, _ in listed)
        with formatter.section("Commands"):
            formatter.write_dl(
                [(name, cmd.get_short_help_str(limit)) for name, cmd in listed]
            )
