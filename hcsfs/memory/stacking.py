"""3-D discipline: 2-D slices of any type in, one ``[Z, Y, X]`` array of one type out, and back.

Functions hcsfs runs take and return ``[Z, Y, X]`` stacks (DESIGN.md section 3); these are the only
places where slices become stacks, so a wrong dimensionality is caught here, at the boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hcsfs.memory import backends, cle_prototype
from hcsfs.memory.convert import convert
from hcsfs.memory.devices import device_of
from hcsfs.memory.errors import DimensionalityError
from hcsfs.memory.frameworks import import_framework
from hcsfs.memory.types import MemoryType, as_memory_type, detect_memory_type

M = MemoryType


def require_ndim(data: Any, ndim: int, what: str) -> tuple[int, ...]:
    """``data``'s shape, or :class:`DimensionalityError` when it does not have ``ndim`` axes."""
    shape = backends.shape_of(data)
    if len(shape) != ndim:
        axes = "[Z, Y, X]" if ndim == 3 else "[Y, X]"
        raise DimensionalityError(f"{what} must be {ndim}-D {axes}; got shape {shape}")
    return shape


# --- stacking, per framework ------------------------------------------------------------------


def _numpy_stack(slices: list[Any]) -> Any:
    return import_framework(M.NUMPY).stack(slices)


def _cupy_stack(slices: list[Any]) -> Any:
    cupy = import_framework(M.CUPY)
    with slices[0].device:
        return cupy.stack(slices)


def _torch_stack(slices: list[Any]) -> Any:
    return import_framework(M.TORCH).stack(slices)


def _jax_stack(slices: list[Any]) -> Any:
    return import_framework(M.JAX).numpy.stack(slices)


def _tf_stack(slices: list[Any]) -> Any:
    tf = import_framework(M.TENSORFLOW)
    with tf.device(slices[0].device):
        return tf.stack(slices)


def _cle_stack(slices: list[Any]) -> Any:
    cle = import_framework(M.PYCLESPERANTO)
    first = slices[0]
    out = cle.create((len(slices), *first.shape), dtype=first.dtype, device=first.device)
    for z, plane in enumerate(slices):
        cle.copy_slice(plane, out, slice_index=z, device=first.device)
    return out


_STACK: dict[MemoryType, Callable[[list[Any]], Any]] = {
    M.NUMPY: _numpy_stack,
    M.CUPY: _cupy_stack,
    M.TORCH: _torch_stack,
    M.JAX: _jax_stack,
    M.TENSORFLOW: _tf_stack,
    M.PYCLESPERANTO: _cle_stack,
    M.PYCLESPERANTO_PROTOTYPE: cle_prototype.stack,
}


def _index_unstack(array: Any) -> list[Any]:
    return [array[z] for z in range(backends.shape_of(array)[0])]


def _torch_unstack(array: Any) -> list[Any]:
    return list(array.unbind(0))


def _tf_unstack(array: Any) -> list[Any]:
    return list(import_framework(M.TENSORFLOW).unstack(array))


_UNSTACK: dict[MemoryType, Callable[[Any], list[Any]]] = {
    M.NUMPY: _index_unstack,  # views
    M.CUPY: _index_unstack,  # views
    M.TORCH: _torch_unstack,  # views
    M.JAX: _index_unstack,
    M.TENSORFLOW: _tf_unstack,
    M.PYCLESPERANTO: _index_unstack,  # cle indexing copies one plane on the device
    M.PYCLESPERANTO_PROTOTYPE: cle_prototype.unstack,  # a buffer copy per plane, on the device
}


def stack_slices(
    slices: Sequence[Any], memory_type: MemoryType | str, gpu_id: int | None = None
) -> Any:
    """2-D ``slices`` (any memory types, same shape and dtype) as one ``[Z, Y, X]`` array."""
    memory_type = as_memory_type(memory_type)
    planes = list(slices)
    if not planes:
        raise DimensionalityError("stack_slices needs at least one slice")
    shapes = {require_ndim(p, 2, f"slice {z}") for z, p in enumerate(planes)}
    if len(shapes) > 1:
        raise DimensionalityError(f"slices differ in shape: {sorted(shapes)}")
    dtypes = {backends.dtype_name(p, detect_memory_type(p)) for p in planes}
    if len(dtypes) > 1:
        raise DimensionalityError(f"slices differ in dtype: {sorted(dtypes)}")
    converted = [convert(p, memory_type, gpu_id) for p in planes]
    return _STACK[memory_type](converted)


def unstack_slices(
    array: Any, memory_type: MemoryType | str, gpu_id: int | None = None
) -> list[Any]:
    """A ``[Z, Y, X]`` array as Z 2-D slices of ``memory_type`` (views where the framework has them)."""
    memory_type = as_memory_type(memory_type)
    require_ndim(array, 3, "unstack_slices input")
    return _UNSTACK[memory_type](convert(array, memory_type, gpu_id))


# --- splitting and joining along Z (out-of-memory recovery) ----------------------------------


def split_z(array: Any) -> tuple[Any, Any]:
    """The two halves of a stack along Z (the first gets the smaller half for odd Z)."""
    half = backends.shape_of(array)[0] // 2
    return array[:half], array[half:]


def _numpy_concat(parts: list[Any]) -> Any:
    return import_framework(M.NUMPY).concatenate(parts, axis=0)


def _cupy_concat(parts: list[Any]) -> Any:
    return import_framework(M.CUPY).concatenate(parts, axis=0)


def _torch_concat(parts: list[Any]) -> Any:
    return import_framework(M.TORCH).cat(parts, dim=0)


def _jax_concat(parts: list[Any]) -> Any:
    return import_framework(M.JAX).numpy.concatenate(parts, axis=0)


def _tf_concat(parts: list[Any]) -> Any:
    return import_framework(M.TENSORFLOW).concat(parts, axis=0)


def _cle_concat(parts: list[Any]) -> Any:
    cle = import_framework(M.PYCLESPERANTO)
    return cle.concatenate_along_z(parts[0], parts[1])


_CONCAT: dict[MemoryType, Callable[[list[Any]], Any]] = {
    M.NUMPY: _numpy_concat,
    M.CUPY: _cupy_concat,
    M.TORCH: _torch_concat,
    M.JAX: _jax_concat,
    M.TENSORFLOW: _tf_concat,
    M.PYCLESPERANTO: _cle_concat,
    M.PYCLESPERANTO_PROTOTYPE: cle_prototype.concat,
}


def concat_z(first: Any, second: Any) -> Any:
    """Two stacks joined along Z, in the memory type of ``first`` (``second`` converted to it)."""
    memory_type = detect_memory_type(first)
    device = device_of(first, memory_type)
    gpu_id = None if device.is_host else device.index
    return _CONCAT[memory_type]([first, convert(second, memory_type, gpu_id)])
