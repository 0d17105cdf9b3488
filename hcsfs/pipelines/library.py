"""The function library: scikit-image, scipy.ndimage and clEsperanto functions registered by name.

Functions are registered from an allowlist of modules (:data:`PYTHON_MODULES`, and pyclesperanto's
categorized operations), named by their module path (``skimage.filters.gaussian``,
``ndimage.median_filter``, ``cle.top_hat_box``), never hand-listed. Their arguments come from the
signature and the numpydoc docstring: numbers, booleans, strings from documented choices, tuples of
numbers and structuring elements written as data (``footprint: {disk: 5}``); arrays other than named
image inputs (``inputs:``), callables, files and ``**kwargs`` are not exposed, and a function that needs
one is not registered. Every exposed number gets a range by the rule in :func:`_bounds`, so a hostile
spec cannot ask for hour-long kernels or huge allocations.

The library is registered on first use (:meth:`FunctionRegistry.add_loader`): a mount that never names
a library function never imports scikit-image's submodules, and clEsperanto is read from its source
files (its functions are found without importing pyclesperanto, which imports only when a run uses it).

Registration reads and never calls: what a function returns (an image of its input's shape, a mask,
labels, a threshold) and whether it works on a whole ``[Z, Y, X]`` stack come from its docstring's
Returns and Parameters sections (:func:`_result_rule`), what it imports when called and whether it
keeps state between calls from its source (:func:`_closure`, :mod:`ast`). The generated tests
(tests/pipelines/test_library.py) call every registered function and compare it with the library
called directly; tests/pipelines/test_library_safety.py calls each under an audit hook.

Rules applied to every library function (docs/pipelines.md, "Library functions"):

- ``per_plane`` (an argument every library function gets, default ``true``) applies the function to
  each ``[Y, X]`` plane of the stack; ``false`` passes the whole stack (refused for functions documented
  as 2-D only).
- Results: ``bool`` -> mask (``uint8`` 0/1), integer labels -> ``int32``, floating -> ``float32``, other
  integers keep their dtype. ``threshold_*`` functions that return a threshold give the mask
  ``image > threshold``; ``threshold_multiotsu`` gives the class of each pixel (``numpy.digitize``).
  A function returning a tuple gives its first item.
- A mask input (``uint8``/``bool``) is passed as ``bool`` to functions whose image is documented as
  binary or boolean (``remove_small_objects`` then labels its connected components, as it does for
  ``bool`` input).
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import logging
import math
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from hcsfs import memory as hm
from hcsfs.errors import SpecError
from hcsfs.memory import MemoryType
from hcsfs.pipelines.footprints import FOOTPRINTS, Footprint, parse_footprint
from hcsfs.pipelines.registry import REQUIRED, ArrayParam, FunctionDef, FunctionRegistry, Param

__all__ = [
    "CLE_EXCLUDED_CATEGORIES",
    "FootprintParam",
    "LibraryFunction",
    "PYTHON_MODULES",
    "TupleParam",
    "build_stats",
    "call_library",
    "gpu_choice",
    "introspect",
    "is_library",
    "library_functions",
    "prepare",
    "register_library",
]

log = logging.getLogger(__name__)

PYTHON_MODULES: dict[str, str] = {
    "skimage.filters": "skimage.filters",
    "skimage.filters.rank": "skimage.filters.rank",
    "skimage.morphology": "skimage.morphology",
    "skimage.exposure": "skimage.exposure",
    "skimage.restoration": "skimage.restoration",
    "skimage.segmentation": "skimage.segmentation",
    "skimage.measure": "skimage.measure",
    "skimage.feature": "skimage.feature",
    "ndimage": "scipy.ndimage",
}
"""The allowlist: name prefix in specs -> the Python module whose public functions are registered."""

CLE_PREFIX = "cle"
CLE_EXCLUDED_CATEGORIES = frozenset({"projection", "transform"})
"""clEsperanto operations of these categories change the image's shape: not registered."""

M = MemoryType

# --- parameter kinds ----------------------------------------------------------------------------

_KIND_NAMES = {int: "integer", float: "number"}


@dataclass(frozen=True, slots=True)
class TupleParam(Param):
    """A number or a list of numbers (``sigma: [2, 1]``): ``kind`` is the element type.

    ``lengths`` are the list lengths accepted; ``scalar`` whether a single number is too."""

    lengths: tuple[int, ...] = (1, 2, 3)
    scalar: bool = True
    point: bool = False
    """A position (``seed_point``): one value per axis; a single number only for 1-D images."""

    def check(self, value: Any, where: str) -> Any:
        element = Param(self.name, self.kind, low=self.low, high=self.high)
        if not isinstance(value, list):
            if not self.scalar:
                raise SpecError(where, f"must be a list of {len(self.lengths) and self.lengths[-1]} numbers")
            return element.check(value, where)
        if len(value) not in self.lengths:
            raise SpecError(where, f"a list of {_lengths(self.lengths)} numbers, not {len(value)}")
        return tuple(element.check(item, f"{where}[{i}]") for i, item in enumerate(value))

    def describe(self) -> str:
        kind = _KIND_NAMES[self.kind]
        text = f"{self.name}: {kind + ' or ' if self.scalar else ''}list of {_lengths(self.lengths)} {kind}s"
        if self.low is not None or self.high is not None:
            text += f" in [{_num(self.low)}, {_num(self.high)}]"
        return text + (", required" if self.default is REQUIRED else f", default {_shown(self.default)}")


@dataclass(frozen=True, slots=True)
class FootprintParam(Param):
    """A structuring element as data: ``{disk: 5}`` (:mod:`hcsfs.pipelines.footprints`)."""

    def check(self, value: Any, where: str) -> Any:
        return parse_footprint(value, where)

    def describe(self) -> str:
        shapes = ", ".join(f"{name}" for name in FOOTPRINTS)
        default = "required" if self.default is REQUIRED else f"default {_shown(self.default)}"
        return f"{self.name}: footprint {{shape: size}} ({shapes}), {default}"


def _lengths(lengths: tuple[int, ...]) -> str:
    if len(lengths) == 1:
        return str(lengths[0])
    if lengths == tuple(range(lengths[0], lengths[-1] + 1)):
        return f"{lengths[0]}-{lengths[-1]}"
    return ", ".join(map(str, lengths))


