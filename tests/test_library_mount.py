"""The function library through a real mount: the issue's edges.yaml, and a library analysis spec,
written into ``.pipelines/`` and compared with scikit-image and clEsperanto called directly."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs import memory as hm
from hcsfs.demo import cells_plane

pytestmark = pytest.mark.mount

EDGES = """\
select: {channel: [1]}
output: tiff
steps:
  - {func: skimage.filters.sobel}
  - {func: skimage.morphology.white_tophat, args: {footprint: {disk: 5}}}
  - {func: cle.gaussian_blur, args: {sigma_x: 2, sigma_y: 2}}
"""

SCREEN = """\
channels: {DAPI: 1}
output: tiff
steps:
  - {func: skimage.filters.gaussian, input: DAPI, args: {sigma: 2, preserve_range: true}, as: smooth}
  - {func: skimage.filters.threshold_otsu, input: smooth, as: mask}
  - {func: skimage.measure.label, input: mask, as: nuclei}
  - {func: skimage.morphology.remove_small_objects, input: nuclei, args: {max_size: 20}, as: kept}
  - {measure: [shape], objects: kept, table: kept}
save: [kept]
"""


def _plate() -> MemoryPlate:
    plate = MemoryPlate(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
    for w, well in enumerate(("A01", "B02")):
        for channel in (1, 2):
            plate.add(PlaneKey(well, 1, channel), cells_plane(w + 1, (96, 96), channel))
    return plate


def _wait(mnt: Path, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = json.loads((mnt / ".pipelines" / f"{name}.status").read_bytes())
        except FileNotFoundError:
            doc = {"state": "queued"}
        if doc["state"] in ("done", "failed", "cancelled"):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"run {name} did not end")


def test_edges_spec_of_the_issue_through_a_mount(mountpoint: Path, tmp_path: Path) -> None:
    from skimage import filters, morphology

    cle = hm.import_framework(hm.MemoryType.PYCLESPERANTO)
    plate = _plate()
    with hcsfs.mounted(plate, mountpoint, outputs=tmp_path / "out") as mnt:
        (mnt.path / ".pipelines" / "edges.yaml").write_text(EDGES)
        final = _wait(mnt.path, "edges")
        assert final["state"] == "done" and final["errors"] == [], final
        readme = (mnt.path / ".pipelines" / "README").read_text()
        assert "skimage.morphology.{" in readme and "white_tophat" in readme
        for key in (k for k in plate.keys() if k.channel == 1):
            served = tifffile.imread(mnt.path / "edges" / key.name)
            edges = filters.sobel(plate.read_plane(key)).astype(np.float32)
            tophat = morphology.white_tophat(edges, morphology.disk(5))
            want = cle.pull(cle.gaussian_blur(cle.push(tophat.astype(np.float32)), sigma_x=2, sigma_y=2))
            np.testing.assert_array_equal(served, want.astype(np.float32))


def test_library_analysis_spec_through_a_mount(mountpoint: Path, tmp_path: Path) -> None:
    from skimage import filters, measure, morphology

    plate = _plate()
    with hcsfs.mounted(plate, mountpoint, outputs=tmp_path / "out") as mnt:
        (mnt.path / ".pipelines" / "screen.yaml").write_text(SCREEN)
        final = _wait(mnt.path, "screen")
        assert final["state"] == "done" and final["errors"] == [], final
        rows = (mnt.path / "screen" / "kept.csv").read_text().splitlines()
        total = 0
        for key in (k for k in plate.keys() if k.channel == 1):
            smooth = filters.gaussian(plate.read_plane(key), sigma=2, preserve_range=True).astype(np.float32)
            labels = measure.label(smooth > filters.threshold_otsu(smooth))
            want = morphology.remove_small_objects(labels, max_size=20).astype(np.int32)
            served = tifffile.imread(next((mnt.path / "screen" / "kept").glob(f"{key.well}_s001_*.tif")))
            np.testing.assert_array_equal(served, want)
            total += len(np.unique(want)) - 1
        assert len(rows) - 1 == total
