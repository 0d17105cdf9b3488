"""A separate virtualenv with iohub 0.3 (it needs Python >= 3.12 and its own zarr/pydantic pins).

Used by the zarr benchmark (baseline) and by the "read back by iohub" test. Built once under a cache
folder and reused; ``None`` with a reason when no Python >= 3.12 is found or the install fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

IOHUB_VERSION = "0.3.11"
_CANDIDATES = ("python3.13", "python3.12")


def _find_python() -> str | None:
    if sys.version_info >= (3, 12):
        return sys.executable
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found and subprocess.run([found, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return found
    for pattern in ("~/.pyenv/versions/3.1[23]*/bin/python3",):
        for found in sorted(glob.glob(os.path.expanduser(pattern)), reverse=True):
            return found
    return None


def iohub_python(cache_dir: Path) -> tuple[str | None, str]:
    """``(python with iohub importable, "")`` or ``(None, why not)``; builds the venv on first use."""
    venv = cache_dir / f"iohub-{IOHUB_VERSION}"
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    if ready.exists() and python.exists():
        return str(python), ""
    base = _find_python()
    if base is None:
        return None, "iohub 0.3 needs Python >= 3.12 and none was found"
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", f"iohub=={IOHUB_VERSION}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            return None, f"could not build the iohub venv: {' '.join(step[:4])}: {done.stderr[-500:]}"
    ready.touch()
    return str(python), ""
