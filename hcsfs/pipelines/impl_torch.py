"""Built-in functions for torch tensors (CPU or CUDA), matching the numpy reference (impl_ndimage).

Arithmetic runs in float32 (float64 for histograms and percentiles); integer inputs of filters that
keep the dtype come back in their dtype, exact below 2**24. Boundaries follow scipy's ``reflect``.
torch is imported inside the functions: registering them imports nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["torch_functions"]

_UNFOLD_BUDGET = 1 << 26  # elements per median chunk (256 MB of float32)


def _torch() -> Any:
    import torch

    return torch


def _pad_reflect(x: Any, r: int) -> Any:
    """Pad the last two dims by ``r`` like scipy's ``reflect`` (``numpy.pad`` ``symmetric``)."""
    torch = _torch()
    for dim in (-2, -1):
        left = right = r
        while left > 0 or right > 0:
            n = x.shape[dim]
            a, b = min(left, n), min(right, n)
            parts = [x.narrow(dim, 0, a).flip(dim), x, x.narrow(dim, n - b, b).flip(dim)]
            x = torch.cat(parts, dim=dim)
            left, right = left - a, right - b
    return x


def _back(result: Any, dtype: Any) -> Any:
    torch = _torch()
    if dtype.is_floating_point:
        return result.to(torch.float32)
    return torch.round(result).to(dtype)


def _gaussian_kernel(sigma: float, device: Any) -> Any:
    torch = _torch()
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    phi = torch.exp(-0.5 / sigma**2 * x**2)
    return (phi / phi.sum()).to(torch.float32), radius


def _erode_lines(padded: Any, r: int, shape: tuple[int, int], sign: float) -> Any:
    """Min (``sign=1``) or max (``sign=-1``) over a disk of radius ``r``, from horizontal lines."""
    torch = _torch()
    h, w = shape
    data = -sign * padded  # max_pool computes maxima: negate for minima
    out: Any = None
    for dy in range(-r, r + 1):
        half = math.isqrt(r * r - dy * dy)
        rows = data[:, None, r + dy: r + dy + h, :]
        line = torch.nn.functional.max_pool2d(rows, kernel_size=(1, 2 * half + 1), stride=1)
        line = line[:, 0, :, r - half: r - half + w]
        out = line if out is None else torch.maximum(out, line)
    return -sign * out


def _disk_sum(mask: Any, radius: int, outside: float) -> tuple[Any, float]:
    """Per pixel, how many pixels of ``mask`` (float 0/1, [Z, Y, X]) a disk of ``radius`` covers."""
    torch = _torch()
    r = torch.arange(-radius, radius + 1, device=mask.device)
    foot = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).to(torch.float32)[None, None]
    padded = torch.nn.functional.pad(mask[:, None], (radius,) * 4, value=outside)
    return torch.nn.functional.conv2d(padded, foot)[:, 0], float(foot.sum())


def _erode_mask(mask: Any, radius: int) -> Any:
    """skimage's erosion with a disk: outside the plane counts as foreground."""
    total, size = _disk_sum(mask, radius, 1.0)
    return total > size - 0.5


def _dilate_mask(mask: Any, radius: int) -> Any:
    """Dilation with a disk: outside the plane counts as background."""
    return _disk_sum(mask, radius, 0.0)[0] > 0.5