def _num(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    if value is None:
        return "None (the library's own)"
    return str(value)


# --- the definition -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LibraryFunction(FunctionDef):
    """A library function: where it lives and how hcsfs calls it (:func:`call_library`)."""

    library: str = ""
    """``skimage``, ``ndimage`` or ``cle``."""
    module: str = ""
    """The group it is listed under: ``skimage.filters``, ``ndimage``, ``cle``."""
    target: str = ""
    """``module:attribute`` of the function called (``scipy.ndimage:median_filter``)."""
    planar: bool = True
    """2-D only: ``per_plane: false`` is refused."""
    input_form: str = "image"
    """What its main input is documented as: ``image``, ``mask`` or ``labels`` (tests feed that)."""
    binary_input: bool = False
    """Mask inputs (``uint8``, ``bool``) are passed as ``bool``."""
    result: str = "array"
    """``array``, ``first`` (first item of a tuple), ``threshold`` (``image > t``), ``thresholds``."""
    fixed: tuple[tuple[str, Any], ...] = ()
    """Arguments always passed (``channel_axis=None``: planes are grayscale)."""
    array_kinds: tuple[tuple[str, str], ...] = ()
    """``inputs:`` arguments and the form tests feed them as (``markers``: labels)."""
    sample_dtype: str = "float32"
    """The dtype its tests feed: ``uint16`` where the image is documented as integer, else ``float32``."""
    url: str = ""
    """The library's documentation of the function."""
    twins: tuple[tuple[str, str], ...] = ()
    """GPU implementations: ``(memory type, module:attribute)``."""
    imports: tuple[str, ...] = ()
    """Modules the function imports when called: imported with it, before its first call."""
    gpu_fallback: bool = True
    """``device: cuda:N`` picks its GPU twin; a GPU memory type it has no twin for runs it on the CPU
    (the run's status ``fallback`` says so) instead of failing the spec (:func:`gpu_choice`)."""


GPU_TYPES = (M.CUPY, M.TORCH, M.JAX, M.TENSORFLOW)


def gpu_choice(value: Any, name: str, registry: FunctionRegistry, device: str) -> tuple[Any, str | None]:
    """A library step's memory type: ``(memory for the spec parser, fallback message)``.

    Without ``memory:``, ``device: cuda:N`` picks the function's GPU twin (cupy: ``cupyx.scipy.ndimage``
    for ``ndimage.*``, cuCIM for ``skimage.*``); a GPU memory type the function has no twin for (asked
    by ``memory:`` or by the device) runs it on the CPU, and the message says so."""
    implemented = registry.memory_types(name)
    if value is None:
        if not device.startswith("cuda"):
            return None, None
        twins = [m for m in registry.available_memory_types(name) if m in GPU_TYPES]
        if twins:
            return twins[0].value, None
        return None, f"{name} has no GPU implementation here: it ran on the CPU"
    try:
        memory = MemoryType(value)
    except ValueError:
        return value, None  # the parser names the field
    if memory in GPU_TYPES and memory not in implemented:
        return None, f"{name} has no {memory.value} implementation: it ran on the CPU"
    return value, None


def is_library(definition: FunctionDef) -> bool:
    return isinstance(definition, LibraryFunction)


def library_functions(registry: FunctionRegistry) -> list[LibraryFunction]:
    """The registry's library functions, by name."""
    return [cast(LibraryFunction, registry.get(n)) for n in registry.names() if is_library(registry.get(n))]


# --- docstrings ---------------------------------------------------------------------------------

_SECTION_RE = re.compile(r"-{3,}")


@dataclass(frozen=True, slots=True)
class _DocParam:
    type: str
    desc: str


def _doc_sections(doc: str | None) -> dict[str, list[str]]:
    lines = inspect.cleandoc(doc or "").splitlines()
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line.strip() and _SECTION_RE.fullmatch(lines[i + 1].strip()):
            current = line.strip().lower()
            sections[current] = []
            continue
        if _SECTION_RE.fullmatch(line.strip()):
            continue
        sections[current].append(line)
    return sections


def _doc_params(lines: list[str]) -> dict[str, _DocParam]:
    """numpydoc ``name : type`` entries (also ``a, b : type`` and clEsperanto's ``name: type (= x)``)."""
    entries: list[tuple[list[str], str, list[str]]] = []
    for line in lines:
        if line and not line[0].isspace():
            head, _, kind = line.partition(":")
            names = [n.strip().strip("*") for n in head.split(",") if n.strip()]
            entries.append((names, kind.strip(), []))
        elif entries:
            entries[-1][2].append(line.strip())
    out: dict[str, _DocParam] = {}
    for names, kind, desc in entries:
        for name in names:
            out[name] = _DocParam(kind, " ".join(desc))
    return out


def _summary(doc: str | None) -> str:
    """The first sentence of a docstring's summary, on one line."""
    text = " ".join(_doc_sections(doc)[""]).strip()
    text = re.sub(r"<pre>.*?</pre>", "", text)
    text = re.sub(r"\s+", " ", text)
    match = re.match(r"(.+?\.)(\s|$)", text)
    summary = match.group(1) if match else text
    return summary[:200].replace("|", "/")


# --- argument rules -----------------------------------------------------------------------------

HIDDEN = frozenset({"out", "output", "channel_axis", "multichannel", "workers", "num_workers",
                    "num_threads", "n_jobs", "in_place", "copy", "dtype", "device", "axes", "hist",
                    "extended_output", "cache", "verbose", "spacing_order"})
"""Arguments never exposed: outputs, channel axes (planes are grayscale), thread counts (hcsfs sets the
parallelism), copies and dtypes (the result's dtype follows the rule above), histogram inputs."""
SEEDS = frozenset({"rng", "random_state", "seed"})
"""Random seeds: exposed as an integer, default 0, so that runs repeat."""
IMAGE_ARRAYS = {"mask": "mask", "markers": "labels", "labels": "labels", "reference": "image",
                "seed": "image", "label_img": "labels"}
"""Array arguments that are images of their own (``inputs: {markers: seeds}``) and the form tests feed."""
_FIXED = {"channel_axis": None}


class _Unsupported(Exception):
    """A parameter hcsfs cannot expose (the reason says why)."""


@dataclass(frozen=True, slots=True)
class _Hidden:
    pass


_HIDE = _Hidden()
_NUMBER_RE = re.compile(r"\b(int|integer|ints|integers|uint|unsigned)\b")
_FLOAT_RE = re.compile(r"\b(float|floats|scalar|scalars|number|numbers|double|real)\b")
_SEQ_RE = re.compile(r"\b(sequence|tuple|tuples|list|iterable|\d-tuple)\b")
_ARRAY_RE = re.compile(r"(nd)?array|array[_-]like|\bimage\b|\bmatrix\b|\d-d\b")
_CALLABLE_RE = re.compile(r"\b(callable|function|func|lowlevelcallable)\b")
_FILE_RE = re.compile(r"\b(file|path|filename|fname|url)\b")
_QUOTED_RE = re.compile(r"[`]*['\"‘’]([A-Za-z][A-Za-z0-9_\-]*)['\"‘’][`]*")
_SAME_SHAPE_RE = re.compile(r"same (shape|dimensions|size)", re.I)


def _array_form(name: str, text: str) -> str:
    """What an image input is (tests feed that): by its name, else by its documentation."""
    if re.search(r"\bbool|\bbinary|0's and 1's", text, re.I):
        return "mask"
    if re.search(r"\blabel", text, re.I):
        return "labels"
    if re.match(r"\s*(\(.*?\)\s*)?(nd)?array\s+image\b|\s*image\b", text, re.I) or re.search(
            r"\bimage (specifying|to match)|value at each pixel|\bintensit", text, re.I):
        return "image"
    return IMAGE_ARRAYS.get(name, "image")


_OUTPUT_ARRAY_RE = re.compile(
    r"\b(an? )?output array\b|array (in which )?to store|in which to place the output", re.I)
_INTERVAL_RE = re.compile(r"(?:interval|between|range)\s*\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]")

# Ranges by the parameter's role, read from its name (see :func:`_bounds`).
_EXTENT_WORDS = frozenset({"sigma", "sigmas", "radius", "radii", "size", "width", "height", "window",
                           "distance", "patch", "kernel", "ksize", "block", "buffer", "diameter", "win",
                           "depth", "tile"})
_MULTIPLE_WORDS = frozenset({"truncate", "stds"})
_ITER_WORDS = frozenset({"iter", "iters", "iterations", "iteration"})
_BIN_WORDS = frozenset({"nbins", "bins"})
EXTENT_MAX = 50.0
"""Kernel, window and neighbourhood extents (sigma, radius, size, window, distance, ...): [0, 50] px."""
STACK_EXTENT_MAX = 11.0
"""The same extents with ``per_plane: false`` (a whole-stack, 3-D neighbourhood)."""
MULTIPLE_MAX = 10.0
"""Multiples of a sigma (``truncate``, ``n_stds``): [0, 10]."""
ITER_MAX = 1000
BINS_MAX = 4096
AREA_MAX = 10**8
"""Areas and object sizes (``min_size``, ``area_threshold``): [0, 1e8] pixels (cost-free bounds)."""
INT_MAX = 1000
FLOAT_MAX = 1e9
SEED_MAX = 2**32 - 1
TUPLE_MAX = 16

BOUNDS: dict[str, tuple[float, float]] = {
    "skimage.filters.threshold_multiotsu.classes": (2, 5),
    "skimage.filters.gabor.frequency": (0.01, 10.0),
    "skimage.filters.gabor.bandwidth": (0.1, 10.0),
    "skimage.restoration.denoise_nl_means.patch_size": (1, 15),
    "skimage.restoration.denoise_nl_means.patch_distance": (0, 20),
}
"""Parameters whose cost grows faster than the rule assumes get a tighter range (name.parameter)."""
CHOICES: dict[str, tuple[Any, ...]] = {
    "skimage.segmentation.random_walker.mode": ("cg", "cg_j"),
}
"""Choices refused: ``random_walker``'s ``bf`` builds a dense factorization (memory grows with the
image squared); ``cg_mg`` imports pyamg during the call."""


def _words(name: str) -> set[str]:
    words = set(name.lower().split("_"))
    return words | {"min" for w in words if w == "minimum"} | {"max" for w in words if w == "maximum"}


def _bounds(qualified: str, name: str, kind: type, default: Any, desc: str) -> tuple[float, float]:
    """The range of a numeric parameter: by its role, widened to hold its default.

    - extents of kernels, windows and neighbourhoods (``sigma``, ``radius``, ``size``, ``window``,
      ``distance``, ``patch``, ``block``, ...): [0, 50];
    - multiples of a sigma (``truncate``, ``n_stds``): [0, 10];
    - iteration counts (``max_num_iter``, ``iterations``): [0, 1000]; histogram bins: [1, 4096];
    - areas and object sizes (``min_size``, ``max_size``, ``area_threshold``): [0, 1e8];
    - an interval the docstring states ("in interval [0, 1]"): that interval;
    - random seeds: [0, 2^32 - 1]; other integers: [-1000, 1000]; other numbers: [-1e9, 1e9];
    - :data:`BOUNDS`: the few parameters whose cost grows faster than that.
    """
    if qualified in BOUNDS:
        return BOUNDS[qualified]
    words = _words(name)
    if name in SEEDS:
        low, high = 0.0, float(SEED_MAX)
    elif name in {"axis", "axes"}:
        low, high = -3.0, 2.0
    elif name == "connectivity":
        low, high = 0.0, 3.0
    elif _is_area(words):
        low, high = 0.0, float(AREA_MAX)
    elif words & _MULTIPLE_WORDS:
        low, high = 0.0, MULTIPLE_MAX
    elif words & _ITER_WORDS or any(w.startswith("iter") for w in words):
        low, high = 0.0, float(ITER_MAX)
    elif words & _BIN_WORDS:
        low, high = 1.0, float(BINS_MAX)
    elif words & _EXTENT_WORDS:
        low, high = 0.0, EXTENT_MAX
    elif (match := _INTERVAL_RE.search(desc)) is not None:
        low, high = float(match.group(1)), float(match.group(2))
    elif kind is int:
        low, high = -float(INT_MAX), float(INT_MAX)
    else:
        low, high = -FLOAT_MAX, FLOAT_MAX
    for value in default if isinstance(default, tuple) else (default,):
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            low, high = min(low, float(value)), max(high, float(value))
    return low, high


def _choices(type_text: str, desc: str, default: Any) -> tuple[Any, ...] | None:
    braces = re.search(r"\{([^}]*)\}", type_text)
    if braces:
        items = [s.strip() for s in braces.group(1).split(",") if s.strip()]
        strings = [m.group(1) for item in items if (m := _QUOTED_RE.fullmatch(item))]
        if strings and len(strings) == len(items):
            return tuple(dict.fromkeys(strings))
        if items and all(re.fullmatch(r"-?\d+", i) for i in items):
            return tuple(int(i) for i in items)
        return None
    if isinstance(default, str):
        found = list(dict.fromkeys(_QUOTED_RE.findall(desc)))
        if default in found and 1 < len(found) <= 16:
            return tuple(found)
    return None


@dataclass(frozen=True, slots=True)
class _Arg:
    """How one library parameter is handled: exposed (``param``), an image input, fixed or hidden."""

    param: Param | None = None
    array: ArrayParam | None = None
    array_form: str = ""
    footprint: bool = False


def _classify(qualified: str, name: str, default: Any, annotation: str, doc: _DocParam | None,
              kind_hint: Any = None) -> _Arg | _Hidden:
    """One parameter: a :class:`Param` to expose, an image input, or hidden; :class:`_Unsupported`
    when it can be neither (the function is then registered only if the parameter is optional)."""
    type_text = (doc.type if doc else "").lower()
    desc = doc.desc if doc else ""
    type_clean = re.sub(r"\(default[^)]*\)|default[^,]*$|\boptional\b", "", type_text)
    required = default is REQUIRED
    shown_doc = re.sub(r"\s+", " ", desc)[:160]
    if name in HIDDEN or name.startswith(("return_", "output")) or _OUTPUT_ARRAY_RE.search(desc):
        return _HIDE
    if isinstance(default, str) and "DEPRECATED" in default:
        return _HIDE
    if name in SEEDS:
        low, high = _bounds(qualified, name, int, 0, desc)
        return _Arg(Param(name, int, 0, low, high, doc="random seed (fixed, so runs repeat)"))
    if _CALLABLE_RE.search(type_clean) or (callable(default) and not isinstance(default, type)):
        raise _Unsupported(f"{name} takes a callable")
    if _FILE_RE.search(type_clean):
        raise _Unsupported(f"{name} takes a file")
    if re.search(r"\bdict\b", type_clean) or annotation in {"dict", "list", "Optional[list]"}:
        raise _Unsupported(f"{name} takes a {annotation or 'dict'}")
    if name in {"footprint", "selem", "structure", "structure1"} or "footprint" in type_clean:
        return _Arg(FootprintParam(name, dict, REQUIRED if required else None,
                                   doc="structuring element; None: the library's default"),
                    footprint=True)
    if annotation in {"Image", "Optional[Image]"}:
        if name in {"footprint"}:
            return _Arg(FootprintParam(name, dict, REQUIRED if required else None), footprint=True)
        form = "labels" if "label" in name else "mask" if "mask" in name or "binary" in name else "image"
        return _Arg(array=ArrayParam(name, None, required=required, doc=shown_doc), array_form=form)
    choices = _choices(type_text, desc, default)
    if qualified in CHOICES:
        choices = CHOICES[qualified]
    first_alt = re.split(r"\bor\b|,", type_clean)[0]
    if _ARRAY_RE.search(first_alt) and not (_FLOAT_RE.search(first_alt) or _NUMBER_RE.search(first_alt)):
        type_clean = first_alt  # "ndarray, dtype float, shape (Q, R)": an array, whatever its dtype
    scalar_float = bool(_FLOAT_RE.search(type_clean)) or annotation in {"float", "Optional[float]"}
    scalar_int = bool(_NUMBER_RE.search(type_clean)) or annotation in {"int", "Optional[int]"}
    if name.startswith("origin") and not re.search(r"\b(float|floats|double|real)\b", type_clean):
        scalar_float, scalar_int = False, True  # a filter's placement: whole pixels (scipy's "scalar")
    is_bool = bool(re.search(r"\bbool(ean)?\b", type_clean)) or annotation == "bool"
    sequence = bool(_SEQ_RE.search(type_clean))
    arrayish = bool(_ARRAY_RE.search(type_clean))
    if arrayish and (name in IMAGE_ARRAYS or _SAME_SHAPE_RE.search(type_text + " " + desc)):
        if not (scalar_float or scalar_int) or name in IMAGE_ARRAYS:
            return _Arg(array=ArrayParam(name, None, required=required, doc=shown_doc),
                        array_form=_array_form(name, type_text + " " + desc))
    if arrayish and _ARRAY_RE.search(first_alt) and not (_FLOAT_RE.search(first_alt) or _NUMBER_RE.search(
            first_alt) or re.search(r"\bbool", first_alt) and not _ARRAY_RE.search(first_alt)):
        raise _Unsupported(f"{name} takes an array that is not an image")
    if choices is not None:
        kind = type(choices[0])
        if any(type(c) is not kind for c in choices) or kind not in (str, int):
            raise _Unsupported(f"{name} has mixed choices")
        if not required and default is not None and default not in choices:
            raise _Unsupported(f"{name}'s default {default!r} is not among its choices")
        return _Arg(Param(name, kind, default, choices=choices, doc=shown_doc))
    if isinstance(default, bool) or (is_bool and not (scalar_float or scalar_int or sequence)):
        if not required and not isinstance(default, bool) and default is not None:
            raise _Unsupported(f"{name}'s default {default!r} is not a boolean")
        return _Arg(Param(name, bool, default, doc=shown_doc))
    if isinstance(default, range | list | tuple) or (sequence and (scalar_float or scalar_int)):
        element: type = float if scalar_float or not scalar_int else int
        values = tuple(default) if isinstance(default, range | list | tuple) else default
        if isinstance(values, tuple):
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                raise _Unsupported(f"{name}'s default {default!r} is not numbers")
            if element is int and any(isinstance(v, float) for v in values):
                element = float
        elif values is not None and not required and not isinstance(values, int | float):
            raise _Unsupported(f"{name}'s default {default!r} is not a number")
        fixed_length = re.search(r"\b(\d)-tuple|tuple of (\d)\b", type_clean)
        if fixed_length:
            lengths: tuple[int, ...] = (int(fixed_length.group(1) or fixed_length.group(2)),)
        elif "iterable" in type_clean:  # sigmas: a list of scales
            lengths = tuple(range(1, TUPLE_MAX + 1))
        else:  # one value per axis of a plane or a stack
            lengths = (1, 2, 3)
        scalar = not fixed_length and "iterable" not in type_clean  # one number: the same on every axis
        low, high = _bounds(qualified, name, element, values, desc)
        point = bool(re.match(r"\s*tuple\b", type_clean))
        return _Arg(TupleParam(name, element, values, low, high, doc=shown_doc, lengths=lengths,
                               scalar=scalar, point=point))
    if scalar_float or scalar_int or isinstance(default, int | float):
        number: type = float if scalar_float or isinstance(default, float) else int
        if isinstance(default, float) and number is int:
            number = float
        if not required and default is not None and (
                not isinstance(default, int | float) or isinstance(default, bool)):
            raise _Unsupported(f"{name}'s default {default!r} is not a number")
        value = float(default) if number is float and isinstance(default, int) else default
        low, high = _bounds(qualified, name, number, value, desc)
        return _Arg(Param(name, number, value, low, high, doc=shown_doc))
    if arrayish:
        raise _Unsupported(f"{name} takes an array that is not an image")
    raise _Unsupported(f"{name}: no supported type documented ({type_text or annotation or 'none'})")


# --- Python modules: signature, docstring, source ------------------------------------------------

@dataclass(frozen=True, slots=True)
class Exclusion:
    """A candidate that is not registered, and the rule that excludes it."""

    name: str
    reason: str


def _public_functions(module: Any) -> list[tuple[str, Callable[..., Any]]]:
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    found = []
    for name in sorted(set(names)):
        value = getattr(module, name, None)
        if inspect.isclass(value) or inspect.ismodule(value) or not callable(value) or name.startswith("_"):
            continue
        found.append((name, value))
    return found


def _signature_default(param: inspect.Parameter) -> Any:
    if param.default is inspect.Parameter.empty:
        return REQUIRED
    default = param.default
    if repr(default).startswith("<DEPRECATED"):
        return "<DEPRECATED>"
    return default


_COORDS_RE = re.compile(r"\(\s*\w+\s*,\s*(2|3|d)\s*\)")
_COORD_NAMES = frozenset({"coords", "verts", "points", "descriptors", "snake", "nu", "mu"})
_FIGURE_RE = re.compile(r"\b(figure|matplotlib)\b", re.I)
_PLANAR_RE = re.compile(r"\(m, ?n(\[, ?3\])?\)|\b2-?d\b")
_ND_RE = re.compile(r"\(l, ?m, ?n\)|\b3-?d\b|\[, ?\.\.\.|\[, ?p\]|\bn-?d\b|\[p, ?\]")
"""A first argument documented as 2-D only (``(M, N) ndarray``, ``2-D array``, not ``(M, N[, ...])``):
``per_plane`` stays true."""
_EITHER_RE = re.compile(r"Either `(\w+)` or `(\w+)` must be defined")


def _python_candidate(prefix: str, module_name: str, attr: str, func: Callable[..., Any]
                      ) -> dict[str, Any] | Exclusion:
    """What the signature and docstring say about ``func``: its arguments, or why it is left out."""
    name = f"{prefix}.{attr}"
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return Exclusion(name, "no signature")
    sections = _doc_sections(func.__doc__)
    docs = _doc_params(sections.get("parameters", []))
    params = list(signature.parameters.values())
    if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                            inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return Exclusion(name, "takes no image")
    first = params[0]
    first_doc = docs.get(first.name)
    first_type = (first_doc.type if first_doc else "").lower()
    if not _ARRAY_RE.search(first_type) or re.match(r"\s*(list|tuple|sequence) of", first_type):
        return Exclusion(name, f"its first argument ({first.name}) is not an image")
    args: dict[str, _Arg] = {}
    fixed: dict[str, Any] = {}
    either: dict[str, int] = {}
    for key, doc in docs.items():
        if (match := _EITHER_RE.search(doc.desc)) is not None:
            either[match.group(1)] = 3  # scipy's size-or-footprint filters: size 3 by default
        if re.search(r"Optional if `(footprint|structure)`", doc.desc):
            either[key] = 3
    for param in params[1:]:
        if param.kind is inspect.Parameter.VAR_KEYWORD or param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        default = _signature_default(param)
        if param.name in _FIXED:
            fixed[param.name] = _FIXED[param.name]
            continue
        if param.name in either and default is None:
            default = either[param.name]
        try:
            arg = _classify(f"{name}.{param.name}", param.name, default, "", docs.get(param.name))
        except _Unsupported as exc:
            if default is REQUIRED:
                return Exclusion(name, f"needs an argument hcsfs cannot give: {exc}")
            continue
        if isinstance(arg, _Hidden):
            if default is REQUIRED:
                return Exclusion(name, f"needs {param.name}, which hcsfs does not expose")
            continue
        args[param.name] = arg
    if first.name in {"footprint", "structure", "selem", "shape", "image_shape"}:
        return Exclusion(name, f"its first argument ({first.name}) is a shape or structuring element, "
                               "not an image")
    if "index" in signature.parameters and re.search(r"label", docs["index"].desc if "index" in docs else ""):
        return Exclusion(name, "measures labelled regions (returns values per label, not an image)")
    if re.search(r"histogram|co-occurrence", first_doc.desc if first_doc else "", re.I):
        return Exclusion(name, f"its first argument ({first.name}) is a histogram, not an image")
    if re.search(r",\s*(3|c)\s*\)", first_type):
        return Exclusion(name, f"needs a colour image ({first_type.strip()})")
    if _COORDS_RE.search(first_type) or first.name in _COORD_NAMES:
        return Exclusion(name, f"its first argument ({first.name}) is a list of coordinates, not an image")
    if _FIGURE_RE.search(" ".join(sections.get("returns", []))):
        return Exclusion(name, "draws a figure")
    first_text = (first_type + " " + (first_doc.desc if first_doc else "")).lower()
    form = ("mask" if re.search(r"\bbool|\bbinary", first_text)
            else "labels" if re.search(r"\blabel", first.name + " " + first_text) else "image")
    result = _result_rule(attr, sections.get("returns", []), signature, first.name)
    if isinstance(result, str):
        return Exclusion(name, result)
    rule, produces = result
    if produces == "labels" and re.search(r"\bint", first_type) and re.search(r"\bbool", first_type):
        produces = "same"  # labels in, labels out; a mask in, a mask out (clear_border)
    if _keeps_state(func):
        return Exclusion(name, "keeps state between calls (a module-level cycle): results would depend on "
                               "earlier calls")
    missing = [m for m in _call_imports(func, across=False) if not _installed(m)]
    if missing:
        return Exclusion(name, f"imports {missing[0]} when called, which is not installed")
    imports = tuple(m for m in _call_imports(func) if _installed(m))
    planar = prefix != "ndimage" and bool(_PLANAR_RE.search(first_type)) and not _ND_RE.search(first_type)
    integers = bool(re.search(r"\b(u?int\d*|integers?)\b", first_type))
    return {
        "name": name, "module": prefix, "target": f"{module_name}:{attr}",
        "library": "ndimage" if prefix == "ndimage" else "skimage",
        "doc": _summary(func.__doc__), "args": args, "fixed": tuple(fixed.items()),
        "input_form": form, "binary_input": form == "mask", "result": rule, "produces": produces,
        "first": first.name, "planar": planar, "sample_dtype": "uint16" if integers else "float32",
        "imports": imports,
    }


def _call_imports(func: Callable[..., Any], *, across: bool = True) -> tuple[str, ...]:
    """The modules ``func`` imports when called: import statements in its body and in the functions it
    calls, in its own module (``across``: and in the modules of its package it imports them from),
    read with :mod:`ast`, as absolute names."""
    return _closure(func, across)[0]


def _keeps_state(func: Callable[..., Any]) -> bool:
    """Whether ``func`` (or a function of its module it calls) reads a module-level object that changes
    with each use: an ``itertools.cycle``, a generator, or an instance of a class that holds one (the
    result would then depend on earlier calls)."""
    return _closure(func, True)[1]


def _closure(func: Callable[..., Any], across: bool) -> tuple[tuple[str, ...], bool]:
    """Follow ``func``'s calls through the functions and classes of its package's modules (names it
    defines or imports with ``from ... import``): the modules imported in their bodies, and whether
    any of them reads state that changes with use."""
    target = inspect.unwrap(func)
    module = getattr(target, "__module__", "") or ""
    if getattr(target, "__code__", None) is None:
        return (), False
    top = module.split(".")[0]
    names: list[str] = []
    seen: set[tuple[str, str]] = set()
    todo = [(module, target.__name__)]
    keeps_state = False
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        module_name, name = current
        index, stateful, imported = _module_functions(module_name)
        if name in index:
            imports, calls, loads = index[name]
            names += imports
            todo += [(module_name, c) for c in calls]
            keeps_state = keeps_state or bool(loads & stateful)
        elif across and name in imported and imported[name][0].split(".")[0] == top:
            todo.append(imported[name])
    return tuple(dict.fromkeys(names)), keeps_state


_STATEFUL_CALLS = frozenset({"cycle", "count", "iter", "next"})


def _absolute(package: str, level: int, module: str | None) -> str:
    """``from ..x import y`` (``level`` 2) in ``package``: the absolute name of ``x``."""
    if not level:
        return module or ""
    base = package if level == 1 else package.rsplit(".", level - 1)[0]
    return ".".join(p for p in (base, module or "") if p)


@functools.cache
def _module_functions(module: str) -> tuple[dict[str, tuple[list[str], list[str], set[str]]], frozenset[str],
                                            dict[str, tuple[str, str]]]:
    """A module's functions and classes: the modules each imports in its body, the names it calls and
    reads; the module-level names bound to objects that change with use; what it imports by name."""
    loaded = sys.modules.get(module)
    filename = getattr(loaded, "__file__", None)
    if not filename or not filename.endswith(".py"):
        return {}, frozenset(), {}
    try:
        tree = ast.parse(Path(filename).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}, frozenset(), {}
    package = module if filename.endswith("__init__.py") else module.rsplit(".", 1)[0]
    imported: dict[str, tuple[str, str]] = {}
    changing: set[str] = set()  # module-level classes and generator functions that hold iteration state
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(package, node.level, node.module)
            for alias in node.names:
                imported[alias.asname or alias.name] = (source, alias.name)
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Yield | ast.YieldFrom) or (
                        isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
                        and inner.func.id in _STATEFUL_CALLS):
                    changing.add(node.name)
                    break
    stateful: set[str] = set()
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        value = node.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            if value.func.id in changing or value.func.id in _STATEFUL_CALLS:
                stateful.update(t.id for t in node.targets if isinstance(t, ast.Name))
    index: dict[str, tuple[list[str], list[str], set[str]]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.ClassDef):
            continue
        imports: list[str] = []
        calls: list[str] = []
        loads: set[str] = set()
        for inner in ast.walk(node):
            if isinstance(inner, ast.Name):
                loads.add(inner.id)
            if isinstance(inner, ast.Import):
                imports += [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom):
                imports.append(_absolute(package, inner.level, inner.module))
            if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name):
                calls.append(inner.func.id)
        index[node.name] = (imports, calls, loads)
    return index, frozenset(stateful), imported


