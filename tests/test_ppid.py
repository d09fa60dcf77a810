"""Pipeline identifiers: identical strings to dcnum 0.31.0, round trips"""

import inspect

import h5py
import numpy as np
import pytest
from dcnum.feat import feat_background as dcnum_bg
from dcnum.meta import ppid as dcnum_ppid
from dcnum.meta.ppid import convert_to_dtype, get_unique_prefix
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dcbg import ppid
from dcbg.feat.feat_background import (
    Background,
    BackgroundCopy,
    BackgroundRollMed,
    BackgroundSparseMed,
    BackgroundSparseMode,
    get_available_background_methods,
)


def test_registry_is_whole():
    methods = get_available_background_methods()
    assert methods == {
        "copy": BackgroundCopy,
        "rollmed": BackgroundRollMed,
        "sparsemed": BackgroundSparseMed,
        "sparsemode": BackgroundSparseMode,
    }


def test_new_method_registers_itself():
    class BackgroundMyTest(Background):
        @staticmethod
        def check_user_kwargs(*, size: int = 3):
            pass

        def process_approach(self):
            pass

    try:
        assert get_available_background_methods()["mytest"] is BackgroundMyTest
    finally:
        del BackgroundMyTest
        import gc

        gc.collect()


@pytest.mark.parametrize(
    ("cls", "kwargs", "expected"),
    [
        (BackgroundRollMed, {}, "rollmed:k=100^b=10000"),
        (BackgroundSparseMed, {}, "sparsemed:k=200^s=1^t=0^f=0.8^o=1"),
        (BackgroundCopy, {}, "copy:"),
        (BackgroundRollMed, {"kernel_size": 50}, "rollmed:k=50^b=10000"),
        (
            BackgroundSparseMed,
            {"split_time": 2.5, "offset_correction": False, "thresh_cleansing": 3.0},
            "sparsemed:k=200^s=2.5^t=3^f=0.8^o=0",
        ),
    ],
)
def test_ppid_strings_match_dcnum(cls, kwargs, expected):
    assert cls.get_ppid_from_ppkw(kwargs) == expected
    dcnum_cls = getattr(dcnum_bg, cls.__name__)
    assert dcnum_cls.get_ppid_from_ppkw(kwargs) == expected


@settings(max_examples=60, deadline=None)
@given(
    kernel_size=st.integers(1, 10_000),
    split_time=st.one_of(st.integers(1, 100), st.floats(0.001, 100)),
    thresh=st.one_of(st.just(0), st.floats(0, 10)),
    frac=st.floats(0.01, 1),
    offset=st.booleans(),
)
def test_sparsemed_ppid_equals_dcnum_and_round_trips(
    kernel_size, split_time, thresh, frac, offset
):
    kwargs = {
        "kernel_size": kernel_size,
        "split_time": split_time,
        "thresh_cleansing": thresh,
        "frac_cleansing": frac,
        "offset_correction": offset,
    }
    ours = BackgroundSparseMed.get_ppid_from_ppkw(kwargs)
    assert ours == dcnum_bg.BackgroundSparseMed.get_ppid_from_ppkw(kwargs)
    back = Background.get_ppkw_from_ppid(ours)
    assert back == dcnum_bg.Background.get_ppkw_from_ppid(ours)
    assert BackgroundSparseMed.get_ppid_from_ppkw(back) == ours


@settings(max_examples=40, deadline=None)
@given(
    kernel_size=st.integers(1, 5000).map(lambda k: 2 * k), extra=st.integers(1, 10**6)
)
def test_rollmed_ppid_round_trip(kernel_size, extra):
    kwargs = {"kernel_size": kernel_size, "batch_size": kernel_size + extra}
    ours = BackgroundRollMed.get_ppid_from_ppkw(kwargs)
    assert ours == dcnum_bg.BackgroundRollMed.get_ppid_from_ppkw(kwargs)
    assert Background.get_ppkw_from_ppid(ours) == kwargs


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet="abc_", min_size=1, max_size=6),
        min_size=1,
        max_size=6,
        unique=True,
    )
)
def test_unique_prefixes_equal_dcnum(names):
    assert ppid.get_unique_prefixes(names) == get_unique_prefix(names)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rollmed:k=100^b=10000", {"kernel_size": 100, "batch_size": 10000}),
        ("rollmed:kernel_size=50", {"kernel_size": 50, "batch_size": 10000}),
        ("rollmed:", {"kernel_size": 100, "batch_size": 10000}),
        ("rollmed:b=300^k=4", {"kernel_size": 4, "batch_size": 300}),
        (
            "sparsemed:k=200^s=1^t=0^f=0.8^o=1",
            {
                "kernel_size": 200,
                "split_time": 1.0,
                "thresh_cleansing": 0.0,
                "frac_cleansing": 0.8,
                "offset_correction": True,
            },
        ),
        (
            "sparsemed:o=false^split=2",
            {
                "kernel_size": 200,
                "split_time": 2.0,
                "thresh_cleansing": 0,
                "frac_cleansing": 0.8,
                "offset_correction": False,
            },
        ),
        ("copy:", {}),
    ],
)
def test_parse_abbreviated_and_partial(text, expected):
    assert Background.get_ppkw_from_ppid(text) == expected


