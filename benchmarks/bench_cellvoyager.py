"""Mount-ready time of a Yokogawa CellVoyager plate: 1536 wells, 100,000 records in one ``.mlf``.

The measurement is generated with empty image files (names matter, pixels do not): 32 x 48 wells x
4 fields x 2 actions of 2 channels x 4 z = 98,304 image records, plus 1,696 ``ERR`` records
(autofocus failures), in a 34 MB ``MeasurementData.mlf``, with its ``MeasurementDetail.mrf`` and ``.mes``.
Three timings, warm (the tree is listed once before), best of 3:

- ``find`` over the measurement folder: the baseline, what listing the plate costs;
- building the mapping in-process (``CellVoyagerSource``: one pass over the records, one ``scandir``);
- ``hcsfs mount`` as users run it, until it returns (the mount answers) and a first plane is ``stat``-ed,
  Python start-up and imports included. The command opens the plate itself (to fail with a one-line
  error rather than in the daemon's log) and the daemon opens it again, so an instrument plate's
  mapping is built twice on this path.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import HCSFS, best_of
from hcsfs.sources.cellvoyager import CellVoyagerSource

ROWS, COLUMNS, FIELDS, ACTIONS, CHANNELS_PER_ACTION, ZS = 32, 48, 4, 2, 2, 4
ERRORS = 1_696
NS = "http://www.yokogawa.co.jp/BTS/BTSSchema/1.0"
GOAL = "report (issue 15: against find, which reads no file; the mapping parses the whole .mlf)"


def _row(row: int) -> str:
    return chr(64 + row) if row <= 26 else "A" + chr(64 + row - 26)


def _records() -> tuple[list[str], list[str]]:
    lines, files = [], []
    grid = itertools.product(range(1, ROWS + 1), range(1, COLUMNS + 1), range(1, FIELDS + 1),
                             range(1, ACTIONS + 1), range(1, CHANNELS_PER_ACTION + 1), range(1, ZS + 1))
    for row, column, field, action, c, z in grid:
        x, y = -1448.3 + 416.0 * ((field - 1) % 2), 1517.7 - 351.0 * ((field - 1) // 2)
        ch = (action - 1) * CHANNELS_PER_ACTION + c
        name = f"bench-1536_{_row(row)}{column:02d}_T0001F{field:03d}L01A{action:02d}Z{z:02d}C{ch:02d}.tif"
        files.append(name)
        lines.append(
            '<bts:MeasurementRecord bts:Type="IMG" bts:Time="2024-05-06T10:00:00.000+02:00" '
            f'bts:Column="{column}" bts:Row="{row}" bts:TimePoint="1" bts:FieldIndex="{field}" '
            f'bts:ZIndex="{z}" bts:TimelineIndex="1" bts:ActionIndex="{action}" bts:Action="3D" '
            f'bts:X="{x}" bts:Y="{y}" bts:Z="{z - 2.0}" bts:Ch="{ch}">{name}</bts:MeasurementRecord>')
    for n in range(ERRORS):
        row, column = n % ROWS + 1, n // ROWS % COLUMNS + 1
        lines.append(f'<bts:MeasurementRecord bts:Type="ERR" bts:Time="2024-05-06T11:00:00.000+02:00" '
                     f'bts:Column="{column}" bts:Row="{row}" bts:TimePoint="1" bts:TimelineIndex="1" '
                     f'bts:X="-20.0" bts:Y="25.0">AF Error at {_row(row)}{column:02d} No. {n}'
                     "</bts:MeasurementRecord>")
    return lines, files


def generate_plate(root: Path) -> tuple[int, int]:
    """Write the measurement (once; reused when complete); return (records, image files)."""
    marker = root.parent / f"{root.name}.complete"
    lines, files = _records()
    if marker.exists():
        return len(lines), len(files)
    root.mkdir(parents=True, exist_ok=True)
    (root / "MeasurementData.mlf").write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n<bts:MeasurementData bts:Version="1.0" xmlns:bts="{NS}">\n'
        + "\n".join(lines) + "\n</bts:MeasurementData>\n")
    channels = "".join(
        f'<bts:MeasurementChannel bts:Ch="{ch}" bts:HorizontalPixelDimension="0.325" '
        'bts:VerticalPixelDimension="0.325" bts:CameraNumber="1" bts:InputBitDepth="16" '
        'bts:HorizontalPixels="2560" bts:VerticalPixels="2160" />\n'
        for ch in range(1, ACTIONS * CHANNELS_PER_ACTION + 1))
    (root / "MeasurementDetail.mrf").write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n<bts:MeasurementDetail bts:Version="1.0" '
        f'bts:MeasurementSettingFileName="bench.mes" bts:ColumnCount="{COLUMNS}" bts:RowCount="{ROWS}" '
        f'bts:TargetSystem="CV8000" xmlns:bts="{NS}">\n{channels}</bts:MeasurementDetail>\n')
    targets = "".join(f'<bts:Channel bts:Ch="{ch}" bts:Target="stain {ch}" />'
                      for ch in range(1, ACTIONS * CHANNELS_PER_ACTION + 1))
    (root / "bench.mes").write_text(f'<bts:MeasurementSetting xmlns:bts="{NS}"><bts:ChannelList>{targets}'
                                    "</bts:ChannelList></bts:MeasurementSetting>\n")
    for name in files:
        os.close(os.open(root / name, os.O_CREAT | os.O_WRONLY, 0o644))
    marker.touch()
    return len(lines), len(files)


def _mount_ready(root: Path, mountpoint: Path, first: str) -> None:
    subprocess.run([*HCSFS, "mount", str(root), str(mountpoint), "--no-pipelines"], check=True,
                   capture_output=True)
    try:
        os.stat(mountpoint / first)
    finally:
        subprocess.run([*HCSFS, "unmount", str(mountpoint)], check=True, capture_output=True)


def run(workdir: Path) -> list[dict[str, object]]:
    root = Path(workdir) / "cv_1536"
    records, files = generate_plate(root)
    logging.getLogger("hcsfs.sources.workspace").setLevel(logging.ERROR)

    def find() -> None:
        subprocess.run(["find", str(root)], check=True, stdout=subprocess.DEVNULL)

    planes, cpu_s = 0, float("inf")

    def build() -> None:
        nonlocal planes, cpu_s
        started = time.process_time()
        planes = len(CellVoyagerSource(root))
        cpu_s = min(cpu_s, time.process_time() - started)

    find()  # warm the dentry cache (and the .mlf's pages) for all three
    find_s = best_of(3, find)
    build_s = best_of(3, build)
    with tempfile.TemporaryDirectory(prefix="hcsfs-bench-cv-") as scratch:
        mountpoint = Path(scratch) / "mnt"
        mountpoint.mkdir()
        mount_s = best_of(3, lambda: _mount_ready(root, mountpoint, "A01_s001_w1_z001_t001.tif"))
    detail = (f"{records:,} records ({planes:,} planes, {files:,} files, 1536 wells): hcsfs mount to first "
              f"stat {mount_s:.2f} s, mapping in-process {build_s:.2f} s ({cpu_s:.2f} s CPU, "
              f"{cpu_s / records * 1e6:.0f} us per record), find {find_s:.3f} s (warm, best of 3; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    case = "CellVoyager 1536-well, 100k records"
    return [
        {"case": f"{case}: mount ready", "baseline": "find", "ratio": round(mount_s / find_s, 2),
         "goal": GOAL, "detail": detail},
        {"case": f"{case}: mapping build", "baseline": "find", "ratio": round(build_s / find_s, 2),
         "goal": GOAL, "detail": detail},
    ]


if __name__ == "__main__":
    import json
    import sys

    default = Path(tempfile.mkdtemp(prefix="hcsfs-bench-"))
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    print(json.dumps(run(target), indent=2))
