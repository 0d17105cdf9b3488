"""ImageJ 1.53t's ROI Manager opens hcsfs's ``.roi.zip`` sets: count, names, areas and placement.

ImageJ measures a TRACED ROI by the pixels whose centres lie inside it, so for an object without holes
its Area equals the object's pixel count exactly. An outline is the object's outer boundary, so for an
object with holes ImageJ's Area is pixel count + hole pixels (the holes are inside the ROI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from hcsfs.pipelines.roisets import roi_zip_bytes
from tests.clients.imagej_macro import imagej_roi_areas, imagej_rois

pytestmark = [pytest.mark.clients]


def _labels() -> tuple[np.ndarray, int]:
    """Random blobs (8-connected labels) plus hand-made shapes; returns the image and the holed object."""
    from skimage.measure import label

    rng = np.random.default_rng(11)
    field = ndi.gaussian_filter(rng.random((90, 120)), 2.5)
    field[:, 100:] = 0  # before labelling: every blob stays in one piece
    labels = label(field > np.quantile(field, 0.65), connectivity=2).astype(np.uint16)
    top = int(labels.max())
    labels[0, 119] = top + 1  # single pixel in the corner
    labels[[3, 4, 5], [102, 103, 104]] = top + 2  # diagonal pixels
    labels[10:17, 102] = top + 3  # an L
    labels[16, 102:108] = top + 3
    labels[80:90, 105:115] = top + 4  # touches the bottom border, with a 3 x 2 hole
    labels[84:86, 108:111] = 0
    return labels, top + 4


def test_imagej_measures_each_object_exactly(tmp_path: Path) -> None:
    """Count, names in object order, Area == pixel count (+ holes); on the label image, exact placement."""
    labels, holed = _labels()
    numbers = [int(n) for n in np.unique(labels) if n > 0]
    zip_path = tmp_path / "plane.roi.zip"
    zip_path.write_bytes(roi_zip_bytes(labels))
    image = tmp_path / "labels.tif"
    tifffile.imwrite(image, labels)
    height, width = labels.shape

    areas = imagej_roi_areas(zip_path, width, height)
    assert [name for name, _ in areas] == [f"{n:04d}" for n in numbers]
    counts = {n: int((labels == n).sum()) for n in numbers}
    filled = {n: int(ndi.binary_fill_holes(labels == n).sum()) for n in numbers}  # pixels + holes
    assert filled[holed] == counts[holed] + 6
    assert sum(filled[n] == counts[n] for n in numbers) > len(numbers) // 2
    for (name, area), number in zip(areas, numbers, strict=True):
        assert area == filled[number], name  # == counts[number] exactly for an object without holes

    rois = imagej_rois(zip_path, width, height, image=image)
    assert len(rois) == len(numbers)
    for roi, number in zip(rois, numbers, strict=True):
        ys, xs = np.nonzero(labels == number)
        assert roi["type"] == "traced"
        assert (int(roi["x"]), int(roi["y"])) == (xs.min(), ys.min())
        assert (int(roi["w"]), int(roi["h"])) == (np.ptp(xs) + 1, np.ptp(ys) + 1)
        assert int(roi["pixels"]) == filled[number]
        if filled[number] == counts[number]:  # placed exactly over its object: only that number under it
            assert int(roi["min"]) == int(roi["max"]) == number
        else:  # its holes are under it too
            assert int(roi["max"]) == number and int(roi["min"]) < number


@pytest.mark.mount
def test_imagej_opens_the_roi_sets_of_an_analysis_run_through_a_mount(mountpoint: Path, tmp_path: Path
                                                                      ) -> None:
    """The issue's check: the ROI Manager counts exactly the objects of that plane in nuclei.csv, and each
    ROI's Area is the object's AreaShape_Area plus the pixels of its holes (counted here by scipy on the
    labels plane read through the mount); for an object without holes the two are equal."""
    import csv
    import json
    import time

    import hcsfs
    from tests.test_analysis_mount import SCREEN, screen_folder

    folder = screen_folder(tmp_path / "plate")
    with hcsfs.mounted(folder, mountpoint, outputs=tmp_path / "outputs"):
        (mountpoint / ".pipelines" / "screen.yaml").write_text(SCREEN)
        status = mountpoint / ".pipelines" / "screen.status"
        deadline = time.monotonic() + 300
        while json.loads(status.read_bytes())["state"] not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.1)
        assert json.loads(status.read_bytes())["state"] == "done"
        with open(mountpoint / "screen" / "nuclei.csv", newline="") as file:
            rows = list(csv.DictReader(file))
        checked = 0
        for stem in ("A01_s001_w1_z001_t001", "B03_s002_w1_z001_t001"):
            well, site = stem[:3], int(stem[5:8])
            plane = [r for r in rows if r["well"] == well and int(r["site"]) == site]
            labels = tifffile.imread(mountpoint / "screen" / "nuclei" / f"{stem}.tif")
            zip_path = mountpoint / "screen" / "rois" / f"{stem}_nuclei.roi.zip"
            measured = imagej_roi_areas(zip_path, labels.shape[1], labels.shape[0])
            assert len(measured) == len(plane) > 0
            for (name, area), row in zip(measured, plane, strict=True):
                number = int(row["ObjectNumber"])
                assert int(name) == number
                filled = int(ndi.binary_fill_holes(labels == number).sum())
                assert area == filled >= int(row["AreaShape_Area"])
                checked += 1
    assert checked > 10
