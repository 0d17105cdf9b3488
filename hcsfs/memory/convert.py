"""``convert(data, target, gpu_id)``: any of the six memory types to any other (36 paths).

Each pair tries an ordered list of plain strategies (identity or same-framework move; DLPack; the
CUDA array interface; the host). A strategy that cannot apply says why by raising :class:`_Skip`;
the host strategy always applies, and the reasons of the skipped ones go into its log line. The
result is then checked: type, device, shape and dtype, and whether a promised zero-copy really
shares memory (when both buffers' addresses are known).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hcsfs.memory import backends
from hcsfs.memory.devices import CPU, Device, check_gpu_id, device_of, target_device
from hcsfs.memory.errors import MemoryConversionError
from hcsfs.memory.gpu import is_out_of_memory
from hcsfs.memory.stats import ConversionMethod, record_conversion
from hcsfs.memory.types import MemoryType, as_memory_type, detect_memory_type

M = MemoryType
Method = ConversionMethod


class _Skip(Exception):
    """Internal: this strategy does not apply to this array; ``args[0]`` says why."""


Strategy = Callable[[Any, MemoryType, MemoryType, Device, Device], tuple[Any, ConversionMethod]]


def _same_framework(data: Any, source: M, target: M, src: Device, dst: Device) -> tuple[Any, Method]:
    if source is not target:
        raise _Skip("different frameworks")
    if src == dst:
        return data, Method.IDENTITY
    move = backends.MOVE.get(target)
    if move is None:
        raise _Skip(f"{target} has no device-to-device copy")
    return move(data, dst), Method.TRANSFER


def _dlpack(data: Any, source: M, target: M, src: Device, dst: Device) -> tuple[Any, Method]:
    if not hasattr(data, "__dlpack__"):
        raise _Skip(f"{source} array has no __dlpack__")
    if src != dst:
        raise _Skip(f"data on {src}, target on {dst}")
    if src.kind not in backends.DLPACK_KINDS[target]:
        raise _Skip(f"{target} cannot import {src.kind} memory by DLPack")
    if source is M.NUMPY and not data.flags.writeable:
        raise _Skip("read-only numpy array: a DLPack consumer could write into it")
    if target in backends.NEEDS_COMPACT and not backends.is_compact(data, source):
        raise _Skip(f"{target} imports only C-contiguous DLPack tensors")
    alignment = backends.MIN_ALIGNMENT.get(target)
    if alignment is not None:
        address = backends.ADDRESS[source](data)
        if address is None or address % alignment:
            raise _Skip(f"{target} needs buffers aligned to {alignment} bytes")
    if source is M.TORCH and data.requires_grad:
        data = data.detach()  # shares memory; DLPack refuses tensors that require grad
    return backends.FROM_DLPACK[target](data, dst), Method.DLPACK


def _cuda_array_interface(
    data: Any, source: M, target: M, src: Device, dst: Device
) -> tuple[Any, Method]:
    if src.kind != "cuda" or src != dst:
        raise _Skip("CUDA array interface needs both sides on the same CUDA device")
    if not hasattr(data, "__cuda_array_interface__"):
        raise _Skip(f"{source} array has no __cuda_array_interface__")
    importer = backends.FROM_CUDA_ARRAY_INTERFACE.get(target)
    if importer is None:
        raise _Skip(f"{target} does not import the CUDA array interface")
    return importer(data, dst), Method.CUDA_ARRAY_INTERFACE


def _via_host(data: Any, source: M, target: M, src: Device, dst: Device) -> tuple[Any, Method]:
    array = backends.TO_NUMPY[source](data)
    result = backends.FROM_NUMPY[target](array, dst)
    inherent = M.NUMPY in (source, target) or (source is target and src.is_host != dst.is_host)
    return result, Method.TRANSFER if inherent else Method.HOST_ROUND_TRIP


_STRATEGIES: tuple[Strategy, ...] = (_same_framework, _dlpack, _cuda_array_interface, _via_host)

# The plan for each of the 36 ordered pairs. Every pair has the same ordered strategies; which
# one applies depends on the arrays' devices at run time (docs/memory.md tabulates the outcomes).
CONVERSION_TABLE: dict[tuple[MemoryType, MemoryType], tuple[Strategy, ...]] = {
    (source, target): _STRATEGIES for source in MemoryType for target in MemoryType
}


# Frameworks that can hold host memory: with gpu_id=None, data from a GPU they cannot use (a CPU
# build of torch, jax or tensorflow next to cupy) lands on the host instead of failing.
_HOST_CAPABLE: dict[MemoryType, Callable[[Device], Any]] = {
    M.TORCH: backends.torch_device,
    M.JAX: backends.jax_device,
    M.TENSORFLOW: backends.tf_device,
}


def _or_host(target: MemoryType, device: Device) -> Device:
    try:
        _HOST_CAPABLE[target](device)
    except backends.Unplaceable:
        return CPU
    return device


def convert(data: Any, target: MemoryType | str, gpu_id: int | None = None) -> Any:
    """``data`` as an array of memory type ``target``, zero-copy where the devices allow.

    ``gpu_id=None`` keeps the data on its device when the target framework can live there; an int
    places the result on that GPU (checked). Values, dtype and shape are preserved or
    :class:`MemoryConversionError` is raised; copies are counted in ``stats()`` and logged once per
    pair; framework out-of-memory errors propagate unchanged so OOM recovery can see them.
    """
    target = as_memory_type(target)
    source = detect_memory_type(data)
    gpu_id = check_gpu_id(gpu_id, source, target)
    src = device_of(data, source)
    try:
        dst = target_device(src, source, target, gpu_id)
        if gpu_id is None and not dst.is_host and target in _HOST_CAPABLE:
            dst = _or_host(target, dst)
    except backends.Unplaceable as exc:
        raise MemoryConversionError(source, target, "placement", str(exc)) from exc
    skipped: list[str] = []
    for strategy in CONVERSION_TABLE[(source, target)]:
        name = strategy.__name__.strip("_")
        try:
            result, method = strategy(data, source, target, src, dst)
        except _Skip as skip:
            skipped.append(f"{name}: {skip.args[0]}")
            continue
        except backends.Unplaceable as exc:
            raise MemoryConversionError(source, target, "placement", str(exc)) from exc
        except MemoryConversionError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc) is not None:
                raise
            reason = f"{type(exc).__name__}: {exc}"
            raise MemoryConversionError(source, target, name, reason) from exc
        method = _check(data, result, source, target, dst, method)
        record_conversion(source, target, method, "; ".join(skipped))
        return result
    raise AssertionError("the host strategy always applies")  # pragma: no cover


def _check(data: Any, result: Any, source: M, target: M, dst: Device, method: Method) -> Method:
    """Verify the promises of a conversion; returns the method actually achieved."""
    name = str(method)
    if detect_memory_type(result) is not target:
        raise MemoryConversionError(source, target, name, f"produced {type(result).__name__}")
    placed = device_of(result, target)
    if placed != dst:
        raise MemoryConversionError(source, target, "placement", f"landed on {placed}, not {dst}")
    if backends.shape_of(result) != backends.shape_of(data):
        reason = f"shape {backends.shape_of(data)} became {backends.shape_of(result)}"
        raise MemoryConversionError(source, target, name, reason)
    before, after = backends.dtype_name(data, source), backends.dtype_name(result, target)
    if before != after:
        hint = " (jax without jax_enable_x64 and pyclesperanto store no 64-bit types)"
        raise MemoryConversionError(source, target, name, f"dtype {before} became {after}{hint}")
    if method in (Method.DLPACK, Method.CUDA_ARRAY_INTERFACE) and not _shares(data, result,
                                                                            source, target):
        return Method.TRANSFER  # the framework copied on import (e.g. jax with unaligned memory)
    return method


def _shares(data: Any, result: Any, source: M, target: M) -> bool:
    """False only when both addresses are known and differ (an empty array shares trivially)."""
    if 0 in backends.shape_of(data):
        return True
    a, b = backends.ADDRESS[source](data), backends.ADDRESS[target](result)
    return a is None or b is None or a == b
