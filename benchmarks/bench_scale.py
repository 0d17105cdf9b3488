"""Views at scale (issue 7): memory per mounted plane and the cost of one stat on a huge plate.

Two metadata-only OME-Zarr v0.5 plates (no chunks: planes would read as the fill value) with the same
field image per well, ``(t, c, z, y, x) = (10, 4, 16, 64, 64)`` = 640 planes a well: 96 wells (61,440
planes) and 1,536 wells (983,040 planes). Each is mounted with the ``hcsfs mount`` daemon and listed
with ``find``; the daemon's resident memory after the listing, minus the 96-well plate's, divided by the
difference in planes, is the memory per plane. ``stat`` of random planes is timed on a fresh mount
(nothing cached by the kernel) for both plates.

Issue 14 adds, each with its goal:

- ``ls -f`` of a 921,600-plane metadata-only plate (1,536 wells x 25 fields x 4 channels x 2 z x 3 t) on
  a fresh daemon mount and again (kernel caches warm), and the daemon's RSS growth per plane from just
  after the mount to just after that listing;
- the daemon's whole-process peak RSS (``VmHWM``) while ``cp -r`` copies a zstd plate of 10x the
  ``--cache-size 64M`` budget out of the mount, minus that budget.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.common import HCSFS, cli_mount
from hcsfs.naming import PlaneKey, format_well, row_letters
from hcsfs.sinks.zarr import OmeZarrPlateWriter, ZarrWriteOptions

FIELD = (10, 4, 16, 64, 64)
PLANES_PER_WELL = FIELD[0] * FIELD[1] * FIELD[2]


def write_metadata_plate(root: Path, rows: int, columns: int, field: tuple[int, ...] = FIELD,
                         fields: int = 1) -> Path:
    """A v0.5 plate of rows x columns wells, ``fields`` field images each, with no chunks (written once)."""
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    reference = root.with_name(root.name + ".ref")
    shutil.rmtree(reference, ignore_errors=True)
    writer = OmeZarrPlateWriter(reference, ZarrWriteOptions(compressor="zstd", level=1))
    writer.create_field("A01", 1, field, "u2", channel_names=["DAPI", "GFP", "RFP", "Cy5"],
                        pixel_size_um=0.65)
    writer.finish()
    documents = {name: (reference / "A" / "1" / name).read_bytes()
                 for name in ("zarr.json", "0/zarr.json", "0/0/zarr.json")}
    plate_doc = json.loads((reference / "zarr.json").read_text())
    shutil.rmtree(reference)
    root.mkdir(parents=True)
    entries = []
    for row in range(1, rows + 1):
        (root / row_letters(row)).mkdir()
        (root / row_letters(row) / "zarr.json").write_text(
            '{"zarr_format": 3, "node_type": "group", "attributes": {}}')
        for column in range(1, columns + 1):
            well = root / row_letters(row) / str(column)
            for site in range(fields):
                (well / str(site) / "0").mkdir(parents=True)
                (well / str(site) / "zarr.json").write_bytes(documents["0/zarr.json"])
                (well / str(site) / "0" / "zarr.json").write_bytes(documents["0/0/zarr.json"])
            well_doc = json.loads(documents["zarr.json"])
            well_doc["attributes"]["ome"]["well"]["images"] = [{"path": str(i)} for i in range(fields)]
            (well / "zarr.json").write_text(json.dumps(well_doc))
            entries.append({"path": f"{row_letters(row)}/{column}", "rowIndex": row - 1,
                            "columnIndex": column - 1})
    plate = plate_doc["attributes"]["ome"]["plate"]
    plate["rows"] = [{"name": row_letters(r)} for r in range(1, rows + 1)]
    plate["columns"] = [{"name": str(c)} for c in range(1, columns + 1)]
    plate["wells"] = entries
    (root / "zarr.json").write_text(json.dumps(plate_doc))
    (root / ".complete").touch()
    return root


def _daemon_pid(mountpoint: Path) -> int:
    out = subprocess.run(["pgrep", "-f", f"hcsfs mount .* {mountpoint} --foreground"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0])


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _listed(plate: Path, mountpoint: Path) -> tuple[int, float, int]:
    """(RSS after a full find, find seconds, entries found) of a fresh daemon mount."""
    with cli_mount(plate, mountpoint, "--no-pipelines"):
        started = time.perf_counter()
        found = subprocess.run(["find", str(mountpoint), "-maxdepth", "1", "-name", "*.tif"],
                               capture_output=True, text=True, check=True).stdout.count("\n")
        seconds = time.perf_counter() - started
        return _rss_bytes(_daemon_pid(mountpoint)), seconds, found


def _stat_times(plate: Path, mountpoint: Path, rows: int, columns: int,
                wells: int = 64, per_well: int = 8) -> tuple[list[float], list[float]]:
    """Stat times on a fresh mount: the first plane of each of ``wells`` random wells (its metadata is
    read then), and ``per_well`` more planes of those wells (metadata already read)."""
    rng = random.Random(1)
    chosen = rng.sample([(r, c) for r in range(1, rows + 1) for c in range(1, columns + 1)], wells)

    def random_key(row: int, column: int) -> PlaneKey:
        return PlaneKey(format_well(row, column), 1, rng.randint(1, FIELD[1]),
                        rng.randint(1, FIELD[2]), rng.randint(1, FIELD[0]))

    first, later = [], []
    with cli_mount(plate, mountpoint, "--no-pipelines"):
        for row, column in chosen:
            for n in range(per_well + 1):
                path = mountpoint / random_key(row, column).name
                started = time.perf_counter()
                os.stat(path)
                (first if n == 0 else later).append(time.perf_counter() - started)
    return first, later


LISTING_FIELD = (3, 4, 2, 64, 64)  # t, c, z: 24 planes a field image
LISTING_FIELDS = 25
LISTING_PLANES = 1536 * LISTING_FIELDS * 24  # 921,600


def _status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def _timed_ls(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    out = subprocess.run(["ls", "-f", str(path)], capture_output=True, check=True).stdout
    return time.perf_counter() - started, out.count(b".tif\n")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_system_seconds() -> float:
    """System CPU time of finished child processes: for ``ls``, the kernel's share of a listing
    (readdirplus entries linked into the dentry and inode caches happen in the reader's syscalls)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


def big_listing(workdir: Path) -> list[dict]:
    """``ls -f`` of the 921,600-plane plate, fresh and again, and RSS growth per plane."""
    plate = write_metadata_plate(workdir / "plate-921600.zarr", 32, 48, LISTING_FIELD, LISTING_FIELDS)
    mountpoint = workdir / "mnt-921600"
    with cli_mount(plate, mountpoint, "--no-pipelines"):
        pid = _daemon_pid(mountpoint)
        os.stat(mountpoint / "A01_s001_w1_z001_t001.tif")  # the daemon is up and answering
        before = _status_bytes(pid, "VmRSS")
        cpu, kernel = _cpu_seconds(pid), _children_system_seconds()
        fresh, found = _timed_ls(mountpoint)
        fresh_cpu, fresh_kernel = _cpu_seconds(pid) - cpu, _children_system_seconds() - kernel
        after = _status_bytes(pid, "VmRSS")
        runs = []
        for _ in range(2):
            cpu, kernel = _cpu_seconds(pid), _children_system_seconds()
            seconds = _timed_ls(mountpoint)[0]
            runs.append((seconds, _cpu_seconds(pid) - cpu, _children_system_seconds() - kernel))
        again, again_cpu, again_kernel = min(runs)
    assert found == LISTING_PLANES, found
    per_plane = (after - before) / found
    return [
        {"case": f"ls -f of a {LISTING_PLANES:,}-plane OME-Zarr plate (metadata only), fresh mount",
         "baseline": "seconds (goal <= 5 s)", "ratio": fresh, "goal": "<= 5",
         "detail": f"{fresh:.1f} s fresh, {again:.1f} s again; 1,536 wells x 25 fields x 4 ch x 2 z x 3 t; "
                   f"daemon CPU {fresh_cpu:.1f} s, kernel (ls system time) {fresh_kernel:.1f} s"},
        {"case": f"ls -f of the {LISTING_PLANES:,}-plane plate, again", "baseline": "seconds",
         "ratio": again, "goal": "<= 5",
         "detail": f"{again:.1f} s; daemon CPU {again_cpu:.1f} s, kernel {again_kernel:.1f} s"},
        {"case": "daemon RSS growth per plane after that listing", "baseline": "bytes per plane",
         "ratio": per_plane, "goal": "<= 100",
         "detail": f"RSS {before / 2**20:.0f} MiB after the mount, "
                   f"{after / 2**20:.0f} MiB after the listing"},
    ]


COPY_SHAPE = (2048, 1024)  # 4 MiB uint16 planes
COPY_CACHE = 64 << 20
COPY_PLANES = 10 * COPY_CACHE // (COPY_SHAPE[0] * COPY_SHAPE[1] * 2)  # 160: 10x the budget


def write_copy_plate(root: Path) -> Path:
    """10 wells x 16 planes (4 channels x 4 z) of 4 MiB, zstd-1, one chunk a plane (640 MiB decoded)."""
    if (root / ".complete").exists():
        return root
    import numcodecs
    import numpy as np

    shutil.rmtree(root, ignore_errors=True)
    writer = OmeZarrPlateWriter(root, ZarrWriteOptions(compressor="zstd", level=1))
    rng = np.random.default_rng(0)
    base = rng.normal(1000, 100, COPY_SHAPE).clip(0, 65535).astype("<u2")
    codec = numcodecs.Zstd(level=1)
    wells = [format_well(1 + i // 5, 1 + i % 5) for i in range(COPY_PLANES // 16)]
    for well in wells:
        writer.create_field(well, 1, (1, 4, 4, *COPY_SHAPE), "u2",
                            channel_names=["DAPI", "GFP", "RFP", "Cy5"], pixel_size_um=0.65)
    writer.finish()
    for index, well in enumerate(wells):
        row, column = well[0], str(int(well[1:]))
        for c in range(4):
            for z in range(4):
                chunk = root / row / column / "0" / "0" / "c" / "0" / str(c) / str(z) / "0"
                chunk.mkdir(parents=True, exist_ok=True)
                (chunk / "0").write_bytes(codec.encode(np.roll(base, index * 16 + c * 4 + z)))
    (root / ".complete").touch()
    return root


def copy_peak(workdir: Path) -> list[dict]:
    """Whole-process peak RSS of the daemon while ``cp -r`` copies the plate out of the mount."""
    plate = write_copy_plate(workdir / "plate-copy.zarr")
    mountpoint = workdir / "mnt-copy"
    target = workdir / "copied"
    shutil.rmtree(target, ignore_errors=True)
    with cli_mount(plate, mountpoint, "--no-pipelines", "--cache-size", "64M"):
        pid = _daemon_pid(mountpoint)
        started = time.perf_counter()
        subprocess.run(["cp", "-r", str(mountpoint), str(target)], check=True)
        seconds = time.perf_counter() - started
        peak = _status_bytes(pid, "VmHWM")
    copied = sum(p.stat().st_size for p in target.iterdir() if p.suffix == ".tif")
    shutil.rmtree(target, ignore_errors=True)
    over = (peak - COPY_CACHE) / 1e6
    return [{"case": "daemon peak RSS during cp -r of a plate 10x --cache-size 64M, minus the budget",
             "baseline": "MB", "ratio": over, "goal": "<= 150",
             "detail": f"VmHWM {peak / 2**20:.0f} MiB; {copied / 2**20:.0f} MiB copied in {seconds:.1f} s"}]


def run(workdir: Path) -> list[dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    return _views(workdir) + big_listing(workdir) + copy_peak(workdir)


def _views(workdir: Path) -> list[dict]:
    small = write_metadata_plate(workdir / "plate-96.zarr", 8, 12)
    big = write_metadata_plate(workdir / "plate-1536.zarr", 32, 48)
    mountpoint = workdir / "mnt"
    rss_small, _, found_small = _listed(small, mountpoint)
    rss_big, find_big, found_big = _listed(big, mountpoint)
    assert found_small == 96 * PLANES_PER_WELL and found_big == 1536 * PLANES_PER_WELL
    per_plane = (rss_big - rss_small) / (found_big - found_small)
    first_small, later_small = _stat_times(small, mountpoint, 8, 12)
    first_big, later_big = _stat_times(big, mountpoint, 32, 48)
    median = statistics.median
    return [
        {"case": "memory per mounted plane (1,536 vs 96 wells, after a full listing)",
         "baseline": "bytes per plane", "ratio": per_plane, "goal": "< 200",
         "detail": f"daemon RSS {rss_big / 2**20:.0f} MiB for {found_big:,} planes, "
                   f"{rss_small / 2**20:.0f} MiB for {found_small:,}; find of the root {find_big:.1f} s"},
        {"case": "stat of a plane in a well already touched, 1,536 vs 96 wells",
         "baseline": "96-well plate", "ratio": median(later_big) / median(later_small),
         "goal": "<= 1.2 (and < 1 ms)",
         "detail": f"median {median(later_big) * 1e3:.3f} ms vs {median(later_small) * 1e3:.3f} ms"},
        {"case": "stat of the first plane of a well (reads its metadata), 1,536 vs 96 wells",
         "baseline": "96-well plate", "ratio": median(first_big) / median(first_small),
         "goal": "<= 1.2", "detail": f"median {median(first_big) * 1e3:.2f} ms vs "
                                      f"{median(first_small) * 1e3:.2f} ms"},
    ]


if __name__ == "__main__":
    import sys

    print(run(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-out/bench_scale")))
    print(HCSFS)