def _installed(module: str) -> bool:
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


_SCALAR_RE = re.compile(r"\s*(an? )?(float|int|integer|bool|scalar|number|double)\b")
_NOT_IMAGE_TYPE_RE = re.compile(
    r"\b(list|tuple|dict|dictionary|generator|class|object|regionproperties|function)\b"
    r"|\(\s*[\w.]+\s*,\s*(\d+|d|[\w.]+\s*\+[^)]*)\s*\)|\(\s*[\w.]+\s*,\s*\)|,\s*(3|4|c)\s*\)|``"
    r"|^\s*[134]-?d (nd)?array|\(h, ?w, ?n\)|complex")
"""Returns documented as another shape: a list, a tuple, (K, 2) coordinates, (7,) values, 1-D/3-D arrays."""
_NOT_IMAGE_DESC_RE = re.compile(
    r"\b(coordinates|positions|descriptors?|down-sampled|zoomed|rotated|visuali[sz]ation|indices of|profile"
    r"|eigenvalues)\b|image\.shape\s*\+|^\s*(the )?(values of the )?histogram", re.I)
"""Returns described as coordinates, histograms, descriptors, or as a resampled or rotated image."""
_IMAGEISH_RE = re.compile(r"\bimage|same shape|same dimensions|of shape image\.shape|\blabel|\(m, ?n", re.I)


