"""The read protocol every plate format implements, and the records it hands out.

A source is synchronous and cheap to open: listing keys may touch the plate's index, but ``info`` and
``read_plane`` of one plane touch only that plane (the FUSE layer calls them from worker threads when
``blocking_info`` says they do I/O).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hcsfs.errors import HcsfsError
from hcsfs.naming import PlaneKey, parse_well

if TYPE_CHECKING:
    import numpy as np

    from hcsfs.tiff import TiffLayout

__all__ = ["PlaneInfo", "PlateDescription", "PlateSource", "plate_summary"]


@dataclass(frozen=True, slots=True)
class PlaneInfo:
    """What the mount needs to present one plane without reading its pixels.

    Exactly one of ``passthrough`` (a single-plane TIFF whose bytes are served unchanged) and
    ``layout`` (the planned TIFF of an encoded plane) is set.
    """

    key: PlaneKey
    size: int
    mtime_ns: int
    passthrough: Path | None = None
    layout: TiffLayout | None = None
    channel_name: str | None = None
    pixel_size_um: float | None = None

    def __post_init__(self) -> None:
        if (self.passthrough is None) == (self.layout is None):
            raise ValueError("a plane is either passed through or encoded, not both or neither")


@dataclass(slots=True)
class PlateDescription:
    """Plate-level facts a source knows beyond its keys (for ``.hcsfs/plate.json``)."""

    format: str
    source: str
    channel_names: dict[int, str] = field(default_factory=dict)
    pixel_size_um: float | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Source entries that are not planes: ``{"path": ..., "reason": ...}``."""
    missing: list[dict[str, str]] = field(default_factory=list)
    """Planes the plate's metadata promises but the storage lacks: ``{"name": ..., "path": ...}``."""
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class PlateSource(Protocol):
    """A plate, whatever it is stored as."""

    format_name: str
    blocking_info: bool
    """Whether :meth:`info` does I/O (then callers on an event loop use a worker thread)."""

    def keys(self) -> Iterable[PlaneKey]:
        """All plane keys, in natural plate order."""
        ...

    def info(self, key: PlaneKey) -> PlaneInfo:
        """One plane's info; raises :class:`~hcsfs.errors.PlaneNotFoundError`."""
        ...

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        """One plane's pixels as a 2-D array; raises ``PlaneNotFoundError``/``PlaneReadError``."""
        ...

    # Optional: ``info_ready(key) -> PlaneInfo | None`` answers without I/O when it can (metadata
    # already read), so the mount skips a trip to a worker thread; None means "ask info()".

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        """``(shape, dtype, pixel_size_um)`` of one plane, reading no more than its header."""
        ...

    def describe(self) -> PlateDescription:
        """Plate-level metadata (format, channel names, pixel size, skipped and missing entries)."""
        ...

    def close(self) -> None:
        ...


_FORMAT_TRIES = 8


def _axis_values(values: set[Any]) -> list[Any]:
    return sorted(values, key=lambda v: (0, v, "") if isinstance(v, int) else (1, 0, v))


def plate_summary(source: PlateSource, keys: Iterable[PlaneKey] | None = None) -> dict[str, Any]:
    """The content of ``.hcsfs/plate.json`` and of ``hcsfs info``: one pass over the keys.

    dtype and shape come from the first readable plane's header (of the first few): one damaged plane
    must not make the whole summary fail.
    """
    description = source.describe()
    wells: set[str] = set()
    axes: dict[str, set[Any]] = {"site": set(), "channel": set(), "z": set(), "t": set()}
    first: list[PlaneKey] = []
    count = 0
    for key in source.keys() if keys is None else keys:
        if len(first) < _FORMAT_TRIES:
            first.append(key)
        count += 1
        wells.add(key.well)
        axes["site"].add(key.site)
        axes["channel"].add(key.channel)
        axes["z"].add(key.z)
        axes["t"].add(key.t)
    shape: list[int] | None = None
    dtype: str | None = None
    pixel_size = description.pixel_size_um
    for key in first:
        try:
            plane_shape, dtype, plane_pixel_size = source.plane_format(key)
        except (HcsfsError, OSError):
            continue  # dtype and shape stay unknown if none of the first planes can be read
        shape = list(plane_shape)
        pixel_size = pixel_size if pixel_size is not None else plane_pixel_size
        break
    channels = [
        {"index": c, "name": description.channel_names.get(c) if isinstance(c, int) else None}
        for c in _axis_values(axes["channel"])
    ]
    return {
        "format": description.format,
        "source": description.source,
        "planes": count,
        "wells": sorted(wells, key=parse_well),
        "sites": _axis_values(axes["site"]),
        "channels": channels,
        "z": _axis_values(axes["z"]),
        "t": _axis_values(axes["t"]),
        "dtype": dtype,
        "shape": shape,
        "pixel_size_um": pixel_size,
        "skipped": description.skipped,
        "missing": description.missing,
        **description.extra,
    }