def test_parsed_types():
    kw = Background.get_ppkw_from_ppid("sparsemed:k=10^s=2^o=0")
    assert type(kw["kernel_size"]) is int
    assert type(kw["split_time"]) is float
    assert kw["offset_correction"] is False


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("median:k=3", "Unknown background method 'median'"),
        ("rollmed:x=3", "Unknown key 'x'"),
        ("rollmed:k", "expected 'key=value'"),
        ("rollmed:k=abc", "Cannot convert value 'abc' of PPID key 'kernel_size'"),
        ("rollmed", "expected 'METHOD:KWARGS'"),
        ("rollmed:k=2:b=3", "expected 'METHOD:KWARGS'"),
    ],
)
def test_bad_ppid(text, match):
    with pytest.raises(ValueError, match=match):
        Background.get_ppkw_from_ppid(text)


def test_unknown_kwarg_in_ppkw():
    with pytest.raises(ValueError, match="Unknown keyword argument"):
        BackgroundRollMed.get_ppid_from_ppkw({"kernel": 3})


def test_ppid_code_of_base_class():
    with pytest.raises(ValueError, match="no PPID code"):
        Background.get_ppid_code()


# --- numpy-typed keyword arguments (what dcnum's detect_flickering and
# ChipStream pass), real annotations, values out of their domain

#: integer types a caller may pass for an int keyword argument
INT_TYPES = (int, np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64)
#: float types a caller may pass for a float keyword argument
FLOAT_TYPES = (float, np.float16, np.float32, np.float64, int, np.int64)
#: values a caller may pass for a boolean keyword argument
BOOL_VALUES = (True, False, np.True_, np.False_, np.int64(1), np.uint8(0), 1, 0)


def numpy_typed(dtype):
    """Strategy: values of a keyword argument's type in numpy/Python types"""
    if dtype is bool:
        return st.sampled_from(BOOL_VALUES)
    if dtype is int:
        return st.tuples(st.integers(1, 5000), st.sampled_from(INT_TYPES)).map(
            lambda vt: vt[1](vt[0])
        )
    if dtype is float:
        values = st.one_of(
            st.floats(0.001, 1.0), st.sampled_from([1, 0.5, 0.25, 0.125])
        )
        return st.tuples(values, st.sampled_from(FLOAT_TYPES)).map(
            lambda vt: vt[1](vt[0]) if vt[1] not in (int, np.int64) else vt[1](1)
        )
    raise AssertionError(f"no strategy for keyword arguments of type {dtype}")


@pytest.mark.parametrize("code", sorted(get_available_background_methods()))
def test_check_user_kwargs_annotations_are_types(code):
    cls = get_available_background_methods()[code]
    spec = inspect.getfullargspec(cls.check_user_kwargs)
    for name in spec.kwonlyargs:
        annotation = spec.annotations[name]
        assert isinstance(annotation, type), (code, name, annotation)
        # what dcnum does with a PPID value (and ChipStream with CLI input)
        value = convert_to_dtype(str(spec.kwonlydefaults[name]), annotation)
        assert value == spec.kwonlydefaults[name]
        assert type(value) is annotation


def test_subclass_with_postponed_annotations_gets_types():
    namespace = {"Background": Background}
    source = (
        "from __future__ import annotations\n"
        "class BackgroundAnnot(Background):\n"
        "    @staticmethod\n"
        "    def check_user_kwargs(*, size: int = 3, rate: float = 1.5):\n"
        "        pass\n"
        "    def process_approach(self):\n"
        "        pass\n"
    )
    exec(compile(source, "<annotations>", "exec"), namespace)
    cls = namespace.pop("BackgroundAnnot")
    try:
        annotations = inspect.getfullargspec(cls.check_user_kwargs).annotations
        assert annotations == {"size": int, "rate": float}
        assert cls.get_ppid_from_ppkw({"size": np.int32(4)}) == "annot:s=4^r=1.5"
    finally:
        del cls
        import gc

        gc.collect()