def _result_rule(attr: str, lines: list[str], signature: inspect.Signature, first_name: str
                 ) -> tuple[str, str] | str:
    """``(result rule, result kind)`` from the docstring's Returns section, or why it is left out.

    The first documented result must be an array of the image's shape (several results: the first is
    used); ``threshold_*`` functions may return a threshold instead. Its kind: ``bool`` or binary ->
    mask; documented as the input's type -> same; labels or labeled -> labels; otherwise image."""
    entries = [(n, d) for n, d in _doc_params(lines).items() if not n.startswith("..")]
    if not entries:
        return "documents no result"
    plain = [(n, d) for n, d in entries if "optional" not in d.type.lower()] or entries
    several = len(plain) > 1
    _, first = plain[0]
    kind_text = first.type.lower()
    text = f"{kind_text} {first.desc}".lower()
    if {"output_shape", "reshape"} & set(signature.parameters):
        return "can change the image's shape (a geometric transform)"
    if not first.type.strip():
        return "documents no type for its result"
    if attr.startswith("threshold_") and "thresh" in (plain[0][0] + " " + first.desc).lower():
        if _SCALAR_RE.match(kind_text) or _IMAGEISH_RE.search(text):
            return "threshold", "mask"
        return "thresholds", "image"
    first_alt = re.split(r"\bor\b", kind_text)[0]
    if _SCALAR_RE.match(first_alt) and not re.search(r"array", first_alt):
        return f"returns a {first_alt.split()[-1].strip(',')}, not an image"
    if _NOT_IMAGE_TYPE_RE.search(first_alt):
        return f"returns {first.type.strip()}, not an image of the input's shape"
    if (described := _NOT_IMAGE_DESC_RE.search(first.desc)) is not None:
        return f"returns {described.group(0)}, not an image of the input's shape"
    if several and not _IMAGEISH_RE.search(text):
        return "returns several values, the first not an image"
    if re.search(r"\bbool|\bbinary|\bboolean", text) or attr.startswith("binary_"):
        produces = "mask"
    elif re.search(r"same (shape and )?(type|dtype|data type)( and shape)?( as (the )?(input|`?image`?|`?"
                   + re.escape(first_name.lower()) + r"`?)\b|,? as input)", text) or re.search(
                       r"same dtype as (input )?`?(image|input)", text):
        produces = "same"
    elif re.search(r"\blabel", text):
        produces = "labels"
    else:
        produces = "image"
    return ("first" if several else "array"), produces


