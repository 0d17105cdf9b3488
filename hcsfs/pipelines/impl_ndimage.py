"""Built-in functions written once against an ``(xp, ndimage)`` pair: numpy + scipy, cupy + cupyx.

Every function takes a ``[Z, Y, X]`` stack and returns one; filters work on each Z plane (2-D), with
scipy's ``reflect`` boundary. The numpy set is the reference the other frameworks are tested against;
the tests check it against scikit-image and scipy called independently.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["make_ndimage_functions", "disk", "otsu_threshold", "percentile_bounds"]


def disk(xp: ModuleType, radius: int) -> Any:
    """skimage's ``disk(radius)``: the pixels with ``y**2 + x**2 <= radius**2``, as bool."""
    r = xp.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2


def otsu_threshold(xp: ModuleType, stack: Any, nbins: int) -> float | None:
    """Otsu's threshold of ``stack`` from an ``nbins`` histogram over [min, max] (skimage's method).

    ``None`` when the stack is constant (then nothing is above the threshold).
    """
    values = stack.astype(xp.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if low == high:
        return None
    counts, edges = xp.histogram(values, bins=nbins, range=(low, high))
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


def _quiet(xp: ModuleType) -> Any:
    errstate = getattr(xp, "errstate", None)  # cupy has none (and does not warn)
    return errstate(divide="ignore", invalid="ignore") if errstate else contextlib.nullcontext()


def percentile_bounds(xp: ModuleType, stack: Any, low: float, high: float) -> tuple[float, float]:
    values = stack.astype(xp.float64).ravel()
    return float(xp.percentile(values, low)), float(xp.percentile(values, high))


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
        return (stack.astype(xp.float64) > threshold).astype(xp.uint8)

    def binary_opening(stack: Any, radius: int = 1) -> Any:
        footprint = disk(xp, radius)
        # skimage's border handling: outside the image counts as foreground for the erosion and as
        # background for the dilation, so objects touching the border are not eaten away.
        def one(plane: Any) -> Any:
            eroded = ndi.binary_erosion(plane != 0, structure=footprint, border_value=1)
            return ndi.binary_dilation(eroded, structure=footprint, border_value=0)

        return _planewise(stack, one, xp, xp.uint8)

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

    return {
        "gaussian_filter": gaussian_filter, "median_filter": median_filter, "tophat": tophat,
        "rescale_intensity": rescale_intensity, "threshold_otsu": threshold_otsu,
        "binary_opening": binary_opening, "fill_holes": fill_holes, "label": label,
        "max_projection": max_projection, "mean_projection": mean_projection, "clip": clip,
    }


def numpy_functions() -> dict[str, Callable[..., Any]]:
    import numpy
    import scipy.ndimage

    return make_ndimage_functions(numpy, scipy.ndimage)


def cupy_functions() -> dict[str, Callable[..., Any]]:
    import cupy
    import cupyx.scipy.ndimage

    return make_ndimage_functions(cupy, cupyx.scipy.ndimage)
