"""``threshold``: the mask of pixels above a fixed value (a model's probability map > 0.5).

Integer planes are compared exactly (``x > value`` is ``x > floor(value)`` for integers, and a value
outside the dtype's range gives a constant mask); float planes in their own precision (float32 for
float32 planes, in every framework). Implementations for numpy, cupy, torch, jax and pyclesperanto;
frameworks are imported when a step runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hcsfs.memory import MemoryType, memory_types
from hcsfs.pipelines.registry import REQUIRED, FunctionDef, FunctionRegistry, Param

__all__ = ["THRESHOLD", "integer_cut", "register_threshold"]

_BOUND = 1e30
THRESHOLD = FunctionDef("threshold", "mask of the pixels above a fixed `value` (a model's probability map: "
                        "`value: 0.5`); integer planes are compared exactly",
                        (Param("value", float, REQUIRED, -_BOUND, _BOUND, doc="pixels above it are 1"),),
                        output="uint8 mask (0/1)", produces="mask")


def integer_cut(low: int, high: int, value: float) -> tuple[int | None, int | None]:
    """For integer values in ``[low, high]``: ``(cut, None)`` with ``x > value`` iff ``x > cut`` (``cut`` in
    range), or ``(None, constant)`` when every value is above it (1) or none is (0)."""
    cut = math.floor(value)
    if cut >= high:
        return None, 0
    if cut < low:
        return None, 1
    return cut, None


def _xp_threshold(xp: Any, stack: Any, value: float) -> Any:
    """numpy and cupy alike (``xp`` is the array module)."""
    if stack.dtype == np.bool_:
        stack = stack.view(np.uint8)
    if stack.dtype.kind in "iu":
        info = np.iinfo(stack.dtype)
        cut, constant = integer_cut(int(info.min), int(info.max), value)
        if constant is not None:
            return xp.full(stack.shape, constant, np.uint8)
        return (stack > cut).astype(np.uint8)
    return (stack > value).astype(np.uint8)


def _numpy(stack: np.ndarray, value: float) -> np.ndarray:
    result: np.ndarray = _xp_threshold(np, stack, value)
    return result


def _cupy(stack: Any, value: float) -> Any:
    import cupy

    return _xp_threshold(cupy, stack, value)


def _torch(stack: Any, value: float) -> Any:
    import torch

    if stack.dtype == torch.bool:
        stack = stack.to(torch.uint8)
    if not stack.dtype.is_floating_point:
        info = torch.iinfo(stack.dtype)
        cut, constant = integer_cut(int(info.min), int(info.max), value)
        if constant is not None:
            return torch.full(stack.shape, constant, dtype=torch.uint8, device=stack.device)
        if stack.dtype in (torch.uint16, torch.uint32):  # torch compares these only with floats
            stack = stack.to(torch.int64)
        return (stack > cut).to(torch.uint8)
    return (stack > value).to(torch.uint8)


def _jax(stack: Any, value: float) -> Any:
    import jax.numpy as jnp

    if stack.dtype == jnp.bool_:
        stack = stack.astype(jnp.uint8)
    if jnp.issubdtype(stack.dtype, jnp.integer):
        info = jnp.iinfo(stack.dtype)
        cut, constant = integer_cut(int(info.min), int(info.max), value)
        if constant is not None:
            return jnp.full(stack.shape, constant, dtype=jnp.uint8)
        return (stack > cut).astype(jnp.uint8)
    return (stack > value).astype(jnp.uint8)


def _cle(stack: Any, value: float) -> Any:
    """clEsperanto compares in float32: integer planes are exact below 2**24."""
    import pyclesperanto as cle

    dtype = np.dtype(stack.dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        cut, constant = integer_cut(int(info.min), int(info.max), value)
        if cut is None:
            return cle.push(np.full(stack.shape, constant, np.uint8))
        return cle.greater_constant(stack, scalar=float(cut))
    return cle.greater_constant(stack, scalar=value)


IMPLEMENTATIONS: dict[MemoryType, Callable[[Any, float], Any]] = {
    MemoryType.NUMPY: _numpy, MemoryType.CUPY: _cupy, MemoryType.TORCH: _torch, MemoryType.JAX: _jax,
    MemoryType.PYCLESPERANTO: _cle,
}


def register_threshold(registry: FunctionRegistry) -> None:
    """Register ``threshold`` and its implementations."""
    registry.register(THRESHOLD)
    for memory_type, func in IMPLEMENTATIONS.items():
        def threshold(stack: Any, value: float, _func: Callable[[Any, float], Any] = func) -> Any:
            return _func(stack, value)

        threshold.__name__ = threshold.__qualname__ = f"threshold[{memory_type.value}]"
        wrapped = memory_types(memory_type, oom_recovery="split")(threshold)
        registry.implement("threshold", memory_type, wrapped)
