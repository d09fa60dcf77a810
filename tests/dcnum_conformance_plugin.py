"""pytest plugin that runs dcnum's background tests against dcbg

`test_dcnum_conformance.py` starts pytest on dcnum 0.31.0's own
``tests/test_feat_background_*.py`` (fetched at test time, never stored
in this repository) with ``-p dcnum_conformance_plugin``. The plugin

- points ``dcnum.feat.feat_background`` and its submodules ``base``,
  ``bg_copy``, ``bg_roll_median`` and ``bg_sparse_median`` at dcbg's
  modules before any test module imports them, so that
  ``from dcnum.feat.feat_background import bg_roll_median`` yields dcbg's
  module (the rest of dcnum, e.g. ``dcnum.read`` and ``dcnum.write`` that
  the tests use to make and check files, stays dcnum's own), and
- writes one JSON line per test phase (setup, call, teardown) with the
  outcome and the failure text to the file named by the environment
  variable ``DCBG_CONFORMANCE_REPORT``, which the calling test reads to
  report every dcnum test by its own id.
"""

import json
import os
import sys

#: environment variable naming the JSON-lines file for the outcomes
REPORT_ENV = "DCBG_CONFORMANCE_REPORT"

#: dcnum's submodules of ``dcnum.feat.feat_background`` that the tests import
SUBMODULES = ("base", "bg_copy", "bg_roll_median", "bg_sparse_median")


def point_dcnum_at_dcbg():
    """Make dcnum's background module names resolve to dcbg's modules"""
    import importlib

    import dcnum.feat

    import dcbg.feat.feat_background as ours

    sys.modules["dcnum.feat.feat_background"] = ours
    for name in SUBMODULES:
        module = importlib.import_module(f"dcbg.feat.feat_background.{name}")
        sys.modules[f"dcnum.feat.feat_background.{name}"] = module
    dcnum.feat.feat_background = ours


# before dcnum's conftest.py and test modules are imported
point_dcnum_at_dcbg()


def pytest_report_header(config):
    import dcbg

    return f"dcnum.feat.feat_background -> dcbg {dcbg.__version__} ({dcbg.__file__})"


def pytest_runtest_logreport(report):
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    record = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "longrepr": report.longreprtext if report.failed else "",
        "skip_reason": (
            str(report.longrepr[2])
            if report.skipped and isinstance(report.longrepr, tuple)
            else ""
        ),
    }
    with open(path, "a", encoding="utf-8") as fd:
        fd.write(json.dumps(record) + "\n")