def sample_image(form: str, shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """A deterministic test image: blobs on a noisy background (``image``), their mask, or labels."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape[-2:]).astype(np.float64)
    centres = [(0.3, 0.3, 0.18), (0.7, 0.65, 0.2), (0.3, 0.78, 0.12)]
    base = np.zeros(shape[-2:])
    labels2d = np.zeros(shape[-2:], np.int32)
    for i, (cy, cx, r) in enumerate(centres, start=1):
        dist = np.hypot(grid[0] / shape[-2] - cy, grid[1] / shape[-1] - cx)
        base += np.exp(-((dist / r) ** 2) * 2)
        labels2d[dist < r * 0.8] = i
    planes = []
    count = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    for k in range(count):
        noise = rng.normal(0, 0.05, shape[-2:])
        planes.append(np.roll(base, k, axis=1) + noise)
    stack = np.stack(planes).reshape(shape)
    if form == "labels":
        return np.broadcast_to(np.stack([np.roll(labels2d, k, axis=1) for k in range(count)]).reshape(shape),
                               shape).astype(np.int32)
    if form == "mask":
        return (stack > 0.5).astype(np.uint8)
    stack = np.clip(stack, 0, None)
    if dtype == "uint16":
        return (stack / stack.max() * 3800 + 100).astype(np.uint16)
    return (stack / stack.max()).astype(np.float32)


def _example(param: Param, ndim: int = 2) -> Any:
    """A value for a required argument in tests: small and inside its range (a point: ``ndim`` values)."""
    if isinstance(param, FootprintParam):
        return Footprint("disk", (1,)) if ndim == 2 else Footprint("ball", (1,))
    if param.choices:
        return param.choices[0]
    if param.kind is bool:
        return False
    value = 1 if param.kind is int else 1.0
    if param.low is not None and value < param.low:
        value = param.low if param.kind is float else math.ceil(param.low)
    if isinstance(param, TupleParam) and (not param.scalar or param.point):
        return tuple([value] * (ndim if ndim in param.lengths else param.lengths[0]))
    return value


def example_args(definition: LibraryFunction, ndim: int = 2) -> dict[str, Any]:
    """Values for the required arguments of ``definition`` (what the tests pass), for ``ndim``-D input."""
    return {p.name: _example(p, ndim) for p in definition.params if p.default is REQUIRED}


# --- clEsperanto, from its source files ----------------------------------------------------------

def _cle_candidates() -> tuple[list[dict[str, Any]], list[Exclusion]]:
    """pyclesperanto's operations read from its ``_tier*.py`` sources (nothing is imported)."""
    spec = importlib.util.find_spec("pyclesperanto")
    if spec is None or not spec.submodule_search_locations:
        return [], []
    root = Path(next(iter(spec.submodule_search_locations)))
    found: list[dict[str, Any]] = []
    excluded: list[Exclusion] = []
    for path in sorted(root.glob("_tier*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            categories = _cle_categories(node)
            if categories is None:
                continue  # not a plugin function
            result = _cle_candidate(node, categories)
            (excluded if isinstance(result, Exclusion) else found).append(result)  # type: ignore[arg-type]
    return found, excluded


def _cle_categories(node: ast.FunctionDef) -> list[str] | None:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name) and target.id == "plugin_function":
            if isinstance(decorator, ast.Call):
                for keyword in decorator.keywords:
                    if keyword.arg == "categories":
                        return [str(c) for c in ast.literal_eval(keyword.value)]
            return []
    return None


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return REQUIRED
    text = ast.unparse(node)
    if text in {"float('nan')", 'float("nan")'}:
        return math.nan
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _Unsupported(text)


def _cle_candidate(node: ast.FunctionDef, categories: list[str]) -> dict[str, Any] | Exclusion:
    name = f"{CLE_PREFIX}.{node.name}"
    if not categories:
        return Exclusion(name, "clEsperanto gives it no category (not an image operation)")
    if set(categories) & CLE_EXCLUDED_CATEGORIES:
        shaping = ", ".join(sorted(set(categories) & CLE_EXCLUDED_CATEGORIES))
        return Exclusion(name, f"changes the image's shape ({shaping})")
    returns = ast.unparse(node.returns) if node.returns else ""
    if returns != "Image":
        return Exclusion(name, f"returns {returns or 'nothing'}, not an image")
    doc = ast.get_docstring(node)
    docs = _doc_params(_doc_sections(doc).get("parameters", []))
    positional = node.args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(node.args.defaults))
    defaults += list(node.args.defaults)
    if not positional or ast.unparse(positional[0].annotation or ast.Constant("")) != "Image":
        return Exclusion(name, "its first argument is not an image")
    first = positional[0].arg
    args: dict[str, _Arg] = {}
    outputs = 0
    for arg, default_node in zip(positional[1:], defaults[1:], strict=True):
        annotation = ast.unparse(arg.annotation) if arg.annotation else ""
        default = _literal(default_node)
        if arg.arg == "device":
            continue
        if annotation == "Optional[Image]" and default is None:
            outputs += 1
            continue
        if isinstance(default, _Unsupported):
            return Exclusion(name, f"{arg.arg} has a default hcsfs cannot read")
        try:
            classified = _classify(f"{name}.{arg.arg}", arg.arg, default, annotation, docs.get(arg.arg))
        except _Unsupported as exc:
            if default is REQUIRED:
                return Exclusion(name, f"needs an argument hcsfs cannot give: {exc}")
            continue
        if isinstance(classified, _Hidden):
            if default is REQUIRED:
                return Exclusion(name, f"needs {arg.arg}, which hcsfs does not expose")
            continue
        args[arg.arg] = classified
    if outputs != 1:
        return Exclusion(name, f"writes {outputs} output images, not one")
    first_desc = (docs[first].desc if first in docs else "").lower()
    label_input = "label" in first or "label" in first_desc
    form = "labels" if label_input else "mask" if ("binary" in first or "binary" in first_desc) else "image"
    cats = set(categories)
    if "label measurement" in cats and "map" not in cats:
        return Exclusion(name, "measures labels (returns values per label, not an image)")
    if "map" in cats or "label measurement" in cats:
        produces = "image"
    elif cats & {"binarize", "binary processing"}:
        produces = "mask"
    elif cats & {"label", "label processing"}:
        produces = "labels"
    else:
        produces = "image"
    references = re.findall(r"\[1\]\s+(\S+)", doc or "")
    return {
        "name": name, "module": CLE_PREFIX, "target": f"pyclesperanto:{node.name}", "library": "cle",
        "doc": _summary(doc), "args": args, "fixed": (), "input_form": form, "binary_input": False,
        "result": "array", "planar": False, "produces": produces, "sample_dtype": "float32",
        "url": references[0] if references else
        f"https://clesperanto.github.io/pyclesperanto/api/pyclesperanto.html#pyclesperanto.{node.name}",
        "first": first,
    }


# --- GPU twins ----------------------------------------------------------------------------------

def _exported_names(module: str) -> frozenset[str]:
    """Names a package's ``__init__`` (or its ``.pyi`` stub) imports or defines, read without importing."""
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: found without importing it
    except (ImportError, ValueError):
        return frozenset()
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    package = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest.split(".")) if rest else \
        Path(next(iter(spec.submodule_search_locations)))
    names: set[str] = set()
    for path in (package / "__init__.py", package / "__init__.pyi"):
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names.update(alias.asname or alias.name for alias in node.names)
            elif isinstance(node, ast.FunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                      for t in node.targets):
                try:
                    names.update(ast.literal_eval(node.value))
                except ValueError:
                    pass
    return frozenset(n for n in names if not n.startswith("_"))


