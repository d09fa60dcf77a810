"""Sphinx configuration of the dcbg documentation

Build (warnings are errors, as in ``.ci/run``)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import pathlib
import sys

# docs/_cli.py holds the click command group for sphinx-click
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from dcbg._version import __version__  # noqa: E402 (after the path set-up)

project = "dcbg"
author = "dcbg developers"
copyright = "dcbg developers (MIT license)"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_click",
]

# The docstrings are numpydoc style (as dcnum's); napoleon renders them,
# including dcnum's "name: type" parameter lines.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# dcnum's classes document their parameters in __init__
autoclass_content = "both"

exclude_patterns = ["_build"]
html_theme = "sphinx_rtd_theme"
html_static_path = []


def literal_help_blocks(app, ctx, lines):
    """Show the ``\\b`` blocks of click help texts (examples) as code

    click keeps the line breaks of a paragraph that follows ``\\b``;
    sphinx-click turns it into a reST line block (lines starting with
    "| "), where shell globs such as ``*.rtdc`` would start emphasis. A
    literal block shows the examples as typed.
    """
    result = []
    block = []
    for line in [*lines, ""]:
        if line.startswith("| "):
            block.append(line[2:])
            continue
        if block:
            result.extend(["::", "", *("    " + text for text in block), ""])
            block = []
        result.append(line)
    lines[:] = result[:-1]


def inherited_signature(app, what, name, obj, options, signature, return_annotation):
    """Show a base class's signature for a class that only passes it on

    A method class whose ``__init__(self, *args, **kwargs)`` hands every
    argument to its base (e.g. ``BackgroundCopy``) would be documented as
    ``(*args, **kwargs)``; the nearest base that names them is shown.
    """
    if what != "class" or signature != "(*args, **kwargs)":
        return None
    import inspect

    for base in obj.__mro__[1:]:
        init = base.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        kinds = {p.kind for p in params}
        if kinds <= {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
            continue
        # without annotations: autodoc_typehints puts them in the description
        params = [p.replace(annotation=inspect.Parameter.empty) for p in params]
        return str(inspect.Signature(params)), return_annotation
    return None


def resolve_by_suffix(app, env, node, contnode):
    """Resolve a Python reference that names a documented object by its tail

    Docstrings name objects as their module sees them (``:func:`name```,
    ``:mod:`dcbg.io.input.policy```); the documentation may show them under
    another path (``dcbg.BackgroundSparseMed`` for a class of
    ``dcbg.feat.feat_background.bg_sparse_median``). A reference that
    Sphinx cannot resolve is resolved to the one documented object whose
    full name ends with it; none or several: left unresolved.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    domain = env.get_domain("py")
    matches = [
        (name, obj)
        for name, obj in domain.objects.items()
        if name == target or name.endswith("." + target)
    ]
    if len(matches) != 1:
        return None
    name, obj = matches[0]
    from sphinx.util.nodes import make_refnode

    return make_refnode(
        app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, name
    )


def setup(app):
    app.connect("sphinx-click-process-description", literal_help_blocks)
    app.connect("autodoc-process-signature", inherited_signature)
    app.connect("missing-reference", resolve_by_suffix)
