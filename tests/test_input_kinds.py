"""Input kinds: ``input_data`` is opened by the kind a registry chooses

The array-like input is an input kind like the .rtdc file, defined in one
module (dcbg/io/input/array_input.py); a new kind is one class registered
with ``register_input_kind``, without touching the methods.
"""

import pathlib

import h5py
import numpy as np
import pytest

from dcbg.io import ImageStack, open_input
from dcbg.io.input import (
    INPUT_KINDS,
    ArrayInput,
    BasinPolicy,
    RtdcMeasurement,
    input_kind_of,
    register_input_kind,
)

CYTOSHOT = (
    pathlib.Path(__file__).parents[1] / "dcbg" / "data" / "cytoshot_2024_80x320.rtdc"
)


def test_array_like_inputs_are_an_input_kind():
    frames = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    assert input_kind_of(frames) is ArrayInput
    assert input_kind_of(ImageStack(frames)) is ArrayInput
    measurement = open_input(frames)
    assert isinstance(measurement, ArrayInput)
    assert not measurement.is_file
    assert measurement.path is None and measurement.h5 is None
    assert np.array_equal(measurement.images.read(0, 3), frames)
    assert measurement.get_feature("time") is None
    assert measurement.get_frame_rate() is None
    assert measurement.refused_basins == []
    assert measurement.followed_basins() == []
    measurement.close()


def test_bad_array_input_is_refused_as_before():
    with pytest.raises(TypeError, match="array-like image stack"):
        open_input(5)


def test_paths_open_as_rtdc_measurements():
    assert input_kind_of(CYTOSHOT) is RtdcMeasurement
    assert input_kind_of(str(CYTOSHOT)) is RtdcMeasurement
    measurement = open_input(CYTOSHOT, BasinPolicy())
    try:
        assert measurement.is_file
        assert measurement.path == CYTOSHOT
        with h5py.File(CYTOSHOT) as h5:
            expected = h5["events/image"][:2]
        assert np.array_equal(measurement.images.read(0, 2), expected)
        assert len(measurement.get_feature("frame")) == len(measurement.images)
    finally:
        measurement.close()


class Frames:
    """Some object that is not array-like (no shape): a list of frames"""

    def __init__(self, frames):
        self.frames = frames


class FramesInput(ArrayInput):
    """A new input kind: all it takes is this class, registered"""

    @classmethod
    def accepts(cls, input_data):
        return isinstance(input_data, Frames)

    @classmethod
    def open(cls, input_data, policy=None):
        return cls(ImageStack(np.stack(input_data.frames), name="frames"))


def test_a_new_input_kind_is_one_registered_class(monkeypatch):
    monkeypatch.setattr("dcbg.io.input.registry.INPUT_KINDS", list(INPUT_KINDS))
    frames = Frames([np.full((4, 5), i, dtype=np.uint8) for i in range(3)])
    with pytest.raises(TypeError):
        open_input(frames)  # the array-like kind refuses it
    register_input_kind(FramesInput, first=True)
    measurement = open_input(frames)
    assert isinstance(measurement, FramesInput)
    assert measurement.images.read(2, 3)[0, 0, 0] == 2


def test_methods_read_a_new_input_kind_unchanged(monkeypatch, tmp_path):
    """A method opens its input through the registry (no branch per kind)"""
    from dcbg import BackgroundRollMed

    monkeypatch.setattr("dcbg.io.input.registry.INPUT_KINDS", list(INPUT_KINDS))
    register_input_kind(FramesInput, first=True)
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 256, size=(9, 6, 7), dtype=np.uint8)
    results = []
    for input_data, name in ((stack, "array"), (Frames(list(stack)), "frames")):
        out = tmp_path / f"{name}.rtdc"
        with BackgroundRollMed(input_data, out, kernel_size=4, batch_size=6) as bg:
            assert bg.hdin is None and bg.image_count == 9
            bg.process()
        with h5py.File(out) as h5:
            results.append(h5["events/image_bg"][:])
    assert np.array_equal(results[0], results[1])
