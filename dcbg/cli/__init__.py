"""The ``dcbg`` command: list methods, compute backgrounds, plot results"""

from .main import main, make_cli

__all__ = ["main", "make_cli"]
