"""Decorators that declare a function's memory types and convert at its boundary.

``@torch`` (and its siblings) or ``@memory_types(input_type=..., output_type=...)`` record the types on
the function, convert its first argument (a ``[Z, Y, X]`` stack) to the input type and its result (or
the first item of a returned tuple) to the output type, hold a per-device concurrency slot while it
runs, and with ``oom_recovery`` recover from out-of-memory errors (see :mod:`hcsfs.memory.oom`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hcsfs.memory.convert import convert
from hcsfs.memory.devices import device_of
from hcsfs.memory.gpu import device_slot
from hcsfs.memory.oom import Execution, run_in, run_with_recovery
from hcsfs.memory.stacking import require_ndim
from hcsfs.memory.types import MemoryType, as_memory_type, detect_memory_type

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class MemorySpec:
    """What a decorated function declared; read it with :func:`memory_spec`."""

    input_type: MemoryType
    output_type: MemoryType
    oom_recovery: str | None  # None, "split" (split then CPU) or "cpu"


def memory_spec(func: Callable[..., Any]) -> MemorySpec | None:
    """The :class:`MemorySpec` of a decorated function, ``None`` for a plain one."""
    return getattr(func, "memory_spec", None)


def _recovery_mode(oom_recovery: bool | str) -> str | None:
    if oom_recovery is True:
        return "split"
    if oom_recovery is False or oom_recovery is None:
        return None
    if oom_recovery in ("split", "cpu"):
        return str(oom_recovery)
    raise ValueError(f"oom_recovery must be a bool, 'split' or 'cpu', not {oom_recovery!r}")


def memory_types(
    input_type: MemoryType | str,
    output_type: MemoryType | str | None = None,
    *,
    oom_recovery: bool | str = False,
) -> Callable[[F], F]:
    """Declare and enforce a function's memory types (``output_type`` defaults to ``input_type``).

    The wrapped function gains a keyword ``gpu_id`` (passed on if the function declares it too).
    """
    spec = MemorySpec(
        as_memory_type(input_type),
        as_memory_type(output_type if output_type is not None else input_type),
        _recovery_mode(oom_recovery),
    )

    def decorate(func: F) -> F:
        passes_gpu_id = "gpu_id" in inspect.signature(func).parameters

        @functools.wraps(func)
        def wrapper(stack: Any, *args: Any, gpu_id: int | None = None, **kwargs: Any) -> Any:
            require_ndim(stack, 3, f"input of {func.__qualname__}")
            data = convert(stack, spec.input_type, gpu_id)
            device = device_of(data, spec.input_type)
            if passes_gpu_id:
                kwargs["gpu_id"] = gpu_id

            def call(part: Any) -> Any:
                return func(part, *args, **kwargs)

            with device_slot(str(device)):
                if spec.oom_recovery is None:
                    result = run_in(Execution(spec.input_type, device), call, data)
                else:
                    result = run_with_recovery(call, data, spec.input_type, spec.oom_recovery)
            return _convert_output(result, spec.output_type, gpu_id, func.__qualname__)

        wrapper.memory_spec = spec  # type: ignore[attr-defined]
        wrapper.input_memory_type = spec.input_type  # type: ignore[attr-defined]
        wrapper.output_memory_type = spec.output_type  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _convert_output(result: Any, output_type: MemoryType, gpu_id: int | None, name: str) -> Any:
    if isinstance(result, tuple) and result:  # (image, special outputs...): convert the image only
        return (_convert_output(result[0], output_type, gpu_id, name), *result[1:])
    require_ndim(result, 3, f"output of {name}")
    device = device_of(result, detect_memory_type(result))  # a non-array raises, never passes
    # Host results stay on the host (a CPU fallback must not retry the GPU); numpy takes no gpu_id.
    on_gpu = not device.is_host and output_type is not MemoryType.NUMPY
    return convert(result, output_type, gpu_id if on_gpu else None)


def _named(memory_type: MemoryType) -> Callable[..., Any]:
    def decorator(func: F | None = None, *, oom_recovery: bool | str = False) -> Any:
        make = memory_types(memory_type, memory_type, oom_recovery=oom_recovery)
        return make if func is None else make(func)

    decorator.__name__ = decorator.__qualname__ = memory_type.value
    decorator.__doc__ = (
        f"Declare a {memory_type.value} function: ``@{memory_type.value}`` or "
        f"``@{memory_type.value}(oom_recovery=True)``."
    )
    return decorator


numpy = _named(MemoryType.NUMPY)
cupy = _named(MemoryType.CUPY)
torch = _named(MemoryType.TORCH)
jax = _named(MemoryType.JAX)
tensorflow = _named(MemoryType.TENSORFLOW)
pyclesperanto = _named(MemoryType.PYCLESPERANTO)
pyclesperanto_prototype = _named(MemoryType.PYCLESPERANTO_PROTOTYPE)
