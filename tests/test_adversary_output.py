"""The output as an adversary or a careless user leaves it (issue 18)

Each test stands for one finding of issue 18 about outputs, with its
number; every one failed on dcbg's main before the fix:

1. a link (symbolic or hard) or a foreign file planted at the lock file's
   path: dcbg wrote its lock record into the file it points to;
3. in place with ``--force``, images and the old ``image_bg`` in one
   mapped internal basin: the basin was dropped, ``image`` lost;
4. the check whether the output exists ran before the lock was taken: a
   run that had checked replaced the output another run wrote meanwhile
   (made deterministic by a hook between the check and the computation);
5. ``--force`` onto another measurement's output (same event count) and
   onto a file holding its own images in a mapped internal basin;
16. messages: read-only and immutable files, a directory or FIFO at the
    lock path, an output name too long for the hidden files, a second
    object in the same process;
17. in place keeps owner, group and mode; a hard-linked file is split
    with a warning.
"""

import hashlib
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import warnings

import dclab
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from dcbg import cluster, workflow
from dcbg.cli import make_cli
from dcbg.cli.compute import run_compute
from dcbg.feat.feat_background import (
    BackgroundCopy,
    BackgroundRollMed,
    BackgroundSparseMed,
)
from dcbg.io.transaction import OutputLockedError, WriterLock, lock_path
from dcbg.testing.fixtures import store_internal_basin

# dcbg.io.lockfile.UnsafeLockFileError is a PermissionError: the tests
# name only what existed before the fix, so that each one fails there on
# its own finding, not on an import
UnsafeLockFileError = PermissionError
ROLL = {"kernel_size": 4, "batch_size": 6}


def run_cli(*args):
    return CliRunner().invoke(make_cli(), [str(arg) for arg in args])


def file_hash(path):
    return hashlib.md5(pathlib.Path(path).read_bytes()).hexdigest()


def hidden_files(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name[0] == ".")


@pytest.fixture
def victim(tmp_path):
    """A file of the user that a planted link points to"""
    path = tmp_path / "elsewhere" / "thesis.tex"
    path.parent.mkdir()
    path.write_text("\\chapter{Results}\n")
    return path


# --- 1: the lock file path ----------------------------------------------------


def test_symlink_at_lock_path_is_refused_and_its_target_kept(cytoshot, victim):
    out = cytoshot.with_name("out.rtdc")
    lock_path(out).symlink_to(victim)
    result = run_cli("compute", cytoshot, "-o", out, "--method", "copy")
    assert result.exit_code == 1
    assert f"Lock file '{lock_path(out)}'" in result.stderr
    assert "is a symbolic link" in result.stderr
    assert victim.read_text() == "\\chapter{Results}\n"
    assert not out.exists()


def test_hard_link_at_lock_path_is_refused(cytoshot, victim):
    out = cytoshot.with_name("out.rtdc")
    os.link(victim, lock_path(out))
    with pytest.raises(UnsafeLockFileError, match="a file with 2 names"):
        BackgroundCopy(cytoshot, out)
    assert victim.read_text() == "\\chapter{Results}\n"


def test_foreign_file_at_lock_path_is_not_overwritten(cytoshot):
    out = cytoshot.with_name("out.rtdc")
    lock_path(out).write_text("notes that happen to have this name\n")
    with pytest.raises(UnsafeLockFileError, match="not a dcbg lock record"):
        BackgroundCopy(cytoshot, out)
    assert lock_path(out).read_text() == "notes that happen to have this name\n"


def test_symlink_planted_between_check_and_open(tmp_path, victim, monkeypatch):
    # the lock file of a killed run is swapped for a link right after
    # dcbg looked at it: the open (O_NOFOLLOW) refuses the link
    out = tmp_path / "out.rtdc"
    lock_path(out).write_text('{"pid": 1}')
    real_lstat = os.lstat

    def lstat_then_swap(path, *args, **kwargs):
        result = real_lstat(path, *args, **kwargs)
        if pathlib.Path(path) == lock_path(out) and stat.S_ISREG(result.st_mode):
            os.unlink(path)
            os.symlink(victim, path)
        return result

    monkeypatch.setattr(os, "lstat", lstat_then_swap)
    with pytest.raises(UnsafeLockFileError, match="is a symbolic link"):
        WriterLock(out).acquire()
    assert victim.read_text() == "\\chapter{Results}\n"


