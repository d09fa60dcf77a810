"""The method options of ``dcbg compute`` and ``dcbg batch``, and the method

Click options generated from the background methods' keyword arguments,
and :func:`resolve_method`, which turns ``--ppid`` or ``--method`` with
those options into the method class and its checked keyword arguments.

Every keyword argument of every registered method's ``check_user_kwargs``
becomes one option of ``dcbg compute`` (``kernel_size`` ->
``--kernel-size``, a bool ``offset_correction`` ->
``--offset-correction/--no-offset-correction``). The option's click type
comes from the annotation, its help text from the numpydoc "Parameters"
section of the docstring. Options have no default of their own: a value
the user does not give is left to the method's default, which may differ
between methods (``kernel_size`` is 100 for rollmed, 200 for sparsemed).
Range checks are left to ``check_user_kwargs``, so that the command line
and the Python API accept exactly the same values.

A keyword argument whose flag another option of the command takes (or a
framework keyword, :data:`dcbg.run_options.FRAMEWORK_KEYWORDS`) gets the
flag ``--kw-NAME``: the taken flags are read from the command's own
parameters (:func:`add_method_options`), not kept in a list.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing

import click

from .. import ppid
from ..errors import ParameterError
from ..feat.feat_background import get_available_background_methods
from ..feat.feat_background.base import resolve_method as resolve_ppid_or_method
from ..run_options import FRAMEWORK_KEYWORDS
from .shared_options import stacked

#: click types for the annotation types of keyword arguments
CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


@dataclasses.dataclass
class MethodKwarg:
    """One keyword argument as accepted by one or more methods

    Attributes
    ----------
    name: str
        Keyword argument name, e.g. "kernel_size"
    flag: str
        Command-line flag without dashes, e.g. "kernel-size"
    dtype_by_method: dict
        Method code -> annotated type
    default_by_method: dict
        Method code -> default value
    help_by_method: dict
        Method code -> description from the docstring
    """

    name: str
    flag: str
    dtype_by_method: dict = dataclasses.field(default_factory=dict)
    default_by_method: dict = dataclasses.field(default_factory=dict)
    help_by_method: dict = dataclasses.field(default_factory=dict)

    #: prefix of the click parameter's name (see :attr:`param_name`)
    PARAM_PREFIX = "kwarg_"

    @property
    def param_name(self) -> str:
        """Name of the click parameter (prefixed: never clashes with others)"""
        return f"{self.PARAM_PREFIX}{self.name}"

    @property
    def methods(self) -> list[str]:
        return list(self.dtype_by_method)

    @property
    def is_flag(self) -> bool:
        return all(dtype is bool for dtype in self.dtype_by_method.values())

    @property
    def option_label(self) -> str:
        """How the option is written on the command line"""
        if self.is_flag:
            return f"--{self.flag}/--no-{self.flag}"
        return f"--{self.flag}"

    def click_type(self) -> click.ParamType:
        """The click type; text if the methods disagree on the type"""
        dtypes = set(self.dtype_by_method.values())
        if len(dtypes) == 1:
            return CLICK_TYPES.get(dtypes.pop(), click.STRING)
        return click.STRING

    def help_text(self) -> str:
        """Help: description(s), accepting methods and their defaults

        Methods that describe the argument alike share one description;
        otherwise each method's is given (e.g. rollmed's kernel size must
        be even, sparsemed's need not).
        """
        texts = {
            code: plain_text(text).rstrip(".")
            for code, text in self.help_by_method.items()
            if text
        }
        defaults = ", ".join(
            f"{format_default(default)} ({code})"
            for code, default in self.default_by_method.items()
        )
        if len(set(texts.values())) > 1:
            described = " ".join(f"[{code}] {text}." for code, text in texts.items())
            return f"{described} Default: {defaults}."
        description = next(iter(texts.values()), "")
        methods = ", ".join(self.methods)
        return f"[{methods}] {description}. Default: {defaults}."

    def convert(self, value, method: str):
        """Convert a parsed option value to the type `method` expects"""
        dtype = self.dtype_by_method[method]
        if isinstance(value, str) and dtype is not str:
            # only when the methods disagree on the type (click.STRING)
            return ppid.convert_value(value, dtype, self.name)
        return value


def format_default(value) -> str:
    """A default value as a user types it"""
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value}"


def get_method_description(cls) -> str:
    """One-line description of a background method

    The first line of the docstring of the class's own ``__init__``, else
    of the class docstring.
    """
    for doc in (cls.__dict__.get("__init__", None), cls):
        text = getattr(doc, "__doc__", None)
        if text and text.strip():
            return text.strip().splitlines()[0].strip().rstrip(".")
    return "(no description)"


def plain_text(text: str) -> str:
    """Docstring text without reStructuredText markup, for a terminal

    ``literal``, `name` and :role:`target` become literal, name, target.
    """
    text = re.sub(r":[a-z:]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"`([^`]+)`", r"\1", text)


def parse_parameter_docs(docstring: str | None) -> dict[str, str]:
    """Descriptions of the "Parameters" section of a numpydoc docstring

    Parameters
    ----------
    docstring: str or None
        The docstring (e.g. of ``check_user_kwargs``)

    Returns
    -------
    descriptions: dict
        Parameter name -> description joined into one line
    """
    if not docstring:
        return {}
    lines = inspect.cleandoc(docstring).splitlines()
    descriptions = {}
    current = None
    in_section = False
    for index, line in enumerate(lines):
        underline = lines[index + 1] if index + 1 < len(lines) else ""
        if re.fullmatch(r"-{3,}", underline.strip()) and line.strip():
            # a section header: only "Parameters" is of interest
            in_section = line.strip() == "Parameters"
            current = None
            continue
        if not in_section or re.fullmatch(r"-{3,}", line.strip()):
            continue
        if line and not line[0].isspace():
            # "name: type" or "name : type"
            current = line.split(":")[0].strip()
            descriptions[current] = []
        elif current is not None and line.strip():
            descriptions[current].append(line.strip())
    return {name: plain_text(" ".join(words)) for name, words in descriptions.items()}


def _plain_type(annotation):
    """`int` for ``int | None`` and ``Optional[int]``, else the annotation"""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def collect_method_kwargs(
    methods: dict | None = None, reserved_flags: typing.Iterable[str] = ()
) -> dict[str, MethodKwarg]:
    """The union of all methods' keyword arguments

    Parameters
    ----------
    methods: dict or None
        Method code -> class; defaults to all registered methods
    reserved_flags: iterable of str
        Flags (without dashes) taken by other options of the command; a
        keyword argument that would clash gets the flag ``kw-NAME``.

    Returns
    -------
    method_kwargs: dict
        Keyword argument name -> :class:`MethodKwarg`, in order of first
        appearance (methods sorted by code)
    """
    if methods is None:
        methods = get_available_background_methods()
    reserved = set(reserved_flags)
    collected: dict[str, MethodKwarg] = {}
    for code in sorted(methods):
        cls = methods[code]
        docs = parse_parameter_docs(cls.check_user_kwargs.__doc__)
        for name, (dtype, default) in ppid.get_kwarg_spec(cls).items():
            if name not in collected:
                flag = name.replace("_", "-")
                if flag in reserved or f"no-{flag}" in reserved:
                    flag = f"kw-{flag}"
                collected[name] = MethodKwarg(name=name, flag=flag)
            entry = collected[name]
            entry.dtype_by_method[code] = _plain_type(dtype)
            entry.default_by_method[code] = default
            entry.help_by_method[code] = docs.get(name, "")
    return collected


def method_options(methods: dict):
    """Decorator: the ``--ppid``, ``--method`` and ``--compress`` options

    Shared by ``dcbg compute`` and ``dcbg batch``; their values arrive as
    ``ppid_text``, ``method`` and ``compress``.
    """
    options = [
        click.option(
            "--ppid",
            "ppid_text",
            metavar="PPID",
            help="Method and keyword arguments as a (possibly abbreviated) "
            "pipeline identifier, e.g. 'rollmed:k=50' or "
            "'sparsemed:k=200^s=1^t=0^f=0.8^o=1'.",
        ),
        click.option(
            "--method",
            type=click.Choice(sorted(methods)),
            help="Background method; its keyword arguments are the options "
            "below (see 'dcbg methods').",
        ),
        click.option(
            "--compress/--no-compress",
            default=True,
            show_default=True,
            help="Compress the background data (Zstandard); off is faster.",
        ),
    ]

    return stacked(options)


def make_click_option(kwarg: MethodKwarg) -> click.Option:
    """The click option for one keyword argument (default: not given)"""
    if kwarg.is_flag:
        return click.Option(
            [f"--{kwarg.flag}/--no-{kwarg.flag}", kwarg.param_name],
            default=None,
            help=kwarg.help_text(),
        )
    return click.Option(
        [f"--{kwarg.flag}", kwarg.param_name],
        type=kwarg.click_type(),
        default=None,
        help=kwarg.help_text(),
    )


def taken_flags(command: click.Command) -> set[str]:
    """Flags (without dashes) that `command`'s own parameters take

    With its help option and the flags of the framework keywords
    (:data:`dcbg.run_options.FRAMEWORK_KEYWORDS`), which every command
    keeps for itself whether it offers them or not.
    """
    taken = {name.replace("_", "-") for name in FRAMEWORK_KEYWORDS}
    for param in command.params:
        if isinstance(param, click.Option):
            taken.update(
                opt.lstrip("-") for opt in (*param.opts, *param.secondary_opts)
            )
    help_names = (command.context_settings or {}).get("help_option_names", ["--help"])
    taken.update(name.lstrip("-") for name in help_names)
    return taken


def add_method_options(command: click.Command, methods: dict) -> dict[str, MethodKwarg]:
    """Give `command` one option per keyword argument of `methods`

    Call it after the command's own options are declared: their flags are
    not given to keyword arguments (see :func:`taken_flags`).

    Returns
    -------
    method_kwargs: dict
        Keyword argument name -> :class:`MethodKwarg`
    """
    method_kwargs = collect_method_kwargs(methods, taken_flags(command))
    command.params.extend(make_click_option(kwarg) for kwarg in method_kwargs.values())
    return method_kwargs


def _options_by_name(command: click.Command):
    """(keyword argument name, click option) of `command`'s options"""
    for param in command.params:
        if isinstance(param, click.Option) and param.opts:
            yield param.name.removeprefix(MethodKwarg.PARAM_PREFIX), param


