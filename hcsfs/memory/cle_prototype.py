"""pyclesperanto-prototype's ``OCLArray`` (pyopencl buffers), the seventh memory type.

pyclesperanto-prototype 0.24 is clEsperanto's older Python front end, built on pyopencl: its arrays are
``pyopencl.array.Array`` subclasses in an OpenCL context of pyopencl's own, so no other framework can
import them (no DLPack, no CUDA array interface, not even pyclesperanto, whose OpenCL context is another
one): every conversion but to and from numpy is a host round trip, counted and logged like the others.

The primitives here avoid the prototype's kernels where they would narrow the dtypes: ``cle.push``
turns everything into float32 and its indexing runs an OpenCL kernel that refuses 64-bit data, so
arrays are made with ``OCLArray.to_device`` (dtype kept) and stacked, split and joined with plain
buffer copies on the device (``enqueue_copy``, any dtype). Import order: it opens the OpenCL ICD like
pyclesperanto, so it must be imported before tensorflow (``load_frameworks`` does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hcsfs.memory.devices import Device
from hcsfs.memory.frameworks import import_framework
from hcsfs.memory.types import MemoryType

__all__ = ["current_device", "device_of", "to_numpy", "from_numpy", "stack", "unstack", "concat",
           "is_out_of_memory"]

M = MemoryType.PYCLESPERANTO_PROTOTYPE
_OOM_NAMES = ("MEM_OBJECT_ALLOCATION_FAILURE", "OUT_OF_RESOURCES", "OUT_OF_HOST_MEMORY",
              "INVALID_BUFFER_SIZE")


def _opencl_devices() -> list[Any]:
    import pyopencl

    return [device for platform in pyopencl.get_platforms() for device in platform.get_devices()]


def _index(cl_device: Any) -> int:
    for index, device in enumerate(_opencl_devices()):
        if device == cl_device:
            return index
    return 0


def current_device() -> Device:
    """The prototype's current OpenCL device, numbered in pyopencl's list of all devices."""
    cle = import_framework(M)
    return Device("opencl", _index(cle.get_device().device))


def device_of(data: Any) -> Device:
    return Device("opencl", _index(data.queue.device))


def _queue_for(device: Device) -> Any:
    cle = import_framework(M)
    current = cle.get_device()
    if device.kind != "opencl" or device.index != _index(current.device):
        names = [d.name for d in _opencl_devices()]
        raise ValueError(f"pyclesperanto_prototype works on its current device ({current.device.name}, "
                         f"opencl:{_index(current.device)}), not {device} (devices: {names}); "
                         "pick it with pyclesperanto_prototype.select_device")
    return current.queue


def to_numpy(data: Any) -> np.ndarray:
    return np.asarray(data.get())


def from_numpy(array: np.ndarray, device: Device) -> Any:
    from pyclesperanto_prototype._tier0._pycl import OCLArray

    return OCLArray.to_device(_queue_for(device), np.ascontiguousarray(array))


def _new(like: Any, shape: tuple[int, ...]) -> Any:
    from pyclesperanto_prototype._tier0._pycl import OCLArray

    return OCLArray(like.queue, shape, like.dtype)


def _copy(queue: Any, dst: Any, dst_offset: int, src: Any, src_offset: int, nbytes: int) -> None:
    import pyopencl

    if nbytes:
        pyopencl.enqueue_copy(queue, dst.base_data, src.base_data, byte_count=nbytes,
                              dst_offset=dst.offset + dst_offset, src_offset=src.offset + src_offset)


def _contiguous(data: Any) -> Any:
    return data if data.flags.c_contiguous else from_numpy(to_numpy(data), device_of(data))


def stack(slices: list[Any]) -> Any:
    """2-D arrays of one device as a new ``[Z, Y, X]`` array there (buffer copies, no kernel)."""
    first = slices[0]
    out = _new(first, (len(slices), *first.shape))
    for z, plane in enumerate(slices):
        plane = _contiguous(plane)
        _copy(out.queue, out, z * plane.nbytes, plane, 0, plane.nbytes)
    return out


def unstack(array: Any) -> list[Any]:
    """A ``[Z, Y, X]`` array as Z new 2-D arrays on its device."""
    array = _contiguous(array)
    planes = []
    for z in range(int(array.shape[0])):
        plane = _new(array, tuple(int(s) for s in array.shape[1:]))
        _copy(array.queue, plane, 0, array, z * plane.nbytes, plane.nbytes)
        planes.append(plane)
    return planes


def concat(parts: list[Any]) -> Any:
    """Stacks joined along Z on the first one's device."""
    parts = [_contiguous(p) for p in parts]
    out = _new(parts[0], (sum(int(p.shape[0]) for p in parts), *parts[0].shape[1:]))
    offset = 0
    for part in parts:
        _copy(out.queue, out, offset, part, 0, part.nbytes)
        offset += part.nbytes
    return out


def is_out_of_memory(exc: BaseException) -> bool:
    """pyopencl's MemoryError, or a pyopencl error naming an allocation failure."""
    import sys

    pyopencl = sys.modules.get("pyopencl")
    if pyopencl is None or "pyclesperanto_prototype" not in sys.modules:
        return False
    if isinstance(exc, getattr(pyopencl, "MemoryError", ())):
        return True
    return isinstance(exc, pyopencl.Error) and any(name in str(exc) for name in _OOM_NAMES)
