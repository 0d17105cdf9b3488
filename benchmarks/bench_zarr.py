"""OME-Zarr benchmarks (issue 4): every ratio's two sides are measured in the same run.

- mount read vs in-process zarr read + TIFF encode of the same planes (blosc-lz4 and zstd): >= 0.8
- two concurrent readers vs one through the mount: >= 1.6
- stat + open + read of random planes, 7,035-well vs 96-well plate: <= 1.2
- ``hcsfs mount`` to first answered ``stat`` on the 7,035-well plate: < 1 s
- per-position loop (300 distinct random positions, each read once, on a fresh mount, the source's pages
  dropped before each side) through the mount vs iohub 0.3.11 (in its own venv) opening the plate per
  position as the seed issue does (>= 30x) and opening it once (>= 1x), and vs direct
  ``zarr.open_array`` (>= 1x)

Mounts are made with the ``hcsfs mount`` CLI (a daemon, so reader and server do not share a GIL) and
each timed pass reads every file once from a fresh mount (the kernel keeps served pages cached).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import drop_page_cache
from benchmarks.zarr_iohub import iohub_python
from benchmarks.zarr_plates import well_names, well_paths, write_positions_plate
from hcsfs.convert import convert_plate
from hcsfs.naming import PlaneKey
from hcsfs.sources import MemoryPlate
from hcsfs.tiff import encode_tiff

HCSFS = str(Path(sys.executable).with_name("hcsfs"))
BIG, SMALL = 7035, 96


@contextmanager
def _mounted(source: Path, mountpoint: Path, *options: str) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run([HCSFS, "mount", str(source), str(mountpoint), *options], check=True,
                   capture_output=True)
    try:
        yield mountpoint
    finally:
        subprocess.run([HCSFS, "unmount", str(mountpoint)], capture_output=True, check=False)


def _throughput_plate(root: Path, compressor: str) -> Path:
    """8 fields x 2 channels x 4 z of 1024x1024 uint16 (128 MiB), one chunk per plane."""
    path = root / f"throughput-{compressor}.zarr"
    if not (path / "zarr.json").exists():
        rng = np.random.default_rng(0)
        base = (rng.normal(1000, 200, (1024, 1024)).clip(0, 65535)).astype("u2")
        plate = MemoryPlate(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
        for w in ("A01", "A02", "B01", "B02"):
            for s in (1, 2):
                for c in (1, 2):
                    for z in range(1, 5):
                        plate.add(PlaneKey(w, s, c, z), np.roll(base, 7 * (s + c + z)))
        convert_plate(plate, path, compressor=compressor, level=1 if compressor == "zstd" else 5)
    return path


def _in_process_rate(store: Path) -> tuple[float, int]:
    """MiB/s of zarr-python reading each plane and encoding it as the served TIFF."""
    import zarr

    total, start = 0, time.perf_counter()
    for well in ("A/1", "A/2", "B/1", "B/2"):
        for site in ("0", "1"):
            array = zarr.open_array(str(store / well / site / "0"), mode="r")
            for c in range(array.shape[1]):
                for z in range(array.shape[2]):
                    total += len(encode_tiff(np.asarray(array[0, c, z]), 0.65))
    return total / (time.perf_counter() - start) / 2**20, total


def _read_files(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(1 << 20):
                total += len(chunk)
    return total


def _mount_rate(store: Path, mountpoint: Path, readers: int) -> float:
    with _mounted(store, mountpoint) as mnt:
        files = sorted(p for p in mnt.iterdir() if p.suffix == ".tif")
        parts = [files[i::readers] for i in range(readers)]
        sizes = [0] * readers

        def work(i: int) -> None:
            sizes[i] = _read_files(parts[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(readers)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(sizes) / (time.perf_counter() - start) / 2**20


def _best(measure: Callable[[], float], runs: int = 3) -> float:
    return max(measure() for _ in range(runs))


def _random_plane_ops(store: Path, mountpoint: Path, wells: list[str], count: int, seed: int) -> float:
    """Seconds per stat + open + read of a random plane, each plane read once on a fresh mount.

    Distinct planes on a fresh mount keep both plates cold (no kernel or hcsfs cache hit), so the
    ratio shows what the plate's size adds to one plane, not a cache hit rate.
    """
    picks = random.Random(seed).sample(wells, count)
    with _mounted(store, mountpoint) as mnt:
        paths = [mnt / PlaneKey(w).name for w in picks]
        start = time.perf_counter()
        for path in paths:
            os.stat(path)
            with open(path, "rb", buffering=0) as handle:
                handle.read()
        return (time.perf_counter() - start) / count


def _first_stat_seconds(store: Path, mountpoint: Path) -> float:
    mountpoint.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run([HCSFS, "mount", str(store), str(mountpoint)], check=True, capture_output=True)
    try:
        os.stat(mountpoint / "A01_s001_w1_z001_t001.tif")
        return time.perf_counter() - start
    finally:
        subprocess.run([HCSFS, "unmount", str(mountpoint)], capture_output=True, check=False)


_IOHUB_LOOP = """
import json, sys, time
import numpy as np
from iohub.ngff import open_ome_zarr
path, names, budget, mode = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
done, start = 0, time.perf_counter()
if mode == "once":
    with open_ome_zarr(path, mode="r", layout="hcs") as plate:
        for name in names:
            np.asarray(plate[name + "/0"]["0"][:])
            done += 1
            if time.perf_counter() - start > budget:
                break
