"""measure: CellProfiler-named per-object columns, checked against a plain per-object loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label, regionprops

from hcsfs.pipelines.measure import FEATURES, measure_columns, measure_plane, measure_stack

STATS = ("MeanIntensity", "IntegratedIntensity", "MinIntensity", "MaxIntensity", "StdIntensity")


def blob_labels(
    seed: int, shape: tuple[int, int] = (160, 190), sigma: float = 2.5, q: float = 0.7
) -> np.ndarray:
    """Labelled blobs: thresholded, gaussian-smoothed noise."""
    field = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return label(field > np.quantile(field, q)).astype(np.int32)


def channels(seed: int, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1000)
    return {
        "DAPI": rng.integers(0, 65536, shape).astype(np.uint16),
        "GFP": (rng.random(shape, dtype=np.float32) * 1e4 - 50).astype(np.float32),
    }


def reference(labels: np.ndarray, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One loop iteration per object: skimage regionprops for shape, numpy on image[labels == n]."""
    rows: dict[str, list[float]] = {c: [] for c in measure_columns(FEATURES, list(images))}
    for p in regionprops(labels):
        rows["ObjectNumber"].append(p.label)
        rows["AreaShape_Area"].append(p.area)
        rows["AreaShape_Perimeter"].append(p.perimeter)
        rows["AreaShape_Eccentricity"].append(p.eccentricity)
        rows["AreaShape_Solidity"].append(p.solidity)
        rows["AreaShape_Center_X"].append(p.centroid[1])
        rows["AreaShape_Center_Y"].append(p.centroid[0])
        for c, image in images.items():
            v = image[labels == p.label].astype(np.float64)
            for stat, value in zip(STATS, (v.mean(), v.sum(), v.min(), v.max(), v.std()), strict=True):
                rows[f"Intensity_{stat}_{c}"].append(value)
    return {c: np.asarray(v) for c, v in rows.items()}


def assert_matches(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for c, w in want.items():
        g = got[c]
        assert g.shape == w.shape, c
        if c in ("ObjectNumber", "AreaShape_Area"):
            assert g.dtype == np.int64, c
            np.testing.assert_array_equal(g, w, err_msg=c)
            continue
        assert g.dtype == np.float64, c
        if c == "AreaShape_Eccentricity":  # skimage's eigvalsh rounds near-circular objects
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9, err_msg=c)
        elif c.startswith("AreaShape"):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=0, err_msg=c)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=0, err_msg=c)


def test_columns_in_order() -> None:
    assert measure_columns(["shape", "intensity"], ["DAPI", "GFP"]) == (
        "ObjectNumber",
        "AreaShape_Area",
        "AreaShape_Perimeter",
        "AreaShape_Eccentricity",
        "AreaShape_Solidity",
        "AreaShape_Center_X",
        "AreaShape_Center_Y",
        *(f"Intensity_{s}_DAPI" for s in STATS),
        *(f"Intensity_{s}_GFP" for s in STATS),
    )
    both = measure_columns(["shape", "intensity"], ["GFP"])
    assert measure_columns(["intensity", "shape"], ["GFP"]) == both
    assert measure_columns(["intensity"], ["GFP"]) == ("ObjectNumber", *(f"Intensity_{s}_GFP" for s in STATS))
    assert measure_columns(["shape"], ["GFP"]) == ("ObjectNumber", *measure_columns(["shape"], [])[1:])
    with pytest.raises(ValueError, match="texture"):
        measure_columns(["texture"], [])
    with pytest.raises(ValueError, match="repeat"):
        measure_columns(["intensity"], ["GFP", "GFP"])


@pytest.mark.parametrize(
    ("seed", "sigma", "q"), [(0, 2.5, 0.7), (1, 1.2, 0.5), (2, 4.0, 0.8), (3, 1.0, 0.85)]
)
def test_matches_per_object_loop(seed: int, sigma: float, q: float) -> None:
    labels = blob_labels(seed, sigma=sigma, q=q)
    images = channels(seed, labels.shape)
    assert labels.max() > 20
    got = measure_plane(labels, images, ["shape", "intensity"])
    assert_matches(got, reference(labels, images))


def test_non_consecutive_labels() -> None:
    labels = blob_labels(4)
    images = channels(4, labels.shape)
    numbers = np.random.default_rng(0).choice(10**6, labels.max() + 1, replace=False)
    numbers[0] = 0
    sparse = numbers[labels]  # gaps, and an order unlike the raster order
    got = measure_plane(sparse, images, ["shape", "intensity"])
    np.testing.assert_array_equal(got["ObjectNumber"], np.sort(numbers[1:]))
    assert_matches(got, reference(sparse, images))
    # Huge label values take the sorting path and give the same rows.
    huge = np.where(sparse > 0, sparse.astype(np.int64) + 2**40, 0)
    got_huge = measure_plane(huge, images, ["shape", "intensity"])
    np.testing.assert_array_equal(got_huge["ObjectNumber"], got["ObjectNumber"] + 2**40)
    for c in got:
        if c != "ObjectNumber":
            np.testing.assert_array_equal(got_huge[c], got[c], err_msg=c)


def test_disconnected_and_touching_objects() -> None:
    """A label split in pieces, objects touching each other and the image edge."""
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 6, (40, 50)) * 3
    labels[rng.random(labels.shape) < 0.3] = 0
    images = channels(7, labels.shape)
    assert_matches(measure_plane(labels, images, ["shape", "intensity"]), reference(labels, images))


