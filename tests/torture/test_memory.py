"""Memory bounds: the daemon's peak RSS while ``cp -r`` copies a plate ten times larger than its
``--cache-size`` stays under the cache budget plus a stated margin, and does not grow over repeated
full reads."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from hcsfs import MemoryPlate, PlaneKey
from tests.daemons import daemon_pid
from tests.torture.helpers import zarr_plate
from tests.torture.test_process_faults import cli

pytestmark = pytest.mark.mount

CACHE = 16 << 20
MARGIN = 150 << 20
"""The stated margin over the cache budget (the issue's goal): buffers in flight, the zarr codec's
scratch space, worker-thread stacks and allocator slack."""
FIGURES: dict[str, float] = {}


def _status(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def _reset_peak(pid: int) -> None:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")


def _big_plate() -> MemoryPlate:
    """80 planes of 1024 x 1024 uint16 (160 MiB of pixels), each plane different and incompressible."""
    rng = np.random.default_rng(7)
    plate = MemoryPlate(pixel_size_um=0.5)
    for well in ("A01", "A02", "B01", "B02", "C01"):
        for site in range(1, 5):
            for channel in range(1, 5):
                plate.add(PlaneKey(well, site, channel, 1, 1),
                          rng.integers(0, 4096, (1024, 1024), dtype=np.uint16))
    return plate


def _read_all_uncached(root: Path) -> int:
    total = 0
    for name in sorted(os.listdir(root)):
        if name.endswith(".tif"):
            fd = os.open(root / name, os.O_RDONLY)
            try:
                while chunk := os.read(fd, 1 << 20):
                    total += len(chunk)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the next pass reaches the daemon
            finally:
                os.close(fd)
    return total


def test_peak_rss_while_copying_ten_times_the_cache(tmp_path: Path, mountpoint: Path, unchanged) -> None:  # type: ignore[no-untyped-def]
    source = unchanged(zarr_plate(tmp_path / "source", _big_plate()))
    log = tmp_path / "daemon.log"
    cli("mount", source, mountpoint, "--cache-size", str(CACHE), "--no-pipelines", "--log-file", log)
    try:
        pid = daemon_pid(mountpoint)
        names = [n for n in os.listdir(mountpoint) if n.endswith(".tif")]
        plate_bytes = sum((mountpoint / n).stat().st_size for n in names)
        assert plate_bytes >= 10 * CACHE
        (mountpoint / names[0]).read_bytes()  # imports and first decode done: the base line
        base = _status(pid)["VmRSS"]
        _reset_peak(pid)
        started = time.monotonic()
        subprocess.run(["cp", "-r", str(mountpoint), str(tmp_path / "copy")], check=True)
        copy_s = time.monotonic() - started
        peak = _status(pid)["VmHWM"]
        copied = tmp_path / "copy"
        assert sorted(n for n in os.listdir(copied) if n.endswith(".tif")) == sorted(names)
        shutil.rmtree(copied)
        rss = []
        for _ in range(10):
            assert _read_all_uncached(mountpoint) == plate_bytes
            rss.append(_status(pid)["VmRSS"])
        FIGURES.update(plate_mib=plate_bytes / 2**20, cache_mib=CACHE / 2**20, base_mib=base / 2**20,
                       peak_mib=peak / 2**20, peak_over_base_mib=(peak - base) / 2**20, copy_s=copy_s,
                       rss_read2_mib=rss[1] / 2**20, rss_read10_mib=rss[-1] / 2**20)
        print("memory:", {k: round(v, 1) for k, v in FIGURES.items()})
        assert peak - base <= CACHE + MARGIN, FIGURES
        assert rss[-1] - rss[1] <= 16 << 20, FIGURES  # no growth over repeated full reads
    finally:
        cli("unmount", mountpoint)
