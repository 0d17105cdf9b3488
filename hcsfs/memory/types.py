"""The memory types hcsfs converts between, and detection of an array's type without importing it."""

from __future__ import annotations

import enum
from typing import Any

from hcsfs.memory.errors import MemoryConversionError


class MemoryType(str, enum.Enum):
    """An array framework; the value is the name used in pipeline specs (``memory: torch``)."""

    NUMPY = "numpy"
    CUPY = "cupy"
    TORCH = "torch"
    JAX = "jax"
    TENSORFLOW = "tensorflow"
    PYCLESPERANTO = "pyclesperanto"
    PYCLESPERANTO_PROTOTYPE = "pyclesperanto_prototype"
    """pyclesperanto-prototype's ``OCLArray`` (pyopencl); see :mod:`hcsfs.memory.cle_prototype`."""

    def __str__(self) -> str:
        return self.value


# Top-level module of an array class -> its memory type. Detection reads type(x).__mro__ module
# names only, so it never imports a framework (importing hcsfs must not pull in a GPU stack).
_MODULE_ROOTS: dict[str, MemoryType] = {
    "numpy": MemoryType.NUMPY,
    "cupy": MemoryType.CUPY,
    "torch": MemoryType.TORCH,
    "jax": MemoryType.JAX,
    "jaxlib": MemoryType.JAX,
    "tensorflow": MemoryType.TENSORFLOW,
    "pyclesperanto": MemoryType.PYCLESPERANTO,
    "pyclesperanto_opencl": MemoryType.PYCLESPERANTO,
    "pyclesperanto_cuda": MemoryType.PYCLESPERANTO,
    "pyclesperanto_metal": MemoryType.PYCLESPERANTO,
    "pyclesperanto_prototype": MemoryType.PYCLESPERANTO_PROTOTYPE,
}

# Class names that are arrays in their framework (scalars, dtypes and modules are not).
_ARRAY_CLASSES: dict[MemoryType, frozenset[str]] = {
    MemoryType.NUMPY: frozenset({"ndarray"}),
    MemoryType.CUPY: frozenset({"ndarray"}),
    MemoryType.TORCH: frozenset({"Tensor"}),
    MemoryType.JAX: frozenset({"Array", "ArrayImpl"}),
    MemoryType.TENSORFLOW: frozenset({"Tensor", "EagerTensor", "Variable", "ResourceVariable"}),
    MemoryType.PYCLESPERANTO: frozenset({"_Array", "Array"}),
    MemoryType.PYCLESPERANTO_PROTOTYPE: frozenset({"OCLArray"}),
}


def as_memory_type(value: MemoryType | str) -> MemoryType:
    """``value`` as a :class:`MemoryType`; a wrong name raises :class:`MemoryConversionError`."""
    try:
        return MemoryType(value)
    except ValueError:
        names = ", ".join(m.value for m in MemoryType)
        raise MemoryConversionError(
            None, value, "detect", f"unknown memory type {value!r} (one of {names})"
        ) from None


def detect_memory_type(data: Any) -> MemoryType:
    """The memory type of array ``data``; anything else raises :class:`MemoryConversionError`."""
    for cls in type(data).__mro__:
        root = cls.__module__.partition(".")[0]
        memory_type = _MODULE_ROOTS.get(root)
        if memory_type is not None and cls.__name__ in _ARRAY_CLASSES[memory_type]:
            return memory_type
    name = f"{type(data).__module__}.{type(data).__qualname__}"
    raise MemoryConversionError(name, None, "detect", f"{name} is not an array of a known memory type")
