"""Pipeline identifiers: identical strings to dcnum 0.31.0, round trips"""

import pytest
from dcnum.feat import feat_background as dcnum_bg
from dcnum.meta.ppid import get_unique_prefix
from hypothesis import given, settings
from hypothesis import strategies as st

from dcbg import ppid
from dcbg.feat.feat_background import (
    Background,
    BackgroundCopy,
    BackgroundRollMed,
    BackgroundSparseMed,
    get_available_background_methods,
)


def test_registry_is_whole():
    methods = get_available_background_methods()
    assert methods == {
        "copy": BackgroundCopy,
        "rollmed": BackgroundRollMed,
        "sparsemed": BackgroundSparseMed,
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