def option_labels(command: click.Command) -> dict[str, str]:
    """Keyword argument name -> how `command` writes its option

    ``{"kernel_size": "--kernel-size", "offset_correction":
    "--offset-correction/--no-offset-correction", ...}``
    """
    return {
        name: "/".join([*param.opts, *param.secondary_opts])
        for name, param in _options_by_name(command)
    }


def option_flags(command: click.Command) -> dict[str, str]:
    """Keyword argument name -> the option of `command` that sets it

    ``{"kernel_size": "--kernel-size", "num_cpus": "--num-cpus", ...}``:
    how error messages and warnings about a parameter name it on the
    command line (:func:`dcbg.cli.runtime.with_flags`).
    """
    # the long flag: "--output", not "-o"
    return {name: max(param.opts, key=len) for name, param in _options_by_name(command)}


def create_run_options(ctx: click.Context):
    """The :class:`~dcbg.run_options.RunOptions` of a command, built once

    From the command's parameters named as framework keywords
    (:data:`dcbg.run_options.FRAMEWORK_KEYWORDS`: ``--compress``,
    ``--num-cpus``, ``--basin-root``, ``--allow-remote-basins``); a
    keyword the command does not offer keeps its default.

    Raises
    ------
    dcbg.errors.ParameterError
        For a value :meth:`RunOptions.create
        <dcbg.run_options.RunOptions.create>` rejects
    """
    from ..run_options import RunOptions

    given = {
        name: ctx.params[name] for name in FRAMEWORK_KEYWORDS if name in ctx.params
    }
    return RunOptions.create(**given)


