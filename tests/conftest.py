import pathlib
import shutil

import pytest

DATA_DIR = pathlib.Path(__file__).resolve().parents[1] / "dcbg" / "data"


def copy_data(name: str, dest: pathlib.Path) -> pathlib.Path:
    """Copy a bundled example measurement to `dest` (writable)"""
    path = dest / name
    shutil.copyfile(DATA_DIR / name, path)
    return path


@pytest.fixture
def cytoshot(tmp_path):
    """13-frame real 80x320 measurement with time, frame and image_bg"""
    return copy_data("cytoshot_2024_80x320.rtdc", tmp_path)


@pytest.fixture
def legacy_with_bg(tmp_path):
    """11-frame real 80x400 measurement with image_bg, no frame rate"""
    return copy_data("cytoshot_legacy_with_bg_80x400.rtdc", tmp_path)


@pytest.fixture
def empty_measurement(tmp_path):
    """Real measurement with zero frames"""
    return copy_data("shapein_empty_80x250.rtdc", tmp_path)
