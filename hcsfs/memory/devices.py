"""Where an array lives (:class:`Device`), and which device a conversion targets.

Every framework reports its device through DLPack's ``__dlpack_device__``, so placement is read the
same way for the memory types (pyclesperanto-prototype's pyopencl arrays, which have none, by their
OpenCL queue); turning a :class:`Device` into a framework's own device object
happens only in the functions that need that framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hcsfs.memory.errors import MemoryConversionError
from hcsfs.memory.frameworks import import_framework
from hcsfs.memory.types import MemoryType

# DLPack's DLDeviceType codes (dlpack.h) -> our device kind names.
_DLPACK_KINDS: dict[int, str] = {
    1: "cpu",
    2: "cuda",
    3: "cuda_host",
    4: "opencl",
    7: "vulkan",
    8: "metal",
    10: "rocm",
    13: "cuda_managed",
    14: "oneapi",
}


@dataclass(frozen=True)
class Device:
    """A memory location: ``kind`` is ``cpu``, ``cuda``, ``opencl``, ... and ``index`` its number."""

    kind: str
    index: int = 0

    @property
    def is_host(self) -> bool:
        return self.kind == "cpu"

    def __str__(self) -> str:
        return "cpu" if self.is_host else f"{self.kind}:{self.index}"


CPU = Device("cpu", 0)


def device_of(data: Any, memory_type: MemoryType) -> Device:
    """The device ``data`` lives on (numpy is always the host)."""
    if memory_type is MemoryType.NUMPY:
        return CPU
    if memory_type is MemoryType.PYCLESPERANTO_PROTOTYPE:  # pyopencl arrays have no DLPack
        from hcsfs.memory import cle_prototype

        return cle_prototype.device_of(data)
    if memory_type is MemoryType.TENSORFLOW and not hasattr(data, "__dlpack_device__"):
        # tf.Variable and older TensorFlow: parse "/job:localhost/.../device:GPU:0".
        name = str(data.device).rpartition("device:")[2]
        kind, _, index = name.partition(":")
        return CPU if kind.upper() == "CPU" else Device("cuda", int(index or 0))
    code, index = data.__dlpack_device__()
    kind = _DLPACK_KINDS.get(int(code), f"dlpack{int(code)}")
    return CPU if kind == "cpu" else Device(kind, int(index))


def check_gpu_id(gpu_id: Any, source: Any, target: MemoryType) -> int | None:
    """``gpu_id`` validated: ``None`` or a non-negative ``int``."""
    if gpu_id is None:
        return None
    if isinstance(gpu_id, bool) or not isinstance(gpu_id, int) or gpu_id < 0:
        raise MemoryConversionError(
            source, target, "placement", f"gpu_id must be None or an int >= 0, not {gpu_id!r}"
        )
    return gpu_id


def cle_current_device() -> Device:
    """pyclesperanto's current device (OpenCL or CUDA, depending on its backend)."""
    cle = import_framework(MemoryType.PYCLESPERANTO)
    device = cle.get_device()
    return Device(device.type.name.lower(), int(getattr(device, "index", 0)))


def _cupy_current_index() -> int:
    cupy = import_framework(MemoryType.CUPY)
    return int(cupy.cuda.Device().id)


def target_device(
    source_device: Device, source: MemoryType, target: MemoryType, gpu_id: int | None
) -> Device:
    """The device a conversion to ``target`` must land on.

    ``gpu_id=None`` keeps the data where it is when the target framework can live there (host for
    numpy, current device for cupy and pyclesperanto otherwise); an int asks for that GPU explicitly
    (for pyclesperanto: that index in its device list, which may be an OpenCL CPU device).
    """
    if target is MemoryType.NUMPY:
        if gpu_id is not None:
            raise MemoryConversionError(
                source, target, "placement", f"numpy arrays live on the host; got gpu_id={gpu_id}"
            )
        return CPU
    if target is MemoryType.CUPY:
        if gpu_id is not None:
            return Device("cuda", gpu_id)
        if source_device.kind == "cuda":
            return source_device
        return Device("cuda", _cupy_current_index())
    if target is MemoryType.PYCLESPERANTO_PROTOTYPE:
        from hcsfs.memory import cle_prototype

        current = cle_prototype.current_device()
        if gpu_id is not None and gpu_id != current.index:
            raise MemoryConversionError(
                source, target, "placement",
                f"pyclesperanto_prototype works on its current device ({current}), not opencl:{gpu_id} "
                "(choose it with pyclesperanto_prototype.select_device)")
        return current
    if target is MemoryType.PYCLESPERANTO:
        current = cle_current_device()
        if gpu_id is not None:
            return Device(current.kind, gpu_id)
        return source_device if source_device.kind == current.kind else current
    # torch, jax, tensorflow: host or CUDA.
    if gpu_id is not None:
        return Device("cuda", gpu_id)
    return source_device if source_device.kind in ("cpu", "cuda") else CPU
