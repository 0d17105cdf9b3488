"""Client tests: the ``clients`` marker, and the rule that a missing tool skips here but fails in CI.

Every test that runs an external program is marked ``clients`` (``make test-clients`` runs only those).
Outside CI a missing program skips the test with the apt package to install; with ``CI=true`` it fails
the test, so a CI machine that lacks a client can never pass by running nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import IN_CI

# The Debian packages .ci/run installs for these tests.
APT_PACKAGES = {
    "java": "openjdk-17-jdk-headless",
    "ij.jar": "imagej",
    "xvfb-run": "xvfb xauth",
    "tiffinfo": "libtiff-tools",
    "identify": "imagemagick",
    "gdalinfo": "gdal-bin",
}
IJ_JAR = Path("/usr/share/java/ij.jar")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clients: runs a real client program (ImageJ, CellProfiler, ...)")


def missing(reason: str) -> None:
    """Skip outside CI, fail in CI: a missing client is a broken CI machine, not a pass."""
    if IN_CI:
        pytest.fail(f"CI lacks a client: {reason}", pytrace=False)
    pytest.skip(reason)


def need_tool(name: str) -> str:
    """The path of program ``name`` (or of ij.jar), or skip/fail naming the apt package."""
    found = str(IJ_JAR) if name == "ij.jar" and IJ_JAR.exists() else shutil.which(name)
    if found is None:
        missing(f"{name} is not installed (apt-get install {APT_PACKAGES.get(name, name)})")
    return found  # type: ignore[return-value]
