"""GPU memory: recognising each framework's out-of-memory error, cleanup, and per-device limits.

Only frameworks already in ``sys.modules`` are consulted: recognising an error or cleaning up never
imports a framework (a framework that is not imported holds no memory and raised no error).
"""

from __future__ import annotations

import contextlib
import gc
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hcsfs.memory.frameworks import loaded_module
from hcsfs.memory.types import MemoryType, as_memory_type

M = MemoryType

# pyclesperanto raises a plain RuntimeError carrying the OpenCL/CUDA status name. CL_INVALID_BUFFER_
# SIZE is a request above the device's maximum allocation (PoCL here: 2048 MB): smaller pieces fit.
_CLE_OOM = re.compile(
    r"CL_MEM_OBJECT_ALLOCATION_FAILURE|CL_OUT_OF_RESOURCES|CL_OUT_OF_HOST_MEMORY"
    r"|CL_INVALID_BUFFER_SIZE|CUDA_ERROR_OUT_OF_MEMORY"
)
# torch's CPU allocator raises a plain RuntimeError (measured, torch 2.13 CPU build).
_TORCH_CPU_OOM = "DefaultCPUAllocator: can't allocate memory"


def _torch_oom(exc: BaseException) -> bool:
    torch = loaded_module(M.TORCH)
    if torch is None:
        return False
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and _TORCH_CPU_OOM in str(exc))


def _cupy_oom(exc: BaseException) -> bool:
    cupy = loaded_module(M.CUPY)
    return cupy is not None and isinstance(exc, cupy.cuda.memory.OutOfMemoryError)


def _jax_oom(exc: BaseException) -> bool:
    jax = loaded_module(M.JAX)
    if jax is None:
        return False
    # jax.errors.JaxRuntimeError since jax 0.4.36; before, jaxlib's XlaRuntimeError (a RuntimeError).
    runtime_error = getattr(jax.errors, "JaxRuntimeError", RuntimeError)
    return isinstance(exc, runtime_error) and "RESOURCE_EXHAUSTED" in str(exc)


def _tf_oom(exc: BaseException) -> bool:
    tf = loaded_module(M.TENSORFLOW)
    return tf is not None and isinstance(exc, tf.errors.ResourceExhaustedError)


def _cle_oom(exc: BaseException) -> bool:
    return (
        loaded_module(M.PYCLESPERANTO) is not None
        and isinstance(exc, RuntimeError)
        and _CLE_OOM.search(str(exc)) is not None
    )


def _cle_prototype_oom(exc: BaseException) -> bool:
    from hcsfs.memory import cle_prototype

    return cle_prototype.is_out_of_memory(exc)


def _numpy_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError)


# Order matters: cupy's OutOfMemoryError is also a MemoryError, so numpy's rule comes last.
_OOM_RULES: tuple[tuple[MemoryType, Callable[[BaseException], bool]], ...] = (
    (M.TORCH, _torch_oom),
    (M.CUPY, _cupy_oom),
    (M.JAX, _jax_oom),
    (M.TENSORFLOW, _tf_oom),
    (M.PYCLESPERANTO, _cle_oom),
    (M.PYCLESPERANTO_PROTOTYPE, _cle_prototype_oom),  # before numpy's: pyopencl's is a MemoryError
    (M.NUMPY, _numpy_oom),
)


