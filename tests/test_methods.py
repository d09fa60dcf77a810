"""The contract every registered background method keeps

Each test runs for every method in ``get_available_background_methods()``:
a new method is tested here as soon as it subclasses ``Background``. The
contract: PPIDs round-trip, the defaults of ``check_user_kwargs`` are
those of the constructor (and of dcnum's method of the same code),
``process()`` works on the bundled example, on a measurement with the
default keyword arguments and on an array, the output reads in dclab
with one background image per event, progress runs from 0 to 1, and
unknown keyword arguments are refused before anything is written.
"""

import inspect
import json

import dclab
import numpy as np
import pytest
from dcnum.feat import feat_background as dcnum_bg

from dcbg import ppid
from dcbg.feat.feat_background import Background, get_available_background_methods
from dcbg.testing import make_synthetic_measurement, make_synthetic_stack

METHODS = sorted(get_available_background_methods())

#: keyword arguments for the 13-event bundled example, for methods whose
#: defaults need more events than that (rollmed: kernel_size=100)
EXAMPLE_KWARGS = {"rollmed": {"kernel_size": 4, "batch_size": 6}}

#: methods that read stored background data from an input file, so that
#: an array (frames only) is refused as input
NEEDS_INPUT_FILE = {"copy"}

#: events of the synthetic inputs: more than every default kernel size
#: (rollmed 100, sparsemed 200), so that the defaults run unchanged
DEFAULT_RUN_EVENTS = 240


def method(code):
    return get_available_background_methods()[code]


def kwarg_defaults(cls) -> dict:
    return {name: default for name, (_, default) in ppid.get_kwarg_spec(cls).items()}


def leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def run(cls, input_data, output, **kwargs):
    """Process with `cls`; check progress 0 -> 1; return the PPID"""
    with cls(input_data, output, **kwargs) as bg:
        assert bg.get_progress() == 0
        bg.process()
        assert bg.get_progress() == 1
        return bg.get_ppid()


def check_output(path, ppid_text, frames, input_file=True):
    """The output reads in dclab: one background per event (and the frames
    of an input file, through its basin)"""
    with dclab.new_dataset(path) as ds:
        assert len(ds) == len(frames)
        if input_file:
            assert np.array_equal(ds["image"][:], frames)
        image_bg = ds["image_bg"][:]
        assert image_bg.shape == frames.shape
        assert image_bg.dtype == np.uint8
        if "bg_off" in ds:
            assert ds["bg_off"].shape == (len(frames),)
            assert np.all(np.isfinite(ds["bg_off"][:]))
        log = json.loads("\n".join(ds.logs["dcbg-background"]))
    assert log["ppid"] == ppid_text
    assert log["frames"] == len(frames)


@pytest.fixture(scope="module")
def with_bg(tmp_path_factory):
    """Synthetic measurement with image_bg and bg_off (input for every method)"""
    path = tmp_path_factory.mktemp("methods") / "with_bg.rtdc"
    return make_synthetic_measurement(
        path, DEFAULT_RUN_EVENTS, shape=(24, 64), seed=21, with_image_bg=True
    )


def test_registry_is_not_empty():
    assert {"copy", "rollmed", "sparsemed"} <= set(METHODS)


@pytest.mark.parametrize("code", METHODS)
def test_ppid_round_trip(code):
    cls = method(code)
    assert cls.get_ppid_code() == code
    defaults = kwarg_defaults(cls)
    text = cls.get_ppid_from_ppkw({})
    assert text.startswith(f"{code}:")
    assert cls.get_ppid_from_ppkw(defaults) == text
    assert Background.get_ppkw_from_ppid(text) == defaults
    # the code alone stands for the defaults
    assert Background.get_ppkw_from_ppid(f"{code}:") == defaults
    # keys spelled out in full parse to the same keyword arguments
    full = "^".join(f"{name}={ppid.format_value(v)}" for name, v in defaults.items())
    assert Background.get_ppkw_from_ppid(f"{code}:{full}") == defaults


