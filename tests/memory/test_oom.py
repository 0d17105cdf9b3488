"""OOM recovery with each framework's real out-of-memory exception: cleanup, split, retry, CPU."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from hcsfs import memory as hm
from hcsfs.memory import OomEvent

from .helpers import to_numpy

LIMIT = 2  # stacks deeper than this "do not fit"


def raise_torch_oom(fw: dict[str, Any]) -> None:
    raise fw["torch"].OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def raise_torch_cpu_oom(fw: dict[str, Any]) -> None:
    fw["torch"].empty(1 << 40, dtype=fw["torch"].uint8)  # real: DefaultCPUAllocator RuntimeError


def raise_jax_oom(fw: dict[str, Any]) -> None:
    fw["jax"].numpy.zeros(1 << 40, dtype="uint8").block_until_ready()  # real RESOURCE_EXHAUSTED


def raise_tf_oom(fw: dict[str, Any]) -> None:
    # A real 1 TiB tf.zeros takes 10 s in TensorFlow's allocator; the exception type is the same.
    raise fw["tensorflow"].errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")


def _rows_above_max_allocation() -> int:
    """Rows of 2**15 float32 that need more than PoCL's largest buffer (a quarter of the machine's
    memory: 2 GiB on an 8 GiB machine, 8 GiB on a 32 GiB one), so the allocation fails everywhere."""
    import pyopencl

    largest = max(d.max_mem_alloc_size for p in pyopencl.get_platforms() for d in p.get_devices())
    return largest // (4 << 15) + 1


def raise_cle_oom(fw: dict[str, Any]) -> None:
    # real: a buffer above PoCL's maximum allocation -> RuntimeError "... CL_INVALID_BUFFER_SIZE"
    fw["pyclesperanto"].create((1, _rows_above_max_allocation(), 1 << 15), dtype=np.float32)


def raise_cle_prototype_oom(fw: dict[str, Any]) -> None:
    # real: pyopencl's clCreateBuffer above PoCL's maximum allocation -> "INVALID_BUFFER_SIZE"
    fw["pyclesperanto_prototype"].create((1, _rows_above_max_allocation(), 1 << 15), dtype=np.float32)


RAISERS = {
    "torch": raise_torch_oom,
    "torch-cpu-allocator": raise_torch_cpu_oom,
    "jax": raise_jax_oom,
    "tensorflow": raise_tf_oom,
    "pyclesperanto": raise_cle_oom,
    "pyclesperanto_prototype": raise_cle_prototype_oom,
}


@pytest.mark.parametrize("case", RAISERS)
def test_split_and_retry_on_each_frameworks_real_oom(fw, case):
    kind = case.partition("-")[0]
    depths = []

    @hm.memory_types(kind, oom_recovery=True)
    def double(stack):
        depths.append(int(stack.shape[0]))
        if stack.shape[0] > LIMIT:
            RAISERS[case](fw)
        return stack + stack

    stack = np.arange(8 * 2 * 2, dtype=np.float32).reshape(8, 2, 2)
    out = double(stack)
    assert hm.detect_memory_type(out) is hm.MemoryType(kind)
    assert np.array_equal(to_numpy(out), 2 * stack)
    assert depths == [8, 4, 2, 2, 4, 2, 2]
    s = hm.stats()
    assert (s[OomEvent.OOM_ERROR], s[OomEvent.CLEANUP], s[OomEvent.SPLIT]) == (3, 3, 3)
    assert (s[OomEvent.RETRY], s[OomEvent.RECOVERED], s[OomEvent.CPU_FALLBACK]) == (6, 1, 0)


@pytest.mark.parametrize("kind", ["torch", "jax", "tensorflow"])
def test_cpu_fallback_is_the_last_resort(fw, kind, caplog):
    @hm.memory_types(kind, oom_recovery=True)
    def never_fits_on_gpu(stack):
        execution = hm.current_execution()
        assert execution is not None and execution.memory_type is hm.MemoryType(kind)
        if not execution.cpu_fallback:
            RAISERS[kind](fw)
        return stack

    stack = np.ones((3, 2, 2), np.float32)
    assert np.array_equal(to_numpy(never_fits_on_gpu(stack)), stack)
    s = hm.stats()
    assert s[OomEvent.CPU_FALLBACK] == 3  # one per plane that did not fit alone
    assert s[OomEvent.SPLIT] == 2 and s[OomEvent.RECOVERED] == 1
    assert "running it on the CPU" in caplog.text


def test_cpu_mode_skips_splitting(fw):
    @hm.torch(oom_recovery="cpu")
    def whole_stack_3d(stack):
        if not hm.current_execution().cpu_fallback:
            raise_torch_oom(fw)
        return stack

    whole_stack_3d(np.ones((4, 2, 2), np.float32))
    s = hm.stats()
    assert (s[OomEvent.SPLIT], s[OomEvent.CPU_FALLBACK], s[OomEvent.RECOVERED]) == (0, 1, 1)


def test_recovery_gives_up_with_the_cause_where_no_cpu_device_exists(fw):
    @hm.pyclesperanto(oom_recovery=True)
    def always_too_big(stack):
        raise_cle_oom(fw)

    with pytest.raises(hm.OutOfMemoryRecoveryError, match="no CPU device") as info:
        always_too_big(np.ones((2, 2, 2), np.float32))
    assert "CL_INVALID_BUFFER_SIZE" in str(info.value.__cause__)
    assert isinstance(info.value, MemoryError)
    assert hm.stats()[OomEvent.FAILED] == 1


def test_other_errors_are_not_retried(fw):
    calls = []

    @hm.torch(oom_recovery=True)
    def broken(stack):
        calls.append(1)
        raise ValueError("not an OOM")

    with pytest.raises(ValueError, match="not an OOM"):
        broken(np.ones((4, 2, 2), np.float32))
    assert calls == [1] and hm.stats()[OomEvent.OOM_ERROR] == 0


def test_without_recovery_the_oom_propagates(fw):
    @hm.torch
    def oom(stack):
        raise_torch_oom(fw)

    with pytest.raises(fw["torch"].OutOfMemoryError):
        oom(np.ones((4, 2, 2), np.float32))


def test_is_out_of_memory_recognises_each_framework(fw):
    import cupy  # installed by requirements/frameworks.txt; importable without a GPU

    errors = {
        hm.MemoryType.CUPY: cupy.cuda.memory.OutOfMemoryError(1 << 30, 0),
        hm.MemoryType.TORCH: fw["torch"].OutOfMemoryError("CUDA out of memory"),
        hm.MemoryType.TENSORFLOW: fw["tensorflow"].errors.ResourceExhaustedError(None, None, "x"),
        hm.MemoryType.NUMPY: MemoryError(),
    }
    for memory_type, error in errors.items():
        assert hm.is_out_of_memory(error) is memory_type
    for memory_type, raiser in [(hm.MemoryType.JAX, raise_jax_oom),
                                (hm.MemoryType.PYCLESPERANTO, raise_cle_oom),
                                (hm.MemoryType.PYCLESPERANTO_PROTOTYPE, raise_cle_prototype_oom)]:
        with pytest.raises(Exception) as info:
            raiser(fw)
        assert hm.is_out_of_memory(info.value) is memory_type
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = errors[hm.MemoryType.TORCH]
    assert hm.is_out_of_memory(wrapped) is hm.MemoryType.TORCH
    assert hm.is_out_of_memory(RuntimeError("CUDA error: device-side assert")) is None


def test_cleanup_touches_only_imported_frameworks(fw):
    report = hm.cleanup_gpu_memory()
    imported = {m for m in hm.MemoryType if m.value in sys.modules}
    assert set(report.frameworks) <= imported
    assert hm.MemoryType.TORCH not in report.frameworks  # CUDA never initialised here
    assert hm.stats()[OomEvent.CLEANUP] == 1
