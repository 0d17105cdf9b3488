"""The screen analysis of the analysis-pipelines issue end to end: a TIFF plate on disk, mounted, the spec
written with `cat >`, `hcsfs run --wait`, the run folder read back through the mount with pandas,
tifffile, roifile and Pillow, and `hcsfs process` giving the same tables without FUSE. Expectations come
from scikit-image on the source files; the plate's files are checksummed before and after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas
import pytest
import roifile
import tifffile
from PIL import Image
from skimage import filters, measure

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.demo import cells_plane
from tests.plates import tree_checksums, write_tiff_folder
from tests.specs import screen_spec

pytestmark = pytest.mark.mount

SCREEN = screen_spec("table_format: parquet")
WELLS = ("A01", "A02", "B01", "B03")


def screen_folder(folder: Path) -> Path:
    plate = MemoryPlate(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
    for w, well in enumerate(WELLS):
        for site in (1, 2):
            for channel in (1, 2):
                plate.add(PlaneKey(well, site, channel), cells_plane(w * 10 + site, (128, 128), channel))
    return write_tiff_folder(folder, plate)


def expected_nuclei(path: Path) -> np.ndarray:
    dapi = tifffile.imread(path).astype(np.float64)
    smooth = filters.gaussian(dapi, 2, mode="reflect", preserve_range=True)
    return measure.label(smooth > filters.threshold_otsu(smooth), connectivity=2)


def test_screen_analysis_through_a_mount_and_without_fuse(mountpoint: Path, tmp_path: Path) -> None:
    folder = screen_folder(tmp_path / "plate")
    before = tree_checksums(folder)
    spec = tmp_path / "screen.yaml"
    spec.write_text(SCREEN)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with hcsfs.mounted(folder, mountpoint, outputs=tmp_path / "outputs"):
        mnt = mountpoint
        subprocess.run(["sh", "-c", f"cat > {mnt}/.pipelines/first.yaml"], input=SCREEN, text=True,
                       check=True)
        done = subprocess.run([sys.executable, "-m", "hcsfs", "run", str(mountpoint), str(spec), "--wait"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        run = mnt / "screen"
        assert sorted(os.listdir(run)) == sorted([
            "nuclei", "cells", "rois", "heatmaps", "nuclei.csv", "cells.csv", "image.csv", "wells.csv",
            "nuclei.parquet", "cells.parquet", "image.parquet", "wells.parquet"])
        nuclei_table = pandas.read_csv(run / "nuclei.csv")
        wells = pandas.read_csv(run / "wells.csv")
        image = pandas.read_csv(run / "image.csv")
        pandas.testing.assert_frame_equal(pandas.read_parquet(run / "wells.parquet"), wells)
        counts: dict[str, int] = {}
        for well in WELLS:
            for site in (1, 2):
                name = f"{well}_s{site:03d}_w1_z001_t001"
                expected = expected_nuclei(folder / f"{name}.tif")
                served = tifffile.imread(run / "nuclei" / f"{name}.tif")
                assert served.dtype == np.int32
                np.testing.assert_array_equal(served, expected)
                rows = nuclei_table[(nuclei_table.well == well) & (nuclei_table.site == site)]
                assert list(rows.ObjectNumber) == list(range(1, expected.max() + 1))
                assert list(rows.AreaShape_Area) == [p.area for p in measure.regionprops(expected)]
                rois = roifile.roiread(run / "rois" / f"{name}_nuclei.roi.zip")
                assert [int(r.name) for r in rois] == list(rows.ObjectNumber)
                at = image[(image.well == well) & (image.site == site)]
                assert int(at.Count_nuclei.iloc[0]) == len(rows)
                counts[well] = counts.get(well, 0) + len(rows)
        assert list(wells.well) == list(WELLS)
        assert list(wells.Count_nuclei) == [counts[w] for w in WELLS]
        for column in ("Count_nuclei", "Intensity_MeanIntensity_GFP_nuclei"):
            with Image.open(run / "heatmaps" / f"{column}.png") as picture:
                assert picture.format == "PNG" and picture.width > 200
        assert (mnt / "first").is_dir()  # the spec written with cat > ran too
        mounted_tables = {n: (run / n).read_bytes() for n in ("nuclei.csv", "cells.csv", "image.csv",
                                                                "wells.csv")}
    out = tmp_path / "processed"
    command = [sys.executable, "-m", "hcsfs", "process", str(folder), str(spec), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, data in mounted_tables.items():
        assert (out / "tables" / name).read_bytes() == data, name
    assert len(list((out / "rois").iterdir())) == 8 and (out / "data" / "nuclei" / "plate.ome.zarr").is_dir()
    assert tree_checksums(folder) == before


def test_process_refuses_a_bad_spec_before_writing(tmp_path: Path) -> None:
    folder = screen_folder(tmp_path / "plate")
    spec = tmp_path / "bad.yaml"
    spec.write_text(SCREEN.replace("objects: cells, channels: [GFP]", "objects: mask, channels: [GFP]"))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "hcsfs", "process", str(folder), str(spec), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "steps[5].objects" in done.stderr, done.stderr
    assert not out.exists()
