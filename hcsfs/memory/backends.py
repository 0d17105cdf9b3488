"""Per-framework primitives, one small function per memory type, dispatched from tables.

Each function imports its framework inside its body: these tables can be built, and hcsfs imported,
without any framework installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hcsfs.memory import cle_prototype
from hcsfs.memory.devices import Device, cle_current_device
from hcsfs.memory.frameworks import import_framework
from hcsfs.memory.types import MemoryType

M = MemoryType


class Unplaceable(Exception):
    """Internal: a device that this process does not have (``convert`` reports it with context)."""


# --- framework device objects ---------------------------------------------------------------


def cuda_device_count() -> int:
    """CUDA devices visible to this process, asked of whichever framework can tell (no import)."""
    cupy = import_framework(M.CUPY) if _installed("cupy") else None
    if cupy is not None:
        try:
            return int(cupy.cuda.runtime.getDeviceCount())
        except cupy.cuda.runtime.CUDARuntimeError:  # no driver, or no device
            return 0
    torch = import_framework(M.TORCH) if _installed("torch") else None
    return int(torch.cuda.device_count()) if torch is not None else 0


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def torch_device(device: Device) -> Any:
    torch = import_framework(M.TORCH)
    if device.is_host:
        return torch.device("cpu")
    if device.kind != "cuda" or device.index >= torch.cuda.device_count():
        raise Unplaceable(
            f"torch has no {device} (CUDA build: {torch.version.cuda is not None}, "
            f"devices: {torch.cuda.device_count()})"
        )
    return torch.device("cuda", device.index)


def jax_device(device: Device) -> Any:
    jax = import_framework(M.JAX)
    platform = "cpu" if device.is_host else "gpu" if device.kind == "cuda" else device.kind
    try:
        devices = jax.devices(platform)
    except RuntimeError as exc:  # jax: "Unknown backend: 'gpu' requested, but no platforms ..."
        raise Unplaceable(f"jax has no {device}: {exc}") from exc
    if device.index >= len(devices):
        raise Unplaceable(f"jax has no {device} ({len(devices)} {platform} devices)")
    return devices[device.index]


def tf_device(device: Device) -> str:
    tf = import_framework(M.TENSORFLOW)
    if device.is_host:
        return "/CPU:0"
    gpus = tf.config.list_logical_devices("GPU") if device.kind == "cuda" else []
    if device.index >= len(gpus):
        raise Unplaceable(f"tensorflow has no {device} ({len(gpus)} GPUs)")
    return f"/GPU:{device.index}"


def cupy_device(device: Device) -> Any:
    cupy = import_framework(M.CUPY)
    count = cuda_device_count()
    if device.kind != "cuda" or device.index >= count:
        raise Unplaceable(f"cupy has no {device} ({count} CUDA devices)")
    return cupy.cuda.Device(device.index)


def cle_device(device: Device) -> Any:
    cle = import_framework(M.PYCLESPERANTO)
    current = cle_current_device()
    if device == current:
        return cle.get_device()
    names = cle.list_available_devices()
    if device.kind != current.kind or device.index >= len(names):
        raise Unplaceable(f"pyclesperanto has no {device} (devices: {names})")
    return cle.select_device(device.index)  # like cle's own API: it becomes the current device


# --- introspection ----------------------------------------------------------------------------


def shape_of(data: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in data.shape)


def dtype_name(data: Any, memory_type: MemoryType) -> str:
    """The dtype's name in numpy's spelling (``uint16``, ``float32``, ``bool``)."""
    if memory_type is M.TORCH:
        return str(data.dtype).removeprefix("torch.")
    if memory_type is M.TENSORFLOW:
        return str(data.dtype.name)
    return np.dtype(data.dtype).name


def _numpy_address(data: Any) -> int | None:
    return int(data.__array_interface__["data"][0])


def _torch_address(data: Any) -> int | None:
    return int(data.data_ptr())


def _jax_address(data: Any) -> int | None:
    return int(data.unsafe_buffer_pointer())


def _tf_address(data: Any) -> int | None:
    if "CPU" not in str(data.device).upper() or not hasattr(data, "__dlpack__"):
        return None
    return int(np.from_dlpack(data).__array_interface__["data"][0])


def _cupy_address(data: Any) -> int | None:
    return int(data.data.ptr)


def _unknown_address(data: Any) -> int | None:
    return None  # pyclesperanto exposes no buffer address


ADDRESS: dict[MemoryType, Callable[[Any], int | None]] = {
    M.NUMPY: _numpy_address,
    M.CUPY: _cupy_address,
    M.TORCH: _torch_address,
    M.JAX: _jax_address,
    M.TENSORFLOW: _tf_address,
    M.PYCLESPERANTO: _unknown_address,
    M.PYCLESPERANTO_PROTOTYPE: _unknown_address,  # an OpenCL buffer, not an address
}


def is_compact(data: Any, memory_type: MemoryType) -> bool:
    """C-contiguous (jax, tensorflow and pyclesperanto arrays always are)."""
    if memory_type in (M.NUMPY, M.CUPY, M.PYCLESPERANTO_PROTOTYPE):
        return bool(data.flags.c_contiguous)
    if memory_type is M.TORCH:
        return bool(data.is_contiguous())
    return True


# --- to the host ------------------------------------------------------------------------------


def _numpy_to_numpy(data: Any) -> np.ndarray:
    return data


def _cupy_to_numpy(data: Any) -> np.ndarray:
    return data.get()


def _torch_to_numpy(data: Any) -> np.ndarray:
    return data.detach().cpu().resolve_conj().resolve_neg().numpy()


def _jax_to_numpy(data: Any) -> np.ndarray:
    return np.asarray(data)


def _tf_to_numpy(data: Any) -> np.ndarray:
    return data.numpy()


def _cle_to_numpy(data: Any) -> np.ndarray:
    return data.get()


TO_NUMPY: dict[MemoryType, Callable[[Any], np.ndarray]] = {
    M.NUMPY: _numpy_to_numpy,
    M.CUPY: _cupy_to_numpy,
    M.TORCH: _torch_to_numpy,
    M.JAX: _jax_to_numpy,
    M.TENSORFLOW: _tf_to_numpy,
    M.PYCLESPERANTO: _cle_to_numpy,
    M.PYCLESPERANTO_PROTOTYPE: cle_prototype.to_numpy,
}


# --- from the host ----------------------------------------------------------------------------


def _numpy_from_numpy(array: np.ndarray, device: Device) -> Any:
    return array


def _cupy_from_numpy(array: np.ndarray, device: Device) -> Any:
    cupy = import_framework(M.CUPY)
    with cupy_device(device):
        return cupy.asarray(array)


def _torch_from_numpy(array: np.ndarray, device: Device) -> Any:
    torch = import_framework(M.TORCH)
    if not array.flags.writeable:  # torch would alias read-only memory as writable
        array = array.copy()
    return torch.from_numpy(array).to(torch_device(device))


def _jax_from_numpy(array: np.ndarray, device: Device) -> Any:
    jax = import_framework(M.JAX)
    return jax.device_put(array, jax_device(device))


def _tf_from_numpy(array: np.ndarray, device: Device) -> Any:
    tf = import_framework(M.TENSORFLOW)
    with tf.device(tf_device(device)):
        return tf.identity(tf.convert_to_tensor(array))


def _cle_from_numpy(array: np.ndarray, device: Device) -> Any:
    cle = import_framework(M.PYCLESPERANTO)
    return cle.push(np.ascontiguousarray(array), device=cle_device(device))


FROM_NUMPY: dict[MemoryType, Callable[[np.ndarray, Device], Any]] = {
    M.NUMPY: _numpy_from_numpy,
    M.CUPY: _cupy_from_numpy,
    M.TORCH: _torch_from_numpy,
    M.JAX: _jax_from_numpy,
    M.TENSORFLOW: _tf_from_numpy,
    M.PYCLESPERANTO: _cle_from_numpy,
    M.PYCLESPERANTO_PROTOTYPE: cle_prototype.from_numpy,
}


# --- zero-copy imports (DLPack, CUDA array interface) ----------------------------------------


def _numpy_from_dlpack(data: Any, device: Device) -> Any:
    return np.from_dlpack(data)


def _cupy_from_dlpack(data: Any, device: Device) -> Any:
    cupy = import_framework(M.CUPY)
    with cupy_device(device):
        return cupy.from_dlpack(data)


def _torch_from_dlpack(data: Any, device: Device) -> Any:
    return import_framework(M.TORCH).from_dlpack(data)


def _jax_from_dlpack(data: Any, device: Device) -> Any:
    jax = import_framework(M.JAX)
    return jax.dlpack.from_dlpack(data)


def _tf_from_dlpack(data: Any, device: Device) -> Any:
    tf = import_framework(M.TENSORFLOW)
    return tf.experimental.dlpack.from_dlpack(data.__dlpack__())


def _cle_from_dlpack(data: Any, device: Device) -> Any:
    cle = import_framework(M.PYCLESPERANTO)
    return cle.Array.from_dlpack(data, device=cle_device(device), copy=False)


FROM_DLPACK: dict[MemoryType, Callable[[Any, Device], Any]] = {
    M.NUMPY: _numpy_from_dlpack,
    M.CUPY: _cupy_from_dlpack,
    M.TORCH: _torch_from_dlpack,
    M.JAX: _jax_from_dlpack,
    M.TENSORFLOW: _tf_from_dlpack,
    M.PYCLESPERANTO: _cle_from_dlpack,
}

# Device kinds each framework can import without a copy (measured on CPU; CUDA per the frameworks'
# docs). pyclesperanto wraps DLPack only on its own device (its from_dlpack copies host data).
DLPACK_KINDS: dict[MemoryType, frozenset[str]] = {
    M.NUMPY: frozenset({"cpu"}),
    M.CUPY: frozenset({"cuda"}),
    M.TORCH: frozenset({"cpu", "cuda"}),
    M.JAX: frozenset({"cpu", "cuda"}),
    M.TENSORFLOW: frozenset({"cpu", "cuda"}),
    M.PYCLESPERANTO: frozenset({"cuda", "opencl"}),
    M.PYCLESPERANTO_PROTOTYPE: frozenset(),  # pyopencl arrays neither export nor import DLPack
}

# jax and tensorflow reject strided DLPack tensors ("Only DLPack tensors with trivial (compact)
# striding are supported"; "Invalid strides array from DLPack"); pyclesperanto needs dense buffers.
NEEDS_COMPACT: frozenset[MemoryType] = frozenset({M.JAX, M.TENSORFLOW, M.PYCLESPERANTO,
                                                  M.PYCLESPERANTO_PROTOTYPE})

# Buffer alignment a DLPack consumer needs. TensorFlow (Eigen) wraps a misaligned buffer without
# complaint and later aborts the whole process ("Check failed: IsAligned()", measured with tf.stack
# on a 16-byte-aligned numpy array); numpy's allocator gives only 16 bytes. jax copies instead.
MIN_ALIGNMENT: dict[MemoryType, int] = {M.TENSORFLOW: 64}


def _cupy_from_cai(data: Any, device: Device) -> Any:
    cupy = import_framework(M.CUPY)
    with cupy_device(device):
        return cupy.asarray(data)


def _torch_from_cai(data: Any, device: Device) -> Any:
    torch = import_framework(M.TORCH)
    return torch.as_tensor(data, device=torch_device(device))


FROM_CUDA_ARRAY_INTERFACE: dict[MemoryType, Callable[[Any, Device], Any]] = {
    M.CUPY: _cupy_from_cai,
    M.TORCH: _torch_from_cai,
}


# --- moves within one framework ---------------------------------------------------------------


def _torch_move(data: Any, device: Device) -> Any:
    return data.to(torch_device(device))


def _jax_move(data: Any, device: Device) -> Any:
    return import_framework(M.JAX).device_put(data, jax_device(device))


def _tf_move(data: Any, device: Device) -> Any:
    tf = import_framework(M.TENSORFLOW)
    with tf.device(tf_device(device)):
        return tf.identity(data)


def _cupy_move(data: Any, device: Device) -> Any:
    cupy = import_framework(M.CUPY)
    with cupy_device(device):
        return cupy.array(data, copy=True)  # peer copy between GPUs


MOVE: dict[MemoryType, Callable[[Any, Device], Any]] = {
    M.CUPY: _cupy_move,
    M.TORCH: _torch_move,
    M.JAX: _jax_move,
    M.TENSORFLOW: _tf_move,
    # pyclesperanto and numpy: no device-to-device move; pyclesperanto goes through the host.
}
