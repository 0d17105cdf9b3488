"""Label built-ins beyond the agreement tests: declumping, watershed options, edge cases, definitions."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import segmentation

from hcsfs import memory as hm
from hcsfs.memory import MemoryType
from hcsfs.pipelines.builtins import BUILTINS
from hcsfs.pipelines.registry import framework_installed

from .test_functions import DISK_DISTANCE, DISK_SEEDS, DISKS, LABELS

NUMPY = MemoryType.NUMPY
_DEFS = {fn.name: fn for fn in BUILTINS}


def _run(registry, name: str, memory_type: MemoryType, data, **kwargs) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(hm.convert(registry.implementation(name, memory_type)(data, **kwargs), NUMPY))


def _installed(*memory_types: MemoryType) -> list[MemoryType]:
    return [m for m in memory_types if framework_installed(m)]


def test_definitions_declare_kinds_and_array_inputs() -> None:
    kinds = {name: (_DEFS[name].accepts, _DEFS[name].produces) for name in
             ("expand_labels", "watershed", "remove_small_objects", "remove_large_objects",
              "distance_transform", "binary_erosion")}
    assert kinds == {
        "expand_labels": (frozenset({"labels"}), "labels"),
        "watershed": (frozenset({"image"}), "labels"),
        "remove_small_objects": (frozenset({"labels"}), "labels"),
        "remove_large_objects": (frozenset({"labels"}), "labels"),
        "distance_transform": (frozenset({"mask"}), "image"),
        "binary_erosion": (None, "mask"),
    }
    markers, mask = _DEFS["watershed"].array_params
    assert (markers.name, markers.kind, markers.required) == ("markers", "labels", True)
    assert (mask.name, mask.kind, mask.required) == ("mask", None, False)


def test_array_argument_functions_recover_on_the_cpu_not_by_splitting(registry) -> None:
    """Splitting the image along Z would not split ``markers`` with it."""
    assert hm.memory_spec(registry.implementation("watershed", NUMPY)).oom_recovery == "cpu"
    assert hm.memory_spec(registry.implementation("expand_labels", NUMPY)).oom_recovery == "split"


def test_declumping_recipe_splits_touching_disks(registry) -> None:
    """distance_transform + binary_erosion + label + watershed(invert) give one object per disk."""
    assert [int(np.unique(p[p > 0]).size) for p in _run(registry, "label", NUMPY, DISKS)] == [1, 1]
    for memory_type in _installed(NUMPY, MemoryType.TORCH):  # the steps that torch implements too
        cores = _run(registry, "binary_erosion", memory_type, DISKS, radius=7)
        seeds = _run(registry, "label", NUMPY, cores, connectivity=1)
        distance = _run(registry, "distance_transform", NUMPY, DISKS)
        nuclei = _run(registry, "watershed", NUMPY, distance, markers=seeds, mask=DISKS, invert=True)
        assert nuclei.dtype == np.int32
        assert [int(np.unique(p[p > 0]).size) for p in nuclei] == [2, 3], memory_type
        np.testing.assert_array_equal(nuclei > 0, DISKS > 0)
        for z in range(len(DISKS)):  # each object holds exactly one of the hand-made disk centres
            for number in np.unique(DISK_SEEDS[z][DISK_SEEDS[z] > 0]):
                assert np.unique(nuclei[z][DISK_SEEDS[z] == number]).size == 1
            expected = segmentation.watershed(-DISK_DISTANCE[z].astype(np.float64), seeds[z],
                                              mask=DISKS[z] != 0)
            np.testing.assert_array_equal(nuclei[z], expected)


@pytest.mark.parametrize("options", [{"invert": False}, {"compactness": 10.0}, {"connectivity": 2},
                                     {"invert": True, "mask": None}])
def test_watershed_options_match_scikit_image(registry, options) -> None:
    args = {"mask": DISKS, "invert": True, **options}
    result = _run(registry, "watershed", NUMPY, DISK_DISTANCE, markers=DISK_SEEDS, **args)
    sign = -1.0 if args["invert"] else 1.0
    for z in range(len(DISKS)):
        expected = segmentation.watershed(
            sign * DISK_DISTANCE[z].astype(np.float64), DISK_SEEDS[z],
            mask=None if args["mask"] is None else DISKS[z] != 0,
            compactness=args.get("compactness", 0.0), connectivity=args.get("connectivity", 1))
        np.testing.assert_array_equal(result[z], expected)


def test_watershed_takes_markers_of_another_memory_type_and_checks_shapes(registry) -> None:
    expected = _run(registry, "watershed", NUMPY, DISK_DISTANCE, markers=DISK_SEEDS, invert=True)
    if framework_installed(MemoryType.TORCH):
        torch_seeds = hm.convert(DISK_SEEDS, MemoryType.TORCH)
        got = _run(registry, "watershed", NUMPY, DISK_DISTANCE, markers=torch_seeds, invert=True)
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="markers has shape"):
        _run(registry, "watershed", NUMPY, DISK_DISTANCE, markers=DISK_SEEDS[:1])


def test_size_filters_keep_numbers_and_handle_sparse_labels(registry) -> None:
    """Labels far apart (max far above the pixel count) take the per-plane ``unique`` path."""
    sparse = np.where(LABELS > 0, LABELS * 1_000_003, 0).astype(np.int32)
    filters = (("remove_small_objects", {"min_area": 29}), ("remove_large_objects", {"max_area": 98}))
    for memory_type in _installed(NUMPY, MemoryType.TORCH, MemoryType.JAX, MemoryType.PYCLESPERANTO):
        for name, args in filters:
            dense = _run(registry, name, memory_type, LABELS, **args)
            assert set(np.unique(dense)) < set(np.unique(LABELS)), (name, memory_type)
            np.testing.assert_array_equal(dense[dense > 0], LABELS[dense > 0])  # no relabelling
            if memory_type is not MemoryType.PYCLESPERANTO:  # its count map is sized by the max label
                result = _run(registry, name, memory_type, sparse, **args)
                np.testing.assert_array_equal(result, np.where(dense > 0, dense * 1_000_003, 0),
                                              err_msg=f"{name} {memory_type.value}")


def test_size_filters_at_the_limits(registry) -> None:
    for memory_type in _installed(NUMPY, MemoryType.TORCH, MemoryType.JAX, MemoryType.PYCLESPERANTO):
        keep_all = _run(registry, "remove_small_objects", memory_type, LABELS, min_area=0)
        drop_all = _run(registry, "remove_large_objects", memory_type, LABELS, max_area=0)
        np.testing.assert_array_equal(keep_all, LABELS)
        assert not drop_all.any()


def test_expand_labels_edge_cases(registry) -> None:
    empty = np.zeros((1, 6, 7), np.int32)
    full = np.arange(1, 43, dtype=np.int32).reshape(1, 6, 7)
    np.testing.assert_array_equal(_run(registry, "expand_labels", NUMPY, LABELS, distance=0.0), LABELS)
    assert not _run(registry, "expand_labels", NUMPY, empty, distance=5.0).any()
    np.testing.assert_array_equal(_run(registry, "expand_labels", NUMPY, full, distance=5.0), full)
    wide = _run(registry, "expand_labels", NUMPY, LABELS, distance=100.0)
    assert wide.all()  # every plane has a label, so everything is within 100 pixels of one
    for z in range(len(LABELS)):
        np.testing.assert_array_equal(wide[z], segmentation.expand_labels(LABELS[z], 100.0))


def test_distance_transform_without_background_is_zero(registry) -> None:
    planes = np.stack([np.ones((5, 6), np.uint8), np.zeros((5, 6), np.uint8)])
    result = _run(registry, "distance_transform", NUMPY, planes)
    assert result.dtype == np.float32 and not result.any()
