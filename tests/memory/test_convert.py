"""The conversion matrix among the CPU frameworks, with measured zero-copy and counted copies."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from hcsfs import memory as hm
from hcsfs.errors import HcsfsError
from hcsfs.memory import ConversionMethod as Method

from .conftest import CPU_TYPES
from .helpers import aligned, to_numpy

HOST_SIDE = ("numpy", "torch", "jax", "tensorflow")

# Measured on this machine (CPU, PoCL): what each ordered pair must do with an aligned,
# contiguous, writable uint16 stack. pyclesperanto lives in OpenCL buffers that no other
# framework can import, so every pair with it copies.
def expected_method(source: str, target: str) -> Method:
    if source == target:
        return Method.IDENTITY
    if source in HOST_SIDE and target in HOST_SIDE:
        return Method.DLPACK
    if "numpy" in (source, target):
        return Method.TRANSFER
    return Method.HOST_ROUND_TRIP


def make(source: str, array: np.ndarray) -> Any:
    """``array`` as ``source`` sharing its memory where the framework allows (aligned input)."""
    return hm.convert(array, source)


def writable_view(x: Any, fw: dict[str, Any]) -> np.ndarray:
    """A writable numpy view of a CPU array's buffer (torch ignores jax's read-only promise)."""
    return fw["torch"].from_dlpack(x).numpy() if not isinstance(x, np.ndarray) else x


@pytest.mark.parametrize("target", CPU_TYPES)
@pytest.mark.parametrize("source", CPU_TYPES)
def test_matrix_preserves_values_dtype_shape_and_method(fw, source, target):
    original = aligned((3, 5, 7), np.uint16)
    data = make(source, original.copy() if source == "pyclesperanto" else aligned((3, 5, 7), "u2"))
    hm.reset_stats()
    result = hm.convert(data, target)
    assert hm.detect_memory_type(result) is hm.MemoryType(target)
    assert tuple(result.shape) == (3, 5, 7)
    assert np.array_equal(to_numpy(result), original)
    assert to_numpy(result).dtype == np.uint16
    method = expected_method(source, target)
    assert hm.stats().count(method, (hm.MemoryType(source), hm.MemoryType(target))) == 1
    assert hm.stats().count() == 1


@pytest.mark.parametrize(
    ("source", "target"), [(s, t) for s in HOST_SIDE for t in HOST_SIDE if s != t]
)
def test_zero_copy_pairs_really_share_memory(fw, source, target):
    data = make(source, aligned((2, 4, 4), np.float32))
    hm.reset_stats()
    result = hm.convert(data, target)
    writable_view(data, fw)[1, 2, 3] = 777.0
    assert to_numpy(result)[1, 2, 3] == 777.0, f"{source} -> {target} copied"
    assert hm.stats().zero_copy == 1


@pytest.mark.parametrize("other", HOST_SIDE)
def test_pyclesperanto_pairs_copy_and_are_counted_and_logged_once(fw, other, caplog):
    host = aligned((2, 3, 4), np.float32)
    on_cle = hm.convert(host, "pyclesperanto")
    caplog.set_level(logging.INFO, logger="hcsfs.memory")
    for _ in range(2):
        back = hm.convert(on_cle, other)
        to_cle = hm.convert(hm.convert(host, other), "pyclesperanto")
    host[0, 0, 0] = -1.0
    assert to_numpy(back)[0, 0, 0] == 0.0  # a copy, not a view
    assert to_numpy(to_cle)[0, 0, 0] == 0.0
    pair = (hm.MemoryType.PYCLESPERANTO, hm.MemoryType(other))
    method = Method.TRANSFER if other == "numpy" else Method.HOST_ROUND_TRIP
    assert hm.stats().count(method, pair) == 2
    lines = [r for r in caplog.records if "pyclesperanto -> " + other in r.getMessage()]
    assert len(lines) == 1  # logged once per pair, never silent
    if method is Method.HOST_ROUND_TRIP:
        assert lines[0].levelno == logging.WARNING


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int16", "int32", "float32", "bool"])
@pytest.mark.parametrize("target", CPU_TYPES)
def test_dtypes_round_trip(fw, target, dtype):
    if target == "pyclesperanto" and dtype == "bool":
        with pytest.raises(hm.MemoryConversionError, match="dtype bool became uint8"):
            hm.convert(aligned((1, 2, 3), dtype), target)
        return
    original = aligned((1, 2, 3), dtype)
    back = hm.convert(hm.convert(original.copy(), target), "numpy")
    assert back.dtype == np.dtype(dtype)
    assert np.array_equal(back, original)


@pytest.mark.parametrize("target", ["jax", "pyclesperanto"])
def test_64_bit_types_that_would_be_truncated_raise(fw, target):
    with pytest.raises(hm.MemoryConversionError, match="dtype float64 became float32") as info:
        hm.convert(np.zeros((1, 2, 2)), target)
    assert isinstance(info.value, TypeError) and isinstance(info.value, HcsfsError)
    assert (info.value.source, info.value.target) == (hm.MemoryType.NUMPY, hm.MemoryType(target))


def test_unaligned_numpy_to_jax_is_a_measured_copy(fw):
    raw = np.zeros(4 * 16 + 64, dtype=np.uint8)
    start = next(s for s in range(16, 64, 16) if (raw.ctypes.data + s) % 64)  # not 64-aligned
    unaligned = raw[start : start + 64].view(np.float32).reshape(1, 4, 4)
    result = hm.convert(unaligned, "jax")
    assert hm.stats().count(Method.TRANSFER) == 1 and hm.stats().zero_copy == 0
    unaligned[0, 0, 0] = 5.0
    assert float(result[0, 0, 0]) == 0.0


@pytest.mark.parametrize("target", ["jax", "tensorflow", "torch"])
def test_non_contiguous_numpy_is_copied_correctly(fw, target):
    base = aligned((2, 6, 8), np.float32)
    strided = base[:, ::2, 1::3]
    result = hm.convert(strided, target)
    assert np.array_equal(to_numpy(result), strided)
    expected = Method.DLPACK if target == "torch" else Method.TRANSFER  # torch takes strides
    assert hm.stats().count(expected) == 1


def test_read_only_numpy_is_never_aliased_writable(fw):
    ro = aligned((1, 2, 2), np.float32)
    ro.flags.writeable = False
    tensor = hm.convert(ro, "torch")
    tensor[0, 0, 0] = 9.0
    assert ro[0, 0, 0] == 0.0
    assert hm.stats().count(Method.TRANSFER) == 1


def test_torch_tensor_requiring_grad_converts(fw):
    t = fw["torch"].ones((1, 2, 2), requires_grad=True)
    assert np.array_equal(hm.convert(t, "numpy"), np.ones((1, 2, 2), np.float32))


def test_tensorflow_variable_is_detected_and_converted(fw):
    var = fw["tensorflow"].Variable(np.arange(4, dtype=np.float32).reshape(1, 2, 2))
    assert hm.detect_memory_type(var) is hm.MemoryType.TENSORFLOW
    assert np.array_equal(hm.convert(var, "numpy"), np.arange(4).reshape(1, 2, 2))


def test_gpu_id_is_explicit_and_checked(fw):
    data = aligned((1, 2, 2), np.float32)
    with pytest.raises(hm.MemoryConversionError, match="numpy arrays live on the host"):
        hm.convert(data, "numpy", gpu_id=0)
    for target in ("torch", "jax", "tensorflow"):
        with pytest.raises(hm.MemoryConversionError, match="has no cuda:0") as info:
            hm.convert(data, target, gpu_id=0)
        assert info.value.method == "placement"
    with pytest.raises(hm.MemoryConversionError, match="gpu_id must be"):
        hm.convert(data, "torch", gpu_id=-1)
    with pytest.raises(hm.MemoryConversionError, match="has no opencl:7"):
        hm.convert(data, "pyclesperanto", gpu_id=7)
    on_cle = hm.convert(data, "pyclesperanto", gpu_id=0)  # PoCL's CPU device is cle's device 0
    assert hm.device_of(on_cle, hm.MemoryType.PYCLESPERANTO) == hm.Device("opencl", 0)


def test_unknown_objects_and_types_raise(fw):
    with pytest.raises(hm.MemoryConversionError, match="builtins.list is not an array"):
        hm.convert([1, 2], "numpy")
    with pytest.raises(hm.MemoryConversionError, match="unknown memory type 'dask'"):
        hm.convert(np.zeros(2), "dask")
    assert isinstance(hm.MemoryConversionError("a", "b", "m", "r"), TypeError)
    assert str(hm.MemoryConversionError(hm.MemoryType.TORCH, hm.MemoryType.JAX, "dlpack", "x")) == (
        "torch -> jax (dlpack): x"
    )


def test_the_matrix_covers_every_memory_type():
    """Every memory type is in the CPU matrix above (or, cupy, in test_cuda.py), and every ordered pair
    has a plan: a type added without conversions or without tests fails here."""
    assert set(CPU_TYPES) | {"cupy"} == {m.value for m in hm.MemoryType}
    assert all(hm.CONVERSION_TABLE[(s, t)] for s in hm.MemoryType for t in hm.MemoryType)


def test_unaligned_buffers_are_copied_for_tensorflow(fw):
    """TensorFlow aborts the process on a misaligned DLPack buffer; hcsfs must copy it instead."""
    raw = np.zeros(4 * 16 + 64, dtype=np.uint8)
    start = next(s for s in range(16, 64, 16) if (raw.ctypes.data + s) % 64)
    unaligned = raw[start : start + 64].view(np.float32).reshape(1, 4, 4)
    torch_view = fw["torch"].from_numpy(unaligned)
    for data in (unaligned, torch_view):
        tensor = hm.convert(data, "tensorflow")
        assert fw["tensorflow"].stack([tensor, tensor]).shape == (2, 1, 4, 4)  # would abort
    assert hm.stats().zero_copy == 0
