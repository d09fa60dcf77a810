"""The Background base class: input, output, errors, atomicity, BackgroundCopy"""

import hashlib
import subprocess
import sys
import threading

import dclab
import h5py
import numpy as np
import pytest
from dcnum.feat.feat_background import BackgroundCopy as DcnumCopy
from dcnum.read import HDF5Data

from dcbg import run_options
from dcbg.feat.feat_background import (
    BackgroundCopy,
    BackgroundRollMed,
    BackgroundSparseMed,
)
from dcbg.kernels import slow
from dcbg.testing.fixtures import store_internal_basin


def file_hash(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def make_mapped_bg_input(src, path):
    """Copy of `src` whose image_bg lives in a mapped internal basin"""
    with h5py.File(src) as h5:
        images = h5["events/image_bg"][:]
    count = len(images)
    mapping = np.array([0] * (count // 2) + [1] * (count - count // 2), dtype=np.int64)
    series = np.stack([images[0], images[-1]])
    path.write_bytes(src.read_bytes())
    with h5py.File(path, "a") as h5:
        del h5["events/image_bg"]
        del h5["events/bg_off"]
        store_internal_basin(
            h5,
            "background images",
            {"image_bg": series},
            mapping,
            description="Pipeline identifier: sparsemed:k=200^s=1^t=0^f=0.8^o=1",
        )
    return path, series[mapping]


def test_output_references_input_and_carries_metadata(cytoshot, tmp_path):
    out = tmp_path / "out.rtdc"
    before = file_hash(cytoshot)
    with BackgroundRollMed(cytoshot, out, kernel_size=4, batch_size=6) as bg:
        bg.process()
    assert file_hash(cytoshot) == before, "input must not be modified"
    with dclab.new_dataset(out) as ds, dclab.new_dataset(cytoshot) as ds_in:
        assert len(ds) == len(ds_in) == 13
        # every input feature visible through the file basin
        for feat in ["image", "time", "frame", "mask", "deform", "bg_med"]:
            assert feat in ds, feat
        assert np.array_equal(ds["image"][:], ds_in["image"][:])
        assert np.array_equal(ds["deform"][:], ds_in["deform"][:])
        # new background, not the input's
        assert not np.array_equal(ds["image_bg"][:], ds_in["image_bg"][:])
        assert "bg_off" not in ds
        assert ds.config["experiment"]["sample"] == ds_in.config["experiment"]["sample"]
        assert (
            ds.config["imaging"]["frame rate"] == ds_in.config["imaging"]["frame rate"]
        )
        for name in ds_in.logs:
            assert name in ds.logs
        assert "dcbg-background" in ds.logs
        for name in ds_in.tables:
            assert name in ds.tables
    with h5py.File(out) as h5:
        ds_bg = h5["events/image_bg"]
        assert ds_bg.attrs["dcnum ppid background"] == "rollmed:k=4^b=6"
        assert ds_bg.attrs["dcnum ppid generation"] == "13"
        assert ds_bg.fletcher32
        assert "32015" in ds_bg._filters  # Zstandard (hdf5plugin)
    with HDF5Data(out) as hd:
        assert len(hd) == 13
        assert np.array_equal(hd.image[5], hd.image.h5ds[5])
        assert hd["image_bg"][0].shape == (80, 320)


def test_compress_false_writes_uncompressed(cytoshot, tmp_path):
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(
        cytoshot, out, kernel_size=4, batch_size=6, compress=False
    ) as bg:
        bg.process()
    with h5py.File(out) as h5:
        assert h5["events/image_bg"].compression is None
        assert h5["events/image_bg"].fletcher32


def test_input_is_output(cytoshot):
    with BackgroundSparseMed(cytoshot, cytoshot, kernel_size=5) as bg:
        bg.process()
    with h5py.File(cytoshot) as h5:
        assert "image_bg" not in h5["events"], "old image_bg removed"
        assert "image_bg" in h5["basin_events"]
        assert "bg_off" in h5["events"]
        # no file basin pointing to itself
        for key in h5["basins"]:
            assert b'"file"' not in b"".join(h5["basins"][key][:])
    with dclab.new_dataset(cytoshot) as ds:
        assert ds["image_bg"][0].shape == (80, 320)
        assert len(ds["bg_off"]) == 13


def test_existing_output_is_updated_not_lost(cytoshot, tmp_path):
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(cytoshot, out, kernel_size=4, batch_size=6) as bg:
        bg.process()
    with BackgroundRollMed(cytoshot, out, kernel_size=2, batch_size=6) as bg:
        bg.process()
    with h5py.File(out) as h5:
        assert h5["events/image_bg"].attrs["dcnum ppid background"] == "rollmed:k=2^b=6"
        assert "image" not in h5["events"]


def test_array_input(tmp_path):
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 256, size=(12, 6, 7), dtype=np.uint8)
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(stack.astype(float), out, kernel_size=4, batch_size=5) as bg:
        assert bg.hdin is None and bg.image_count == 12 and bg.image_shape == (6, 7)
        bg.process()
    with h5py.File(out) as h5:
        result = h5["events/image_bg"][:]
    expected = slow.rolling_median(stack, 4)[:8]
    assert np.array_equal(result[:8], expected)
    assert np.array_equal(result[8:], np.repeat(expected[-1:], 4, axis=0))
    assert np.array_equal(result, slow.rollmed_background(stack, 4))


@pytest.mark.parametrize("variant", ["absolute", "relative"])
def test_input_with_image_in_file_basin(cytoshot, tmp_path, variant):
    sub = tmp_path / "sub"
    sub.mkdir()
    basin_file = sub / "basin.rtdc"
    with h5py.File(cytoshot) as src, h5py.File(basin_file, "w") as dst:
        dclab.rtdc_dataset.copier.rtdc_copy(src, dst, features="none")
        locs = [cytoshot if variant == "absolute" else "../cytoshot_2024_80x320.rtdc"]
        with dclab.RTDCWriter(dst) as hw:
            hw.store_basin(
                basin_name="raw",
                basin_type="file",
                basin_format="hdf5",
                basin_locs=locs,
                basin_feats=["image", "time", "frame"],
                verify=False,
            )
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    out = out_dir / "out.rtdc"
    with BackgroundRollMed(basin_file, out, kernel_size=4, batch_size=6) as bg:
        bg.process()
    with dclab.new_dataset(cytoshot) as ds_raw:
        raw = ds_raw["image"][:]
    with dclab.new_dataset(out) as ds:
        assert np.array_equal(ds["image"][:], raw)
        assert ds["image_bg"].shape == raw.shape
    with HDF5Data(out) as hd:
        assert np.array_equal(hd.image[3], raw[3])
        assert hd["image_bg"][3].shape == (80, 320)


def test_input_with_image_in_mapped_internal_basin(cytoshot, tmp_path):
    with h5py.File(cytoshot) as h5:
        frames = h5["events/image"][:]
    mapping = np.array([0, 1, 1, 2, 3, 3, 3, 4, 5, 6, 7, 7], dtype=np.int64)
    path = tmp_path / "mapped.rtdc"
    with h5py.File(cytoshot) as src, h5py.File(path, "w") as dst:
        dclab.rtdc_dataset.copier.rtdc_copy(src, dst, features="none")
        dst.attrs["experiment:event count"] = len(mapping)
        with dclab.RTDCWriter(dst) as hw:
            hw.store_feature("deform", np.linspace(0, 1, len(mapping)))
        store_internal_basin(dst, "unique frames", {"image": frames[:8]}, mapping)
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(path, out, kernel_size=4, batch_size=6) as bg:
        assert bg.image_count == 12
        bg.process()
    expected_in = frames[:8][mapping]
    expected = slow.rolling_median(expected_in, 4)[:8]
    with dclab.new_dataset(out) as ds:
        assert np.array_equal(ds["image"][:], expected_in)
        assert np.array_equal(ds["image_bg"][:8], expected)


# --- BackgroundCopy --------------------------------------------------------


def test_copy_plain_image_bg_equals_dcnum(legacy_with_bg, tmp_path):
    out = tmp_path / "ours.rtdc"
    ref = tmp_path / "dcnum.rtdc"
    with BackgroundCopy(legacy_with_bg, out) as bg:
        assert bg.get_progress() == 0
        bg.process()
        assert bg.get_progress() == 1
    with DcnumCopy(legacy_with_bg, ref, num_cpus=1) as bg:
        bg.process()
    with dclab.new_dataset(out) as ds, dclab.new_dataset(ref) as dr:
        assert np.array_equal(ds["image_bg"][:], dr["image_bg"][:])
        assert np.array_equal(ds["image"][:], dr["image"][:])
    with HDF5Data(out) as hd:
        assert np.array_equal(hd["image_bg"][4], hd.image_bg.h5ds[4])


def test_copy_mapped_image_bg_equals_dcnum(cytoshot, tmp_path):
    src, expected = make_mapped_bg_input(cytoshot, tmp_path / "mapped.rtdc")
    out = tmp_path / "ours.rtdc"
    ref = tmp_path / "dcnum.rtdc"
    with BackgroundCopy(src, out) as bg:
        bg.process()
    with DcnumCopy(src, ref, num_cpus=1) as bg:
        bg.process()
    with h5py.File(out) as h5:
        assert h5["basin_events/image_bg"].shape == (2, 80, 320), "stored as series"
        assert "basinmap0" in h5["events"]
    with dclab.new_dataset(out) as ds, dclab.new_dataset(ref) as dr:
        assert np.array_equal(ds["image_bg"][:], expected)
        assert np.array_equal(ds["image_bg"][:], dr["image_bg"][:])


#: dcbg's warning for a copy from an input without image_bg
NO_BACKGROUND = "has no 'image_bg': the output holds no background"


def copy_both(src, tmp_path):
    """dcbg's and dcnum's copy of `src`: (dcbg output, warnings, dcnum output)"""
    ours, ref = tmp_path / "ours.rtdc", tmp_path / "dcnum.rtdc"
    with pytest.warns(UserWarning) as caught, BackgroundCopy(src, ours) as bg:
        bg.process()
        assert bg.get_ppid() == "copy:"
    with DcnumCopy(src, ref, num_cpus=1) as bg:
        bg.process()
    return ours, [str(w.message) for w in caught], ref


def test_copy_without_image_bg_writes_dcnums_output_and_warns_once(tmp_path):
    # dcnum 0.31.0 copies nothing and ends without an error; so does dcbg
    # (it refused before), saying once that the output has no background
    from dcbg.testing import make_synthetic_measurement

    path = make_synthetic_measurement(tmp_path / "syn.rtdc", 20, seed=3)
    ours, caught, ref = copy_both(path, tmp_path)
    assert caught == [f"Input file '{path}' {NO_BACKGROUND}"]
    with dclab.new_dataset(ours) as ds, dclab.new_dataset(ref) as dr:
        assert "image_bg" not in ds and "bg_off" not in ds
        assert sorted(ds.features) == sorted(dr.features)
        assert np.array_equal(ds["image"][:], dr["image"][:])
    with h5py.File(ours) as h5:
        assert list(h5["events"]) == []  # every feature stays in the input
        # no pipeline claim: dcnum's job runner computes a background
        assert not [key for key in h5.attrs if key.startswith("pipeline:")]
    assert leftovers(tmp_path, {"syn.rtdc", "ours.rtdc", "dcnum.rtdc"}) == []


def test_copy_of_bg_off_alone_equals_dcnum(cytoshot, tmp_path):
    # an input with bg_off but no image_bg: both copy its bg_off
    src = tmp_path / "offset_only.rtdc"
    src.write_bytes(cytoshot.read_bytes())
    with h5py.File(src, "a") as h5:
        del h5["events/image_bg"]
        expected = h5["events/bg_off"][:]
    ours, caught, ref = copy_both(src, tmp_path)
    assert caught == [f"Input file '{src}' {NO_BACKGROUND}"]
    with dclab.new_dataset(ours) as ds, dclab.new_dataset(ref) as dr:
        assert "image_bg" not in ds and "image_bg" not in dr
        assert np.array_equal(ds["bg_off"][:], expected)
        assert np.array_equal(ds["bg_off"][:], dr["bg_off"][:])


def test_copy_without_image_bg_in_place_keeps_the_file(tmp_path):
    from dcbg.testing import make_synthetic_measurement

    path = make_synthetic_measurement(tmp_path / "syn.rtdc", 20, seed=3)
    with dclab.new_dataset(path) as ds:
        features = sorted(ds.features_innate)
    with (
        pytest.warns(UserWarning, match=NO_BACKGROUND),
        BackgroundCopy(path, path) as bg,
    ):
        bg.process()
    with dclab.new_dataset(path) as ds:
        assert sorted(ds.features_innate) == features
        assert "image_bg" not in ds
    assert leftovers(tmp_path, {"syn.rtdc"}) == []


# --- bad input ---------------------------------------------------------------


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.rtdc"
    with pytest.raises(FileNotFoundError, match="nope.rtdc' does not exist"):
        BackgroundRollMed(missing, tmp_path / "out.rtdc")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.rtdc"
    path.write_text("hello")
    with pytest.raises(ValueError, match="text.rtdc' is not an HDF5 file"):
        BackgroundSparseMed(path, tmp_path / "out.rtdc")


def test_no_image_feature(tmp_path):
    path = tmp_path / "noimage.rtdc"
    with dclab.RTDCWriter(path) as hw:
        hw.store_metadata({"experiment": {"sample": "x", "run index": 1}})
        hw.store_feature("deform", np.linspace(0, 0.1, 10))
        hw.store_feature("area_um", np.linspace(10, 20, 10))
    with pytest.raises(
        ValueError, match=r"no 'image' feature.*\['area_um', 'deform'\]"
    ):
        BackgroundRollMed(path, tmp_path / "out.rtdc")
    assert leftovers(tmp_path, {"noimage.rtdc"}) == []


def test_zero_frames(empty_measurement, tmp_path):
    with pytest.raises(ValueError, match="zero frames"):
        BackgroundSparseMed(empty_measurement, tmp_path / "out.rtdc")
    with pytest.raises(ValueError, match="zero frames"):
        BackgroundRollMed(np.zeros((0, 5, 5), np.uint8), tmp_path / "out.rtdc")


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (np.zeros((10, 5), np.uint8), ValueError, r"stack of 2-D images.*\(10, 5\)"),
        (np.zeros((4, 3, 5, 5), np.uint8), ValueError, "stack of 2-D images"),
        (np.zeros((10, 5, 5), complex), TypeError, "dtype complex128"),
        (np.full((10, 5, 5), 0.5), ValueError, "non-integer grey values"),
        (np.full((10, 5, 5), 300), ValueError, "outside 0..255"),
        (np.full((10, 5, 5), -1), ValueError, "outside 0..255"),
        (b"not a path", TypeError, "array-like image stack"),
    ],
)
def test_bad_image_stacks(tmp_path, data, error, match):
    out = tmp_path / "out.rtdc"
    with pytest.raises(error, match=match):
        with BackgroundRollMed(data, out, kernel_size=2, batch_size=4) as bg:
            bg.process()
    assert not out.exists()
    assert leftovers(tmp_path, set()) == []


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (
            BackgroundRollMed,
            {"kernel_size": 3},
            "kernel_size must be an even number, got 3",
        ),
        (BackgroundRollMed, {"kernel_size": 0}, "kernel_size must be positive, got 0"),
        (BackgroundRollMed, {"kernel_size": 2.0}, "kernel_size must be an integer"),
        (
            BackgroundRollMed,
            {"kernel_size": 100, "batch_size": 100},
            "batch_size must be larger than kernel_size",
        ),
        (BackgroundSparseMed, {"split_time": 0}, "split_time must be > 0, got 0"),
        (
            BackgroundSparseMed,
            {"thresh_cleansing": -1},
            "thresh_cleansing must be >= 0",
        ),
        (BackgroundSparseMed, {"frac_cleansing": 0}, "frac_cleansing must be > 0"),
        (BackgroundSparseMed, {"frac_cleansing": 1.5}, "frac_cleansing must be <= 1"),
        (BackgroundSparseMed, {"kernel_size": -5}, "kernel_size must be positive"),
        (
            BackgroundSparseMed,
            {"split_time": float("nan")},
            "split_time must be finite",
        ),
        (
            BackgroundSparseMed,
            {"offset_correction": 2},
            "offset_correction must be True",
        ),
    ],
)
def test_kwargs_out_of_range(cytoshot, tmp_path, cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(cytoshot, tmp_path / "out.rtdc", **kwargs)
    assert not (tmp_path / "out.rtdc").exists()


def test_unknown_kwarg(cytoshot, tmp_path):
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['kernel'\]"):
        BackgroundCopy(cytoshot, tmp_path / "out.rtdc", kernel=3)


def test_bad_num_cpus(cytoshot, tmp_path):
    with pytest.raises(ValueError, match="num_cpus must be a positive integer"):
        BackgroundRollMed(cytoshot, tmp_path / "out.rtdc", kernel_size=2, num_cpus=0)


def test_rollmed_fewer_frames_than_kernel(cytoshot, tmp_path):
    with pytest.raises(ValueError, match=r"kernel_size=20 .* N=13"):
        BackgroundRollMed(
            cytoshot, tmp_path / "out.rtdc", kernel_size=20, batch_size=30
        )
    assert leftovers(tmp_path, {"cytoshot_2024_80x320.rtdc"}) == []


def test_output_folder_missing(cytoshot, tmp_path):
    with pytest.raises(
        FileNotFoundError, match="Output folder .*missing' does not exist"
    ):
        BackgroundRollMed(cytoshot, tmp_path / "missing" / "out.rtdc", kernel_size=2)


def test_output_folder_is_a_file(cytoshot, tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        BackgroundRollMed(cytoshot, cytoshot / "out.rtdc", kernel_size=2)


def test_output_folder_not_writable(cytoshot, tmp_path, monkeypatch):
    # root may write anywhere, so the permission check itself is simulated
    import dcbg.io.output

    monkeypatch.setattr(dcbg.io.output.os, "access", lambda *a, **k: False)
    with pytest.raises(PermissionError, match="Output folder .* is not writable"):
        BackgroundRollMed(cytoshot, tmp_path / "out.rtdc", kernel_size=2)


def test_output_path_type(cytoshot):
    with pytest.raises(TypeError, match="output_path must be a str or pathlib.Path"):
        BackgroundRollMed(cytoshot, 42)


# --- nothing half-written, nothing left behind ------------------------------


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
@pytest.mark.parametrize("cls", [BackgroundRollMed, BackgroundSparseMed])
def test_failed_run_leaves_nothing(cytoshot, tmp_path, monkeypatch, exc, cls):
    out = tmp_path / "out.rtdc"
    threads_before = threading.active_count()
    before = file_hash(cytoshot)
    kwargs = {"kernel_size": 4}

    def fail(*args, **kw):
        raise exc

    import dcbg.io.images

    monkeypatch.setattr(dcbg.io.images.ImageStack, "read", fail)
    with pytest.raises(type(exc)):
        with cls(cytoshot, out, **kwargs) as bg:
            bg.process()
    assert not out.exists()
    assert leftovers(tmp_path, {"cytoshot_2024_80x320.rtdc"}) == []
    assert threading.active_count() == threads_before
    assert file_hash(cytoshot) == before


def test_failed_in_place_run_keeps_the_file_exactly(cytoshot, monkeypatch):
    import dcbg.io.images

    before = file_hash(cytoshot)

    def fail(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(dcbg.io.images.ImageStack, "read", fail)
    with pytest.raises(KeyboardInterrupt):
        with BackgroundRollMed(cytoshot, cytoshot, kernel_size=4) as bg:
            bg.process()
    # the previous background (and everything else) is untouched, and
    # no staged or lock file is left
    assert file_hash(cytoshot) == before
    assert leftovers(cytoshot.parent, {cytoshot.name}) == []


def test_uncommitted_object_cleans_up(cytoshot, tmp_path):
    out = tmp_path / "out.rtdc"
    bg = BackgroundRollMed(cytoshot, out, kernel_size=4)
    assert leftovers(tmp_path, {"cytoshot_2024_80x320.rtdc"}) != []
    bg.close()
    del bg
    assert leftovers(tmp_path, {"cytoshot_2024_80x320.rtdc"}) == []


def test_process_twice(cytoshot, tmp_path):
    with BackgroundRollMed(cytoshot, tmp_path / "o.rtdc", kernel_size=2) as bg:
        bg.process()
        with pytest.raises(RuntimeError, match="already been processed"):
            bg.process()


def test_script_without_main_guard(cytoshot, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        "from dcbg import BackgroundRollMed, BackgroundSparseMed\n"
        f"with BackgroundRollMed(r'{cytoshot}', r'{tmp_path / 'a.rtdc'}',"
        " kernel_size=4, num_cpus=2) as bg:\n"
        "    bg.process()\n"
        f"with BackgroundSparseMed(r'{cytoshot}', r'{tmp_path / 'b.rtdc'}',"
        " kernel_size=4, num_cpus=2) as bg:\n"
        "    bg.process()\n"
        "print('done')\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert (tmp_path / "a.rtdc").exists() and (tmp_path / "b.rtdc").exists()


def test_progress_and_attributes(cytoshot, tmp_path):
    with BackgroundRollMed(
        cytoshot, tmp_path / "o.rtdc", kernel_size=4, batch_size=5
    ) as bg:
        assert bg.get_progress() == 0
        assert bg.kwargs == {"kernel_size": 4, "batch_size": 5}
        assert bg.paths_ref == [cytoshot]
        assert bg.h5in is bg.hdin.h5
        assert bg.h5out is not None and bg.writer is not None
        assert bg.image_shape == (80, 320) and bg.image_count == 13
        assert bg.logger.name.endswith("BackgroundRollMed")
        bg.process()
        assert bg.get_progress() == 1
        assert bg.get_ppid() == "rollmed:k=4^b=5"


def test_cpu_count():
    assert run_options.cpu_count() >= 1


def test_options_object_replaces_framework_keywords(cytoshot, tmp_path):
    options = run_options.RunOptions.create(compress=False, num_cpus=1)
    with BackgroundRollMed(
        cytoshot, tmp_path / "out.rtdc", kernel_size=4, batch_size=5, options=options
    ) as bg:
        assert bg.options is options
        assert bg.num_cpus == 1 and bg.compress is False
        bg.process()
    with h5py.File(tmp_path / "out.rtdc") as h5:
        assert not h5["events/image_bg"].compression


@pytest.mark.parametrize(
    "keywords",
    [{"compress": False}, {"num_cpus": 1}, {"basin_root": "."}],
)
def test_options_object_with_framework_keyword_is_an_error(
    cytoshot, tmp_path, keywords
):
    name = next(iter(keywords))
    with pytest.raises(TypeError, match=name):
        BackgroundRollMed(
            cytoshot,
            tmp_path / "out.rtdc",
            options=run_options.RunOptions.create(),
            **keywords,
        )
    assert not (tmp_path / "out.rtdc").exists()


@pytest.mark.parametrize(
    ("cls", "kwargs", "parameter"),
    [
        (BackgroundRollMed, {"kernel_size": 3}, "kernel_size"),
        (BackgroundRollMed, {"kernel_size": 4, "batch_size": 4}, "batch_size"),
        (BackgroundRollMed, {"kernel_size": 20, "batch_size": 30}, "kernel_size"),
        (BackgroundSparseMed, {"frac_cleansing": 2}, "frac_cleansing"),
        (BackgroundSparseMed, {"split_time": 0}, "split_time"),
        (BackgroundSparseMed, {"offset_correction": 2}, "offset_correction"),
        (BackgroundSparseMed, {"split_time": 1e-12}, "split_time"),
    ],
)
def test_parameter_errors_name_their_parameter(
    cytoshot, tmp_path, cls, kwargs, parameter
):
    from dcbg.errors import ParameterError

    with pytest.raises(ParameterError, match=parameter) as info:
        cls(cytoshot, tmp_path / "out.rtdc", **kwargs)
    assert info.value.parameter == parameter
    assert leftovers(tmp_path, {cytoshot.name}) == []
