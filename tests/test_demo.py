"""`make demo` (``python -m hcsfs.demo``) end to end: two real-looking plates, two mounts, the screen
analysis, the hints it prints, within a minute; ``--unmount`` leaves nothing mounted."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcsfs.fs.mounttable import find_mount
from hcsfs.naming import PlaneKey, parse_name
from hcsfs.sources.tiffprobe import metadata_xml_props

pytestmark = pytest.mark.mount

GUID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\.tif$")


def _demo(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hcsfs.demo", "--dir", str(folder), *args],
                          capture_output=True, text=True, timeout=300)


def test_demo_writes_mounts_analyses_and_says_what_to_try(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    ixm, zarr = folder / "mnt" / "imagexpress", folder / "mnt" / "ome-zarr"
    started = time.monotonic()
    try:
        done = _demo(folder)
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert elapsed < 60, f"the demo took {elapsed:.0f} s"
        assert find_mount(ixm) is not None and find_mount(zarr) is not None

        # The instrument plate looks like MetaXpress's: nested folders, GUID names, thumbnails, an HTD.
        plate = folder / "imagexpress"
        files = sorted(plate.rglob("*.tif"))
        thumbs = [p for p in files if "_thumb" in p.name]
        assert len(files) == 2 * len(thumbs) == 2 * 96
        assert {p.parent.relative_to(plate).as_posix() for p in files} == {
            f"TimePoint_{t}/ZStep_{z}" for t in (1, 2) for z in (1, 2)}
        assert all(GUID.search(p.name) for p in files)
        assert b"\r\n" in (plate / "demo.HTD").read_bytes()

        # Through the mount: 96 flat names, each the bytes of its instrument file.
        names = sorted(p.name for p in ixm.iterdir() if p.suffix == ".tif")
        assert len(names) == 96
        assert {parse_name(n).z for n in names} == {1, 2} and {parse_name(n).t for n in names} == {1, 2}
        a_plane = "B02_s002_w2_z002_t002.tif"
        (source,) = [p for p in (plate / "TimePoint_2" / "ZStep_2").glob("demo_B02_s2_w2*.tif")
                     if "_thumb" not in p.name]
        assert (ixm / a_plane).read_bytes() == source.read_bytes()
        with tifffile.TiffFile(source) as tif:
            assert metadata_xml_props(tif.pages.first.description)["_IllumSetting_"] == "GFP"
        assert len((ixm / ".hcsfs" / "loaddata.csv").read_text().splitlines()) == 1 + 6 * 2 * 2 * 2

        # The zarr plate: encoded planes equal to what the demo generated.
        from hcsfs.synthetic import cells_plane

        zarr_names = sorted(p.name for p in zarr.iterdir() if p.suffix == ".tif")
        assert len(zarr_names) == 24
        np.testing.assert_array_equal(tifffile.imread(zarr / "A02_s002_w2_z001_t001.tif"),
                                      cells_plane(1000 + 1 * 10 + 2, channel=2))

        # The screen analysis ran on the instrument mount.
        run = ixm / "screen"
        with open(run / "wells.csv", newline="") as file:
            wells = {row["well"]: row for row in csv.DictReader(file)}
        assert set(wells) == {"A01", "A02", "A03", "B01", "B02", "B03"}
        assert all(int(row["Count_nuclei"]) > 8 * 5 for row in wells.values())  # 8 planes a well
        rois = sorted((run / "rois").glob("*_nuclei.roi.zip"))
        assert len(rois) == 6 * 2 * 2 * 2  # one ROI set per DAPI plane
        heatmaps = {p.name for p in (run / "heatmaps").glob("*.png")}
        assert heatmaps == {"Count_nuclei.png", "Intensity_MeanIntensity_GFP_nuclei.png"}

        # What it prints points at things that exist.
        out = done.stdout
        for shown in (run / "wells.csv", run / "rois", run / "heatmaps", ixm / ".hcsfs" / "loaddata.csv",
                      ixm / ".hcsfs" / "planes.csv", folder / "screen.yaml"):
            assert str(shown) in out and shown.exists(), shown
        assert "contrib/screen.yaml" in out and "hcsfs_loaddata.cppipe" in out and "--unmount" in out
        assert PlaneKey("A01").name in out

        # Again: the plates are kept, the mounts are replaced.
        again = _demo(folder, "--no-analysis")
        assert again.returncode == 0, again.stderr[-2000:]
        assert "wrote" not in again.stdout and again.stdout.count("unmounted") == 2
        assert source.read_bytes() == (ixm / a_plane).read_bytes()
    finally:
        stopped = _demo(folder, "--unmount")
    assert stopped.returncode == 0, stopped.stderr
    assert find_mount(ixm) is None and find_mount(zarr) is None
