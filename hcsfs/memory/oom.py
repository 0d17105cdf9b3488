"""Out-of-memory recovery that is better than retrying the same call (issue 5).

On a recognised out-of-memory error: clean up, split the stack along Z into halves and retry each
half recursively; a single plane that still does not fit runs on the CPU with a warning, when the
memory type has a CPU device. Every step is counted in ``stats()``.

Splitting is exact for functions that treat Z planes independently; a truly 3-D function (a 3-D
filter, 3-D labelling) sees seams at the split. Such functions should use ``oom_recovery="cpu"``.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hcsfs.memory import backends
from hcsfs.memory.convert import convert
from hcsfs.memory.devices import CPU, Device, device_of
from hcsfs.memory.errors import OutOfMemoryRecoveryError
from hcsfs.memory.gpu import cleanup_gpu_memory, is_out_of_memory
from hcsfs.memory.stacking import concat_z, split_z
from hcsfs.memory.stats import OomEvent, record_oom
from hcsfs.memory.types import MemoryType

logger = logging.getLogger("hcsfs.memory")

RECOVERY_MODES = ("split", "cpu")
# Memory types whose arrays can live on the host, so a CPU fallback exists (cupy has none).
_CPU_CAPABLE = frozenset(
    {MemoryType.NUMPY, MemoryType.TORCH, MemoryType.JAX, MemoryType.TENSORFLOW}
)


@dataclass(frozen=True)
class Execution:
    """Where a decorated function is running now (``current_execution()``)."""

    memory_type: MemoryType
    device: Device
    cpu_fallback: bool = False


_current: contextvars.ContextVar[Execution | None] = contextvars.ContextVar(
    "hcsfs_memory_execution", default=None
)


def current_execution() -> Execution | None:
    """The memory type and device of the decorated function running in this context, if any."""
    return _current.get()


def run_in(execution: Execution, call: Callable[[Any], Any], stack: Any) -> Any:
    token = _current.set(execution)
    try:
        return call(stack)
    finally:
        _current.reset(token)


def run_with_recovery(
    call: Callable[[Any], Any], stack: Any, memory_type: MemoryType, mode: str = "split"
) -> Any:
    """``call(stack)`` with out-of-memory recovery; ``stack`` is ``[Z, Y, X]`` of ``memory_type``."""
    if mode not in RECOVERY_MODES:
        raise ValueError(f"oom_recovery must be True or one of {RECOVERY_MODES}, not {mode!r}")
    device = device_of(stack, memory_type)
    execution = Execution(memory_type, device)
    try:
        return run_in(execution, call, stack)
    except Exception as exc:
        if is_out_of_memory(exc) is None:
            raise
        first_error: Exception = exc
    record_oom(OomEvent.OOM_ERROR)
    _cleanup(memory_type, device)
    if mode == "split":
        result = _split_and_retry(call, stack, memory_type, execution, first_error)
    else:
        result = _cpu_fallback(call, stack, memory_type, first_error)
    record_oom(OomEvent.RECOVERED)
    return result


def _cleanup(memory_type: MemoryType, device: Device) -> None:
    cleanup_gpu_memory(memory_type, None if device.is_host else device.index)


def _split_and_retry(
    call: Callable[[Any], Any], stack: Any, memory_type: MemoryType, execution: Execution,
    error: Exception,
) -> Any:
    if backends.shape_of(stack)[0] < 2:
        return _cpu_fallback(call, stack, memory_type, error)
    record_oom(OomEvent.SPLIT)
    halves = []
    for half in split_z(stack):
        record_oom(OomEvent.RETRY)
        try:
            halves.append(run_in(execution, call, half))
        except Exception as exc:
            if is_out_of_memory(exc) is None:
                raise
            record_oom(OomEvent.OOM_ERROR)
            _cleanup(memory_type, execution.device)
            halves.append(_split_and_retry(call, half, memory_type, execution, exc))
    return concat_z(halves[0], halves[1])


def _cpu_fallback(
    call: Callable[[Any], Any], stack: Any, memory_type: MemoryType, error: Exception
) -> Any:
    if memory_type not in _CPU_CAPABLE:
        record_oom(OomEvent.FAILED)
        raise OutOfMemoryRecoveryError(
            f"{memory_type} ran out of memory on a stack of shape {backends.shape_of(stack)} and "
            f"has no CPU device to fall back to"
        ) from error
    logger.warning("%s out of memory on a stack of shape %s; running it on the CPU",
                   memory_type, backends.shape_of(stack))
    record_oom(OomEvent.CPU_FALLBACK)
    on_host = stack if device_of(stack, memory_type) == CPU else _to_host(stack, memory_type)
    try:
        return run_in(Execution(memory_type, CPU, cpu_fallback=True), call, on_host)
    except Exception as exc:
        if is_out_of_memory(exc) is None:
            raise
        record_oom(OomEvent.FAILED)
        raise OutOfMemoryRecoveryError(
            f"{memory_type} ran out of memory on the CPU too (stack {backends.shape_of(stack)})"
        ) from exc


def _to_host(stack: Any, memory_type: MemoryType) -> Any:
    """The same memory type on the host: numpy round trip, since gpu_id=None keeps the device."""
    host = convert(stack, MemoryType.NUMPY)
    return convert(host, memory_type)
