"""The dcbg command group: lazily built commands, options derived from them

``dcbg --help`` lists the commands from their table without building them
(tests/test_architecture.py checks what it imports); each command's help
opens with the same summary. The flags a method's keyword argument cannot
take are read from the command's own options, and errors and warnings
about a parameter name its option, from the parameter the error carries.
"""

import gc
import warnings

import click
from click.testing import CliRunner

from dcbg.cli import make_cli
from dcbg.cli.commands import COMMANDS
from dcbg.cli.runtime import with_flags
from dcbg.errors import ParameterError, ParameterWarning
from dcbg.feat.feat_background import Background


def test_command_list_is_clicks_own_listing():
    # the list built from the table equals click's, built from the commands
    cli = make_cli()
    lazy = CliRunner().invoke(cli, ["--help"]).stdout
    ctx = click.Context(cli, info_name="dcbg")
    built = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    assert sorted(built) == sorted(COMMANDS)
    eager = click.Group("dcbg", commands=built, context_settings=cli.context_settings)
    formatter = ctx.make_formatter()
    click.Group.format_commands(eager, ctx, formatter)
    assert formatter.getvalue() in lazy
    for name, cmd in built.items():
        # one summary: the first paragraph of the command's own help
        assert cmd.help.split("\n\n")[0] == COMMANDS[name].summary


def test_commands_mapping_knows_names_before_building():
    cli = make_cli()
    assert "batch" in cli.commands and "nosuch" not in cli.commands
    assert sorted(cli.commands) == sorted(COMMANDS)
    assert cli.commands.get("nosuch") is None
    assert isinstance(cli.commands["plot"], click.Command)


def test_method_options_avoid_the_commands_own_flags():
    class BackgroundClash(Background):
        """Keyword arguments named like the commands' own options"""

        @staticmethod
        def check_user_kwargs(*, force: bool = False, workers: int = 1):
            """Check the keyword arguments

            Parameters
            ----------
            force: bool
                A switch named like the --force of compute and batch
            workers: int
                A number named like batch's --workers
            """

        def process_approach(self):
            """Not run: only the options are listed"""

    cli = make_cli({"clash": BackgroundClash})
    runner = CliRunner()
    try:
        compute = runner.invoke(cli, ["compute", "--help"]).stdout
        assert "--kw-force / --no-kw-force" in compute
        assert "--workers INTEGER" in compute  # compute has no --workers
        batch = runner.invoke(cli, ["batch", "--help"]).stdout
        assert "--kw-force / --no-kw-force" in batch
        assert "--kw-workers INTEGER" in batch
        listing = runner.invoke(cli, ["methods"]).stdout
        assert "force (bool, default off)  --kw-force/--no-kw-force" in listing
        assert "workers (int, default 1)  --workers" in listing
    finally:
        # the subclass registered itself: gone again for the other tests
        del BackgroundClash, cli
        gc.collect()


def test_messages_name_only_the_parameters_they_carry():
    flags = {"kernel_size": "--kernel-size", "split_time": "--split-time"}
    error = ParameterError(
        "kernel_size", "kernel_size=20 in 'kernel_size.rtdc' (split_time 1)"
    )
    # the parameter it carries, not inside quotes (a file name), no other
    assert with_flags(error, flags) == (
        "--kernel-size=20 in 'kernel_size.rtdc' (split_time 1)"
    )
    # a plain ValueError carries no parameter: its text stays as it is
    assert with_flags(ValueError("kernel_size=20\n  too large"), flags) == (
        "kernel_size=20 too large"
    )
    warning = ParameterWarning("split_time=2 and kernel_size=3", ("split_time",))
    assert with_flags(warning, flags) == "--split-time=2 and kernel_size=3"
    assert with_flags("split_time=2", flags, ["split_time"]) == "--split-time=2"


def test_warning_about_a_parameter_names_the_option(capsys):
    from dcbg.cli.runtime import command_guard

    with command_guard(False, "Interrupted", flags={"num_cpus": "--num-cpus"}):
        warning = ParameterWarning("num_cpus=99 is too many", ("num_cpus",))
        warnings.warn(warning, stacklevel=1)
    assert capsys.readouterr().err == "Warning: --num-cpus=99 is too many\n"
