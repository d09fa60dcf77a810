"""Check a background without ground truth: cell ghosts and flicker

``dcbg check PATH`` and :func:`check_background` judge any file with
``image`` and ``image_bg`` (made by dcbg, dcnum or Shape-In; ``bg_off``
optional):

- :mod:`dcbg.check.analysis`: :func:`check_background` and the
  :class:`CheckResult` (how ghosts and flicker are found); the file is
  opened as :func:`dcbg.workflow.open_measurement` opens inputs (basins
  under the user's policy), and
  :func:`~dcbg.check.analysis.check_measurement` checks one already open
  (``dcbg plot`` reads its figure and the check from one opening);
- :mod:`dcbg.check.report`: verdict, time ranges, advice and the JSON
  object of ``dcbg check --json`` (:func:`result_to_dict`);
- :mod:`dcbg.check.robust`: the robust estimators (per-pixel mode,
  interquartile mean, running median).
"""

from .analysis import CheckResult, EventDetails, check_background
from .report import format_report, result_to_dict, verdict_line

__all__ = [
    "CheckResult",
    "EventDetails",
    "check_background",
    "format_report",
    "result_to_dict",
    "verdict_line",
]
