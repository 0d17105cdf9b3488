"""3-D discipline: stack_slices / unstack_slices across memory types."""

from __future__ import annotations

import numpy as np
import pytest

from hcsfs import memory as hm

from .conftest import CPU_TYPES
from .helpers import aligned, to_numpy


@pytest.mark.parametrize("target", CPU_TYPES)
def test_stack_slices_of_mixed_types(fw, target):
    planes = [aligned((4, 5), np.uint16) + z for z in range(len(CPU_TYPES))]
    mixed = [hm.convert(p.copy(), t) for p, t in zip(planes, CPU_TYPES, strict=True)]
    stack = hm.stack_slices(mixed, target)
    assert hm.detect_memory_type(stack) is hm.MemoryType(target)
    assert np.array_equal(to_numpy(stack), np.stack(planes))


@pytest.mark.parametrize("target", CPU_TYPES)
def test_unstack_slices(fw, target):
    stack = aligned((3, 4, 5), np.float32)
    planes = hm.unstack_slices(stack, target)
    assert len(planes) == 3
    for z, plane in enumerate(planes):
        assert hm.detect_memory_type(plane) is hm.MemoryType(target)
        assert np.array_equal(to_numpy(plane), stack[z])


def test_wrong_dimensionality_is_an_error_at_the_boundary(fw):
    with pytest.raises(hm.DimensionalityError, match=r"slice 1 must be 2-D \[Y, X\]; got shape \(1, 2, 2\)"):
        hm.stack_slices([np.zeros((2, 2)), np.zeros((1, 2, 2))], "numpy")
    with pytest.raises(hm.DimensionalityError, match=r"must be 3-D \[Z, Y, X\]; got shape \(2, 2\)"):
        hm.unstack_slices(np.zeros((2, 2)), "torch")
    with pytest.raises(hm.DimensionalityError, match="differ in shape"):
        hm.stack_slices([np.zeros((2, 2)), np.zeros((2, 3))], "numpy")
    with pytest.raises(hm.DimensionalityError, match="differ in dtype"):
        hm.stack_slices([np.zeros((2, 2), "u2"), np.zeros((2, 2), "f4")], "numpy")
    with pytest.raises(hm.DimensionalityError, match="at least one"):
        hm.stack_slices([], "numpy")
    assert issubclass(hm.DimensionalityError, ValueError)
