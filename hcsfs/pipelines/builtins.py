"""hcsfs's built-in pipeline functions: definitions, tables and one explicit register call each.

Implementations live in ``impl_*`` modules, one per framework, and are built the first time a run
calls them (so registering imports no framework). Each is wrapped by :func:`hcsfs.memory.memory_types`,
which converts its input to its memory type, holds a device slot and recovers from out-of-memory
errors (by splitting along Z, or on the CPU only for functions that need the whole stack).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from hcsfs import memory as hm
from hcsfs.errors import SpecError
from hcsfs.memory import MemoryType
from hcsfs.pipelines.registry import REQUIRED, ArrayParam, FunctionDef, FunctionRegistry, Param, TableDef

__all__ = ["BUILTINS", "register_builtins"]

M = MemoryType


# --- tables (host arrays) ---------------------------------------------------------------------


def _object_rows(labels: np.ndarray, intensity: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    for z in range(labels.shape[0]):
        flat = labels[z].astype(np.int64, copy=False).ravel()
        if flat.size == 0 or flat.max() <= 0:
            continue
        yy, xx = np.indices(labels[z].shape)
        area = np.bincount(flat)
        present = np.nonzero(area)[0]
        present = present[present > 0]
        cy = np.bincount(flat, weights=yy.ravel())
        cx = np.bincount(flat, weights=xx.ravel())
        total = np.bincount(flat, weights=intensity[z].astype(np.float64).ravel())
        for label in present:
            n = area[label]
            rows.append((z, {"label": int(label), "area": int(n), "centroid_y": cy[label] / n,
                             "centroid_x": cx[label] / n, "mean_intensity": total[label] / n}))
    return rows


def _count_rows(labels: np.ndarray, intensity: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
    return [(z, {"count": int(np.count_nonzero(np.unique(labels[z])))}) for z in range(labels.shape[0])]


LABEL_TABLES = {
    "objects": TableDef(("label", "area", "centroid_y", "centroid_x", "mean_intensity"), _object_rows,
                        "one row per object: area (pixels), centroid (pixels), mean intensity of "
                        "the unit's input planes"),
    "object_counts": TableDef(("count",), _count_rows, "one row per plane: the number of objects"),
}


# --- definitions ------------------------------------------------------------------------------


def _ordered(low: str, high: str) -> Callable[[dict[str, Any], str], None]:
    def check(args: dict[str, Any], where: str) -> None:
        a, b = args.get(low), args.get(high)
        if a is not None and b is not None and a >= b:
            raise SpecError(f"{where}.{high}", f"{b} must be greater than {low} ({a})")

    return check


_BOUND = 1e30
_IMAGE, _MASK, _LABELS = frozenset({"image"}), frozenset({"mask"}), frozenset({"labels"})
BUILTINS: tuple[FunctionDef, ...] = (
    FunctionDef("gaussian_filter", "Gaussian smoothing of each plane (scipy `reflect` border)",
                (Param("sigma", float, 1.0, 0.0, 50.0, doc="standard deviation in pixels"),)),
    FunctionDef("median_filter", "median over a size x size window of each plane",
                (Param("size", int, 3, choices=tuple(range(1, 26, 2))),), output="input dtype",
                produces="same"),
    FunctionDef("tophat", "background subtraction: white top-hat with a disk (plane minus its opening)",
                (Param("radius", int, 15, 1, 50, doc="disk radius in pixels"),), output="input dtype"),
    FunctionDef("rescale_intensity", "linear rescale of the unit's [low, high] percentiles to [0, 1]",
                (Param("low", float, 0.0, 0.0, 100.0), Param("high", float, 100.0, 0.0, 100.0)),
                whole_stack=True, check=_ordered("low", "high")),
    FunctionDef("threshold_otsu", "Otsu threshold over the unit's stack: mask of pixels above it",
                (Param("nbins", int, 256, 2, 4096),), whole_stack=True, output="uint8 mask (0/1)",
                produces="mask"),
    FunctionDef("binary_opening", "binary opening of each plane's mask with a disk",
                (Param("radius", int, 1, 1, 20),), output="uint8 mask (0/1)", produces="mask"),
    FunctionDef("binary_erosion", "binary erosion of each plane's mask with a disk (outside the plane counts "
                "as foreground, so objects touching the border are not eaten away from it)",
                (Param("radius", int, 1, 1, 20),), output="uint8 mask (0/1)", produces="mask"),
    FunctionDef("fill_holes", "fill holes in each plane's mask", output="uint8 mask (0/1)", produces="mask"),
    FunctionDef("label", "connected components of each plane's mask (1: 4-, 2: 8-connectivity)",
                (Param("connectivity", int, 2, choices=(1, 2)),), output="int32 labels",
                tables=LABEL_TABLES, produces="labels"),
    FunctionDef("max_projection", "maximum over the stacked axis (names carry `zmax`)", reduces="max",
                whole_stack=True, output="input dtype", produces="same"),
    FunctionDef("mean_projection", "mean over the stacked axis (names carry `zmean`)", reduces="mean",
                whole_stack=True),
    FunctionDef("clip", "clip values to [low, high] (integer planes keep their dtype)",
                (Param("low", float, None, -_BOUND, _BOUND), Param("high", float, None, -_BOUND, _BOUND)),
                output="input dtype", check=_ordered("low", "high"), produces="same"),
    FunctionDef("distance_transform", "Euclidean distance of each mask pixel to the plane's nearest "
                "background pixel (0 on background; a plane without background is all 0)",
                output="float32", accepts=_MASK, produces="image"),
    FunctionDef("expand_labels", "grow each plane's labels into the background by up to `distance` pixels "
                "(Euclidean), without overlap: a pixel goes to its nearest label (scikit-image's "
                "`expand_labels`)",
                (Param("distance", float, 1.0, 0.0, 100.0, doc="growth in pixels"),),
                output="int32 labels", tables=LABEL_TABLES, accepts=_LABELS, produces="labels"),
    FunctionDef("watershed", "seeded watershed of each plane: floods the image (`invert`: its negation) from "
                "`inputs: {markers: <labels>}`, only where the optional `mask` input is nonzero (scikit-"
                "image's `watershed`). Declumping touching nuclei: `watershed` of `distance_transform` of "
                "the mask with `invert: true`, markers: `label` of `binary_erosion` of the mask (a radius "
                "that cuts the necks but keeps a core of each nucleus), mask: the mask",
                (Param("compactness", float, 0.0, 0.0, 1e6, doc="0: classic watershed; larger: rounder"),
                 Param("connectivity", int, 1, choices=(1, 2), doc="1: 4-, 2: 8-neighbours"),
                 Param("invert", bool, False, doc="flood the negated image (a distance transform)")),
                output="int32 labels", tables=LABEL_TABLES, accepts=_IMAGE, produces="labels",
                array_params=(ArrayParam("markers", "labels", doc="seeds: each label grows into one object"),
                              ArrayParam("mask", None, required=False, doc="pixels where it is 0 stay 0"))),
    FunctionDef("remove_small_objects", "set each plane's objects of fewer than `min_area` pixels to 0 "
                "(the other labels keep their numbers: no relabelling)",
                (Param("min_area", int, REQUIRED, 0, 10**8, doc="smallest area kept, pixels per plane"),),
                output="int32 labels", tables=LABEL_TABLES, accepts=_LABELS, produces="labels"),
    FunctionDef("remove_large_objects", "set each plane's objects of more than `max_area` pixels to 0 "
                "(the other labels keep their numbers: no relabelling)",
                (Param("max_area", int, REQUIRED, 0, 10**8, doc="largest area kept, pixels per plane"),),
                output="int32 labels", tables=LABEL_TABLES, accepts=_LABELS, produces="labels"),
)


# --- implementations --------------------------------------------------------------------------


def _numpy_factory() -> dict[str, Callable[..., Any]]:
    from hcsfs.pipelines.impl_ndimage import numpy_functions

    return numpy_functions()


def _cupy_factory() -> dict[str, Callable[..., Any]]:
    from hcsfs.pipelines.impl_ndimage import cupy_functions

    return cupy_functions()


def _torch_factory() -> dict[str, Callable[..., Any]]:
    from hcsfs.pipelines.impl_torch import torch_functions

    return torch_functions()


def _jax_factory() -> dict[str, Callable[..., Any]]:
    from hcsfs.pipelines.impl_jax import jax_functions

    return jax_functions()


def _cle_factory() -> dict[str, Callable[..., Any]]:
    from hcsfs.pipelines.impl_cle import cle_functions

    return cle_functions()


_ALL = frozenset(fn.name for fn in BUILTINS)
_SIZE_FILTERS = frozenset({"remove_small_objects", "remove_large_objects"})
# Which built-ins each framework implements (checked against the factories by the tests). Left out:
# watershed beyond numpy (no seeded watershed in cupyx, torch, jax or clEsperanto); expand_labels and
# distance_transform in torch, jax and clEsperanto (no Euclidean distance transform with nearest-pixel
# indices; clEsperanto's dilate_labels grows by box/diamond steps, not by Euclidean distance).
IMPLEMENTED: dict[MemoryType, tuple[Callable[[], dict[str, Callable[..., Any]]], frozenset[str]]] = {
    M.NUMPY: (_numpy_factory, _ALL),
    M.CUPY: (_cupy_factory, _ALL - {"watershed"}),
    M.TORCH: (_torch_factory, _ALL - {"fill_holes", "label", "distance_transform", "expand_labels",
                                      "watershed"}),
    M.JAX: (_jax_factory, frozenset({"gaussian_filter", "rescale_intensity", "threshold_otsu",
                                     "max_projection", "mean_projection", "clip"}) | _SIZE_FILTERS),
    M.PYCLESPERANTO: (_cle_factory, frozenset({"gaussian_filter", "threshold_otsu", "label",
                                               "max_projection", "mean_projection", "clip"}) | _SIZE_FILTERS),
}


@functools.cache
def _built(memory_type: MemoryType) -> dict[str, Callable[..., Any]]:
    return IMPLEMENTED[memory_type][0]()


def _alongside(value: Any, stack: Any, memory_type: MemoryType) -> Any:
    """An array argument as ``memory_type`` on ``stack``'s device (the host after a CPU fallback)."""
    device = hm.device_of(stack, memory_type)
    if device.is_host and not hm.device_of(value, hm.detect_memory_type(value)).is_host:
        value = hm.convert(value, MemoryType.NUMPY)
    return hm.convert(value, memory_type, device.index if device.kind == "cuda" else None)