def test_more_objects_than_uint16() -> None:
    """70,000 lone pixels: past the uint16 sort keys, still one row per pixel."""
    labels = np.zeros((400, 700), np.int64)
    labels[::2, ::2] = 3 * np.arange(1, 200 * 350 + 1).reshape(200, 350)
    image = np.random.default_rng(3).random(labels.shape)
    got = measure_plane(labels, {"A": image}, ["shape", "intensity"])
    rows, cols = np.nonzero(labels)
    np.testing.assert_array_equal(got["ObjectNumber"], labels[rows, cols])
    np.testing.assert_array_equal(got["AreaShape_Area"], 1)
    np.testing.assert_array_equal(got["AreaShape_Perimeter"], 0)
    np.testing.assert_array_equal(got["AreaShape_Solidity"], 1)
    np.testing.assert_array_equal(got["AreaShape_Center_X"], cols)
    np.testing.assert_array_equal(got["AreaShape_Center_Y"], rows)
    np.testing.assert_array_equal(got["Intensity_MeanIntensity_A"], image[rows, cols])
    np.testing.assert_array_equal(got["Intensity_StdIntensity_A"], 0)


def test_no_objects() -> None:
    images = channels(0, (30, 20))
    got = measure_plane(np.zeros((30, 20), np.uint16), images, ["shape", "intensity"])
    assert tuple(got) == measure_columns(["shape", "intensity"], ["DAPI", "GFP"])
    for c, v in got.items():
        assert v.shape == (0,)
        assert v.dtype == (np.int64 if c in ("ObjectNumber", "AreaShape_Area") else np.float64)


def test_single_pixels_and_simple_shapes() -> None:
    labels = np.zeros((12, 14), np.int32)
    labels[0, 0] = 2  # a lone pixel in the corner
    labels[6, 7] = 5  # a lone pixel inside
    labels[2:5, 9:12] = 9  # 3 x 3 square
    labels[10, 2:7] = 11  # 1 x 5 line
    image = np.arange(labels.size, dtype=np.uint16).reshape(labels.shape)
    got = measure_plane(labels, {"A": image}, ["shape", "intensity"])
    np.testing.assert_array_equal(got["ObjectNumber"], [2, 5, 9, 11])
    np.testing.assert_array_equal(got["AreaShape_Area"], [1, 1, 9, 5])
    np.testing.assert_allclose(got["AreaShape_Perimeter"], [0, 0, 8, 3])  # skimage: line ends weigh 0
    np.testing.assert_allclose(got["AreaShape_Eccentricity"], [0, 0, 0, 1])
    np.testing.assert_allclose(got["AreaShape_Solidity"], [1, 1, 1, 1])
    np.testing.assert_allclose(got["AreaShape_Center_X"], [0, 7, 10, 4])
    np.testing.assert_allclose(got["AreaShape_Center_Y"], [0, 6, 3, 10])
    pixel = image[6, 7]
    assert got["Intensity_MeanIntensity_A"][1] == got["Intensity_MinIntensity_A"][1] == pixel
    assert got["Intensity_IntegratedIntensity_A"][1] == got["Intensity_MaxIntensity_A"][1] == pixel
    assert got["Intensity_StdIntensity_A"][1] == 0
    assert_matches(got, reference(labels, {"A": image}))


def test_features_select_columns_and_intensities_are_raw() -> None:
    labels = blob_labels(5, shape=(60, 70))
    images = channels(5, labels.shape)
    shape_only = measure_plane(labels, images, ["shape"])
    assert tuple(shape_only) == measure_columns(["shape"], [])
    intensity_only = measure_plane(labels, images, ["intensity"])
    assert tuple(intensity_only) == measure_columns(["intensity"], ["DAPI", "GFP"])
    # raw values, not CellProfiler's 0..1 rescaling
    assert intensity_only["Intensity_MaxIntensity_DAPI"].max() > 1000


def test_measure_stack_is_per_plane() -> None:
    planes = [blob_labels(10, shape=(50, 60)), np.zeros((50, 60), np.int32), blob_labels(11, shape=(50, 60))]
    labels = np.stack(planes)
    images = channels(10, labels.shape)
    got = measure_stack(labels, images, ["shape", "intensity"])
    assert len(got) == 3
    for z, table in enumerate(got):
        want = measure_plane(labels[z], {c: v[z] for c, v in images.items()}, ["shape", "intensity"])
        assert list(table) == list(want)
        for c in want:
            np.testing.assert_array_equal(table[c], want[c])
    assert len(got[1]["ObjectNumber"]) == 0


def test_rejects_bad_input() -> None:
    labels = blob_labels(0, shape=(20, 20))
    with pytest.raises(ValueError, match="shape"):
        measure_plane(labels, {"A": np.zeros((20, 21))}, ["intensity"])
    with pytest.raises(ValueError, match="negative"):
        measure_plane(-labels, {}, ["shape"])
    with pytest.raises(ValueError, match="2-D"):
        measure_plane(labels[None], {}, ["shape"])
    with pytest.raises(ValueError, match="2-D integer"):
        measure_plane(labels.astype(float), {}, ["shape"])
    with pytest.raises(ValueError, match="Z, Y, X"):
        measure_stack(labels, {}, ["shape"])
    with pytest.raises(ValueError, match="unknown"):
        measure_plane(labels, {}, ["zernike"])