@pytest.mark.parametrize("code", sorted(get_available_background_methods()))
# rollmed rejects most random kernel/batch sizes (odd, or batch <= kernel);
# the accepted ones are what is tested, however many are filtered out
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_numpy_typed_kwargs_give_dcnums_ppid(code, data):
    cls = get_available_background_methods()[code]
    spec = ppid.get_kwarg_spec(cls)
    kwargs = {
        name: data.draw(numpy_typed(dtype), label=name)
        for name, (dtype, _) in spec.items()
    }
    plain = {
        name: value.item() if hasattr(value, "item") else value
        for name, value in kwargs.items()
    }
    try:
        cls.check_user_kwargs(**plain)
    except ValueError:
        assume(False)  # e.g. an odd rolling-median kernel size
    # the method's check accepts numpy scalars as it accepts Python ones
    cls.check_user_kwargs(**kwargs)
    ours = cls.get_ppid_from_ppkw(kwargs)
    # dcnum's own class (dcbg's own methods have none) and dcnum's PPID
    # function applied to dcbg's class
    dcnum_cls = dcnum_bg.get_available_background_methods().get(code)
    if dcnum_cls is not None:
        assert ours == dcnum_cls.get_ppid_from_ppkw(kwargs)
    kwargs_part = ours.split(":", 1)[1]
    assert kwargs_part == dcnum_ppid.kwargs_to_ppid(cls, "check_user_kwargs", kwargs)
    # parsing: dcbg's parser, dcnum's parser on dcbg's class and on dcnum's
    parsed = Background.get_ppkw_from_ppid(ours)
    if spec:
        assert parsed == dcnum_ppid.ppid_to_kwargs(
            cls, "check_user_kwargs", kwargs_part
        )
    if dcnum_cls is not None:
        assert parsed == dcnum_bg.Background.get_ppkw_from_ppid(ours)
    assert cls.get_ppid_from_ppkw(parsed) == ours


@pytest.mark.parametrize(
    ("kwargs", "part"),
    [
        ({"offset_correction": np.True_}, "^o=1"),
        ({"offset_correction": np.False_}, "^o=0"),
        ({"kernel_size": np.int64(20), "split_time": np.float32(2.0)}, "k=20^s=2^"),
        # as dcnum formats it: f"{np.float32(0.8)}" is "0.800000011920929"
        ({"frac_cleansing": np.float32(0.8)}, "^f=0.800000011920929^"),
        ({"thresh_cleansing": np.float64(1.5)}, "^t=1.5^"),
    ],
)
def test_numpy_scalars_in_a_computation(tmp_path, kwargs, part):
    """An object made with numpy scalars stores dcnum's PPID string"""
    frames = np.tile(np.arange(35, dtype=np.uint8).reshape(1, 5, 7), (30, 1, 1))
    kwargs = {"kernel_size": 10, **kwargs}
    expected = dcnum_bg.BackgroundSparseMed.get_ppid_from_ppkw(kwargs)
    assert part in expected
    out = tmp_path / "out.rtdc"
    with BackgroundSparseMed(frames, out, **kwargs) as bg:
        assert bg.get_ppid() == expected
        bg.process()
    with h5py.File(out) as h5:
        assert h5["basin_events/image_bg"].attrs["dcnum ppid background"] == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sparsemed:o=2", r"'2' of PPID key 'offset_correction' is out of its domain"),
        ("sparsemed:o=-1", "out of its domain"),
        ("sparsemed:o=maybe", "out of its domain"),
        ("rollmed:k=10^k=20", r"Duplicate key\(s\) \['k'\]"),
        ("rollmed:k=10^kernel_size=20", "Duplicate key 'k'.*'kernel_size' is already"),
        ("rollmed:k=3", "out of its domain.*kernel_size must be an even number"),
        ("rollmed:k=100^b=50", "out of its domain.*batch_size must be larger"),
        ("sparsemed:f=1.5", "out of its domain.*frac_cleansing must be <= 1"),
        ("sparsemed:s=0", "out of its domain.*split_time must be > 0"),
    ],
)
def test_ppid_values_out_of_domain(text, match):
    with pytest.raises(ValueError, match=match):
        Background.get_ppkw_from_ppid(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", True), ("0", False), ("1.0", True), ("True", True), ("no", False)],
)
def test_ppid_boolean_spellings(text, value):
    kwargs = Background.get_ppkw_from_ppid(f"sparsemed:o={text}")
    assert kwargs["offset_correction"] is value
