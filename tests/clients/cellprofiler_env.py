"""Build CellProfiler 4.2.8.1 in its own Python 3.9 venv, once, under a cache dir, and reuse it.

CellProfiler pins packages (numpy 1.23, scipy 1.9, scikit-image 0.18) that have wheels for Python 3.9
only, and needs a JDK to build python-javabridge, so it can never share hcsfs's venv. The recipe is the
one in ``shared/CLIENTS.md``; wxPython (GUI) and mysqlclient (a database export) are left out, which
is why cellprofiler itself is installed with ``--no-deps``.

``python -m tests.clients.cellprofiler_env`` builds it by hand (about a minute with a warm pip cache).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "4.2.8.1"
CACHE = Path(os.environ.get("HCSFS_TEST_CACHE", Path.home() / ".cache" / "hcsfs-tests"))
VENV = CACHE / "cellprofiler"
STAMP = VENV / f".hcsfs-built-{VERSION}"
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")

# CellProfiler's and cellprofiler-core's requirements at versions that install together on Python 3.9
# (wxPython and mysqlclient left out).
REQUIREMENTS = [
    "numpy==1.23.5",
    "scipy==1.9.0",
    "scikit-image==0.18.3",
    "scikit-learn==0.24.2",
    "tifffile==2021.11.2",
    "imageio==2.22.4",
    "Pillow==9.5.0",
    "matplotlib==3.6.3",
    "h5py==3.7.0",
    "pyzmq==22.3.0",
    "centrosome==1.2.3",
    "mahotas==1.4.13",
    "prokaryote==2.4.4",
    "docutils==0.15.2",
    "sentry-sdk==0.18.0",
    "inflect==6.0.5",
    "boto3",
    "Jinja2",
    "joblib",
    "psutil",
    "requests",
    "six",
    "future",
]


def find_python39() -> str | None:
    """A Python 3.9 interpreter: on PATH, or under pyenv."""
    for candidate in (shutil.which("python3.9"),
                      *sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))):
        check = [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"] if candidate else []
        if check and subprocess.run(check, capture_output=True).returncode == 0:
            return candidate
    return None


def missing_prerequisite() -> str | None:
    """Why the venv cannot be built here, or None."""
    if find_python39() is None:
        return "no Python 3.9 interpreter (CellProfiler 4.2.8's pins have cp39 wheels only)"
    if not (JAVA_HOME / "bin" / "javac").exists():
        return f"no JDK at {JAVA_HOME} (apt-get install openjdk-17-jdk-headless)"
    return None


def _run(args: list[str], log, **env: str) -> None:
    print("+", " ".join(args), file=log, flush=True)
    done = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode} (see {log.name})")


def ensure_cellprofiler() -> Path:
    """The ``cellprofiler`` executable, building the venv first if needed (serialized by a lock)."""
    executable = VENV / "bin" / "cellprofiler"
    if STAMP.exists():
        return executable
    problem = missing_prerequisite()
    if problem:
        raise RuntimeError(problem)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "cellprofiler.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if STAMP.exists():
            return executable
        shutil.rmtree(VENV, ignore_errors=True)
        with open(CACHE / "cellprofiler-build.log", "w") as log:
            pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
            _run([find_python39() or "python3.9", "-m", "venv", str(VENV)], log)
            _run(pip + ["-U", "pip", "setuptools<70", "wheel"], log)
            _run(pip + ["numpy==1.23.5", "cython<3"], log)
            _run(pip + ["--no-build-isolation", "python-javabridge==4.0.5"], log,
                 JAVA_HOME=str(JAVA_HOME))
            _run(pip + ["--no-deps", f"cellprofiler=={VERSION}", f"cellprofiler-core=={VERSION}",
                        "python-bioformats==4.1.0"], log)
            _run(pip + REQUIREMENTS, log)
            _run([str(VENV / "bin" / "python"), "-c", "import cellprofiler_core.pipeline, bioformats"],
                 log, JAVA_HOME=str(JAVA_HOME))
        STAMP.touch()
    return executable


if __name__ == "__main__":
    print(ensure_cellprofiler())
    sys.exit(0)