def _twin_module(definition: dict[str, Any]) -> str | None:
    if definition["library"] == "ndimage":
        return "cupyx.scipy.ndimage"
    if definition["library"] == "skimage":
        return "cucim." + definition["module"]
    return None


def _twins(definition: dict[str, Any], exported: Callable[[str], frozenset[str]]
           ) -> tuple[tuple[str, str], ...]:
    module = _twin_module(definition)
    attr = definition["target"].partition(":")[2]
    if module is None or attr not in exported(module):
        return ()
    return ((M.CUPY.value, f"{module}:{attr}"),)


# --- building the registry ----------------------------------------------------------------------

@dataclass
class BuildStats:
    """How the library part of a registry was built (``hcsfs functions`` and the docs report it)."""

    seconds: float = 0.0
    registered: int = 0
    excluded: list[Exclusion] = field(default_factory=list)
    by_module: dict[str, float] = field(default_factory=dict)


_STATS = BuildStats()


def build_stats() -> BuildStats:
    """Figures of the last library build in this process."""
    return _STATS


@functools.cache
def introspect() -> tuple[tuple[dict[str, Any], ...], tuple[Exclusion, ...]]:
    """Every library function this machine has: the candidates that qualify, and the exclusions.

    Cached per process: registries built later (tests, Dask workers in this process) reuse it.
    """
    found: list[dict[str, Any]] = []
    excluded: list[Exclusion] = []
    exported = functools.cache(_exported_names)
    cupy_here = importlib.util.find_spec("cupy") is not None
    for prefix, module_name in PYTHON_MODULES.items():
        started = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a broken or missing library: its functions are not offered
            log.warning("library module %s not available: %s", module_name, exc)
            continue
        for attr, func in _public_functions(module):
            candidate = _python_candidate(prefix, module_name, attr, func)
            if isinstance(candidate, Exclusion):
                excluded.append(candidate)
                continue
            candidate["url"] = _python_url(candidate)
            candidate["twins"] = _twins(candidate, exported) if cupy_here else ()
            found.append(candidate)
        _STATS.by_module[prefix] = time.perf_counter() - started
    started = time.perf_counter()
    cle_found, cle_excluded = _cle_candidates()
    for candidate in cle_found:
        candidate["twins"] = ()
    found += cle_found
    excluded += cle_excluded
    _STATS.by_module[CLE_PREFIX] = time.perf_counter() - started
    return tuple(found), tuple(excluded)