def is_out_of_memory(exc: BaseException) -> MemoryType | None:
    """The framework whose out-of-memory error ``exc`` is (or wraps as its cause), else ``None``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for memory_type, rule in _OOM_RULES:
            if rule(current):
                return memory_type
        current = current.__cause__
    return None


@dataclass(frozen=True)
class CleanupReport:
    """What :func:`cleanup_gpu_memory` did: frameworks whose caches were emptied, objects collected."""

    frameworks: tuple[MemoryType, ...]
    collected: int


def _torch_cleanup(device_id: int | None) -> bool:
    torch = loaded_module(M.TORCH)
    if torch is None or not torch.cuda.is_initialized():
        return False
    if device_id is None:
        torch.cuda.empty_cache()
    else:
        with torch.cuda.device(device_id):
            torch.cuda.empty_cache()
    return True


def _cupy_cleanup(device_id: int | None) -> bool:
    cupy = loaded_module(M.CUPY)
    if cupy is None or not cupy.cuda.is_available():  # imported without a usable device
        return False
    if device_id is None:
        cupy.get_default_memory_pool().free_all_blocks()
    else:
        with cupy.cuda.Device(device_id):
            cupy.get_default_memory_pool().free_all_blocks()
    cupy.get_default_pinned_memory_pool().free_all_blocks()
    return True


def _collected_only(memory_type: MemoryType) -> bool:
    # jax, tensorflow and pyclesperanto free device buffers when their arrays are garbage
    # collected and keep no cache hcsfs may empty (jax.clear_caches drops compiled code, not data;
    # tf.keras.backend.clear_session would drop the user's models).
    return loaded_module(memory_type) is not None


def _jax_cleanup(device_id: int | None) -> bool:
    return _collected_only(M.JAX)


def _tf_cleanup(device_id: int | None) -> bool:
    return _collected_only(M.TENSORFLOW)


def _cle_cleanup(device_id: int | None) -> bool:
    return _collected_only(M.PYCLESPERANTO)


def _cle_prototype_cleanup(device_id: int | None) -> bool:
    return _collected_only(M.PYCLESPERANTO_PROTOTYPE)  # pyopencl frees a buffer with its array


def _numpy_cleanup(device_id: int | None) -> bool:
    return False


_CLEANUPS: dict[MemoryType, Callable[[int | None], bool]] = {
    M.TORCH: _torch_cleanup,
    M.CUPY: _cupy_cleanup,
    M.JAX: _jax_cleanup,
    M.TENSORFLOW: _tf_cleanup,
    M.PYCLESPERANTO: _cle_cleanup,
    M.PYCLESPERANTO_PROTOTYPE: _cle_prototype_cleanup,
    M.NUMPY: _numpy_cleanup,
}


def cleanup_gpu_memory(
    memory_type: MemoryType | str | None = None, device_id: int | None = None
) -> CleanupReport:
    """Collect garbage, then empty the memory pools of ``memory_type`` (all when ``None``).

    Touches only frameworks already imported; ``device_id`` limits pool cleanup to one GPU.
    """
    from hcsfs.memory.stats import OomEvent, record_oom

    collected = gc.collect()
    types = list(M) if memory_type is None else [as_memory_type(memory_type)]
    done = tuple(m for m in types if _CLEANUPS[m](device_id))
    record_oom(OomEvent.CLEANUP)
    return CleanupReport(done, collected)


# --- per-device concurrency -------------------------------------------------------------------

DEFAULT_DEVICE_CONCURRENCY = 2
_limits: dict[str, int] = {}
_semaphores: dict[str, threading.BoundedSemaphore] = {}
_limits_lock = threading.Lock()


def set_device_concurrency(device: str, limit: int) -> None:
    """At most ``limit`` decorated calls run at once on ``device`` (``"cuda:0"``, ``"opencl:0"``).

    Takes effect for calls that start afterwards.
    """
    if limit < 1:
        raise ValueError(f"device concurrency must be >= 1, not {limit}")
    with _limits_lock:
        _limits[device] = limit
        _semaphores.pop(device, None)


def _semaphore(device: str) -> threading.BoundedSemaphore:
    with _limits_lock:
        semaphore = _semaphores.get(device)
        if semaphore is None:
            limit = _limits.get(device, DEFAULT_DEVICE_CONCURRENCY)
            semaphore = _semaphores[device] = threading.BoundedSemaphore(limit)
        return semaphore


@contextlib.contextmanager
def device_slot(device: str) -> Iterator[None]:
    """Hold one of ``device``'s concurrency slots; the host (``"cpu"``) is not limited."""
    if device == "cpu":
        yield
        return
    with _semaphore(device):
        yield
