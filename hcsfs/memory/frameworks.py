"""Lazy, order-safe imports of the array frameworks.

Nothing here runs at import time: a framework is imported the first time a conversion or a decorated
function needs it, so importing hcsfs or mounting a plate never imports a GPU framework.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from hcsfs.memory.errors import FrameworkUnavailableError
from hcsfs.memory.types import MemoryType, as_memory_type

_MODULES: dict[MemoryType, str] = {
    MemoryType.NUMPY: "numpy",
    MemoryType.CUPY: "cupy",
    MemoryType.TORCH: "torch",
    MemoryType.JAX: "jax",
    MemoryType.TENSORFLOW: "tensorflow",
    MemoryType.PYCLESPERANTO: "pyclesperanto",
    MemoryType.PYCLESPERANTO_PROTOTYPE: "pyclesperanto_prototype",
}

_EXTRAS: dict[MemoryType, str] = {
    MemoryType.NUMPY: "",
    MemoryType.CUPY: "cupy",
    MemoryType.TORCH: "torch",
    MemoryType.JAX: "jax",
    MemoryType.TENSORFLOW: "tensorflow",
    MemoryType.PYCLESPERANTO: "cle",
    MemoryType.PYCLESPERANTO_PROTOTYPE: "cle-prototype",
}
_AFTERWARDS = {  # declares numpy<2 but runs on numpy 2: installed without its dependencies
    MemoryType.PYCLESPERANTO_PROTOTYPE: ", then pip install --no-deps pyclesperanto-prototype==0.24.6",
}
_OPENCL = (MemoryType.PYCLESPERANTO, MemoryType.PYCLESPERANTO_PROTOTYPE)

# Safe import order (measured, TensorFlow 2.21 + pyclesperanto 0.25 + PoCL 3.1): TensorFlow's
# libtensorflow_framework exports LLVM command-line symbols; PoCL's libclang-cpp, loaded when
# pyclesperanto opens the OpenCL ICD, binds to them and segfaults. pyclesperanto first is fine.
_LOAD_ORDER: tuple[MemoryType, ...] = (
    MemoryType.NUMPY,
    MemoryType.PYCLESPERANTO,
    MemoryType.PYCLESPERANTO_PROTOTYPE,
    MemoryType.CUPY,
    MemoryType.TORCH,
    MemoryType.JAX,
    MemoryType.TENSORFLOW,
)


def is_imported(memory_type: MemoryType) -> bool:
    """Whether the framework's module is already in ``sys.modules`` (never imports it)."""
    return _MODULES[memory_type] in sys.modules


def loaded_module(memory_type: MemoryType) -> ModuleType | None:
    """The framework's module if something already imported it, else ``None``."""
    return sys.modules.get(_MODULES[memory_type])


def _pocl_icd_installed() -> bool:
    vendors = Path(os.environ.get("OCL_ICD_VENDORS", "/etc/OpenCL/vendors"))
    if vendors.is_file():
        return "pocl" in vendors.name.lower()
    try:
        return any("pocl" in p.name.lower() for p in vendors.iterdir())
    except OSError:
        return False


def _check_load_order(memory_type: MemoryType) -> None:
    if (
        memory_type in _OPENCL
        and not is_imported(memory_type)
        and is_imported(MemoryType.TENSORFLOW)
        and _pocl_icd_installed()
    ):
        raise FrameworkUnavailableError(
            f"{memory_type} cannot be imported after tensorflow in this process: PoCL's OpenCL driver "
            "crashes on TensorFlow's LLVM symbols. Call hcsfs.memory.load_frameworks(...) with both "
            "types before using either (it imports pyclesperanto first)."
        )


def import_framework(memory_type: MemoryType | str) -> ModuleType:
    """Import and return the framework module of ``memory_type``.

    Raises :class:`FrameworkUnavailableError` when it is not installed, or when importing it now is
    known to crash the interpreter.
    """
    memory_type = as_memory_type(memory_type)
    module = loaded_module(memory_type)
    if module is not None:
        return module
    _check_load_order(memory_type)
    try:
        return importlib.import_module(_MODULES[memory_type])
    except ImportError as exc:
        extra = _EXTRAS[memory_type]
        hint = f" (install hcsfs[{extra}]{_AFTERWARDS.get(memory_type, '')})" if extra else ""
        raise FrameworkUnavailableError(f"{memory_type} is not available{hint}: {exc}") from exc


def load_frameworks(*memory_types: MemoryType | str) -> dict[MemoryType, ModuleType]:
    """Import several frameworks in an order known to be safe; call it before a pipeline runs."""
    wanted = {as_memory_type(m) for m in memory_types}
    return {m: import_framework(m) for m in _LOAD_ORDER if m in wanted}
