"""Foundation cases (issue 2): passthrough reads, encoded reads, and listing 100,000 planes.

(a) Passthrough TIFF reads through a daemon mount vs reading the source files directly, cold (pages of
    both the source and the mount evicted with ``posix_fadvise(DONTNEED)``) and warm.
(b) Encoded memory-source planes read through the mount (by a separate reader process, 1 MiB reads into
    one buffer) vs serving the same bytes in-process the way the mount does: the TIFF layout planned,
    the pixels viewed without a copy, and each 1 MiB range copied into the reader's buffer. Like with
    like: both sides copy each byte once into a reader's buffer; neither builds the whole file as one
    byte string (``encode_tiff``, the old baseline, did, which made the ratio a copy-cost comparison).
(c) ``ls -l`` and ``find`` on a mount of 100,000 planes vs the same names on tmpfs, on a fresh mount
    (nothing in the kernel's caches) and again (warm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

import hcsfs
from benchmarks.common import best_of, cli_mount, drop_page_cache, read_all
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.planefile import EncodedFile
from hcsfs.tiff import pixel_buffer, plan_tiff

PASSTHROUGH_PLANES, PASSTHROUGH_SHAPE = 48, (2048, 2048)
ENCODED_PLANES, ENCODED_SHAPE = 48, (2048, 2048)
LISTING_PLANES = 100_000


def _keys(count: int) -> list[PlaneKey]:
    keys = []
    row, column, site = 1, 1, 1
    while len(keys) < count:
        for channel in (1, 2, 3, 4):
            keys.append(PlaneKey(hcsfs.naming.format_well(row, column), site, channel))
        site += 1
        if site > 25:
            site, column = 1, column + 1
            if column > 48:
                column, row = 1, row + 1
    return keys[:count]


def _plane(index: int, shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 4096, shape, dtype=np.uint16)


def passthrough(workdir: Path) -> list[dict]:
    source = workdir / "tiffs"
    keys = _keys(PASSTHROUGH_PLANES)
    if not (source / ".complete").exists():
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        for i, key in enumerate(keys):
            tifffile.imwrite(source / key.name, _plane(i, PASSTHROUGH_SHAPE))
        (source / ".complete").write_text("")
    native_files = [source / k.name for k in keys]
    total = sum(p.stat().st_size for p in native_files)
    with cli_mount(source, workdir / "mnt-pass") as mnt:
        mounted_files = [mnt / k.name for k in keys]

        def cold_native() -> None:
            drop_page_cache(native_files)
            read_all(native_files)

        def cold_mount() -> None:
            drop_page_cache(native_files)
            drop_page_cache(mounted_files)
            read_all(mounted_files)

        cold = [best_of(3, cold_native), best_of(3, cold_mount)]
        read_all(native_files)
        read_all(mounted_files)
        warm = [best_of(5, lambda: read_all(native_files)), best_of(5, lambda: read_all(mounted_files))]
    mib = total / 2**20
    return [
        {"case": "(a) passthrough read, cold", "baseline": "direct read of the source files",
         "ratio": cold[0] / cold[1], "goal": ">= 0.8",
         "detail": f"{mib:.0f} MiB: {mib / cold[1]:.0f} MiB/s vs {mib / cold[0]:.0f} MiB/s native"},
        {"case": "(a) passthrough read, warm", "baseline": "direct read of the source files",
         "ratio": warm[0] / warm[1], "goal": ">= 0.95",
         "detail": f"{mib / warm[1]:.0f} MiB/s vs {mib / warm[0]:.0f} MiB/s native"},
    ]


_TIMED_READER = """
import sys, time
paths = sys.argv[1:]
buffer = bytearray(1 << 20)
started = time.perf_counter()
for path in paths:
    with open(path, 'rb', buffering=0) as f:
        while f.readinto(buffer):
            pass
print(time.perf_counter() - started)
"""


def _serve_in_process(plate: MemoryPlate, keys: list[PlaneKey]) -> int:
    """The mount's serving path without FUSE: plan, view the pixels, copy 1 MiB ranges into a buffer."""
    buffer = bytearray(1 << 20)
    total = 0
    for key in keys:
        plane = plate.read_plane(key)
        layout = plan_tiff(plane.shape, plane.dtype, 0.65)
        file = EncodedFile(layout, lambda plane=plane, layout=layout: pixel_buffer(layout, plane))
        for offset in range(0, file.size, 1 << 20):
            chunk = file.read(offset, 1 << 20)
            buffer[: len(chunk)] = chunk
            total += len(chunk)
    return total


