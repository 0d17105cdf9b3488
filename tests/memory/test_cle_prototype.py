"""pyclesperanto-prototype's OCLArray as a memory type, on PoCL: detection, conversions to and from every
other type with their host round trips counted, dtypes kept, stacking on the device, its own kernels."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hcsfs import memory as hm
from hcsfs.memory import ConversionMethod as Method

from .conftest import CPU_TYPES
from .helpers import aligned, to_numpy

PROTO = hm.MemoryType.PYCLESPERANTO_PROTOTYPE


def test_its_arrays_are_detected_and_pyopencl_arrays_are_not(fw):
    cle = fw["pyclesperanto_prototype"]
    pushed = cle.push(np.zeros((2, 3), np.float32))
    assert type(pushed).__name__ == "OCLArray"
    assert hm.detect_memory_type(pushed) is PROTO
    assert hm.device_of(pushed, PROTO) == hm.Device("opencl", 0)  # PoCL's one CPU device
    import pyopencl.array

    plain = pyopencl.array.to_device(cle.get_device().queue, np.zeros(3, np.float32))
    with pytest.raises(hm.MemoryConversionError, match="not an array of a known memory type"):
        hm.detect_memory_type(plain)


@pytest.mark.parametrize("other", [t for t in CPU_TYPES if t != "pyclesperanto_prototype"])
def test_both_ways_with_every_type_counted_and_logged_once(fw, other, caplog):
    host = aligned((2, 3, 4), np.uint16)
    caplog.set_level(logging.INFO, logger="hcsfs.memory")
    on_proto = hm.convert(hm.convert(host.copy(), other), "pyclesperanto_prototype")
    hm.reset_stats()  # counts and the once-per-pair log start again
    caplog.clear()
    for _ in range(2):
        there = hm.convert(on_proto, other)
        back = hm.convert(there, "pyclesperanto_prototype")
    assert np.array_equal(to_numpy(there), host) and np.array_equal(back.get(), host)
    assert back.dtype == np.uint16 and hm.detect_memory_type(back) is PROTO
    method = Method.TRANSFER if other == "numpy" else Method.HOST_ROUND_TRIP
    s = hm.stats()
    assert s.count(method, (PROTO, hm.MemoryType(other))) == 2
    assert s.count(method, (hm.MemoryType(other), PROTO)) == 2
    assert s.count() == 4 and s.zero_copy == 0
    if method is Method.HOST_ROUND_TRIP:
        for pair in (f"pyclesperanto_prototype -> {other}", f"{other} -> pyclesperanto_prototype"):
            lines = [r for r in caplog.records if r.getMessage().startswith(pair + ":")]
            assert len(lines) == 1 and lines[0].levelno == logging.WARNING, pair


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64",
                                   "float32", "float64", "bool"])
def test_every_dtype_is_kept(fw, dtype):
    """cle.push would make all of these float32; hcsfs keeps them (pyclesperanto cannot store 64 bits)."""
    original = (aligned((2, 3, 5), "int64") % 7).astype(dtype)
    on_proto = hm.convert(original, "pyclesperanto_prototype")
    assert on_proto.dtype == np.dtype(dtype)
    assert np.array_equal(hm.convert(on_proto, "numpy"), original)
    planes = hm.unstack_slices(on_proto, "pyclesperanto_prototype")
    restacked = hm.stack_slices(planes, "pyclesperanto_prototype")
    assert restacked.dtype == np.dtype(dtype) and np.array_equal(restacked.get(), original)


def test_stacking_splitting_and_joining_stay_on_the_device(fw):
    from hcsfs.memory.stacking import concat_z, split_z

    stack = hm.convert(aligned((5, 4, 3), np.uint16), "pyclesperanto_prototype")
    hm.reset_stats()
    planes = hm.unstack_slices(stack, "pyclesperanto_prototype")
    again = hm.stack_slices(planes, "pyclesperanto_prototype")
    first, second = split_z(again)
    joined = concat_z(first, second)
    s = hm.stats()
    assert s.count() == s.count(Method.IDENTITY)  # no transfer, no round trip
    assert all(hm.detect_memory_type(x) is PROTO for x in (*planes, again, joined))
    assert np.array_equal(joined.get(), aligned((5, 4, 3), np.uint16))


def test_its_own_kernels_take_the_converted_arrays(fw):
    cle = fw["pyclesperanto_prototype"]
    image = (aligned((1, 16, 16), np.float32) % 13).astype(np.float32)
    from_torch = hm.convert(hm.convert(image, "torch"), "pyclesperanto_prototype")
    blurred = cle.gaussian_blur(from_torch, sigma_x=1, sigma_y=1, sigma_z=0)
    reference = cle.gaussian_blur(cle.push(image), sigma_x=1, sigma_y=1, sigma_z=0)
    np.testing.assert_allclose(hm.convert(blurred, "numpy"), reference.get(), rtol=1e-6)


def test_a_device_it_does_not_have_is_a_placement_error(fw):
    with pytest.raises(hm.MemoryConversionError, match="placement"):
        hm.convert(np.zeros((1, 2, 2), np.float32), "pyclesperanto_prototype", gpu_id=7)
    on_proto = hm.convert(np.zeros((1, 2, 2), np.float32), "pyclesperanto_prototype", gpu_id=0)
    assert hm.device_of(on_proto, PROTO) == hm.Device("opencl", 0)