def resolve_method(
    ctx: click.Context,
    methods: dict,
    method_kwargs: dict[str, MethodKwarg],
    ppid_text: str | None,
    method: str | None,
    option_values: dict,
) -> tuple[type, dict]:
    """The method class and its keyword arguments from the command line

    Raises
    ------
    click.UsageError
        For a wrong combination of options or a value the method rejects
    """
    given = {
        kwarg.name: option_values[kwarg.param_name]
        for kwarg in method_kwargs.values()
        if option_values.get(kwarg.param_name) is not None
    }
    if ppid_text is not None and method is not None:
        raise click.UsageError(
            "Options --ppid and --method are mutually exclusive; give one of them",
            ctx,
        )
    if ppid_text is None and method is None:
        raise click.UsageError(
            "Give either --method NAME or --ppid PPID (see 'dcbg methods')", ctx
        )

    if ppid_text is not None:
        if given:
            labels = ", ".join(method_kwargs[name].option_label for name in given)
            raise click.UsageError(
                f"Option(s) {labels} cannot be combined with --ppid; put the "
                f"value(s) into the PPID instead",
                ctx,
            )
        try:
            return resolve_ppid_or_method(ppid_text.strip(), methods=methods)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param_hint="'--ppid'") from exc

    kwargs = {}
    for name, value in given.items():
        kwarg = method_kwargs[name]
        if method not in kwarg.methods:
            accepted = [
                kw.option_label for kw in method_kwargs.values() if method in kw.methods
            ]
            accepts = ", ".join(accepted) if accepted else "no options"
            raise click.UsageError(
                f"Option {kwarg.option_label} is not accepted by method "
                f"'{method}' (it accepts {accepts})",
                ctx,
            )
        try:
            kwargs[name] = kwarg.convert(value, method)
        except ValueError as exc:
            raise click.BadParameter(
                str(exc), ctx, param_hint=f"'--{kwarg.flag}'"
            ) from exc
    try:
        return resolve_ppid_or_method(method=method, kwargs=kwargs, methods=methods)
    except ValueError as exc:
        raise click.BadParameter(
            str(exc), ctx, param_hint=_rejected_option(exc, method_kwargs, given)
        ) from exc


def _rejected_option(
    exc: ValueError, method_kwargs: dict[str, MethodKwarg], given: dict
) -> str | None:
    """The option a method's check rejected, as click's hint (``'--flag'``)

    The parameter a :class:`~dcbg.errors.ParameterError` carries; for a
    plain ``ValueError`` (a method of another package), the option if the
    user gave only one; else None (the message alone).
    """
    if isinstance(exc, ParameterError):
        name = exc.parameter
    elif len(given) == 1:
        (name,) = given
    else:
        return None
    kwarg = method_kwargs.get(name)
    return f"'--{kwarg.flag}'" if kwarg is not None else None