def lazy_implementation(name: str, memory_type: MemoryType, whole_stack: bool,
                        array_params: tuple[str, ...] = ()) -> Callable[..., Any]:
    """``name``'s implementation for ``memory_type``, built on first call, with memory conversion.

    Array arguments (``array_params``) are converted to ``memory_type`` next to the stack. Out-of-memory
    recovery cannot split them along Z with the stack, so such functions fall back to the CPU.
    """

    def implementation(stack: Any, **kwargs: Any) -> Any:
        for key in array_params:
            if kwargs.get(key) is not None:
                kwargs[key] = _alongside(kwargs[key], stack, memory_type)
        return _built(memory_type)[name](stack, **kwargs)

    implementation.__name__ = implementation.__qualname__ = f"{name}[{memory_type.value}]"
    recovery = "cpu" if whole_stack or array_params else "split"
    return hm.memory_types(memory_type, oom_recovery=recovery)(implementation)


def register_builtins(registry: FunctionRegistry) -> None:
    """Register every built-in function and its implementations in ``registry``."""
    for definition in BUILTINS:
        registry.register(definition)
    for memory_type, (_, names) in IMPLEMENTED.items():
        for definition in BUILTINS:
            if definition.name in names:
                arrays = tuple(p.name for p in definition.array_params)
                impl = lazy_implementation(definition.name, memory_type, definition.whole_stack, arrays)
                registry.implement(definition.name, memory_type, impl)
    from hcsfs.pipelines.models import register_models
    from hcsfs.pipelines.threshold import register_threshold

    register_threshold(registry)  # a fixed-value threshold (a model's map > 0.5)
    register_models(registry)  # func: model, reading the registry's --models folder
