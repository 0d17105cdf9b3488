"""ImageJ ROI sets from label images: crack-following outlines checked by area and by rasterizing them.

The expected region of each object is computed independently of the tracing: its largest 8-connected
piece with holes filled (``binary_fill_holes``, background 4-connected). So a polygon's area equals the
object's pixel count for an object without holes, and pixel count + hole pixels for one with holes.
Polygons are rasterized by scikit-image's ``polygon2mask`` at pixel centres.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from hcsfs.pipelines.roisets import label_outlines, roi_name, roi_zip_bytes

EIGHT = np.ones((3, 3), dtype=bool)


def shoelace(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0].astype(np.float64), vertices[:, 1].astype(np.float64)
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def expected_region(labels: np.ndarray, number: int) -> np.ndarray:
    pieces, count = ndi.label(labels == number, structure=EIGHT)
    sizes = np.bincount(pieces.ravel())[1:]
    return ndi.binary_fill_holes(pieces == 1 + int(np.argmax(sizes)))


def rasterize(vertices: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    from skimage.draw import polygon2mask

    # Corner (x, y) -> scikit-image (row, col) with pixel centres at integers.
    return polygon2mask(shape, vertices[:, ::-1].astype(np.float64) - 0.5)


def random_labels(seed: int, shape: tuple[int, int] = (64, 80)) -> np.ndarray:
    from skimage.measure import label

    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random(shape), 1.5 + seed % 3)
    return label(field > np.quantile(field, 0.6 + 0.05 * (seed % 4)), connectivity=2).astype(np.int32)


def shapes() -> dict[str, np.ndarray]:
    """Hand-made label images, 12 x 14."""
    def image() -> np.ndarray:
        return np.zeros((12, 14), dtype=np.int32)

    out = {}
    out["single pixel"] = image()
    out["single pixel"][5, 6] = 3
    out["L"] = image()
    out["L"][2:9, 3] = 1
    out["L"][8, 3:8] = 1
    diagonal = image()
    for i in range(5):
        diagonal[2 + i, 2 + i] = 1
    diagonal[2, 9] = 2
    diagonal[3, 10] = 2
    diagonal[3, 8] = 2  # a V of three pixels touching at corners
    out["diagonal"] = diagonal
    out["border"] = image()
    out["border"][0:3, 0:2] = 1  # top-left corner
    out["border"][9:12, 11:14] = 2  # bottom-right corner
    out["border"][0, 6:9] = 4  # top edge
    out["border"][:, 13] = 0
    out["border"][4:7, 13] = 5  # right edge
    out["hole"] = image()
    out["hole"][2:9, 2:9] = 1
    out["hole"][4:6, 4:7] = 0  # a 2 x 3 hole
    out["hole"][4, 5] = 2  # another object inside the hole
    out["diamond ring"] = image()  # 8-connected ring of single pixels around one background pixel
    for y, x in ((1, 3), (2, 2), (2, 4), (3, 1), (3, 5), (4, 2), (4, 4), (5, 3)):
        out["diamond ring"][y, x] = 7
    out["full"] = np.ones((12, 14), dtype=np.int32)
    out["U"] = image()
    out["U"][2:10, 2:4] = 1
    out["U"][2:10, 8:10] = 1
    out["U"][8:10, 2:10] = 1
    return out


def check(labels: np.ndarray) -> dict[int, np.ndarray]:
    outlines = label_outlines(labels)
    numbers = [int(n) for n in np.unique(labels) if n > 0]
    assert sorted(outlines) == numbers
    for number, vertices in outlines.items():
        assert vertices.dtype == np.int32 and vertices.ndim == 2 and vertices.shape[1] == 2
        assert vertices.min() >= 0
        assert (vertices[:, 0] <= labels.shape[1]).all() and (vertices[:, 1] <= labels.shape[0]).all()
        step = np.diff(np.vstack([vertices, vertices[:1]]), axis=0)
        assert ((step == 0).sum(axis=1) == 1).all(), "edges are axis-parallel and non-empty"
        turn = step[:, 0] * np.roll(step, -1, axis=0)[:, 1] - step[:, 1] * np.roll(step, -1, axis=0)[:, 0]
        assert (turn != 0).all(), "no collinear vertices"
        region = expected_region(labels, number)
        assert shoelace(vertices) == region.sum(), number
        np.testing.assert_array_equal(rasterize(vertices, labels.shape), region, err_msg=str(number))
    return outlines


@pytest.mark.parametrize("name", list(shapes()))
def test_hand_made_shapes(name: str) -> None:
    labels = shapes()[name]
    outlines = check(labels)
    for number, vertices in outlines.items():
        if name not in ("hole", "diamond ring"):
            assert shoelace(vertices) == (labels == number).sum()
    if name == "single pixel":
        assert outlines[3].tolist() == [[6, 5], [7, 5], [7, 6], [6, 6]]
    if name == "hole":
        assert shoelace(outlines[1]) == (labels == 1).sum() + 6  # the 2 x 3 hole, object 2 in it
    if name == "diamond ring":
        assert shoelace(outlines[7]) == 8 + 5  # the diamond of 5 background pixels inside


@pytest.mark.parametrize("seed", range(12))
def test_random_blobs(seed: int) -> None:
    labels = random_labels(seed)
    assert labels.max() > 1
    check(labels)


def test_watershed_pieces_keep_the_largest() -> None:
    labels = np.zeros((10, 12), dtype=np.uint16)
    labels[1:3, 1:3] = 5  # 4 pixels
    labels[5:8, 6:10] = 5  # 12 pixels: the one outlined
    labels[0, 11] = 2
    outlines = check(labels)
    assert shoelace(outlines[5]) == 12 and outlines[5][:, 0].min() == 6


def test_background_dtypes_and_sparse_numbers() -> None:
    labels = np.zeros((6, 7), dtype=np.int64)
    labels[1, 1] = -3  # negative: background
    labels[2:4, 2:5] = 2**40
    labels[5, 6] = 9
    outlines = label_outlines(labels)
    assert sorted(outlines) == [9, 2**40]
    assert shoelace(outlines[2**40]) == 6
    assert label_outlines(np.zeros((4, 4), np.uint8)) == {}
    with pytest.raises(ValueError):
        label_outlines(np.zeros((2, 3, 4), np.int32))
    with pytest.raises(ValueError):
        label_outlines(np.zeros((3, 4), np.float32))


def test_zip_reads_back_with_roifile(tmp_path: Path) -> None:
    from roifile import ROI_TYPE, roiread

    labels = random_labels(3, (96, 128))
    labels[labels == 2] = 0  # a gap in the numbers
    outlines = label_outlines(labels)
    path = tmp_path / "plane.roi.zip"
    path.write_bytes(roi_zip_bytes(labels))
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [f"{n:04d}.roi" for n in sorted(outlines)]
    rois = roiread(path)
    assert isinstance(rois, list) and len(rois) == len(outlines) > 5
    for roi, number in zip(rois, sorted(outlines), strict=True):
        vertices = outlines[number]
        assert roi.name == f"{number:04d}" and int(roi.name) == number
        assert roi.roitype == ROI_TYPE.TRACED
        np.testing.assert_array_equal(roi.coordinates(), vertices)
        assert (roi.left, roi.top) == tuple(vertices.min(axis=0))
        assert (roi.right, roi.bottom) == tuple(vertices.max(axis=0))
        assert roi.position == 0  # a single plane


def test_names_widen_for_large_numbers() -> None:
    labels = np.zeros((4, 4), np.int32)
    labels[0, 0], labels[2, 2] = 3, 123456
    with zipfile.ZipFile(io.BytesIO(roi_zip_bytes(labels))) as archive:
        assert archive.namelist() == ["000003.roi", "123456.roi"]
    assert roi_name(7) == "0007"
    with zipfile.ZipFile(io.BytesIO(roi_zip_bytes(np.zeros((3, 3), np.uint8)))) as archive:
        assert archive.namelist() == []
