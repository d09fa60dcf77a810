"""dcnum 0.31.0's own background tests, run against dcbg

dcbg is a drop-in for ``dcnum.feat.feat_background``. This module obtains
dcnum 0.31.0's source distribution at test time (``pip download``, cached
in ``$DCBG_TEST_CACHE`` or ``~/.cache/dcbg-tests``; nothing of dcnum's
tests is stored in this repository), extracts its
``tests/test_feat_background_*.py`` with the helpers and data they need,
and runs them in one pytest subprocess in which dcnum's background module
names point at dcbg's modules (see ``dcnum_conformance_plugin.py``). Each
dcnum test is reported here as one test with dcnum's test id, so a
failure names the dcnum test and shows its failure text.

Only tests of dcnum's process-worker internals are deselected; they are
listed in :data:`DESELECTED` with the reason. Without dcnum installed, or
without a reachable package index and no cached copy, every test here is
skipped with the reason.
"""

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import uuid

import pytest
import sdist_cache

#: the dcnum release whose background module dcbg replaces
DCNUM_VERSION = "0.31.0"

#: dcnum tests of its multiprocessing internals, which dcbg does not have
#: (its workers are threads running compiled kernels): id -> reason
DESELECTED = {
    "test_feat_background_bg_roll_median.py::test_compute_median_for_slice": (
        "calls dcnum's per-process job function compute_median_for_slice; "
        "dcbg computes medians with compiled kernels on worker threads"
    ),
    "test_feat_background_bg_roll_median.py::test_median_map_iterator[720]": (
        "asserts dcnum's job slicing (7 jobs of 5 pixels); dcbg slices "
        "pixels into kernel-block-aligned ranges per worker thread"
    ),
    "test_feat_background_bg_roll_median.py::test_median_map_iterator[730]": (
        "asserts dcnum's job slicing (7 jobs of 5 pixels); dcbg slices "
        "pixels into kernel-block-aligned ranges per worker thread"
    ),
    "test_feat_background_bg_roll_median.py::test_median_rollmed_worker": (
        "replaces dcnum's worker processes by its own WorkerRollMed object; "
        "dcbg has no worker objects of that kind"
    ),
    "test_feat_background_bg_sparsemed.py::test_median_sparsemend_worker": (
        "replaces dcnum's worker processes by its own WorkerSparseMed "
        "object; dcbg has no worker objects of that kind"
    ),
}

#: the files of dcnum's test directory that its background tests need
SUITE_FILES = ("conftest.py", "helper_methods.py")
#: glob of dcnum's background test modules
SUITE_GLOB = "test_feat_background_*.py"
#: seconds for the subprocess running dcnum's background suite (it takes
#: a few seconds; the limit only stops a hang)
SUITE_TIMEOUT = 900

HERE = pathlib.Path(__file__).resolve().parent


class SuiteUnavailable(Exception):
    """dcnum's test suite cannot be obtained here (reason in the message)"""


def cache_dir() -> pathlib.Path:
    """Folder that keeps the downloaded sdist and the extracted suite"""
    return sdist_cache.cache_root() / f"dcnum-{DCNUM_VERSION}"


def check_dcnum_installed():
    """The suite imports dcnum.read/dcnum.write: dcnum itself is needed"""
    try:
        import dcnum
    except ImportError as exc:
        raise SuiteUnavailable(
            f"dcnum {DCNUM_VERSION} is not installed (pip install -e '.[test]'): {exc}"
        ) from exc
    version = getattr(dcnum, "__version__", "unknown")
    if version != DCNUM_VERSION:
        raise SuiteUnavailable(
            f"dcnum {version} is installed, the conformance suite is that of "
            f"dcnum {DCNUM_VERSION} (pip install dcnum=={DCNUM_VERSION})"
        )


def download_sdist(dest: pathlib.Path) -> pathlib.Path:
    """Return the cached sdist, downloading it with pip if needed"""
    return sdist_cache.download_sdist("dcnum", DCNUM_VERSION, dest, SuiteUnavailable)


