"""Client tests: the ``clients`` marker, and the rule that a missing tool skips here but fails in CI.

Every test that runs an external program is marked ``clients`` (``make test-clients`` runs only those).
Outside CI a missing program skips the test with the apt package to install; with ``CI=true`` it fails
the test, so a CI machine that lacks a client can never pass by running nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hcsfs import sysdeps
from tests.clients import cellprofiler_env
from tests.conftest import IN_CI

# The Debian packages of these tools, from the one list .ci/run and `make test` install (hcsfs/sysdeps.py).
APT_PACKAGES = {
    name: sysdeps.apt_package_for("javac" if name == "java" else name) or name
    for name in ("java", "ij.jar", "xvfb-run", "xauth", "tiffinfo", "identify", "gdalinfo")
}
IJ_JAR = Path("/usr/share/java/ij.jar")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clients: runs a real client program (ImageJ, CellProfiler, ...)")


def missing(reason: str) -> None:
    """Skip outside CI, fail in CI: a missing client is a broken CI machine, not a pass."""
    if IN_CI:
        pytest.fail(f"CI lacks a client: {reason}", pytrace=False)
    pytest.skip(reason=reason)


@pytest.fixture(scope="session")
def cellprofiler() -> Path:
    """The ``cellprofiler`` executable of CellProfiler 4.2.8's own venv, built on first use."""
    problem = cellprofiler_env.missing_prerequisite()
    if problem:
        missing(f"CellProfiler cannot be built here: {problem}")
    try:
        return cellprofiler_env.ensure_cellprofiler()
    except RuntimeError as exc:  # pragma: no cover - reported with the build log's path
        pytest.fail(f"building CellProfiler's venv failed: {exc}", pytrace=False)


def need_tool(name: str) -> str:
    """The path of program ``name`` (or of ij.jar), or skip/fail naming the apt package."""
    found = str(IJ_JAR) if name == "ij.jar" and IJ_JAR.exists() else shutil.which(name)
    if found is None:
        missing(f"{name} is not installed (apt-get install {APT_PACKAGES.get(name, name)})")
    return found  # type: ignore[return-value]


def run_imagej(macro: Path, argument: str, timeout: float = 120) -> list[str]:
    """Run ImageJ 1.x in batch mode under Xvfb; return what the macro printed, line by line.

    ``-batch`` exits 0 whatever happens, so callers judge from the printed numbers. A dialog (ImageJ's
    answer to many errors) would wait forever: the whole process group is killed after ``timeout``.
    """
    import os
    import signal
    import subprocess

    java, jar, xvfb = need_tool("java"), need_tool("ij.jar"), need_tool("xvfb-run")
    need_tool("xauth")
    process = subprocess.Popen([xvfb, "-a", java, "-jar", jar, "-batch", str(macro), argument],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"ImageJ hung (a dialog?) running {macro.name} {argument}:\n{out}")
    return out.splitlines()
