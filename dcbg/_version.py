"""The version of dcbg

This is the one place the version is set: ``pyproject.toml`` reads it
(``[tool.setuptools.dynamic]``, parsed without importing dcbg), ``dcbg
--version`` and ``dcbg.__version__`` show it. Keep it a plain string
literal so that setuptools can read it statically.
"""

__version__ = "0.1.0"
