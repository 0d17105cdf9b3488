"""Built-in functions written once against an ``(xp, ndimage)`` pair: numpy + scipy, cupy + cupyx.

Every function takes a ``[Z, Y, X]`` stack and returns one; filters work on each Z plane (2-D), with
scipy's ``reflect`` boundary. The numpy set is the reference the other frameworks are tested against;
the tests check it against scikit-image and scipy called independently. ``watershed`` exists for numpy
only (scikit-image's; cupyx has no seeded watershed).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["above", "make_ndimage_functions", "disk", "object_areas", "otsu_threshold", "percentile_bounds"]


def disk(xp: ModuleType, radius: int) -> Any:
    """skimage's ``disk(radius)``: the pixels with ``y**2 + x**2 <= radius**2``, as bool."""
    r = xp.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2


def otsu_threshold(xp: ModuleType, stack: Any, nbins: int) -> float | None:
    """Otsu's threshold of ``stack`` from an ``nbins`` histogram over [min, max] (skimage's method).

    ``None`` when the stack is constant (then nothing is above the threshold). The histogram is the
    float64 values' histogram; numpy bins floats and integers of up to 32 bits without a float64 copy
    of the stack (float64 edges: each value is converted exactly where it is compared).
    """
    import numpy

    exact = _bins_exactly(xp, stack.dtype)
    values = stack.ravel() if exact else stack.astype(xp.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if low == high:
        return None
    bounds = (numpy.float64(low), numpy.float64(high)) if exact else (low, high)  # float64 edges
    counts, edges = xp.histogram(values, bins=nbins, range=bounds)
    centers = (edges[:-1] + edges[1:]) / 2
    counts = counts.astype(xp.float64)
    weight1 = xp.cumsum(counts)
    weight2 = xp.cumsum(counts[::-1])[::-1]
    with _quiet(xp):
        mean1 = xp.cumsum(counts * centers) / weight1
        mean2 = (xp.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    variance = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    variance = xp.nan_to_num(variance, nan=-1.0)
    return float(centers[int(xp.argmax(variance))])


def _bins_exactly(xp: ModuleType, dtype: Any) -> bool:
    """Whether ``xp.histogram`` with float64 range bounds bins ``dtype`` values as their float64 copies
    (numpy: floats, integers that float64 holds exactly; checked against the copy by the tests)."""
    import numpy

    dtype = numpy.dtype(dtype)
    return xp is numpy and (dtype.kind == "f" and dtype.itemsize <= 8
                            or dtype.kind in "iu" and dtype.itemsize <= 4)


def above(xp: ModuleType, stack: Any, threshold: float) -> Any:
    """``stack > threshold`` as a 0/1 ``uint8`` mask, exactly as compared in float64, without a float64
    copy of the stack: integers against ``floor(threshold)``, floats against the largest value of
    their own dtype not above it (``x > t`` iff ``x > that value``, for every ``x`` of the dtype)."""
    import numpy

    from hcsfs.pipelines.threshold import integer_cut

    dtype = numpy.dtype(stack.dtype)
    if dtype.kind == "b":
        mask = stack.view(xp.uint8) > threshold
    elif dtype.kind in "iu":
        info = numpy.iinfo(dtype)
        cut, constant = integer_cut(int(info.min), int(info.max), threshold)
        mask = xp.full(stack.shape, bool(constant)) if cut is None else stack > cut
    elif dtype.kind == "f" and dtype.itemsize <= 8:
        cut = dtype.type(threshold)
        if float(cut) > threshold:
            cut = numpy.nextafter(cut, dtype.type(-numpy.inf))
        mask = stack > cut
    else:
        mask = stack.astype(xp.float64) > threshold
    return mask.view(xp.uint8)


def _quiet(xp: ModuleType) -> Any:
    errstate = getattr(xp, "errstate", None)  # cupy has none (and does not warn)
    return errstate(divide="ignore", invalid="ignore") if errstate else contextlib.nullcontext()


def percentile_bounds(xp: ModuleType, stack: Any, low: float, high: float) -> tuple[float, float]:
    values = stack.astype(xp.float64).ravel()
    return float(xp.percentile(values, low)), float(xp.percentile(values, high))


def object_areas(xp: ModuleType, labels: Any, index_dtype: Any = None) -> Any:
    """Each pixel's object area in its own plane (background pixels: the background's area).

    One ``bincount`` over ``plane * (max + 1) + label`` for the whole ``[Z, Y, X]`` stack; labels too
    sparse for that (a maximum far above the pixel count) are counted plane by plane with ``unique``.
    """
    index_dtype = xp.int64 if index_dtype is None else index_dtype
    z = labels.shape[0]
    flat = labels.reshape(z, -1).astype(index_dtype)
    if flat.size == 0:
        return xp.zeros(labels.shape, dtype=index_dtype)
    top = int(flat.max()) + 1
    if z * top <= 4 * flat.size + 4096:
        keys = flat + xp.arange(z, dtype=index_dtype)[:, None] * top
        counts = xp.bincount(keys.ravel(), minlength=z * top)
        return counts[keys].reshape(labels.shape)
    planes = []
    for plane in flat:
        _, inverse, counts = xp.unique(plane, return_inverse=True, return_counts=True)
        planes.append(counts[inverse.ravel()])
    return xp.stack(planes).reshape(labels.shape)


def _planewise(stack: Any, fn: Callable[[Any], Any], xp: ModuleType, dtype: Any) -> Any:
    out = xp.empty(stack.shape, dtype=dtype)
    for z in range(stack.shape[0]):
        out[z] = fn(stack[z])
    return out


def _keep_dtype(xp: ModuleType, dtype: Any) -> Any:
    return xp.float32 if xp.dtype(dtype).kind == "f" else dtype


def make_ndimage_functions(xp: ModuleType, ndi: ModuleType) -> dict[str, Callable[..., Any]]:
    """The built-in implementations over array module ``xp`` and its ``ndimage``."""

    def gaussian_filter(stack: Any, sigma: float = 1.0) -> Any:
        data = stack.astype(xp.float32)
        if sigma == 0:
            return data
        return ndi.gaussian_filter(data, sigma=(0, sigma, sigma), mode="reflect", truncate=4.0)

    def median_filter(stack: Any, size: int = 3) -> Any:
        out = ndi.median_filter(stack, size=(1, size, size), mode="reflect")
        return out.astype(_keep_dtype(xp, stack.dtype), copy=False)

    def tophat(stack: Any, radius: int = 15) -> Any:
        footprint = disk(xp, radius)[None]
        out = ndi.white_tophat(stack, footprint=footprint, mode="reflect")
        return out.astype(_keep_dtype(xp, stack.dtype), copy=False)

    def rescale_intensity(stack: Any, low: float = 0.0, high: float = 100.0) -> Any:
        lo, hi = percentile_bounds(xp, stack, low, high)
        data = stack.astype(xp.float32)
        if hi <= lo:
            return xp.zeros(stack.shape, dtype=xp.float32)
        return xp.clip((data - xp.float32(lo)) / xp.float32(hi - lo), 0, 1).astype(xp.float32)

    def threshold_otsu(stack: Any, nbins: int = 256) -> Any:
        threshold = otsu_threshold(xp, stack, nbins)
        if threshold is None:
            return xp.zeros(stack.shape, dtype=xp.uint8)
        return above(xp, stack, threshold)

    def binary_opening(stack: Any, radius: int = 1) -> Any:
        footprint = disk(xp, radius)
        # skimage's border handling: outside the image counts as foreground for the erosion and as
        # background for the dilation, so objects touching the border are not eaten away.
        def one(plane: Any) -> Any:
            eroded = ndi.binary_erosion(plane != 0, structure=footprint, border_value=1)
            return ndi.binary_dilation(eroded, structure=footprint, border_value=0)

        return _planewise(stack, one, xp, xp.uint8)

    def binary_erosion(stack: Any, radius: int = 1) -> Any:
        footprint = disk(xp, radius)
        return _planewise(stack, lambda p: ndi.binary_erosion(p != 0, structure=footprint, border_value=1),
                          xp, xp.uint8)

    def fill_holes(stack: Any) -> Any:
        return _planewise(stack, lambda p: ndi.binary_fill_holes(p != 0), xp, xp.uint8)

    def label(stack: Any, connectivity: int = 2) -> Any:
        structure = ndi.generate_binary_structure(2, connectivity)
        return _planewise(stack, lambda p: ndi.label(p != 0, structure=structure)[0], xp, xp.int32)

    def max_projection(stack: Any) -> Any:
        return stack.max(axis=0, keepdims=True).astype(_keep_dtype(xp, stack.dtype), copy=False)

    def mean_projection(stack: Any) -> Any:
        return stack.astype(xp.float64).mean(axis=0, keepdims=True).astype(xp.float32)

    def clip(stack: Any, low: float | None = None, high: float | None = None) -> Any:
        dtype = xp.dtype(stack.dtype)
        if dtype.kind in "ui":
            info = xp.iinfo(dtype)
            lo = info.min if low is None else min(max(math.ceil(low), info.min), info.max)
            hi = info.max if high is None else max(min(math.floor(high), info.max), info.min)
            return xp.clip(stack, dtype.type(lo), dtype.type(hi))
        data = stack.astype(xp.float32)
        return xp.clip(data, -xp.inf if low is None else low, xp.inf if high is None else high)

    def distance_transform(stack: Any) -> Any:
        def one(plane: Any) -> Any:
            inside = plane != 0
            if bool(inside.all()):  # no background to measure from
                return xp.zeros(plane.shape, dtype=xp.float32)
            return ndi.distance_transform_edt(inside)

        return _planewise(stack, one, xp, xp.float32)

    def expand_labels(stack: Any, distance: float = 1.0) -> Any:
        # scikit-image's algorithm: every background pixel within `distance` of a label takes the
        # label of its nearest labelled pixel (ties: the EDT's choice).
        def one(plane: Any) -> Any:
            background = plane == 0
            if bool(background.all()) or not bool(background.any()):
                return plane
            dist, (iy, ix) = ndi.distance_transform_edt(background, return_indices=True)
            return xp.where(dist <= distance, plane[iy, ix], 0)

        return _planewise(stack, one, xp, xp.int32)

    def remove_small_objects(stack: Any, min_area: int) -> Any:
        return xp.where(object_areas(xp, stack) >= min_area, stack, 0).astype(xp.int32)

    def remove_large_objects(stack: Any, max_area: int) -> Any:
        return xp.where(object_areas(xp, stack) <= max_area, stack, 0).astype(xp.int32)

    return {
        "gaussian_filter": gaussian_filter, "median_filter": median_filter, "tophat": tophat,
        "rescale_intensity": rescale_intensity, "threshold_otsu": threshold_otsu,
        "binary_opening": binary_opening, "binary_erosion": binary_erosion, "fill_holes": fill_holes,
        "label": label, "max_projection": max_projection, "mean_projection": mean_projection, "clip": clip,
        "distance_transform": distance_transform, "expand_labels": expand_labels,
        "remove_small_objects": remove_small_objects, "remove_large_objects": remove_large_objects,
    }


def _same_shape(name: str, array: Any, stack: Any) -> None:
    if tuple(array.shape) != tuple(stack.shape):
        raise ValueError(f"{name} has shape {tuple(array.shape)}, the image {tuple(stack.shape)}")


def watershed(stack: Any, markers: Any, mask: Any = None, compactness: float = 0.0, connectivity: int = 1,
              invert: bool = False) -> Any:
    """Seeded watershed of each plane (numpy only): scikit-image's ``watershed``."""
    import numpy
    from skimage import segmentation

    _same_shape("markers", markers, stack)
    if mask is not None:
        _same_shape("mask", mask, stack)
    image = stack.astype(numpy.float64)
    if invert:
        image = -image
    out = numpy.empty(stack.shape, dtype=numpy.int32)
    for z in range(stack.shape[0]):
        out[z] = segmentation.watershed(image[z], markers[z].astype(numpy.int32), connectivity=connectivity,
                                        mask=None if mask is None else mask[z] != 0,
                                        compactness=compactness)
    return out


def numpy_functions() -> dict[str, Callable[..., Any]]:
    import numpy
    import scipy.ndimage

    return make_ndimage_functions(numpy, scipy.ndimage) | {"watershed": watershed}


def cupy_functions() -> dict[str, Callable[..., Any]]:
    import cupy
    import cupyx.scipy.ndimage

    return make_ndimage_functions(cupy, cupyx.scipy.ndimage)