def _python_url(candidate: dict[str, Any]) -> str:
    module, _, attr = candidate["target"].partition(":")
    if candidate["library"] == "ndimage":
        return f"https://docs.scipy.org/doc/scipy/reference/generated/scipy.ndimage.{attr}.html"
    return f"https://scikit-image.org/docs/stable/api/{candidate['module']}.html#{candidate['module']}.{attr}"


def _definition(candidate: dict[str, Any]) -> LibraryFunction:
    args: dict[str, _Arg] = candidate["args"]
    params = [a.param for a in args.values() if a.param is not None]
    planar = bool(candidate["planar"])
    params.append(Param("per_plane", bool, True, choices=(True,) if planar else None,
                        doc="apply to each plane of the stack" + (" (2-D only)" if planar else
                                                                  "; false: pass the whole [Z, Y, X] stack")))
    arrays = tuple(a.array for a in args.values() if a.array is not None)
    footprints = tuple(n for n, a in args.items() if a.footprint)
    produces = candidate["produces"]
    output = {"mask": "uint8 mask (0/1)", "labels": "int32 labels", "same": "input dtype",
              "image": "image (float32; integer results keep their dtype)"}[produces]
    return LibraryFunction(
        name=candidate["name"], doc=candidate["doc"], params=tuple(params),
        output=output, produces=produces, array_params=arrays,
        check=_checker(footprints, tuple(p.name for p in params
                                         if p.kind in (int, float) and is_extent(p.name))),
        input_name=candidate["first"],
        library=candidate["library"], module=candidate["module"], target=candidate["target"],
        planar=planar, input_form=candidate["input_form"], binary_input=candidate["binary_input"],
        result=candidate["result"], fixed=tuple(candidate["fixed"]),
        array_kinds=tuple((n, a.array_form) for n, a in args.items() if a.array is not None),
        sample_dtype=candidate["sample_dtype"], url=candidate.get("url", ""), twins=candidate["twins"],
        imports=tuple(candidate.get("imports", ())),
    )


def _checker(footprints: tuple[str, ...], extents: tuple[str, ...]) -> Callable[[dict[str, Any], str], None]:
    """Checks between arguments: a footprint's dimensionality follows ``per_plane``; with
    ``per_plane: false`` neighbourhood extents are at most :data:`STACK_EXTENT_MAX` (a 3-D
    neighbourhood of radius r costs r^3 per voxel)."""

    def check(args: dict[str, Any], where: str) -> None:
        per_plane = args.get("per_plane", True)
        for key in footprints:
            value = args.get(key)
            if isinstance(value, Footprint) and value.ndim == 3 and per_plane:
                raise SpecError(f"{where}.{key}", f"a 3-D footprint ({value.shape}) needs per_plane: false")
            if isinstance(value, Footprint) and value.ndim == 2 and not per_plane:
                raise SpecError(f"{where}.{key}", f"a 2-D footprint ({value.shape}) works per plane: use "
                                                  "ball, octahedron or cube with per_plane: false")
        if per_plane:
            return
        for key in extents:
            value = args.get(key)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, int | float) and item > STACK_EXTENT_MAX:
                    raise SpecError(f"{where}.{key}", f"{item:g} is above {STACK_EXTENT_MAX:g}, the maximum "
                                                      "with per_plane: false (3-D neighbourhoods)")

    return check


def is_extent(name: str) -> bool:
    """Whether a parameter sets a kernel, window or neighbourhood extent (by the :func:`_bounds` rule)."""
    words = _words(name)
    return not _is_area(words) and bool(words & _EXTENT_WORDS) and not words & _MULTIPLE_WORDS


def _is_area(words: set[str]) -> bool:
    """Areas and object sizes: ``area_threshold``, ``min_size``, ``maximum_size`` (not window sizes)."""
    return "area" in words or bool(words & {"min", "max"} and "size" in words)


LIBRARY_WARNINGS = r"(skimage|scipy\.ndimage|pyclesperanto|hcsfs\.pipelines\.library)(\..*)?"
"""Warnings of these modules are not shown: performance hints and dtype notes of the libraries, which the
mount's owner cannot act on per plane (and showing one reads the library's source file to quote it)."""


@functools.cache
def _quiet_library_warnings() -> None:
    warnings.filterwarnings("ignore", module=LIBRARY_WARNINGS)