def torch_functions() -> dict[str, Callable[..., Any]]:
    """The torch implementations of the built-ins (see :mod:`hcsfs.pipelines.impl_ndimage`)."""

    def gaussian_filter(stack: Any, sigma: float = 1.0) -> Any:
        torch = _torch()
        data = stack.to(torch.float32)
        if sigma == 0:
            return data
        kernel, radius = _gaussian_kernel(sigma, data.device)
        x = _pad_reflect(data, radius)[:, None]
        x = torch.nn.functional.conv2d(x, kernel.view(1, 1, -1, 1))
        x = torch.nn.functional.conv2d(x, kernel.view(1, 1, 1, -1))
        return x[:, 0]

    def median_filter(stack: Any, size: int = 3) -> Any:
        torch = _torch()
        data = stack.to(torch.float32)
        r = size // 2
        padded = _pad_reflect(data, r)
        z, h, w = data.shape
        out = torch.empty_like(data)
        k = size * size // 2 + 1  # scipy's median of an odd window: the middle of the sorted values
        band = max(1, _UNFOLD_BUDGET // max(1, w * size * size))
        for start in range(0, h, band):
            stop = min(h, start + band)
            rows = padded[:, start: stop + 2 * r, :]
            windows = rows.unfold(1, size, 1).unfold(2, size, 1).reshape(z, stop - start, w, -1)
            out[:, start:stop] = windows.kthvalue(k, dim=-1).values
        return _back(out, stack.dtype)

    def tophat(stack: Any, radius: int = 15) -> Any:
        torch = _torch()
        data = stack.to(torch.float32)
        shape = data.shape[-2:]
        eroded = _erode_lines(_pad_reflect(data, radius), radius, shape, 1.0)
        opened = _erode_lines(_pad_reflect(eroded, radius), radius, shape, -1.0)
        return _back(data - opened, stack.dtype)

    def rescale_intensity(stack: Any, low: float = 0.0, high: float = 100.0) -> Any:
        torch = _torch()
        lo, hi = _percentiles(stack, (low, high))
        data = stack.to(torch.float32)
        if hi <= lo:
            return torch.zeros_like(data)
        return torch.clamp((data - lo) / (hi - lo), 0, 1)

    def threshold_otsu(stack: Any, nbins: int = 256) -> Any:
        torch = _torch()
        values = stack.to(torch.float64).reshape(-1)
        low, high = float(values.min()), float(values.max())
        if low == high:
            return torch.zeros(stack.shape, dtype=torch.uint8, device=stack.device)
        counts = torch.histc(values, bins=nbins, min=low, max=high)
        edges = torch.linspace(low, high, nbins + 1, dtype=torch.float64, device=stack.device)
        centers = (edges[:-1] + edges[1:]) / 2
        w1 = torch.cumsum(counts, 0)
        w2 = torch.flip(torch.cumsum(torch.flip(counts, (0,)), 0), (0,))
        m1 = torch.cumsum(counts * centers, 0) / w1
        m2 = torch.flip(torch.cumsum(torch.flip(counts * centers, (0,)), 0), (0,)) / w2
        variance = torch.nan_to_num(w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2, nan=-1.0)
        threshold = float(centers[int(torch.argmax(variance))])
        return (stack.to(torch.float64) > threshold).to(torch.uint8)

    def binary_opening(stack: Any, radius: int = 1) -> Any:
        torch = _torch()
        eroded = _erode_mask((stack != 0).to(torch.float32), radius)
        return _dilate_mask(eroded.to(torch.float32), radius).to(torch.uint8)

    def binary_erosion(stack: Any, radius: int = 1) -> Any:
        torch = _torch()
        return _erode_mask((stack != 0).to(torch.float32), radius).to(torch.uint8)

    def max_projection(stack: Any) -> Any:
        torch = _torch()
        data = stack if stack.dtype in (torch.uint8, torch.int16, torch.int32) else stack.to(torch.float32)
        return _back(data.amax(dim=0, keepdim=True).to(torch.float64), stack.dtype)

    def mean_projection(stack: Any) -> Any:
        torch = _torch()
        return stack.to(torch.float64).mean(dim=0, keepdim=True).to(torch.float32)

    def clip(stack: Any, low: float | None = None, high: float | None = None) -> Any:
        torch = _torch()
        if stack.dtype.is_floating_point:
            return torch.clamp(stack.to(torch.float32), low, high)
        info = torch.iinfo(stack.dtype)
        lo = info.min if low is None else min(max(math.ceil(low), info.min), info.max)
        hi = info.max if high is None else max(min(math.floor(high), info.max), info.min)
        return torch.clamp(stack.to(torch.float64), lo, hi).to(stack.dtype)

    def remove_small_objects(stack: Any, min_area: int) -> Any:
        torch = _torch()
        labels = stack.to(torch.int64)
        return torch.where(_object_areas(labels) >= min_area, labels, 0).to(torch.int32)

    def remove_large_objects(stack: Any, max_area: int) -> Any:
        torch = _torch()
        labels = stack.to(torch.int64)
        return torch.where(_object_areas(labels) <= max_area, labels, 0).to(torch.int32)

    return {
        "gaussian_filter": gaussian_filter, "median_filter": median_filter, "tophat": tophat,
        "rescale_intensity": rescale_intensity, "threshold_otsu": threshold_otsu,
        "binary_opening": binary_opening, "binary_erosion": binary_erosion, "max_projection": max_projection,
        "mean_projection": mean_projection, "clip": clip,
        "remove_small_objects": remove_small_objects, "remove_large_objects": remove_large_objects,
    }


def _object_areas(labels: Any) -> Any:
    """Each pixel's object area in its plane, for int64 labels (see impl_ndimage.object_areas)."""
    torch = _torch()
    z = labels.shape[0]
    flat = labels.reshape(z, -1)
    if flat.numel() == 0:
        return torch.zeros_like(labels)
    top = int(flat.max()) + 1
    if z * top <= 4 * flat.numel() + 4096:
        keys = flat + torch.arange(z, device=flat.device)[:, None] * top
        return torch.bincount(keys.reshape(-1), minlength=z * top)[keys].reshape(labels.shape)
    planes = []
    for plane in flat:
        _, inverse, counts = torch.unique(plane, return_inverse=True, return_counts=True)
        planes.append(counts[inverse])
    return torch.stack(planes).reshape(labels.shape)


def _percentiles(stack: Any, qs: tuple[float, float]) -> tuple[float, float]:
    """numpy's default (linear) percentiles, without torch.quantile's 16M-element limit."""
    torch = _torch()
    values = torch.sort(stack.to(torch.float64).reshape(-1)).values
    n = values.numel()
    result = []
    for q in qs:
        pos = q / 100 * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        result.append(float(values[lo]) * (1 - frac) + float(values[hi]) * frac)
    return result[0], result[1]
