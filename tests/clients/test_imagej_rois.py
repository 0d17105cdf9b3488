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
