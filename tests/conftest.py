"""Shared fixtures: real FUSE mounts, mountpoints, and source-safety checks."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from tests.plates import SAMPLES, tree_checksums

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip outside CI, fail in CI: what `make install` provides is never missing on a CI machine, so a
    CI run can never pass by running nothing."""
    if IN_CI:
        pytest.fail(f"CI lacks something the suite needs: {reason}", pytrace=False)
    pytest.skip(reason=reason, allow_module_level=True)


def require(module: str, reason: str = "") -> ModuleType:
    """``pytest.importorskip`` with the CI guard: the module, or a skip (a failure in CI)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(f"{module} is not importable ({exc}){': ' + reason if reason else ''}")


def fuse_problem() -> str | None:
    """Why a real mount is impossible here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not accessible"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = fuse_problem()
    if problem is None or IN_CI:  # in CI a missing FUSE fails the mount tests, never skips them
        return
    for item in items:
        if "mount" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture
def mountpoint(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    path.mkdir()
    return path


@pytest.fixture(scope="session", autouse=True)
def samples_unchanged() -> Iterator[None]:
    """The shared instrument samples are read by many tests: prove the suite never alters them."""
    before = tree_checksums(SAMPLES) if SAMPLES.is_dir() else None
    yield
    if before is not None:
        assert tree_checksums(SAMPLES) == before, "a test altered ../shared/samples"


@pytest.fixture(scope="session", autouse=True)
def no_mount_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test unmounts what it mounted: a leftover mount under the test folders fails the run."""
    yield
    from hcsfs.fs.mounttable import mount_entries

    # This run's folders only: other pytest runs on the machine (pytest-of-<user>/pytest-N) keep theirs.
    base = str(tmp_path_factory.getbasetemp())
    left = [e.mountpoint for e in mount_entries()
            if e.fstype == "fuse.hcsfs" and e.mountpoint.startswith(base)]
    for mountpoint in left:
        subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True)
    assert not left, f"mounts left behind by the tests: {left}"


@pytest.fixture
def unchanged() -> Iterator[callable]:
    """``unchanged(path)`` records a source tree's checksums; the test fails if they change."""
    watched: list[tuple[Path, dict]] = []

    def watch(path: Path) -> Path:
        watched.append((path, tree_checksums(path)))
        return path

    yield watch
    for path, before in watched:
        assert tree_checksums(path) == before, f"source tree {path} changed"
