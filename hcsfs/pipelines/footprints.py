"""Structuring elements written as data: ``footprint: {disk: 5}``, ``{square: 3}``, ``{ball: 2}``.

A spec never passes an array: it names a shape and its size, and hcsfs builds the array with numpy
(the same elements as :mod:`skimage.morphology`'s ``disk``, ``square``, ... : the tests compare them).
Sizes are bounded so that no footprint holds more than a few thousand elements: the cost of a
morphological filter grows with the element count, and a hostile spec must not ask for hours.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcsfs.errors import SpecError

__all__ = ["FOOTPRINTS", "Footprint", "build_footprint", "parse_footprint"]


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy <= r * r).astype(np.uint8)


def _diamond(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (np.abs(xx) + np.abs(yy) <= r).astype(np.uint8)


def _ball(r: int) -> np.ndarray:
    zz, yy, xx = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy + zz * zz <= r * r).astype(np.uint8)


def _octahedron(r: int) -> np.ndarray:
    zz, yy, xx = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (np.abs(xx) + np.abs(yy) + np.abs(zz) <= r).astype(np.uint8)


@dataclass(frozen=True, slots=True)
class _Shape:
    ndim: int
    sizes: int
    """How many integers it takes (``rectangle: [rows, columns]``: 2)."""
    low: int
    high: int
    build: Callable[..., np.ndarray]
    doc: str


FOOTPRINTS: dict[str, _Shape] = {
    "disk": _Shape(2, 1, 0, 25, _disk, "radius r: pixels within r of the centre (Euclidean)"),
    "diamond": _Shape(2, 1, 0, 25, _diamond, "radius r: pixels within r of the centre (city block)"),
    "square": _Shape(2, 1, 1, 51, lambda n: np.ones((n, n), np.uint8), "side n"),
    "rectangle": _Shape(2, 2, 1, 51, lambda r, c: np.ones((r, c), np.uint8), "[rows, columns]"),
    "ball": _Shape(3, 1, 0, 10, _ball, "radius r (3-D: needs per_plane: false)"),
    "octahedron": _Shape(3, 1, 0, 10, _octahedron, "radius r (3-D, city block; needs per_plane: false)"),
    "cube": _Shape(3, 1, 1, 21, lambda n: np.ones((n, n, n), np.uint8),
                   "side n (3-D; needs per_plane: false)"),
}
"""Footprint shapes: name -> dimensionality, size bounds (at most 2,601 elements in 2-D, 9,261 in 3-D)."""


@dataclass(frozen=True, slots=True)
class Footprint:
    """A checked footprint argument: its shape's name and sizes; :meth:`array` builds it."""

    shape: str
    sizes: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return FOOTPRINTS[self.shape].ndim

    def array(self) -> np.ndarray:
        return build_footprint(self)

    def __str__(self) -> str:
        size = self.sizes[0] if len(self.sizes) == 1 else list(self.sizes)
        return f"{{{self.shape}: {size}}}"


def build_footprint(footprint: Footprint) -> np.ndarray:
    """The ``uint8`` 0/1 array of ``footprint``."""
    return FOOTPRINTS[footprint.shape].build(*footprint.sizes)


def parse_footprint(value: Any, where: str) -> Footprint:
    """A spec's ``{disk: 5}`` as a :class:`Footprint`, or :class:`SpecError` naming ``where``."""
    if isinstance(value, Footprint):
        return value
    names = ", ".join(FOOTPRINTS)
    if not isinstance(value, dict) or len(value) != 1:
        raise SpecError(where, f"a footprint is one shape and its size, e.g. {{disk: 5}} (shapes: {names})")
    (shape, size), = value.items()
    spec = FOOTPRINTS.get(shape)
    if spec is None:
        raise SpecError(f"{where}.{shape}"[:200], f"unknown footprint shape (shapes: {names})")
    sizes = size if isinstance(size, list) else [size]
    if len(sizes) != spec.sizes:
        raise SpecError(f"{where}.{shape}", f"takes {spec.sizes} integer{'s' if spec.sizes > 1 else ''}: "
                                            f"{spec.doc}")
    for item in sizes:
        if isinstance(item, bool) or not isinstance(item, int):
            raise SpecError(f"{where}.{shape}", f"sizes are integers, not {type(item).__name__}")
        if not spec.low <= item <= spec.high:
            raise SpecError(f"{where}.{shape}", f"{item} is not in [{spec.low}, {spec.high}]")
    return Footprint(shape, tuple(sizes))


def footprint_elements(footprint: Footprint) -> int:
    """How many elements the footprint's bounding box holds (for messages and tests)."""
    return math.prod(build_footprint(footprint).shape)
