"""Memory and TIFF-folder sources: the conformance suite, detection and bad input."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from hcsfs import MemoryPlate, PlaneKey, open_plate
from hcsfs.errors import NotAPlaneError, PlaneNotFoundError, PlaneReadError, PlateFormatError
from hcsfs.sources import detect_format, plate_summary
from hcsfs.sources.tiffdir import TiffFolderSource
from tests.conformance import SourceConformance
from tests.plates import memory_plate, plate_keys, synthetic_plane, write_tiff_folder


class TestMemoryPlate(SourceConformance):
    @pytest.fixture
    def source(self) -> MemoryPlate:
        return memory_plate()

    @pytest.fixture
    def expected(self) -> dict[PlaneKey, np.ndarray]:
        # What memory_plate() was given, rebuilt here: never read back from the source under test.
        return {k: synthetic_plane(k, (48, 64), "u2") for k in plate_keys()}

    def test_planes_are_frozen_copies(self) -> None:
        array = np.zeros((4, 4), "u2")
        plate = MemoryPlate({"A01_s001_w1_z001_t001.tif": array})
        array[0, 0] = 7
        stored = plate.read_plane(PlaneKey("A01"))
        assert stored[0, 0] == 0 and not stored.flags.writeable

    def test_add_and_remove_while_in_use(self, source: MemoryPlate) -> None:
        key = PlaneKey("H12", 1, 3)
        source.add(key, np.ones((48, 64), "u2"))
        assert source.keys()[-1] == key
        source.remove(key)
        with pytest.raises(PlaneNotFoundError):
            source.info(key)

    def test_rejects_non_2d(self) -> None:
        with pytest.raises(ValueError, match="2-D"):
            MemoryPlate().add(PlaneKey("A01"), np.zeros((2, 3, 4)))


class TestTiffFolder(SourceConformance):
    @pytest.fixture
    def original(self) -> MemoryPlate:
        return memory_plate()

    @pytest.fixture
    def source(self, tmp_path: Path, original: MemoryPlate) -> TiffFolderSource:
        return TiffFolderSource(write_tiff_folder(tmp_path / "plate", original))

    @pytest.fixture
    def expected(self, original: MemoryPlate) -> dict[PlaneKey, np.ndarray]:
        return {k: original.read_plane(k) for k in original.keys()}

    def test_passthrough_names_the_source_file(self, source: TiffFolderSource) -> None:
        info = source.info(PlaneKey("A01"))
        assert info.passthrough == source.folder / "A01_s001_w1_z001_t001.tif"


def test_tiff_folder_leaves_out_junk_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_tiff_folder(tmp_path / "plate", memory_plate())
    (folder / "notes.txt").write_text("not a plane")
    (folder / "A01_s1_w1.tif").write_bytes(b"II*\0")
    (folder / "H01_s001_w1_z001_t001.tif").write_text("not a TIFF at all")
    (folder / "H02_s001_w1_z001_t001.tif").symlink_to(folder / "gone.tif")
    with caplog.at_level(logging.WARNING, logger="hcsfs"):
        source = TiffFolderSource(folder)
    assert "notes.txt" in caplog.text and "A01_s1_w1.tif" in caplog.text
    with pytest.raises(NotAPlaneError):
        source.info(PlaneKey("H01"))
    assert PlaneKey("H01") not in source.keys()
    with pytest.raises(PlaneReadError, match="cannot read"):
        source.info(PlaneKey("H02"))
    skipped = {s["path"] for s in plate_summary(source)["skipped"]}
    assert {"notes.txt", "A01_s1_w1.tif", "H01_s001_w1_z001_t001.tif"} <= skipped


def test_detection_and_override(tmp_path: Path) -> None:
    folder = write_tiff_folder(tmp_path / "plate", memory_plate())
    assert detect_format(folder) == "tiff-folder"
    assert open_plate(folder, format="tiff-folder").format_name == "tiff-folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PlateFormatError, match="looked for"):
        open_plate(empty)
    with pytest.raises(PlateFormatError, match="no such"):
        open_plate(tmp_path / "nope")
    with pytest.raises(PlateFormatError, match="unknown format"):
        open_plate(folder, format="floppy")
    with pytest.raises(PlateFormatError, match="does not apply"):
        open_plate(folder, format="tiff-folder", acquisition="1")


def test_open_plate_passes_sources_through() -> None:
    plate = memory_plate()
    assert open_plate(plate) is plate


def test_summary_of_memory_plate() -> None:
    summary = plate_summary(memory_plate())
    assert summary["sites"] == [1, 2] and summary["z"] == [1] and summary["dtype"] == "u2"
    assert summary["channels"] == [{"index": 1, "name": "DAPI"}, {"index": 2, "name": "GFP"}]
    assert summary["shape"] == [48, 64] and summary["pixel_size_um"] == 0.65
    assert summary["planes"] == 12


def test_importing_hcsfs_imports_no_fuse_and_no_gpu_framework() -> None:
    import subprocess
    import sys

    code = ("import sys, hcsfs; hcsfs.open_plate; "
            "print(sorted(m for m in ('pyfuse3','trio','torch','jax','tensorflow','cupy',"
            "'pyclesperanto') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.stdout.strip() == "[]"
