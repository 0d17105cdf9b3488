"""CUDA paths: run where a CUDA device exists, skip with the reason "no CUDA device" otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from hcsfs import memory as hm
from hcsfs.memory import ConversionMethod as Method
from hcsfs.memory.backends import cuda_device_count

from .helpers import aligned, to_numpy

pytestmark = pytest.mark.skipif(cuda_device_count() == 0, reason="no CUDA device")


@pytest.fixture(scope="module")
def cupy():
    return hm.import_framework("cupy")


def torch_has_cuda(fw) -> bool:
    return bool(fw["torch"].cuda.is_available())


def test_numpy_cupy_round_trip_and_placement(fw, cupy):
    host = aligned((3, 4, 5), np.uint16)
    on_gpu = hm.convert(host, "cupy", gpu_id=0)
    assert hm.device_of(on_gpu, hm.MemoryType.CUPY) == hm.Device("cuda", 0)
    assert np.array_equal(hm.convert(on_gpu, "numpy"), host)
    assert hm.stats().count(Method.TRANSFER) == 2
    with pytest.raises(hm.MemoryConversionError, match="cupy has no cuda:"):
        hm.convert(host, "cupy", gpu_id=cuda_device_count())


@pytest.mark.parametrize("other", ["torch", "jax", "tensorflow", "pyclesperanto"])
def test_cupy_with_each_framework(fw, cupy, other):
    if other not in fw:  # only outside CI (tests/memory/conftest.py), where there is no CUDA device anyway
        pytest.skip(f"{other} is not installed")
    host = aligned((2, 3, 4), np.float32)
    on_gpu = hm.convert(host, "cupy", gpu_id=0)
    out = hm.convert(on_gpu, other)  # gpu_id None: stays on cuda:0 where the framework can
    assert np.array_equal(to_numpy(out), host)
    back = hm.convert(out, "cupy", gpu_id=0)
    assert np.array_equal(cupy.asnumpy(back), host)
    if hm.device_of(out, hm.MemoryType(other)) == hm.Device("cuda", 0):
        assert hm.stats().count(Method.DLPACK) == 2  # GPU <-> GPU without a host copy
    else:
        assert hm.stats().count(Method.HOST_ROUND_TRIP) == 2


def test_cupy_torch_dlpack_shares_gpu_memory(fw, cupy):
    if not torch_has_cuda(fw):
        pytest.skip("torch is a CPU build (torch==2.13.0 CPU wheel)")
    a = cupy.zeros((1, 2, 2), dtype=cupy.float32)
    t = hm.convert(a, "torch", gpu_id=0)
    a[0, 0, 0] = 5
    assert float(t[0, 0, 0]) == 5.0
    assert hm.convert(t, "cupy").data.ptr == a.data.ptr


def test_cupy_oom_recovery_splits(fw, cupy):
    @hm.cupy(oom_recovery=True)
    def double(stack):
        if stack.shape[0] > 2:
            raise cupy.cuda.memory.OutOfMemoryError(1 << 30, 0)
        return stack * 2

    out = double(np.ones((8, 2, 2), np.float32), gpu_id=0)
    assert np.array_equal(cupy.asnumpy(out), np.full((8, 2, 2), 2.0))
    assert hm.stats()[hm.OomEvent.SPLIT] == 3


def test_cleanup_frees_the_cupy_pool(fw, cupy):
    block = cupy.ones((1024, 1024), dtype=cupy.float32)
    del block
    assert cupy.get_default_memory_pool().free_bytes() > 0
    assert hm.MemoryType.CUPY in hm.cleanup_gpu_memory("cupy", 0).frameworks
    assert cupy.get_default_memory_pool().free_bytes() == 0
