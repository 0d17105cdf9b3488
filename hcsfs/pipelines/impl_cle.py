"""Built-in functions for pyclesperanto (OpenCL) arrays.

Where clEsperanto's semantics differ from the numpy reference, the difference is stated in
docs/pipelines.md and bounded by the tests: its Gaussian clamps at the border (equal to scipy's inside
``4 * sigma`` of the border), its Otsu uses its own 256-bin histogram, its label numbering may differ
(the objects are the same).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["cle_functions"]


def _cle() -> Any:
    import pyclesperanto

    return pyclesperanto


def cle_functions() -> dict[str, Callable[..., Any]]:
    """The pyclesperanto implementations of the built-ins that clEsperanto offers."""

    def gaussian_filter(stack: Any, sigma: float = 1.0) -> Any:
        cle = _cle()
        data = cle.create(stack.shape, dtype=np.float32)
        cle.copy(stack, data)
        if sigma == 0:
            return data
        return cle.gaussian_blur(data, sigma_x=sigma, sigma_y=sigma, sigma_z=0)

    def threshold_otsu(stack: Any, nbins: int = 256) -> Any:
        return _cle().threshold_otsu(stack)

    def label(stack: Any, connectivity: int = 2) -> Any:
        cle = _cle()
        out = cle.create(stack.shape, dtype=np.uint32)
        kind = "box" if connectivity == 2 else "sphere"
        for z in range(stack.shape[0]):  # planes are labelled on their own, as in numpy
            out[z] = cle.connected_component_labeling(stack[z], connectivity=kind)
        return out

    def max_projection(stack: Any) -> Any:
        return _cle().maximum_z_projection(stack, keep_dims=True)

    def mean_projection(stack: Any) -> Any:
        return _cle().mean_z_projection(stack, keep_dims=True)

    def clip(stack: Any, low: float | None = None, high: float | None = None) -> Any:
        lo = -math.inf if low is None else low
        hi = math.inf if high is None else high
        dtype = np.dtype(stack.dtype)
        if dtype.kind in "ui":  # integer planes: the bounds that keep the clipped values in range
            info = np.iinfo(dtype)
            lo = info.min if low is None else min(max(math.ceil(low), info.min), info.max)
            hi = info.max if high is None else max(min(math.floor(high), info.max), info.min)
        return _cle().clip(stack, min_intensity=lo, max_intensity=hi)

    def remove_small_objects(stack: Any, min_area: int) -> Any:
        return _keep_by_area(stack, lambda area: _cle().greater_or_equal_constant(area, scalar=min_area))

    def remove_large_objects(stack: Any, max_area: int) -> Any:
        return _keep_by_area(stack, lambda area: _cle().smaller_or_equal_constant(area, scalar=max_area))

    return {
        "gaussian_filter": gaussian_filter, "threshold_otsu": threshold_otsu, "label": label,
        "max_projection": max_projection, "mean_projection": mean_projection, "clip": clip,
        "remove_small_objects": remove_small_objects, "remove_large_objects": remove_large_objects,
    }


def _keep_by_area(stack: Any, keep: Callable[[Any], Any]) -> Any:
    """Labels whose per-plane pixel count passes ``keep``, others 0, numbers unchanged.

    clEsperanto's ``remove_small_labels`` / ``remove_large_labels`` renumber the remaining labels; masking
    with its pixel count map keeps them as numpy does.
    """
    cle = _cle()
    out = cle.create(stack.shape, dtype=stack.dtype)
    for z in range(stack.shape[0]):  # areas per plane, as in numpy
        out[z] = cle.mask(stack[z], keep(cle.pixel_count_map(stack[z])))
    return out
