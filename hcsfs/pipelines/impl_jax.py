"""Built-in functions for jax arrays, matching the numpy reference (impl_ndimage).

jax computes in float32 (hcsfs does not turn on ``jax_enable_x64``), so histograms and percentiles
differ from numpy's float64 ones within the tolerances stated in docs/pipelines.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hcsfs.pipelines.impl_ndimage import object_areas

__all__ = ["jax_functions"]


def _jnp() -> Any:
    import jax.numpy as jnp

    return jnp


def _pad_reflect(x: Any, r: int) -> Any:
    jnp = _jnp()
    return jnp.pad(x, ((0, 0), (r, r), (r, r)), mode="symmetric")


def jax_functions() -> dict[str, Callable[..., Any]]:
    """The jax implementations of the built-ins (see :mod:`hcsfs.pipelines.impl_ndimage`)."""

    def gaussian_filter(stack: Any, sigma: float = 1.0) -> Any:
        import numpy as np

        jnp = _jnp()
        data = stack.astype(jnp.float32)
        if sigma == 0:
            return data
        radius = int(4.0 * sigma + 0.5)
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        phi = np.exp(-0.5 / sigma**2 * x**2)
        weights = (phi / phi.sum()).astype(np.float32)
        padded = _pad_reflect(data, radius)
        h, w = data.shape[1:]
        rows = sum(float(k) * padded[:, i: i + h, :] for i, k in enumerate(weights))
        return sum(float(k) * rows[:, :, i: i + w] for i, k in enumerate(weights))

    def rescale_intensity(stack: Any, low: float = 0.0, high: float = 100.0) -> Any:
        jnp = _jnp()
        data = stack.astype(jnp.float32)
        lo, hi = (float(v) for v in jnp.percentile(data, jnp.array([low, high])))
        if hi <= lo:
            return jnp.zeros_like(data)
        return jnp.clip((data - lo) / (hi - lo), 0, 1)

    def threshold_otsu(stack: Any, nbins: int = 256) -> Any:
        jnp = _jnp()
        values = stack.astype(jnp.float32).ravel()
        low, high = float(values.min()), float(values.max())
        if low == high:
            return jnp.zeros(stack.shape, dtype=jnp.uint8)
        counts, edges = jnp.histogram(values, bins=nbins, range=(low, high))
        centers = (edges[:-1] + edges[1:]) / 2
        counts = counts.astype(jnp.float32)
        w1 = jnp.cumsum(counts)
        w2 = jnp.cumsum(counts[::-1])[::-1]
        m1 = jnp.cumsum(counts * centers) / w1
        m2 = (jnp.cumsum((counts * centers)[::-1]) / w2[::-1])[::-1]
        variance = jnp.nan_to_num(w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2, nan=-1.0)
        threshold = centers[jnp.argmax(variance)]
        return (stack.astype(jnp.float32) > threshold).astype(jnp.uint8)

    def max_projection(stack: Any) -> Any:
        jnp = _jnp()
        out = stack.max(axis=0, keepdims=True)
        return out.astype(jnp.float32) if jnp.issubdtype(out.dtype, jnp.floating) else out

    def mean_projection(stack: Any) -> Any:
        jnp = _jnp()
        return stack.astype(jnp.float32).mean(axis=0, keepdims=True)

    def clip(stack: Any, low: float | None = None, high: float | None = None) -> Any:
        import math

        jnp = _jnp()
        if jnp.issubdtype(stack.dtype, jnp.floating):
            return jnp.clip(stack.astype(jnp.float32), low, high)
        info = jnp.iinfo(stack.dtype)
        lo = info.min if low is None else min(max(math.ceil(low), info.min), info.max)
        hi = info.max if high is None else max(min(math.floor(high), info.max), info.min)
        return jnp.clip(stack, jnp.array(lo, stack.dtype), jnp.array(hi, stack.dtype))

    def remove_small_objects(stack: Any, min_area: int) -> Any:
        jnp = _jnp()
        labels = stack.astype(jnp.int32)
        return jnp.where(object_areas(jnp, labels, jnp.int32) >= min_area, labels, 0)

    def remove_large_objects(stack: Any, max_area: int) -> Any:
        jnp = _jnp()
        labels = stack.astype(jnp.int32)
        return jnp.where(object_areas(jnp, labels, jnp.int32) <= max_area, labels, 0)

    return {
        "gaussian_filter": gaussian_filter, "rescale_intensity": rescale_intensity,
        "threshold_otsu": threshold_otsu, "max_projection": max_projection,
        "mean_projection": mean_projection, "clip": clip,
        "remove_small_objects": remove_small_objects, "remove_large_objects": remove_large_objects,
    }
