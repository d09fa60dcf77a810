"""The layout that shows the architecture, checked

- no module of dcbg imports (anywhere in it) a module that imports it back
- the background methods reach files only through ``dcbg.io``: no method
  module imports h5py, dclab or hdf5plugin
- the cluster and plot layers hold no .rtdc format knowledge: they use
  ``dcbg.io`` for names, attributes and basin definitions
- start-up: importing dcbg or building the command loads none of the heavy
  dependencies (dclab, scipy, matplotlib, Dask, hdf5plugin); listing the
  commands (``dcbg --help``) builds none of them: no numpy, no h5py
"""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dcbg"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path) -> set[str]:
    """dcbg modules `path` imports, at import time or inside functions"""
    tree = ast.parse(path.read_text())
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # "from . import ppid" imports the module dcbg.ppid
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return {mod for mod in found if mod.startswith("dcbg")}


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {mod for mod in imported_modules(path) if mod in modules}
        for name, path in modules.items()
    }


def test_no_import_circles():
    graph = import_graph()

    def reaches(start, goal, seen):
        for nxt in graph[start]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    circles = [
        (name, dep)
        for name in graph
        for dep in graph[name]
        # a package importing its own submodules is not a circle
        if not dep.startswith(name + ".")
        and reaches(dep, name, set())
        and not name.startswith(dep + ".")
    ]
    assert circles == []


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "feat" / "feat_background").glob("bg_*.py")),
    ids=lambda p: p.name,
)
def test_methods_reach_files_only_through_io(path):
    text = path.read_text()
    for module in ("h5py", "dclab", "hdf5plugin"):
        assert f"import {module}" not in text
        assert f"from {module}" not in text
    assert ".h5in" not in text and ".h5out" not in text


def code_strings_and_imports(path: pathlib.Path) -> tuple[list[str], set[str]]:
    """String literals of the code (docstrings left out) and imported modules"""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(
            node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)
        ):
            body = node.body
            if body and isinstance(body[0], ast.Expr):
                docstrings.add(id(body[0].value))
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]
    imports = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imports.add(node.module.split(".")[0])
    return strings, imports


@pytest.mark.parametrize("name", ["cluster.py", "plot.py"])
def test_layers_hold_no_format_knowledge(name):
    strings, imports = code_strings_and_imports(PACKAGE / name)
    assert not imports & {"h5py", "json", "hdf5plugin"}
    for knowledge in (
        "dcnum ppid",
        "dcbg-background",
        "basin_events",
        "_bg.rtdc",
        "dcbg-partial",
        "dcbg-lock",
        "pipeline:",
        "basinmap",
    ):
        assert not [text for text in strings if knowledge in text], knowledge


HEAVY = ("dclab", "scipy", "matplotlib", "distributed", "dask", "hdf5plugin")


@pytest.mark.parametrize(
    "code",
    ["import dcbg", "from dcbg.cli import make_cli; make_cli()"],
)
def test_start_up_imports_nothing_heavy(code):
    check = (
        f"{code}; import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


#: what ``dcbg --help`` must not import: the commands' own modules (built
#: when a command runs or shows its help) and what they bring
NOT_FOR_THE_COMMAND_LIST = (
    "numpy",
    "h5py",
    "dcbg.ppid",
    "dcbg.feat",
    "dcbg.run_options",
    "dcbg.cli.options",
    "dcbg.cli.compute",
    "dcbg.cli.batch",
    "dcbg.cli.methods",
    "dcbg.cli.plot",
    "dcbg.cli.check",
)

SHOW_HELP = """
import contextlib, io, sys
from dcbg.cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
    main({args!r})
assert {expected!r} in out.getvalue()
print(sorted(m for m in {names!r} if m in sys.modules))
"""

#: the help of a command that takes no method options needs no method
NO_METHODS = ("numpy", "h5py", "dcbg.feat", "dcbg.cli.options")


@pytest.mark.parametrize(
    ("args", "expected", "names"),
    [
        (
            ["--help"],
            "compute  Compute the background of the RT-DC measurement",
            NOT_FOR_THE_COMMAND_LIST,
        ),
        (["plot", "--help"], "--basin-root DIR", NO_METHODS),
        (["check", "--help"], "--max-events INTEGER", NO_METHODS),
    ],
    ids=["dcbg", "plot", "check"],
)
def test_help_imports_only_what_it_shows(args, expected, names):
    code = SHOW_HELP.format(args=args, expected=expected, names=names)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
