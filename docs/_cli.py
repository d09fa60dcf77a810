"""The ``dcbg`` command group as an object, for sphinx-click"""

from dcbg.cli import make_cli

#: the command group that the ``dcbg`` console script runs
cli = make_cli()
