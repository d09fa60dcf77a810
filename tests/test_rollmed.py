"""BackgroundRollMed: numpy reference, batching, tail, dcnum equality"""

import dclab
import h5py
import numpy as np
import pytest
from dcnum.feat.feat_background import BackgroundRollMed as DcnumRollMed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcbg import BackgroundRollMed
from dcbg.kernels import slow
from dcbg.testing import make_synthetic_measurement


def compute(stack, tmp_path, name="out.rtdc", **kwargs):
    out = tmp_path / name
    if out.exists():
        out.unlink()
    with BackgroundRollMed(stack, out, **kwargs) as bg:
        bg.process()
    with h5py.File(out) as h5:
        return h5["events/image_bg"][:]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.data(),
    half_k=st.integers(1, 30),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
)
def test_matches_reference_any_batch(tmp_path, data, half_k, shape):
    k = 2 * half_k
    n = data.draw(st.integers(k, 4 * k + 20), label="n")
    batch = data.draw(st.integers(k + 1, max(k + 1, n + k)), label="batch_size")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    low = data.draw(st.integers(0, 255), label="low")
    stack = rng.integers(low, 256, size=(n, *shape), dtype=np.uint8)
    result = compute(stack, tmp_path, kernel_size=k, batch_size=batch, num_cpus=2)
    assert np.array_equal(result, slow.rollmed_background(stack, k))


@pytest.mark.parametrize("n_extra", [0, 1, 2])
def test_n_equals_k_and_just_above(tmp_path, n_extra):
    rng = np.random.default_rng(n_extra)
    k = 10
    stack = rng.integers(0, 256, size=(k + n_extra, 5, 6), dtype=np.uint8)
    result = compute(stack, tmp_path, kernel_size=k, batch_size=11)
    assert np.array_equal(result, slow.rollmed_background(stack, k))
    if n_extra == 0:
        # one full window: its median for every frame
        median = slow.window_median(stack, k // 2)
        assert np.all(result == median[np.newaxis])


def test_large_images_and_batches(tmp_path):
    rng = np.random.default_rng(7)
    stack = rng.integers(90, 110, size=(700, 100, 80), dtype=np.uint8)
    expected = slow.rollmed_background(stack, 100)
    for batch in [101, 256, 10000]:
        result = compute(
            stack, tmp_path, f"b{batch}.rtdc", kernel_size=100, batch_size=batch
        )
        assert np.array_equal(result, expected), batch


def test_batch_api(tmp_path):
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 256, size=(50, 4, 5), dtype=np.uint8)
    with BackgroundRollMed(
        stack, tmp_path / "o.rtdc", kernel_size=6, batch_size=20
    ) as bg:
        assert bg.get_slices_for_batch(0) == (slice(0, 26), slice(0, 20), 20)
        assert bg.get_slices_for_batch(1) == (slice(20, 46), slice(20, 40), 20)
        assert bg.get_slices_for_batch(2) == (slice(40, 50), slice(40, 44), 4)
        assert bg.get_slices_for_batch(3)[2] == 0
        assert bg.shared_input.shape == (26, 20) and bg.shared_output.shape == (20, 20)
        assert bg.shared_input_raw.size == 26 * 20
        pixels = list(bg.map_iterator())
        assert pixels[0].start == 0 and pixels[-1].stop == 20
        bg.process_next_batch()
        assert bg.current_batch == 1
        assert bg.get_progress() == pytest.approx(20 / 50)
        assert len(bg.workers) == bg.num_cpus and bg.queue is not None
        assert bg.worker_counter.value >= 1
        bg.process_next_batch()
        bg.process_next_batch()
        assert bg.get_progress() == 1


def assert_equals_dcnum(path, tmp_path, events, dcnum_cpus, **kwargs):
    """dcbg's and dcnum's image_bg of all `events` are identical, compressed
    or not"""
    for compress in [True, False]:
        ours = tmp_path / f"ours_{compress}.rtdc"
        ref = tmp_path / f"dcnum_{compress}.rtdc"
        kwargs["compress"] = compress
        with BackgroundRollMed(path, ours, num_cpus=2, **kwargs) as bg:
            bg.process()
        with DcnumRollMed(path, ref, num_cpus=dcnum_cpus, **kwargs) as bg:
            bg.process()
        with dclab.new_dataset(ours) as a, dclab.new_dataset(ref) as b:
            assert len(a) == len(b) == events
            assert np.array_equal(a["image_bg"][:], b["image_bg"][:])


def test_equals_dcnum_on_real_data(cytoshot, tmp_path):
    assert_equals_dcnum(cytoshot, tmp_path, 13, 1, kernel_size=4, batch_size=5)


@pytest.mark.timeout(300)
def test_equals_dcnum_on_synthetic_measurement(tmp_path):
    # realistic content (noise, drift, flicker, cells) on a small frame so
    # that dcnum's scipy-based reference stays fast
    # that dcnum's scipy-based reference stays fast; three batches, the
    # last one partial
    path = make_synthetic_measurement(
        tmp_path / "syn.rtdc", 1000, shape=(24, 64), seed=5
    )
    assert_equals_dcnum(path, tmp_path, 1000, 2, kernel_size=100, batch_size=400)


def test_memory_buffers_bounded_by_batch(tmp_path):
    stack = np.zeros((5000, 3, 4), np.uint8)
    with BackgroundRollMed(
        stack, tmp_path / "o.rtdc", kernel_size=10, batch_size=100
    ) as bg:
        assert bg.shared_input.shape[0] == 110
        assert bg.shared_output.shape[0] == 100
