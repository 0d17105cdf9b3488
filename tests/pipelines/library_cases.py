"""Shared by the library tests: the registry, each function's test input, and the library called directly.

The expectations never go through :mod:`hcsfs.pipelines.library`'s call path: they import the function
the registry names and apply the documented rules (docs/pipelines.md, "Library functions") here.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import numpy as np

from hcsfs import memory as hm
from hcsfs.memory import MemoryType
from hcsfs.pipelines import default_registry
from hcsfs.pipelines.footprints import Footprint
from hcsfs.pipelines.library import (
    REQUIRED,
    STACK_EXTENT_MAX,
    LibraryFunction,
    example_args,
    is_extent,
    library_functions,
    sample_image,
)

REGISTRY = default_registry()
FUNCTIONS: dict[str, LibraryFunction] = {d.name: d for d in library_functions(REGISTRY)}
NAMES = sorted(FUNCTIONS)
STACK = (2, 32, 32)
WHOLE = (3, 32, 32)
"""Whole-stack calls (``per_plane: false``) get 3 planes: some 3-D filters need every axis >= 3."""


def footprint_array(value: Footprint) -> np.ndarray:
    """scikit-image's own footprint for a spec's ``{disk: r}`` (hcsfs builds its own: compared here)."""
    from skimage import morphology

    shape, sizes = value.shape, value.sizes
    if shape == "square":
        return morphology.footprint_rectangle((sizes[0], sizes[0]))
    if shape == "rectangle":
        return morphology.footprint_rectangle(sizes)
    if shape == "cube":
        return morphology.footprint_rectangle((sizes[0],) * 3)
    return getattr(morphology, shape)(*sizes)


def library_function(definition: LibraryFunction) -> Any:
    module, _, attr = definition.target.partition(":")
    return getattr(importlib.import_module(module), attr)


def inputs_for(definition: LibraryFunction, shape: tuple[int, ...] = STACK, dtype: str | None = None
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """The main input (of the function's documented kind) and its required image inputs."""
    dtype = dtype or definition.sample_dtype
    image = sample_image(definition.input_form, shape, dtype)
    arrays: dict[str, Any] = {}
    for param in definition.array_params:
        if not param.required:
            continue
        form = dict(definition.array_kinds)[param.name]
        arrays[param.name] = image if form == "image" else sample_image(form, shape, dtype, seed=1)
    return image, arrays


def spec_args(definition: LibraryFunction, ndim: int, per_plane: bool) -> dict[str, Any]:
    """What a parsed spec passes: every argument's default, examples for the required ones."""
    args = {p.name: p.default for p in definition.params if p.default is not REQUIRED}
    args.update(example_args(definition, ndim))
    args["per_plane"] = per_plane
    return {**args, **_stack_extents(definition, ndim)}


def _stack_extents(definition: LibraryFunction, ndim: int) -> dict[str, Any]:
    """With ``per_plane: false`` extents are bounded tighter than some library defaults: at the bound."""
    if ndim < 3:
        return {}
    return {p.name: STACK_EXTENT_MAX if p.kind is float else int(STACK_EXTENT_MAX) for p in definition.params
            if is_extent(p.name) and isinstance(p.default, int | float) and p.default > STACK_EXTENT_MAX}


def direct_kwargs(definition: LibraryFunction, ndim: int) -> dict[str, Any]:
    """The arguments the library is called with directly: the required examples, and the defaults
    hcsfs deliberately changes (a random seed 0; scipy's size 3 where size or footprint is needed);
    every other argument is left to the library's own default."""
    signature = inspect.signature(library_function(definition)) if definition.library != "cle" else None
    out: dict[str, Any] = dict(definition.fixed)
    for param in definition.params:
        if param.name == "per_plane":
            continue
        if param.default is REQUIRED:
            value = example_args(definition, ndim)[param.name]
        elif signature is not None and param.name in signature.parameters:
            own = signature.parameters[param.name].default
            if _same(own, param.default):
                continue
            assert param.name in {"rng", "random_state", "seed"} and param.default == 0 or (
                param.name == "size" and param.default == 3 and own is None), \
                f"{definition.name}: {param.name} defaults to {param.default!r}, the library to {own!r}"
            value = param.default
        else:
            continue
        out[param.name] = value
    out.update(_stack_extents(definition, ndim))
    return {k: footprint_array(v) if isinstance(v, Footprint) else v for k, v in out.items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, range):
        a = tuple(a)
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


def dtype_rule(out: np.ndarray, produces: str) -> np.ndarray:
    """docs/pipelines.md: bool -> uint8 mask, floating -> float32, labels -> int32, other integers kept."""
    if out.dtype == np.bool_:
        return out.astype(np.uint8)
    if out.dtype.kind == "f":
        return out.astype(np.float32)
    if produces == "labels":
        return out.astype(np.int32)
    return out


def expected(definition: LibraryFunction, data: np.ndarray, arrays: dict[str, np.ndarray], ndim: int
             ) -> np.ndarray:
    """The library applied to ``data`` (one plane, or the whole stack) by the documented rules."""
    func = library_function(definition)
    kwargs = direct_kwargs(definition, ndim)
    if definition.binary_input and data.dtype in (np.uint8, np.bool_):
        data = data.astype(bool)
    arrays = {k: v.astype(bool) if dict(definition.array_kinds)[k] == "mask" and v.dtype == np.uint8 else v
              for k, v in arrays.items()}
    out = func(data, **kwargs, **arrays)
    if isinstance(out, tuple):
        out = out[0]
    if definition.result == "threshold":
        out = data > out
    elif definition.result == "thresholds":
        out = np.digitize(data, bins=out)
    return dtype_rule(np.asarray(out), definition.produces)


def expected_cle(definition: LibraryFunction, data: np.ndarray, arrays: dict[str, np.ndarray], ndim: int
                 ) -> np.ndarray:
    cle = hm.import_framework(MemoryType.PYCLESPERANTO)
    func = library_function(definition)
    kwargs = {k: cle.push(np.asarray(footprint_array(v), np.float32)) if isinstance(v, Footprint) else v
              for k, v in example_args(definition, ndim).items()}
    out = func(cle.push(data), **kwargs, **{k: cle.push(v) for k, v in arrays.items()})
    return np.asarray(cle.pull(out))


def runnable_inputs(definition: LibraryFunction, shape: tuple[int, ...], ndim: int
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """The test inputs in the first dtype (the documented one, else the other of float32 and uint16) on
    which the library itself runs: what a function accepts is the library's business, not hcsfs's."""
    first = definition.sample_dtype
    errors = []
    for dtype in (first, "uint16" if first == "float32" else "float32"):
        image, arrays = inputs_for(definition, shape, dtype)
        try:
            plane = image if ndim == 3 else image[0]
            expected(definition, plane, {k: v if ndim == 3 else v[0] for k, v in arrays.items()}, ndim)
        except Exception as exc:  # the library refuses this dtype: try the other
            errors.append(f"{dtype}: {type(exc).__name__}: {exc}")
            continue
        return image, arrays
    raise AssertionError(f"{definition.name} runs on neither input: {errors}")


def run_registry(definition: LibraryFunction, memory: MemoryType, image: np.ndarray, arrays: dict[str, Any],
                 per_plane: bool) -> np.ndarray:
    impl = REGISTRY.implementation(definition.name, memory)
    args = spec_args(definition, image.ndim - (1 if per_plane else 0), per_plane)
    out = impl(image, **arrays, **args)
    return np.asarray(hm.convert(out, MemoryType.NUMPY))
