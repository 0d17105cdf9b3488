"""Planes held in RAM: the reference source, used by tests, ``make demo`` and pipeline outputs.

Writable from Python while mounted: :meth:`MemoryPlate.add` makes a plane visible to the next lookup or
listing. Arrays are copied and frozen on ``add``, so a served file never changes under an open handle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from hcsfs.errors import PlaneNotFoundError
from hcsfs.naming import PlaneKey, parse_name, sort_key
from hcsfs.sources.base import Listed, PlaneInfo, PlateDescription, SourceDefaults
from hcsfs.tiff import plan_tiff

if TYPE_CHECKING:
    from hcsfs.tiff import TiffLayout

__all__ = ["MemoryPlate"]


class MemoryPlate(SourceDefaults):
    """A plate whose planes are numpy arrays in memory."""

    format_name = "memory"
    blocking_info = False
    caches_planes = True
    """Planes are already decoded in RAM: the mount serves them without a plane cache of its own."""
    planes_in_memory = True
    """Nothing to decode ahead of a reader."""

    def __init__(
        self,
        planes: Mapping[PlaneKey | str, np.ndarray] | None = None,
        *,
        pixel_size_um: float | None = None,
        channel_names: Mapping[int, str] | None = None,
        name: str = "memory",
    ) -> None:
        self.pixel_size_um = pixel_size_um
        self.channel_names = dict(channel_names or {})
        self.name = name
        self._planes: dict[PlaneKey, tuple[np.ndarray, TiffLayout, int]] = {}
        self._sorted: list[PlaneKey] | None = []
        self._lock = threading.Lock()
        for key, array in (planes or {}).items():
            self.add(key, array)

    def add(self, key: PlaneKey | str, array: np.ndarray) -> PlaneKey:
        """Store (a frozen copy of) a 2-D plane under ``key``; replaces an existing plane."""
        key = parse_name(key) if isinstance(key, str) else key
        plane = np.array(array, copy=True, order="C")
        if plane.ndim != 2:
            raise ValueError(f"{key.name}: a plane must be 2-D, got shape {plane.shape}")
        plane.setflags(write=False)
        layout = plan_tiff(plane.shape, plane.dtype, self.pixel_size_um)  # type: ignore[arg-type]
        with self._lock:
            if key not in self._planes:
                self._sorted = None
            self._planes[key] = (plane, layout, time.time_ns())
        return key

    def remove(self, key: PlaneKey) -> None:
        with self._lock:
            if self._planes.pop(key, None) is not None:
                self._sorted = None

    def __len__(self) -> int:
        return len(self._planes)

    def keys(self) -> list[PlaneKey]:
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._planes, key=sort_key)
            return self._sorted

    def listed(self) -> Iterator[Listed]:
        """Sizes and times straight from the stored layouts (no info built per plane)."""
        planes = self._planes
        for key in self.keys():
            entry = planes.get(key)
            if entry is not None:
                yield key, entry[1].size, entry[2]

    def _get(self, key: PlaneKey) -> tuple[np.ndarray, TiffLayout, int]:
        try:
            return self._planes[key]
        except KeyError:
            raise PlaneNotFoundError(f"{key.name}: no such plane in {self.name}") from None

    def info(self, key: PlaneKey) -> PlaneInfo:
        _, layout, mtime_ns = self._get(key)
        channel_name = self.channel_names.get(key.channel) if isinstance(key.channel, int) else None
        return PlaneInfo(
            key=key, size=layout.size, mtime_ns=mtime_ns, layout=layout,
            channel_name=channel_name, pixel_size_um=self.pixel_size_um,
        )

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        return self._get(key)[0]

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        plane = self._get(key)[0]
        return (plane.shape[0], plane.shape[1]), plane.dtype.str.lstrip("<>|="), self.pixel_size_um

    def describe(self) -> PlateDescription:
        return PlateDescription(
            format=self.format_name, source=self.name, channel_names=dict(self.channel_names),
            pixel_size_um=self.pixel_size_um,
        )

    def close(self) -> None:
        """Nothing to release; the planes stay usable."""
