"""Test helpers for hcsfs.memory: aligned numpy buffers and an independent to-numpy oracle."""

from __future__ import annotations

from typing import Any

import numpy as np


def aligned(shape: tuple[int, ...], dtype: Any, fill: str = "arange") -> np.ndarray:
    """A numpy array on a 64-byte boundary: jax imports by DLPack without a copy only then."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    raw = np.empty(count * dtype.itemsize + 64, dtype=np.uint8)
    offset = (-raw.ctypes.data) % 64
    array = raw[offset : offset + count * dtype.itemsize].view(dtype).reshape(shape)
    array[...] = np.arange(count).reshape(shape).astype(dtype) if fill == "arange" else 0
    return array


def to_numpy(x: Any) -> np.ndarray:
    """Values of any array as numpy, without going through hcsfs (an independent oracle)."""
    if isinstance(x, np.ndarray):
        return x
    module = type(x).__module__
    if module.startswith("pyclesperanto"):
        return x.get()
    if module.startswith("torch"):
        return x.detach().cpu().numpy()
    if module.startswith("tensorflow"):
        return x.numpy()
    return np.asarray(x)
