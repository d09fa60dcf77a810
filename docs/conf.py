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


def setup(app):
    app.connect("sphinx-click-process-description", literal_help_blocks)
