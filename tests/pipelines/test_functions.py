"""Every implementation of every built-in agrees with an independent scipy/scikit-image computation.

Tolerances (also in docs/pipelines.md): float results within 1e-4 of the image's range (float32
arithmetic); integer-valued results (median, top-hat, clip, projections, masks, labels) exactly, except
Otsu masks, where another histogram implementation may move the threshold by one bin: at most 0.5% of
pixels differ. clEsperanto's Gaussian clamps at the border: compared 4 sigma inside it; its labels
are compared as partitions (same objects, numbering may differ). expand_labels: numpy exactly equals
scikit-image (same EDT ties); other implementations equal a brute-force nearest label away from ties,
and give one of the tied labels at a tie. Label filters and watershed: exactly (numbers kept).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage import exposure, filters, measure, morphology, segmentation

from hcsfs import memory as hm
from hcsfs.memory import MemoryType
from hcsfs.pipelines.builtins import BUILTINS, IMPLEMENTED
from hcsfs.pipelines.registry import framework_installed

from .conftest import blobs

RNG = np.random.default_rng(42)
STACK = np.stack([blobs(RNG, (48, 56)) for _ in range(3)])  # uint16 [Z, Y, X]
MASK = (STACK > 600).astype(np.uint8)
MASK[:, 20:26, 20:26] = 1
MASK[:, 22:24, 22:24] = 0  # a hole


LABELS = np.stack([measure.label(p, connectivity=2) for p in MASK]).astype(np.int32)  # areas 5 .. 628


def _touching_disks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two planes of overlapping disks (two, then three) as a mask, its distance map and one seed per disk."""
    yy, xx = np.mgrid[:48, :72]
    layouts = [((24, 22, 13), (24, 44, 12)), ((14, 16, 10), (14, 33, 9), (34, 40, 12))]
    mask = np.zeros((2, 48, 72), np.uint8)
    seeds = np.zeros((2, 48, 72), np.int32)
    for z, disks in enumerate(layouts):
        for number, (cy, cx, r) in enumerate(disks, start=1):
            mask[z][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
            seeds[z][(yy - cy) ** 2 + (xx - cx) ** 2 <= 4] = number
    distance = np.stack([ndi.distance_transform_edt(p) for p in mask]).astype(np.float32)
    return mask, distance, seeds


DISKS, DISK_DISTANCE, DISK_SEEDS = _touching_disks()


def _nearest_background(stack: np.ndarray) -> np.ndarray:
    """Euclidean distance to the nearest 0 pixel, by a k-d tree over the background (not an EDT)."""
    out = np.zeros(stack.shape)
    for z, plane in enumerate(stack):
        inside = np.argwhere(plane != 0)
        out[z][tuple(inside.T)] = cKDTree(np.argwhere(plane == 0)).query(inside)[0]
    return out


def nearest_labels(labels: np.ndarray, distance: float) -> tuple[np.ndarray, dict[tuple[int, ...], set[int]]]:
    """Brute-force expand_labels: each background pixel within ``distance`` takes its nearest label;
    returns the result (ties: -1) and, per tied pixel, the labels at the same smallest distance."""
    out = labels.astype(np.int64)
    ties: dict[tuple[int, ...], set[int]] = {}
    for z, plane in enumerate(labels):
        inside, outside = np.argwhere(plane != 0), np.argwhere(plane == 0)
        if not len(inside):
            continue
        d2 = ((outside[:, None, :] - inside[None, :, :]) ** 2).sum(-1)  # exact integers
        nearest = d2.min(axis=1)
        for (y, x), best, row in zip(outside, nearest, d2, strict=True):
            if best > distance**2:
                continue
            candidates = set(plane[tuple(inside[row == best].T)].tolist())
            if len(candidates) == 1:
                out[z, y, x] = candidates.pop()
            else:
                out[z, y, x], ties[(z, int(y), int(x))] = -1, candidates
    return out, ties


def _without_objects(labels: np.ndarray, drop) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A per-object loop: objects (per plane) whose area satisfies ``drop`` set to 0."""
    out = labels.copy()
    for z, plane in enumerate(labels):
        for number in np.unique(plane[plane != 0]):
            if drop(int((plane == number).sum())):
                out[z][plane == number] = 0
    return out


def _cuda_available() -> bool:
    if not framework_installed(MemoryType.CUPY):
        return False
    from hcsfs.memory.backends import cuda_device_count

    try:
        return cuda_device_count() > 0
    except Exception:
        return False


def _per_plane(fn, stack):  # type: ignore[no-untyped-def]
    return np.stack([fn(p) for p in stack])


def _holes_filled(plane: np.ndarray) -> np.ndarray:
    background = measure.label(plane == 0, connectivity=1)
    edges = [background[0], background[-1], background[:, 0], background[:, -1]]
    border = set(np.unique(np.concatenate(edges)))
    holes = ~np.isin(background, list(border)) & (background > 0)
    return ((plane != 0) | holes).astype(np.uint8)


def _median(plane: np.ndarray, size: int) -> np.ndarray:
    r = size // 2
    windows = sliding_window_view(np.pad(plane, r, mode="symmetric"), (size, size))
    return np.median(windows, axis=(-2, -1)).astype(plane.dtype)


def _rescale(stack: np.ndarray, low: float, high: float) -> np.ndarray:
    lo, hi = np.percentile(stack, (low, high))
    return exposure.rescale_intensity(stack.astype(np.float64), in_range=(lo, hi), out_range=(0.0, 1.0))


# name -> (input, args, independent reference, comparison kind)
CASES = {
    "gaussian_filter": (STACK, {"sigma": 2.0}, lambda s: _per_plane(
        lambda p: filters.gaussian(p.astype(np.float64), sigma=2.0, mode="reflect", truncate=4.0,
                                   preserve_range=True), s), "float"),
    "median_filter": (STACK, {"size": 5}, lambda s: _per_plane(lambda p: _median(p, 5), s), "exact"),
    "tophat": (STACK, {"radius": 4}, lambda s: _per_plane(
        lambda p: morphology.white_tophat(p, morphology.disk(4)), s), "exact"),
    "rescale_intensity": (STACK, {"low": 2.0, "high": 98.0}, lambda s: _rescale(s, 2.0, 98.0), "float"),
    "threshold_otsu": (STACK, {"nbins": 256}, lambda s: (s > filters.threshold_otsu(
        s.astype(np.float64), nbins=256)).astype(np.uint8), "mask"),
    "binary_opening": (MASK, {"radius": 2}, lambda s: _per_plane(
        lambda p: morphology.binary_opening(p != 0, morphology.disk(2)), s).astype(np.uint8), "exact"),
    "fill_holes": (MASK, {}, lambda s: _per_plane(_holes_filled, s), "exact"),
    "label": (MASK, {"connectivity": 1}, lambda s: _per_plane(
        lambda p: measure.label(p != 0, connectivity=1), s), "labels"),
    "max_projection": (STACK, {}, lambda s: s.max(axis=0, keepdims=True), "exact"),
    "mean_projection": (STACK, {}, lambda s: s.mean(axis=0, keepdims=True), "float"),
    "clip": (STACK, {"low": 300.5, "high": 2000}, lambda s: np.clip(s, 301, 2000), "exact"),
    "binary_erosion": (MASK, {"radius": 2}, lambda s: _per_plane(
        lambda p: morphology.erosion(p != 0, morphology.disk(2)), s).astype(np.uint8), "exact"),
    "distance_transform": (MASK, {}, _nearest_background, "float"),
    "expand_labels": (LABELS, {"distance": 3.5}, lambda s: _per_plane(
        lambda p: segmentation.expand_labels(p, 3.5), s), "expand"),
    "watershed": (DISK_DISTANCE, {"markers": DISK_SEEDS, "mask": DISKS, "invert": True}, lambda s: np.stack([
        segmentation.watershed(-s[z].astype(np.float64), DISK_SEEDS[z], mask=DISKS[z] != 0, connectivity=1)
        for z in range(len(s))]), "labels_exact"),
    "remove_small_objects": (LABELS, {"min_area": 29}, lambda s: _without_objects(s, lambda a: a < 29),
                             "labels_exact"),
    "remove_large_objects": (LABELS, {"max_area": 98}, lambda s: _without_objects(s, lambda a: a > 98),
                             "labels_exact"),
}

pytestmark = pytest.mark.filterwarnings("ignore:`binary_opening` is deprecated:FutureWarning")

PAIRS = [(name, mt) for mt, (_, names) in IMPLEMENTED.items() for name in sorted(names)]


def test_every_builtin_has_a_case_and_every_factory_matches_its_table() -> None:
    assert set(CASES) == {fn.name for fn in BUILTINS}
    for memory_type, (factory, names) in IMPLEMENTED.items():
        if memory_type is MemoryType.CUPY or not framework_installed(memory_type):
            continue
        assert set(factory()) == set(names), memory_type


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    return len(pairs) == len(set(a.ravel().tolist())) == len(set(b.ravel().tolist()))


@pytest.mark.parametrize(("name", "memory_type"), PAIRS, ids=[f"{n}-{m.value}" for n, m in PAIRS])
def test_implementation_agrees_with_independent_computation(registry, name, memory_type) -> None:
    if memory_type is MemoryType.CUPY and not _cuda_available():
        pytest.skip("no CUDA device")
    if not framework_installed(memory_type):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{memory_type.value} is not installed (make install installs it)")
        pytest.skip(reason=f"{memory_type.value} is not installed")
    data, args, reference, kind = CASES[name]
    impl = registry.implementation(name, memory_type)
    result = np.asarray(hm.convert(impl(data.copy(), **args), MemoryType.NUMPY))
    expected = reference(data)
    assert result.shape == expected.shape
    cle = memory_type is MemoryType.PYCLESPERANTO
    if kind == "float":
        if cle and name == "gaussian_filter":
            border = int(4 * args["sigma"] + 0.5)
            result, expected = (a[:, border:-border, border:-border] for a in (result, expected))
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-4 * float(np.ptp(expected)) + 1e-6)
    elif kind == "mask":
        assert result.dtype == np.uint8 and set(np.unique(result)) <= {0, 1}
        assert np.mean(result != expected) <= 0.005
    elif kind == "expand":
        assert result.dtype == np.int32
        if memory_type is MemoryType.NUMPY:  # scikit-image's algorithm: the same ties
            np.testing.assert_array_equal(result, expected)
        nearest, ties = nearest_labels(data, args["distance"])
        away = nearest != -1
        np.testing.assert_array_equal(result[away], nearest[away])
        assert all(int(result[at]) in labels for at, labels in ties.items())
    elif kind == "labels_exact":
        assert result.dtype == (data.dtype if cle else np.int32)
        np.testing.assert_array_equal(result, expected)
    elif kind == "labels":
        if cle:
            assert _same_partition(result, expected)
        else:
            assert result.dtype == np.int32
            np.testing.assert_array_equal(result, expected)
    else:
        if name in ("median_filter", "tophat", "clip", "max_projection") and not cle:
            assert result.dtype == data.dtype
        np.testing.assert_array_equal(result, expected.astype(result.dtype))


def test_gaussian_wider_than_the_plane(registry) -> None:
    """Padding by more than the plane's size still reflects like scipy (torch pads repeatedly)."""
    small = STACK[:, :6, :7]
    expected = CASES["gaussian_filter"][2](small.astype(np.float64))
    for memory_type in (MemoryType.NUMPY, MemoryType.TORCH, MemoryType.JAX):
        impl = registry.implementation("gaussian_filter", memory_type)
        result = np.asarray(hm.convert(impl(small.copy(), sigma=2.0), MemoryType.NUMPY))
        np.testing.assert_allclose(result, expected, atol=1e-4 * float(np.ptp(expected)),
                                   err_msg=memory_type.value)


def test_constant_stack_thresholds_to_nothing(registry) -> None:
    flat = np.full((2, 8, 8), 7, np.uint16)
    for memory_type in (MemoryType.NUMPY, MemoryType.TORCH, MemoryType.JAX):
        result = hm.convert(registry.implementation("threshold_otsu", memory_type)(flat), MemoryType.NUMPY)
        assert not np.asarray(result).any()


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "uint16", "int32", "uint8", "bool"])
def test_otsu_mask_compares_as_float64_without_a_float64_copy(dtype: str) -> None:
    """The mask of ``x > t`` in the stack's own dtype equals the float64 comparison, at and around ties
    (``t`` a value of the stack, just above or below one, between two adjacent float32 values)."""
    from hcsfs.pipelines.impl_ndimage import above

    rng = np.random.default_rng(3)
    if dtype == "bool":
        stack = rng.random((2, 16, 16)) > 0.5
    elif np.dtype(dtype).kind == "f":
        stack = (rng.normal(100, 30, (2, 16, 16))).astype(dtype)
    else:
        stack = rng.integers(0, min(np.iinfo(dtype).max, 3000), (2, 16, 16)).astype(dtype)
    values = np.unique(stack.astype(np.float64))
    middle, after = float(values[len(values) // 2 - 1]), float(values[len(values) // 2])
    thresholds = [middle, np.nextafter(middle, np.inf), np.nextafter(middle, -np.inf), middle + 0.5,
                  middle - 0.5, (middle + after) / 2, -1e9, 1e9, 0.0]
    for threshold in thresholds:
        expected = (stack.astype(np.float64) > threshold).astype(np.uint8)
        got = above(np, stack, float(threshold))
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected, err_msg=f"{dtype} > {threshold!r}")


def _otsu_of_float64_copy(stack: np.ndarray, nbins: int) -> float | None:
    """Otsu's threshold exactly as skimage's method computes it on the stack's float64 copy."""
    values = stack.astype(np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if low == high:
        return None
    counts, edges = np.histogram(values, bins=nbins, range=(low, high))
    centers = (edges[:-1] + edges[1:]) / 2
    weight1, weight2 = np.cumsum(counts), np.cumsum(counts[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean1 = np.cumsum(counts * centers) / weight1
        mean2 = (np.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    variance = np.nan_to_num(weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2, nan=-1.0)
    return float(centers[int(np.argmax(variance))])


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "uint16", "int32", "uint8", "int16"])
def test_otsu_threshold_without_a_float64_copy_is_the_float64_copys(dtype: str) -> None:
    from hcsfs.pipelines.impl_ndimage import otsu_threshold

    rng = np.random.default_rng(11)
    for trial in range(20):
        if np.dtype(dtype).kind == "f":
            values = rng.normal(0, 1, (3, 40, 50)) * 10.0 ** rng.uniform(-3, 4)
            if trial % 2:
                values = np.round(values * 4) / 4  # many equal values, some on bin edges
            stack = np.clip(values, -6e4, 6e4).astype(dtype)  # finite in float16 too
        else:
            info = np.iinfo(dtype)
            low, high = max(int(info.min), -5000), min(int(info.max), 5000)
            stack = rng.integers(low, high, (3, 40, 50)).astype(dtype)
        for nbins in (2, 256, 4096):
            assert otsu_threshold(np, stack, nbins) == _otsu_of_float64_copy(stack, nbins), (dtype, trial)
    assert otsu_threshold(np, np.full((2, 4, 4), 3, dtype), 256) is None
