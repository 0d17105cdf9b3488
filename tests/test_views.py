"""Views for huge plates: --select filters and /.by-well/ folders, unit and through real mounts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import hcsfs
from hcsfs.errors import PlaneNotFoundError
from hcsfs.naming import PlaneKey
from hcsfs.sources.views import SelectedSource, WellIndex, WellSource, parse_selection
from tests.conformance import SourceConformance
from tests.plates import memory_plate, plate_keys, write_tiff_folder


def test_parse_selection() -> None:
    selection = parse_selection(["channel=1,t=1-3", "well=A01-B02+C05"])
    assert dict(selection.allowed) == {
        "channel": frozenset({1}), "t": frozenset({1, 2, 3}),
        "well": frozenset({"A01", "A02", "B01", "B02", "C05"})}
    assert PlaneKey("B02", 3, 1, 7, 2) in selection
    assert PlaneKey("B02", 3, 2, 7, 2) not in selection
    assert PlaneKey("A01", z="max") in parse_selection(["z=max"])
    for bad in ["colour=1", "channel", "t=a-b", "well=A1"]:
        with pytest.raises(ValueError):
            parse_selection([bad])


def test_views_forward_the_source_capabilities(tmp_path: Path) -> None:
    """``--select`` and ``/.by-well/`` keep the source's fast paths (issue 14): planes in memory, and
    metadata already known (``info_ready``), answered only inside the view."""
    plate = memory_plate()
    keys = list(plate.keys())
    selected = SelectedSource(plate, parse_selection([f"well={keys[0].well}"]))
    assert selected.planes_in_memory and selected.caches_planes and selected.frozen
    assert selected.info_ready(keys[0]) == plate.info(keys[0])  # in memory: known without I/O
    outside = next(k for k in keys if k.well != keys[0].well)
    assert plate.info_ready(outside) is not None and selected.info_ready(outside) is None
    from hcsfs.sources.tiffdir import TiffFolderSource

    folder = TiffFolderSource(write_tiff_folder(tmp_path / "plate", plate))
    well = WellSource(folder, WellIndex(folder), keys[0].well)
    other = next(k for k in keys if k.well != keys[0].well)
    assert well.info_ready(keys[0]) is None  # not checked yet: needs I/O
    info = folder.info(keys[0])
    assert well.info_ready(keys[0]) == info and folder.info_ready(keys[0]) == info
    folder.info(other)
    assert well.info_ready(other) is None  # outside the view
    assert not well.planes_in_memory


def test_selected_source_hides_the_rest() -> None:
    plate = memory_plate(plate_keys(("A01", "B01"), sites=2, channels=3, t=3))
    selected = SelectedSource(plate, parse_selection(["channel=2,t=2-3,well=B01"]))
    keys = list(selected.keys())
    assert keys == [k for k in plate.keys() if k.channel == 2 and k.t in (2, 3) and k.well == "B01"]
    assert len(keys) == 4
    with pytest.raises(PlaneNotFoundError):
        selected.info(PlaneKey("A01", 1, 2, 1, 2))
    np.testing.assert_array_equal(selected.read_plane(keys[0]), plate.read_plane(keys[0]))
    assert selected.describe().extra["selection"]["channel"] == [2]


def test_well_index_and_well_source() -> None:
    plate = memory_plate(plate_keys(("B02", "A01", "AF48"), sites=2, channels=1))
    index = WellIndex(plate)
    assert index.wells() == ["A01", "B02", "AF48"]
    well = WellSource(plate, index, "B02")
    assert list(well.keys()) == [PlaneKey("B02", 1), PlaneKey("B02", 2)]
    with pytest.raises(PlaneNotFoundError):
        well.info(PlaneKey("A01"))


@pytest.mark.mount
def test_by_well_folders_through_the_mount(mountpoint: Path) -> None:
    plate = memory_plate(plate_keys(("A01", "B02"), sites=2, channels=2))
    with hcsfs.mounted(plate, mountpoint) as mnt:
        by_well = mnt.path / ".by-well"
        assert sorted(os.listdir(by_well)) == ["A01", "B02"]
        names = sorted(os.listdir(by_well / "B02"))
        assert names == sorted(k.name for k in plate.keys() if k.well == "B02")
        key = PlaneKey("B02", 2, 2)
        assert (by_well / "B02" / key.name).read_bytes() == (mnt.path / key.name).read_bytes()
        assert not (by_well / "B02" / PlaneKey("A01").name).exists()
        found = subprocess.run(["find", str(by_well), "-name", "*.tif"], capture_output=True, text=True,
                               check=True).stdout.split()
        assert len(found) == len(plate)


@pytest.mark.mount
def test_select_option_through_the_cli(tmp_path: Path, mountpoint: Path) -> None:
    plate = memory_plate(plate_keys(("A01", "B01"), sites=1, channels=3, t=4))
    source = write_tiff_folder(tmp_path / "plate", plate)
    cli = [sys.executable, "-m", "hcsfs"]
    bad = subprocess.run([*cli, "mount", str(source), str(mountpoint), "--select", "colour=1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "expected AXIS=VALUES" in bad.stderr and "Traceback" not in bad.stderr
    subprocess.run([*cli, "mount", str(source), str(mountpoint), "--select", "channel=3,t=2-3"], check=True)
    try:
        names = sorted(n for n in os.listdir(mountpoint) if n.endswith(".tif"))
        assert names == sorted(k.name for k in plate.keys() if k.channel == 3 and k.t in (2, 3))
        key = PlaneKey("B01", 1, 3, 1, 3)
        np.testing.assert_array_equal(tifffile.imread(mountpoint / key.name), plate.read_plane(key))
        assert not (mountpoint / PlaneKey("B01", 1, 1, 1, 3).name).exists()
    finally:
        subprocess.run([*cli, "unmount", str(mountpoint)], check=True)


@pytest.mark.mount
def test_by_well_is_reachable_but_not_listed(mountpoint: Path) -> None:
    """cp -r, rsync and find of the mount must not walk a second copy of every plane."""
    plate = memory_plate(plate_keys(("A01",), sites=1, channels=1))
    with hcsfs.mounted(plate, mountpoint) as mnt:
        assert ".by-well" not in os.listdir(mnt.path)
        assert (mnt.path / ".by-well").is_dir()
        assert os.listdir(mnt.path / ".by-well" / "A01") == ["A01_s001_w1_z001_t001.tif"]


class TestSelectedTiffFolder(SourceConformance):
    """The ``--select`` wrapper passes the suite over a passthrough source."""

    @pytest.fixture
    def original(self) -> hcsfs.MemoryPlate:
        return memory_plate()

    @pytest.fixture
    def source(self, tmp_path: Path, original: hcsfs.MemoryPlate) -> SelectedSource:
        from hcsfs.sources.tiffdir import TiffFolderSource

        folder = TiffFolderSource(write_tiff_folder(tmp_path / "plate", original))
        return SelectedSource(folder, parse_selection(["channel=1"]))

    @pytest.fixture
    def expected(self, original: hcsfs.MemoryPlate) -> dict[PlaneKey, np.ndarray]:
        return {k: original.read_plane(k) for k in original.keys() if k.channel == 1}


class TestWellOfMemoryPlate(SourceConformance):
    """The ``/.by-well/`` wrapper passes the suite over an in-memory source."""

    @pytest.fixture
    def original(self) -> hcsfs.MemoryPlate:
        return memory_plate()

    @pytest.fixture
    def source(self, original: hcsfs.MemoryPlate) -> WellSource:
        well = next(iter(original.keys())).well
        return WellSource(original, WellIndex(original), well)

    @pytest.fixture
    def expected(self, original: hcsfs.MemoryPlate) -> dict[PlaneKey, np.ndarray]:
        well = next(iter(original.keys())).well
        return {k: original.read_plane(k) for k in original.keys() if k.well == well}
