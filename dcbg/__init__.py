"""dcbg: fast, reproducible background images for RT-DC measurements

The background classes are imported on first use (PEP 562), so that the
``dcbg`` command starts at once and can take over Ctrl-C before the
heavy dependencies (dclab, scipy) are loaded.
"""

from ._version import __version__

#: public names and the module that defines them
_LAZY = {
    "Background": "dcbg.feat.feat_background",
    "BackgroundCopy": "dcbg.feat.feat_background",
    "BackgroundRollMed": "dcbg.feat.feat_background",
    "BackgroundSparseMed": "dcbg.feat.feat_background",
    "BackgroundSparseMode": "dcbg.feat.feat_background",
    "get_available_background_methods": "dcbg.feat.feat_background",
}

__all__ = [*sorted(_LAZY), "__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dcbg' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