def test_windows_branch_checks_links_before_opening(tmp_path, victim):
    # no O_NOFOLLOW there: the lstat check before the open refuses it
    from dcbg.io import lockfile

    out = tmp_path / "out.rtdc"
    lock_path(out).symlink_to(victim)
    with pytest.raises(UnsafeLockFileError, match="is a symbolic link"):
        lockfile.open_lock_file(lock_path(out), out, platform="win32")
    assert victim.read_text() == "\\chapter{Results}\n"


def test_lock_record_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "out.rtdc"
    old = {"pid": 1, "host": "h", "since": "2025-01-01T00:00:00", "command": "dcbg"}
    lock_path(out).write_text(json.dumps(old) + " " * 300)
    with WriterLock(out):
        record = json.loads(lock_path(out).read_text())
        assert record["pid"] == os.getpid() and record["dcbg lock"] == 1
    assert not lock_path(out).exists()


# --- 3: in place, a basin that holds the images and the old background --------


def make_internal_image_basin(src, path, run_id=None):
    """A copy of `src` whose image and image_bg live in one mapped basin"""
    shutil.copyfile(src, path)
    with h5py.File(path, "a") as h5:
        images = h5["events/image"][:]
        image_bg = h5["events/image_bg"][:]
        del h5["events/image"], h5["events/image_bg"], h5["events/bg_off"]
        if run_id is not None:
            h5.attrs["experiment:run identifier"] = run_id
        count = len(images)
        # one event per frame, stored in another order (as a file that
        # sorts its events keeps its frames in recording order)
        mapping = np.arange(count)[::-1]
        store_internal_basin(
            h5, "raw frames", {"image": images, "image_bg": image_bg}, mapping
        )
    return path, images[mapping]


