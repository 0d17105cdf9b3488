"""Decorators record memory types and convert a function's input and output."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from hcsfs import memory as hm

from .conftest import CPU_TYPES
from .helpers import aligned, to_numpy

DECORATORS = {
    "numpy": hm.numpy,
    "torch": hm.torch,
    "jax": hm.jax,
    "tensorflow": hm.tensorflow,
    "pyclesperanto": hm.pyclesperanto,
    "pyclesperanto_prototype": hm.pyclesperanto_prototype,
}


@pytest.mark.parametrize("kind", CPU_TYPES)
def test_named_decorator_converts_input_and_records_types(fw, kind):
    seen = []

    @DECORATORS[kind]
    def double(stack):
        seen.append(hm.detect_memory_type(stack))
        return stack + stack

    assert double.memory_spec == hm.MemorySpec(hm.MemoryType(kind), hm.MemoryType(kind), None)
    assert double.input_memory_type is hm.MemoryType(kind) and double.__name__ == "double"
    out = double(aligned((2, 3, 3), np.float32))
    assert seen == [hm.MemoryType(kind)]
    assert hm.detect_memory_type(out) is hm.MemoryType(kind)
    assert np.array_equal(to_numpy(out), 2 * aligned((2, 3, 3), np.float32))


def test_memory_types_converts_output_and_keeps_special_outputs(fw):
    @hm.memory_types(input_type="torch", output_type="jax")
    def returns_numpy_and_table(stack, factor):
        return stack.numpy() * factor, {"count": 3}

    image, table = returns_numpy_and_table(np.ones((1, 2, 2), np.float32), 2.0)
    assert hm.detect_memory_type(image) is hm.MemoryType.JAX
    assert np.array_equal(np.asarray(image), np.full((1, 2, 2), 2.0))
    assert table == {"count": 3}
    assert hm.memory_spec(returns_numpy_and_table).output_type is hm.MemoryType.JAX
    assert hm.memory_spec(print) is None


def test_three_d_discipline_at_the_decorator(fw):
    @hm.numpy
    def flatten(stack):
        return stack[0]

    with pytest.raises(hm.DimensionalityError, match="input of"):
        flatten(np.zeros((2, 2)))
    with pytest.raises(hm.DimensionalityError, match="output of"):
        flatten(np.zeros((1, 2, 2)))


def test_gpu_id_is_passed_on_only_when_declared(fw):
    @hm.torch
    def wants(stack, gpu_id=None):
        return stack + (0 if gpu_id is None else gpu_id)

    @hm.torch
    def ignores(stack):
        return stack

    assert to_numpy(wants(np.zeros((1, 1, 1), np.float32))).item() == 0
    ignores(np.zeros((1, 1, 1), np.float32), gpu_id=None)
    with pytest.raises(hm.MemoryConversionError, match="torch has no cuda:0"):
        ignores(np.zeros((1, 1, 1), np.float32), gpu_id=0)


def test_bad_recovery_mode_is_rejected():
    with pytest.raises(ValueError, match="oom_recovery"):
        hm.torch(oom_recovery="retry")


def test_device_concurrency_limit():
    hm.set_device_concurrency("cuda:9", 1)
    active, peak, lock = [0], [0], threading.Lock()

    def work():
        with hm.device_slot("cuda:9"):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
    with pytest.raises(ValueError):
        hm.set_device_concurrency("cuda:9", 0)
