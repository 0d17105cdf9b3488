"""Helpers shared by the benchmark modules: timing, page-cache control, CLI mounts."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

HCSFS = [sys.executable, "-m", "hcsfs"]


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """The shortest wall time of ``runs`` calls (seconds)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def drop_page_cache(paths: Iterable[Path]) -> None:
    """Evict the files' pages (works on FUSE files too: it drops the mount's page cache)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_all(paths: Iterable[Path], block: int = 1 << 20) -> int:
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as file:
            while chunk := file.read(block):
                total += len(chunk)
    return total


@contextlib.contextmanager
def cli_mount(source: Path, mountpoint: Path, *args: str) -> Iterator[Path]:
    """``hcsfs mount`` (a daemon, as users run it) for the duration of the block."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run([*HCSFS, "mount", str(source), str(mountpoint), *args], check=True,
                   capture_output=True)
    try:
        yield mountpoint
    finally:
        subprocess.run([*HCSFS, "unmount", str(mountpoint)], check=True, capture_output=True)


def wait_for_run(read_status: Callable[[], bytes], timeout: float = 1800.0, poll: float = 0.01
                 ) -> dict[str, Any]:
    """Poll a run's status (``.pipelines/<name>.status`` bytes, or the manager's) until it ends."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc: dict[str, Any] = json.loads(read_status())
        except (OSError, ValueError, KeyError):
            doc = {"state": "queued"}
        if doc["state"] in ("done", "failed", "cancelled", "interrupted"):
            return doc
        time.sleep(poll)
    raise TimeoutError("the run did not finish")
