"""Helpers for tests that run the ``hcsfs mount`` daemon: find it, wait for it to end."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def daemon_pid(mountpoint: Path) -> int:
    """The pid of the one daemon serving ``mountpoint``."""
    out = subprocess.run(["pgrep", "-f", f"hcsfs mount .* {mountpoint} --foreground"],
                         capture_output=True, text=True).stdout.split()
    assert len(out) == 1, out
    return int(out[0])


def wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} is still alive")