def encoded(workdir: Path) -> list[dict]:
    plate = MemoryPlate(pixel_size_um=0.65)
    keys = _keys(ENCODED_PLANES)
    for i, key in enumerate(keys):
        plate.add(key, _plane(i, ENCODED_SHAPE))
    in_process = best_of(3, lambda: _serve_in_process(plate, keys))
    mountpoint = workdir / "mnt-encoded"
    mountpoint.mkdir(parents=True, exist_ok=True)
    times = []
    for _ in range(3):  # each run on a fresh mount: nothing in the kernel's page cache
        with hcsfs.mounted(plate, mountpoint) as mnt:
            out = subprocess.run([sys.executable, "-c", _TIMED_READER,
                                  *[str(mnt.path / k.name) for k in keys]],
                                 capture_output=True, text=True, check=True)
            times.append(float(out.stdout))
    through_mount = min(times)
    mib = ENCODED_PLANES * np.prod(ENCODED_SHAPE) * 2 / 2**20
    return [{"case": "(b) encoded memory planes through the mount",
             "baseline": "the same bytes served in-process (1 MiB ranges copied)",
             "ratio": in_process / through_mount, "goal": ">= 0.8",
             "detail": f"{mib:.0f} MiB: {mib / through_mount:.0f} MiB/s vs {mib / in_process:.0f} MiB/s"}]


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def listing(workdir: Path) -> list[dict]:
    keys = _keys(LISTING_PLANES)
    plate = MemoryPlate()
    tiny = np.zeros((8, 8), np.uint16)
    for key in keys:
        plate.add(key, tiny)
    size = plate.info(keys[0]).size
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmpfs:
        for key in keys:
            with open(os.path.join(tmpfs, key.name), "wb") as file:
                file.truncate(size)
        tmpfs_ls = best_of(3, lambda: _timed(["ls", "-l", tmpfs]))
        tmpfs_find = best_of(3, lambda: _timed(["find", tmpfs]))
    mountpoint = workdir / "mnt-listing"
    mountpoint.mkdir(parents=True, exist_ok=True)
    rows = []
    for xattrs in (True, False):
        with hcsfs.mounted(plate, mountpoint, xattrs=xattrs) as mnt:
            cold_ls = _timed(["ls", "-l", str(mnt.path)])
            warm_ls = best_of(3, lambda: _timed(["ls", "-l", str(mnt.path)]))
        label = " (--xattrs)" if xattrs else " (default: no xattrs)"
        rows += [
            {"case": f"(c) ls -l, fresh mount{label}", "baseline": "tmpfs",
             "ratio": cold_ls / tmpfs_ls, "goal": "<= 2", "detail": f"{cold_ls:.2f} s"},
            {"case": f"(c) ls -l, again{label}", "baseline": "tmpfs", "ratio": warm_ls / tmpfs_ls,
             "goal": "<= 2", "detail": f"{warm_ls:.2f} s"},
        ]
    with hcsfs.mounted(plate, mountpoint) as mnt:
        cold_find = _timed(["find", str(mnt.path)])
        warm_find = best_of(3, lambda: _timed(["find", str(mnt.path)]))
    rows[0]["detail"] += (f"; {LISTING_PLANES:,} planes; tmpfs: ls -l {tmpfs_ls:.2f} s, "
                          f"find {tmpfs_find:.2f} s")
    return rows + [
        {"case": "(c) find, fresh mount", "baseline": "tmpfs", "ratio": cold_find / tmpfs_find,
         "goal": "<= 3", "detail": f"{cold_find:.2f} s"},
        {"case": "(c) find, again", "baseline": "tmpfs", "ratio": warm_find / tmpfs_find,
         "goal": "<= 3", "detail": f"{warm_find:.2f} s"},
    ]


def run(workdir: Path) -> list[dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    return passthrough(workdir) + encoded(workdir) + listing(workdir)