else:  # as the seed issue does: the plate opened again for every position
    for name in names:
        with open_ome_zarr(path, mode="r", layout="hcs") as plate:
            np.asarray(plate[name + "/0"]["0"][:])
        done += 1
        if time.perf_counter() - start > budget:
            break
print(json.dumps({"rate": done / (time.perf_counter() - start), "positions": done}))
"""

POSITIONS = 300


def _position_files(store: Path, paths: list[str]) -> list[Path]:
    files = []
    for path in paths:
        array = store / path / "0" / "0"
        files += [array / "zarr.json", array / "c" / "0" / "0" / "0" / "0" / "0"]
    return files


def _iohub_rate(store: Path, paths: list[str], cache: Path, budget: float,
                mode: str) -> tuple[float | None, str]:
    python, why = iohub_python(cache)
    if python is None:
        return None, why
    drop_page_cache(_position_files(store, paths))
    done = subprocess.run([python, "-c", _IOHUB_LOOP, str(store), json.dumps(paths), str(budget), mode],
                          capture_output=True, text=True, timeout=budget * 4 + 120, check=False)
    if done.returncode != 0:
        return None, done.stderr[-300:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["rate"]), f"{result['positions']} positions"


def _direct_zarr_rate(store: Path, paths: list[str]) -> float:
    import zarr

    drop_page_cache(_position_files(store, paths))
    start = time.perf_counter()
    for path in paths:
        np.asarray(zarr.open_array(str(store / path / "0" / "0"), mode="r")[:])
    return len(paths) / (time.perf_counter() - start)


def _mount_position_rate(store: Path, mountpoint: Path, warm: list[str], names: list[str],
                         paths: list[str], *options: str) -> float:
    """Positions per second of ``tifffile.imread`` of distinct positions on a fresh mount (a warm-up
    on other positions loads the daemon's imports first); nothing comes from a page cache."""
    import tifffile

    with _mounted(store, mountpoint, *options) as mnt:
        for name in warm:
            tifffile.imread(mnt / PlaneKey(name).name)
        drop_page_cache(_position_files(store, paths))
        start = time.perf_counter()
        for name in names:
            tifffile.imread(mnt / PlaneKey(name).name)
        return len(names) / (time.perf_counter() - start)


def positions(workdir: Path, big: Path) -> list[dict[str, Any]]:
    """The per-position loop: distinct positions, each side cold, both iohub baselines."""
    rows: list[dict[str, Any]] = []
    mnt = workdir / "mnt"
    order = random.Random(7).sample(range(BIG), POSITIONS + 20)
    all_names, all_paths = well_names(BIG), well_paths(BIG)
    names = [all_names[i] for i in order[:POSITIONS]]
    paths = [all_paths[i] for i in order[:POSITIONS]]
    warm = [all_names[i] for i in order[POSITIONS:]]
    via_mount = _mount_position_rate(big, mnt, warm, names, paths)
    via_tensorstore = _mount_position_rate(big, mnt, warm, names, paths, "--zarr-impl", "tensorstore")
    direct = _direct_zarr_rate(big, paths)
    detail = f"positions per second, {POSITIONS} distinct positions, fresh mount, page cache dropped"
    rows.append(_row(f"per-position loop, mount (--zarr-impl tensorstore) vs direct zarr ({BIG} wells)",
                     via_tensorstore, direct, ">= 1", detail, via_tensorstore / direct))
    rows.append(_row(f"per-position loop, mount vs direct zarr.open_array ({BIG} wells)", via_mount,
                     direct, ">= 1", detail, via_mount / direct))
    for mode, label, goal in (("per-position", "iohub 0.3 opening the plate per position", ">= 30"),
                              ("once", "iohub 0.3 opening the plate once", ">= 1")):
        rate, why = _iohub_rate(big, paths, workdir / "venvs", 60.0, mode)
        case = f"per-position loop, mount vs {label} ({BIG} wells)"
        if rate is None:
            rows.append({"case": case, "baseline": None, "ratio": None, "goal": goal,
                         "detail": f"skipped: {why}"})
        else:
            rows.append(_row(case, via_mount, rate, goal, f"{detail}; iohub {why}", via_mount / rate))
    return rows


def _row(case: str, value: float, baseline: float, goal: str, detail: str, ratio: float) -> dict[str, Any]:
    return {"case": case, "value": round(value, 4), "baseline": round(baseline, 4),
            "ratio": round(ratio, 3), "goal": goal, "detail": detail}


def run(workdir: Path) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    mnt = workdir / "mnt"
    for compressor in ("blosclz4", "zstd"):
        store = _throughput_plate(workdir, compressor)
        base = _best(lambda store=store: _in_process_rate(store)[0])  # type: ignore[misc]
        via_mount = _best(lambda store=store: _mount_rate(store, mnt, 1))  # type: ignore[misc]
        rows.append(_row(f"mount read vs in-process zarr+TIFF ({compressor})", via_mount, base, ">= 0.8",
                         "MiB/s, 64 planes of 1024x1024 uint16, best of 3", via_mount / base))
    store = _throughput_plate(workdir, "zstd")
    one = _best(lambda: _mount_rate(store, mnt, 1))
    two = _best(lambda: _mount_rate(store, mnt, 2))
    rows.append(_row("two concurrent readers vs one (zstd)", two, one, ">= 1.6",
                     "MiB/s through the mount, fresh mount per pass", two / one))

    big = write_positions_plate(workdir / f"positions-{BIG}.zarr", BIG)
    small = write_positions_plate(workdir / f"positions-{SMALL}.zarr", SMALL)
    t_small = min(_random_plane_ops(small, mnt, well_names(SMALL), 90, seed) for seed in (1, 2, 3))
    t_big = min(_random_plane_ops(big, mnt, well_names(BIG), 90, seed) for seed in (1, 2, 3))
    rows.append(_row(f"random stat+open+read, {BIG} vs {SMALL} wells", t_big * 1e3, t_small * 1e3, "<= 1.2",
                     "ms per cold plane (128x128 uint16), 90 distinct random planes per fresh mount, "
                     "best of 3", t_big / t_small))
    first = min(_first_stat_seconds(big, mnt) for _ in range(3))
    rows.append(_row(f"hcsfs mount to first stat, {BIG} wells", first, 1.0, "< 1 s",
                     "seconds (ratio = seconds / 1 s goal), best of 3", first))

    rows += positions(workdir, big)
    return rows


if __name__ == "__main__":
    for row in run(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/hcsfs-bench-zarr")):
        print(json.dumps(row))