def test_in_place_force_keeps_images_sharing_a_basin_with_the_background(
    cytoshot, tmp_path
):
    path, images = make_internal_image_basin(cytoshot, tmp_path / "m.rtdc")
    result = run_cli(
        "compute", path, "-o", path, "--force", "--method", "rollmed", "-q",
        "--kernel-size", 4, "--batch-size", 6,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with dclab.new_dataset(path) as ds:
        assert np.array_equal(ds["image"][:], images)
        assert ds["image_bg"][:].shape == images.shape
    with h5py.File(path) as h5:
        assert "image" in h5["basin_events"] and "basinmap0" in h5["events"]
        assert (
            h5["events/image_bg"].attrs["dcnum ppid background"].startswith("rollmed:")
        )


def test_in_place_sparsemed_replaces_only_the_background_of_the_basin(
    cytoshot, tmp_path
):
    # sparsemed stores its series in a new internal basin beside the old one
    path, images = make_internal_image_basin(cytoshot, tmp_path / "m.rtdc")
    with BackgroundSparseMed(path, path, kernel_size=4, split_time=0.01) as bg:
        bg.process()
    with dclab.new_dataset(path) as ds:
        assert np.array_equal(ds["image"][:], images)
        assert ds["image_bg"][:].shape == images.shape


# --- 4: the existence check under the lock -------------------------------------


def other_run(input_path, out):
    """A complete second `dcbg compute` (without --force) in another process"""
    return subprocess.run(
        [sys.executable, "-m", "dcbg", "compute", str(input_path), "-o", str(out)]
        + ["--method", "copy", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_that_checked_first_never_replaces_a_newer_output(cytoshot, tmp_path):
    # This run checks that the output does not exist; before it writes,
    # another run (started later) writes the output completely. Without
    # the lock around check and write, this run replaced it, both exit 0.
    out = tmp_path / "out.rtdc"
    others = []

    class CheckedThenRaced(BackgroundRollMed):
        def __init__(self, *args, **kwargs):
            others.append(other_run(cytoshot, out))
            super().__init__(*args, **kwargs)

    summary = run_compute(CheckedThenRaced, ROLL, cytoshot, out, True, 1, False, "none")
    assert others[0].returncode == 1, others[0].stdout
    assert "is being written by another process" in others[0].stderr
    assert f"pid {os.getpid()}" in others[0].stderr
    assert summary.startswith(f"Wrote {out}")
    with h5py.File(out) as h5:
        assert (
            h5["events/image_bg"]
            .attrs["dcnum ppid background"]
            .startswith(
                "checkedthenraced:"  # this run's background, not the other's copy
            )
        )


def test_batch_task_that_checked_first_never_replaces_a_newer_output(
    cytoshot, tmp_path, monkeypatch
):
    out = tmp_path / "out.rtdc"
    others = []
    compute = workflow._compute

    def raced_compute(*args, **kwargs):
        others.append(other_run(cytoshot, out))
        return compute(*args, **kwargs)

    monkeypatch.setattr(workflow, "_compute", raced_compute)
    result = cluster.process_file(cytoshot, out, "rollmed:k=4^b=6", num_cpus=1)
    assert others[0].returncode == 1, others[0].stdout
    assert "is being written by another process" in others[0].stderr
    assert result.status == "done", result.error


# --- 5: another measurement's file is never an output --------------------------


def test_force_onto_another_measurements_output_is_refused(cytoshot, tmp_path):
    other = tmp_path / "other.rtdc"
    shutil.copyfile(cytoshot, other)
    with h5py.File(other, "a") as h5:
        h5.attrs["experiment:run identifier"] = "another-run-2025"
    other_bg = tmp_path / "other_bg.rtdc"
    with BackgroundCopy(other, other_bg) as bg:
        bg.process()
    before = file_hash(other_bg)
    result = run_cli(
        "compute", cytoshot, "-o", other_bg, "--force", "-q", "--method", "copy"
    )
    assert result.exit_code == 1
    assert f"Output file '{other_bg}' belongs to another measurement" in result.stderr
    assert "'another-run-2025'" in result.stderr
    assert file_hash(other_bg) == before
    assert hidden_files(tmp_path) == []


def test_force_onto_the_same_measurements_output_is_accepted(cytoshot, tmp_path):
    out = tmp_path / "out.rtdc"
    with BackgroundCopy(cytoshot, out) as bg:
        bg.process()
    copy = tmp_path / "copy_of_input.rtdc"  # another path, the same measurement
    shutil.copyfile(cytoshot, copy)
    with BackgroundRollMed(copy, out, **ROLL) as bg:
        bg.process()


def test_force_onto_a_file_with_images_in_an_internal_basin_is_refused(
    cytoshot, tmp_path
):
    target, _ = make_internal_image_basin(cytoshot, tmp_path / "raw.rtdc")
    before = file_hash(target)
    result = run_cli(
        "compute", cytoshot, "-o", target, "--force", "-q", "--method", "copy"
    )
    assert result.exit_code == 1
    assert "holds raw images (the internal basin 'raw frames')" in result.stderr
    assert file_hash(target) == before


# --- 16: messages -----------------------------------------------------------------


def test_read_only_file_in_place_is_named_before_computing(cytoshot):
    before = file_hash(cytoshot)
    cytoshot.chmod(0o444)
    result = run_cli(
        "compute", cytoshot, "-o", cytoshot, "--force", "-q", "--method", "copy"
    )
    assert result.exit_code == 1
    assert f"Output file '{cytoshot}' is read-only (mode 0444)" in result.stderr
    assert ".dcbg-partial" not in result.stderr
    assert file_hash(cytoshot) == before
    assert stat.S_IMODE(cytoshot.stat().st_mode) == 0o444
    assert hidden_files(cytoshot.parent) == []


@pytest.fixture
def immutable(cytoshot):
    """The input marked immutable (chattr +i; needs CAP_LINUX_IMMUTABLE)"""
    if shutil.which("chattr") is None:
        pytest.skip("no chattr")
    if subprocess.run(["chattr", "+i", str(cytoshot)], capture_output=True).returncode:
        pytest.skip("chattr +i is not permitted here")
    yield cytoshot
    subprocess.run(["chattr", "-i", str(cytoshot)], check=True)


def test_immutable_file_in_place_fails_before_computing(immutable):
    computed = []

    class Watched(BackgroundRollMed):
        def process_approach(self):
            computed.append(True)
            super().process_approach()

    with pytest.raises(PermissionError, match="or marked immutable") as info:
        with Watched(immutable, immutable, **ROLL) as bg:
            bg.process()
    assert f"Output file '{immutable}'" in str(info.value)
    assert "another program" not in str(info.value)
    assert computed == []


@pytest.mark.parametrize("kind", ["directory", "FIFO"])
def test_lock_path_of_another_kind_is_named(cytoshot, kind):
    out = cytoshot.with_name("out.rtdc")
    if kind == "directory":
        lock_path(out).mkdir()
    else:
        os.mkfifo(lock_path(out))
    result = run_cli("compute", cytoshot, "-o", out, "-q", "--method", "copy")
    assert result.exit_code == 1
    assert f"Lock file '{lock_path(out)}' of output file '{out}' is a" in result.stderr
    assert kind in result.stderr and "[Errno" not in result.stderr


def test_output_name_too_long_for_the_hidden_files(cytoshot):
    out = cytoshot.with_name("m" * 240 + ".rtdc")  # 245 bytes: fits alone
    result = run_cli("compute", cytoshot, "-o", out, "-q", "--method", "copy")
    assert result.exit_code == 1
    assert "is 245 bytes long" in result.stderr
    assert "at most 232 bytes" in result.stderr
    assert "[Errno" not in result.stderr and "dcbg-lock" not in result.stderr
    with pytest.raises(ValueError, match="is 245 bytes long"):
        BackgroundCopy(cytoshot, out)
    assert hidden_files(cytoshot.parent) == []


def test_second_object_in_this_process_is_named_as_such(cytoshot, tmp_path):
    out = tmp_path / "out.rtdc"
    with BackgroundRollMed(cytoshot, out, **ROLL):
        with pytest.raises(OutputLockedError) as info:
            BackgroundCopy(cytoshot, out)
    message = str(info.value)
    assert "another dcbg object in this process" in message
    assert "another process" not in message


# --- 17: owner, group, mode; hard links ------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="setting another owner needs root")
def test_in_place_keeps_owner_group_and_mode(cytoshot):
    os.chown(cytoshot, 1234, 2345)
    cytoshot.chmod(0o640)
    with BackgroundRollMed(cytoshot, cytoshot, **ROLL) as bg:
        bg.process()
    st = cytoshot.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o640)


def test_owner_kept_where_permitted_else_the_run_goes_on(cytoshot, monkeypatch):
    # a user who may not give the file away keeps it, with its group
    # where the user is a member, and its mode always
    cytoshot.chmod(0o664)
    original = cytoshot.stat()
    calls = []

    def chown_as_a_user(path, uid, gid):
        calls.append((uid, gid))
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chown", chown_as_a_user)
    with BackgroundRollMed(cytoshot, cytoshot, **ROLL) as bg:
        bg.process()
    assert calls == [(original.st_uid, original.st_gid), (-1, original.st_gid)]
    assert stat.S_IMODE(cytoshot.stat().st_mode) == 0o664


def test_in_place_through_a_hard_link_warns_that_it_splits(cytoshot, tmp_path):
    other_name = tmp_path / "same_file_other_name.rtdc"
    os.link(cytoshot, other_name)
    before = file_hash(other_name)
    with pytest.warns(UserWarning, match="has 2 names .hard links.") as record:
        with BackgroundRollMed(cytoshot, cytoshot, **ROLL) as bg:
            bg.process()
    assert str(cytoshot) in str(record[0].message)
    assert file_hash(other_name) == before  # the other name keeps the old file
    assert file_hash(cytoshot) != before


def test_no_warning_for_a_file_with_one_name(cytoshot):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with BackgroundRollMed(cytoshot, cytoshot, **ROLL) as bg:
            bg.process()