def extract_suite(sdist: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """Extract dcnum's background tests, their helpers and data to `dest`"""
    if (dest / "pytest.ini").exists():
        return dest
    prefix = f"dcnum-{DCNUM_VERSION}/tests/"
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(sdist) as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            tests = sorted(
                name
                for name in members
                if name.startswith(prefix)
                and pathlib.PurePosixPath(name).match(SUITE_GLOB)
                and "/" not in name[len(prefix) :]
            )
            if not tests:
                raise SuiteUnavailable(
                    f"'{sdist}' holds no {prefix}{SUITE_GLOB}; is it dcnum's sdist?"
                )
            wanted = [prefix + name for name in SUITE_FILES] + tests
            texts = []
            for name in wanted:
                data = tar.extractfile(members[name]).read()
                (tmp / name[len(prefix) :]).write_bytes(data)
                texts.append(data.decode("utf-8"))
            # data archives the tests name (retrieve_data("...zip"))
            (tmp / "data").mkdir()
            for zname in sorted(set(re.findall(r"[\w.-]+\.zip", "".join(texts)))):
                member = members.get(f"{prefix}data/{zname}")
                if member is not None:
                    data = tar.extractfile(member).read()
                    (tmp / "data" / zname).write_bytes(data)
            license_member = members.get(f"dcnum-{DCNUM_VERSION}/LICENSE")
            if license_member is not None:
                data = tar.extractfile(license_member).read()
                (tmp / "LICENSE-dcnum").write_bytes(data)
        # an ini file pins pytest's rootdir to the suite (no outer config)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / "pytest.ini").exists():  # not a concurrent extraction
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def pytest_command(suite: pathlib.Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "dcnum_conformance_plugin",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "--rootdir",
        str(suite),
        *args,
    ]


def suite_env(**extra) -> dict:
    env = dict(os.environ)
    # the plugin beside this file; dcbg from this checkout even if it is
    # not installed
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(HERE.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def collect_ids(suite: pathlib.Path) -> list[str]:
    """dcnum's test ids, collected once per extracted suite and cached"""
    digest = hashlib.sha256(
        b"".join(p.read_bytes() for p in sorted(suite.glob(SUITE_GLOB)))
    ).hexdigest()[:16]
    cached = suite / f"ids-{digest}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    proc = subprocess.run(
        pytest_command(suite, "--collect-only", "-q"),
        cwd=suite,
        env=suite_env(),
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT,
    )
    ids = [ln.strip() for ln in proc.stdout.splitlines() if "::" in ln]
    if proc.returncode != 0 or not ids:
        raise RuntimeError(
            f"Collecting dcnum's background tests in '{suite}' failed "
            f"(exit status {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    tmp = cached.with_name(f".{cached.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(ids))
    os.replace(tmp, cached)
    return ids


def obtain_suite() -> tuple[pathlib.Path, list[str]]:
    check_dcnum_installed()
    root = cache_dir()
    sdist = download_sdist(root)
    suite = extract_suite(sdist, root / "suite")
    return suite, collect_ids(suite)


try:
    SUITE, SUITE_IDS = obtain_suite()
    UNAVAILABLE = None
except SuiteUnavailable as _exc:
    SUITE, SUITE_IDS, UNAVAILABLE = None, [], str(_exc)


def _params():
    if UNAVAILABLE is not None:
        return [
            pytest.param(
                None, id="dcnum-suite", marks=pytest.mark.skip(reason=UNAVAILABLE)
            )
        ]
    params = []
    for test_id in SUITE_IDS:
        marks = []
        if test_id in DESELECTED:
            marks.append(pytest.mark.skip(reason=f"deselected: {DESELECTED[test_id]}"))
        params.append(pytest.param(test_id, id=test_id, marks=marks))
    return params


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory):
    """Run dcnum's background suite once; outcomes per dcnum test id"""
    report = tmp_path_factory.mktemp("dcnum-suite") / "report.jsonl"
    deselect = [arg for test_id in DESELECTED for arg in ("--deselect", test_id)]
    proc = subprocess.run(
        pytest_command(SUITE, "-q", "-rN", *deselect),
        cwd=SUITE,
        env=suite_env(DCBG_CONFORMANCE_REPORT=str(report)),
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT,
    )
    results = {}
    if report.exists():
        for line in report.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            results.setdefault(record["nodeid"], []).append(record)
    return results, proc


@pytest.mark.parametrize("dcnum_test", _params())
def test_dcnum_background_suite(dcnum_test, suite_results):
    """One dcnum background test (id: dcnum's test id) against dcbg"""
    results, proc = suite_results
    records = results.get(dcnum_test)
    if not records:
        pytest.fail(
            f"dcnum's test {dcnum_test} did not report a result; the suite "
            f"ended with exit status {proc.returncode}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    for record in records:
        if record["outcome"] == "failed":
            pytest.fail(
                f"dcnum's test {dcnum_test} fails against dcbg "
                f"({record['when']}):\n{record['longrepr']}",
                pytrace=False,
            )
    for record in records:
        if record["outcome"] == "skipped":
            pytest.skip(f"dcnum's test skips itself: {record['skip_reason']}")
    assert any(r["when"] == "call" and r["outcome"] == "passed" for r in records), (
        f"dcnum's test {dcnum_test} did not pass its call phase: {records}"
    )


@pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))
def test_deselected_tests_exist():
    """The deselection list names only tests that dcnum's suite has"""
    missing = sorted(set(DESELECTED) - set(SUITE_IDS))
    assert not missing, f"deselected ids not in dcnum's suite: {missing}"


@pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))
def test_suite_is_whole():
    """Every background test module of dcnum was collected"""
    modules = {test_id.split("::")[0] for test_id in SUITE_IDS}
    assert modules == {
        "test_feat_background_base.py",
        "test_feat_background_bg_copy.py",
        "test_feat_background_bg_roll_median.py",
        "test_feat_background_bg_sparsemed.py",
    }
    # the behaviour tests outnumber the deselected internals tests
    assert len(SUITE_IDS) - len(DESELECTED) >= 25


def test_unreachable_index_skips(tmp_path, monkeypatch):
    """Without index and cache, obtaining the suite says why (a skip)"""
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    with pytest.raises(SuiteUnavailable, match="no copy cached"):
        download_sdist(tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*.tar.gz"))