def register_library(registry: FunctionRegistry) -> None:
    """Register every library function this machine has in ``registry`` (names already taken, by a
    plugin for instance, are left alone)."""
    started = time.perf_counter()
    _quiet_library_warnings()
    candidates, excluded = introspect()
    count = 0
    for candidate in candidates:
        if candidate["name"] in registry:
            continue
        definition = _definition(candidate)
        registry.register(definition)
        memory = M.PYCLESPERANTO if definition.library == "cle" else M.NUMPY
        registry.implement(definition.name, memory, _implementation(definition, memory))
        for twin_type, target in definition.twins:
            registry.implement(definition.name, twin_type, _implementation(definition, MemoryType(twin_type),
                                                                           target))
        count += 1
    _STATS.seconds = time.perf_counter() - started
    _STATS.registered, _STATS.excluded = count, list(excluded)
    log.info("function library: %d functions registered in %.2f s (%d candidates left out)", count,
             _STATS.seconds, len(excluded))


# --- calling ------------------------------------------------------------------------------------

@functools.cache
def _resolve(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return cast(Callable[..., Any], getattr(importlib.import_module(module), attr))


def prepare(definition: LibraryFunction, memory_type: MemoryType = M.NUMPY) -> Callable[..., Any]:
    """Import ``definition``'s function and the modules it imports when called (its first call then
    imports nothing: tests/pipelines/test_library_safety.py). Returns the function."""
    if memory_type is M.PYCLESPERANTO:
        hm.import_framework(M.PYCLESPERANTO)
    target = dict(definition.twins).get(memory_type.value, definition.target)
    func = _resolve(target)
    if target == definition.target:
        for module in definition.imports:
            try:
                importlib.import_module(module)
            except ImportError:  # an optional path of the library (found by reading its source)
                pass
    return func


def _library_kwargs(kwargs: dict[str, Any], xp: Any = np) -> dict[str, Any]:
    """Spec arguments as the library takes them: footprints built as arrays."""
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, Footprint):
            value = xp.asarray(value.array()) if xp is not np else value.array()
        out[key] = value
    return out


def _xp_of(memory_type: MemoryType) -> Any:
    if memory_type is M.CUPY:
        return hm.import_framework(M.CUPY)
    return np


def call_library(definition: LibraryFunction, memory_type: MemoryType, target: str, data: Any,
                 kwargs: dict[str, Any], arrays: dict[str, Any]) -> Any:
    """Apply ``definition`` (its function at ``target``) to one array as the rules say: input
    conversion, the call, and the result rule and dtype rule (numpy or cupy arrays)."""
    xp = _xp_of(memory_type)
    func = prepare(definition, memory_type) if target == definition.target else _resolve(target)
    if definition.binary_input and data.dtype in (xp.uint8, xp.bool_):
        data = data != 0
    if target != definition.target:
        kwargs = _twin_kwargs(definition, target, func, kwargs)
    call = {**dict(definition.fixed), **_library_kwargs(kwargs, xp), **arrays}
    out = func(data, **call)
    if isinstance(out, tuple):
        out = out[0]
    if definition.result == "threshold":
        out = data > out
    elif definition.result == "thresholds":
        out = xp.digitize(data, bins=out)
    if not hasattr(out, "shape") or tuple(out.shape) != tuple(data.shape):
        raise ValueError(f"{definition.name} returned {getattr(out, 'shape', type(out).__name__)} for an "
                         f"input of shape {tuple(data.shape)}")
    return _result_dtype(out, definition, xp)


def _twin_kwargs(definition: LibraryFunction, target: str, func: Callable[..., Any], kwargs: dict[str, Any]
                 ) -> dict[str, Any]:
    """The arguments a GPU twin takes: those it lacks are dropped while they hold their default; a value
    set for one is an error (the CPU implementation takes it)."""
    accepted = _parameters(target, func)
    out = {}
    for key, value in kwargs.items():
        if key in accepted:
            out[key] = value
            continue
        param = definition.param(key)
        if param is not None and value != param.default:
            raise ValueError(f"{target.replace(':', '.')} has no argument {key!r}: use memory: numpy for it")
    return out


@functools.cache
def _parameters(target: str, func: Callable[..., Any]) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return frozenset()


def _result_dtype(out: Any, definition: FunctionDef, xp: Any) -> Any:
    if out.dtype == xp.bool_:
        return out.astype(xp.uint8)
    if out.dtype.kind == "f":
        return out.astype(xp.float32, copy=False)
    if definition.produces == "labels" and out.dtype != xp.int32:
        return out.astype(xp.int32)
    return out


def _planes(stack: Any, per_plane: bool, arrays: dict[str, Any], apply: Callable[[Any, dict[str, Any]], Any],
            xp: Any) -> Any:
    if not per_plane:
        return apply(stack, arrays)
    for key, value in arrays.items():
        if value.shape[0] != stack.shape[0]:
            raise ValueError(f"the {key} input has {value.shape[0]} planes, the image {stack.shape[0]}")
    return xp.stack([apply(stack[z], {k: v[z] for k, v in arrays.items()}) for z in range(stack.shape[0])])


def _implementation(definition: LibraryFunction, memory_type: MemoryType, target: str | None = None
                    ) -> Callable[..., Any]:
    """``definition``'s implementation for ``memory_type``: numpy and cupy call the library (or its GPU
    twin) plane by plane; pyclesperanto calls clEsperanto. Out-of-memory recovery splits along Z when
    planes are independent (``per_plane``), else falls back to the CPU."""
    target = target or definition.target
    array_names = tuple(p.name for p in definition.array_params)

    def body(stack: Any, per_plane: bool = True, **kwargs: Any) -> Any:
        from hcsfs.pipelines.builtins import _alongside

        arrays = {k: _alongside(kwargs.pop(k), stack, memory_type) for k in array_names
                  if kwargs.get(k) is not None}
        for k in array_names:
            kwargs.pop(k, None)
        if memory_type is M.PYCLESPERANTO:
            return _cle_call(definition, target, stack, per_plane, kwargs, arrays)
        xp = _xp_of(memory_type)
        for key in arrays:
            arrays[key] = _bool_mask(arrays[key], definition, key, xp)
        def apply(data: Any, extra: dict[str, Any]) -> Any:
            return call_library(definition, memory_type, target, data, kwargs, extra)

        return _planes(stack, per_plane, arrays, apply, xp)

    def variant(recovery: str) -> Callable[..., Any]:
        def run(stack: Any, **kwargs: Any) -> Any:
            return body(stack, **kwargs)

        run.__name__ = run.__qualname__ = f"{definition.name}[{memory_type.value}]"
        return hm.memory_types(memory_type, oom_recovery=recovery)(run)

    split, whole = variant("split" if not array_names else "cpu"), variant("cpu")

    def implementation(stack: Any, *, per_plane: bool = True, **kwargs: Any) -> Any:
        chosen = split if per_plane else whole
        return chosen(stack, per_plane=per_plane, **kwargs)

    implementation.__name__ = implementation.__qualname__ = f"{definition.name}[{memory_type.value}]"
    implementation.memory_spec = hm.memory_spec(split)  # type: ignore[attr-defined]
    return implementation


def _bool_mask(value: Any, definition: LibraryFunction, key: str, xp: Any) -> Any:
    if dict(definition.array_kinds).get(key) == "mask" and value.dtype in (xp.uint8, xp.bool_):
        return value != 0
    return value


def _cle_call(definition: LibraryFunction, target: str, stack: Any, per_plane: bool, kwargs: dict[str, Any],
              arrays: dict[str, Any]) -> Any:
    cle = hm.import_framework(M.PYCLESPERANTO)
    func = _resolve(target)
    call = {}
    for key, value in kwargs.items():
        call[key] = cle.push(value.array().astype(np.float32)) if isinstance(value, Footprint) else value
    if not per_plane:
        return func(stack, **arrays, **call)
    planes = [func(stack[z], **{k: v[z] for k, v in arrays.items()}, **call) for z in range(stack.shape[0])]
    out = cle.create((stack.shape[0], *planes[0].shape), dtype=planes[0].dtype)
    for z, plane in enumerate(planes):
        out[z] = plane
    return out
