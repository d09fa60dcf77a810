"""Source distributions of other packages, fetched with pip and cached

dcnum's own background tests (``test_dcnum_conformance.py``) and the
conformance corpus of real measurements (``test_conformance_corpus.py``)
come from the sdists of dcnum and dclab. They are downloaded once with
pip into ``~/.cache/dcbg-tests`` (``$DCBG_TEST_CACHE``, or
``$XDG_CACHE_HOME/dcbg-tests``) and never stored in this repository.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

#: seconds pip waits for the index (an offline machine fails fast)
PIP_TIMEOUT = 30


def cache_root() -> pathlib.Path:
    """Folder that keeps the downloaded sdists and what is extracted"""
    env = os.environ.get("DCBG_TEST_CACHE")
    if env:
        return pathlib.Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / (
        "dcbg-tests"
    )


def download_sdist(
    name: str, version: str, dest: pathlib.Path, unavailable: type[Exception]
) -> pathlib.Path:
    """The cached sdist of `name` `version`, downloaded with pip if needed

    Raises
    ------
    unavailable
        If no package index is reachable and nothing is cached (the caller
        turns it into a skip with this reason)
    """
    path = dest / f"{name}-{version}.tar.gz"
    if path.exists():
        return path
    dest.mkdir(parents=True, exist_ok=True)
    # download next to the cache (not into it), so that a concurrent run
    # never sees a half-written archive
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps",
            # the sdist only; its build requirements may come as wheels
            "--no-binary", name,
            "--disable-pip-version-check",
            "--timeout", str(PIP_TIMEOUT), "--retries", "1",
            "-d", tmp, f"{name}=={version}",
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=10 * PIP_TIMEOUT
            )
        except subprocess.TimeoutExpired as exc:
            raise unavailable(
                f"pip could not download {name} {version}'s sdist within "
                f"{10 * PIP_TIMEOUT} s and no copy is cached in '{dest}'"
            ) from exc
        downloaded = pathlib.Path(tmp) / path.name
        if proc.returncode != 0 or not downloaded.exists():
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            raise unavailable(
                f"No package index reachable for {name} {version}'s sdist and "
                f"no copy cached in '{dest}' (pip: {last})"
            )
        os.replace(downloaded, path)
    return path