@pytest.mark.parametrize("code", METHODS)
def test_kwarg_defaults(code):
    cls = method(code)
    spec = inspect.getfullargspec(cls.check_user_kwargs)
    # keyword-only, each with a default, so that the PPID can name them all
    assert spec.args == [] and spec.varargs is None and spec.varkw is None
    assert set(spec.kwonlyargs) == set(spec.kwonlydefaults or {})
    defaults = kwarg_defaults(cls)
    assert list(defaults) == spec.kwonlyargs
    cls.check_user_kwargs(**defaults)
    # the constructor has the same defaults (or passes **kwargs on)
    init = inspect.signature(cls.__init__).parameters
    for name, default in defaults.items():
        if name in init:
            assert init[name].default == default, name
        else:
            assert any(p.kind is p.VAR_KEYWORD for p in init.values()), name
    dcnum_cls = dcnum_bg.get_available_background_methods().get(code)
    if dcnum_cls is not None:
        dcnum_spec = inspect.getfullargspec(dcnum_cls.check_user_kwargs)
        assert spec.kwonlydefaults == dcnum_spec.kwonlydefaults


@pytest.mark.parametrize("code", METHODS)
def test_process_bundled_example(code, cytoshot, tmp_path):
    out = tmp_path / "out.rtdc"
    kwargs = EXAMPLE_KWARGS.get(code, {})
    text = run(method(code), cytoshot, out, num_cpus=2, **kwargs)
    assert text == method(code).get_ppid_from_ppkw(kwargs)
    with dclab.new_dataset(cytoshot) as ds:
        frames = ds["image"][:]
    check_output(out, text, frames)


@pytest.mark.parametrize("code", METHODS)
def test_process_defaults(code, with_bg, tmp_path):
    out = tmp_path / "out.rtdc"
    text = run(method(code), with_bg, out)
    assert text == method(code).get_ppid_from_ppkw({})
    with dclab.new_dataset(with_bg) as ds:
        frames = ds["image"][:]
    check_output(out, text, frames)


@pytest.mark.parametrize("code", METHODS)
def test_process_array(code, tmp_path):
    frames = make_synthetic_stack(DEFAULT_RUN_EVENTS, shape=(12, 20), seed=22)
    out = tmp_path / "out.rtdc"
    if code in NEEDS_INPUT_FILE:
        with pytest.raises(ValueError, match="got an array"):
            method(code)(frames, out)
        assert leftovers(tmp_path, set()) == []
        return
    text = run(method(code), frames, out)
    check_output(out, text, frames, input_file=False)


@pytest.mark.parametrize("code", METHODS)
def test_unknown_kwarg(code, cytoshot, tmp_path):
    # a TypeError naming the argument, as Python's own for a misspelled
    # keyword argument, before any output is staged
    with pytest.raises(TypeError, match=r"(unknown|unexpected) keyword.*'kernel'"):
        method(code)(cytoshot, tmp_path / "out.rtdc", kernel=3)
    assert leftovers(tmp_path, {cytoshot.name}) == []


@pytest.mark.parametrize("code", METHODS)
def test_framework_keywords_pass_through_as_options(code, cytoshot, tmp_path):
    from dcbg.run_options import RunOptions

    cls = method(code)
    init = inspect.signature(cls.__init__).parameters
    # a method declares only its own parameters (and dcnum's positional ones)
    for name in ("basin_root", "allow_remote_basins", "options"):
        assert name not in init, name
    options = RunOptions.create(compress=False, num_cpus=1)
    kwargs = EXAMPLE_KWARGS.get(code, {})
    with cls(cytoshot, tmp_path / "out.rtdc", options=options, **kwargs) as bg:
        assert bg.options is options and bg.num_cpus == 1 and not bg.compress
    with pytest.raises(TypeError, match="num_cpus"):
        cls(cytoshot, tmp_path / "out.rtdc", num_cpus=1, options=options, **kwargs)
    assert leftovers(tmp_path, {cytoshot.name}) == []
