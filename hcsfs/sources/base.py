"""The read protocol every plate format implements, and the records it hands out.

A source is synchronous and cheap to open: listing keys may touch the plate's index, but ``info`` and
``read_plane`` of one plane touch only that plane (the FUSE layer calls them from worker threads when
``blocking_info`` says they do I/O).

A source *declares* its fast paths (metadata already known, planes held in memory, a decoded-data cache
of its own, frozen while mounted, per-well listing) as members of :class:`PlateSource`; the mount and
every view over a source read those members, never ``getattr`` guesses. :class:`SourceDefaults` gives
the conservative defaults: inherit it and override what holds for the format.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hcsfs.errors import HcsfsError, NotAPlaneError, PlaneNotFoundError, PlaneReadError
from hcsfs.naming import PlaneKey, parse_well

if TYPE_CHECKING:
    import numpy as np

    from hcsfs.tiff import TiffLayout

__all__ = ["Listed", "PlaneInfo", "PlateDescription", "PlateSource", "SourceDefaults", "plate_summary"]


log = logging.getLogger("hcsfs.sources")

Listed = tuple[PlaneKey, int, "int | None"]
"""A plane as a listing shows it: key, size of the served file, modification time (ns)."""


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
    caches_planes: bool
    """Keeps decoded data itself (in RAM, or a chunk cache that got the ``--cache-size`` budget): the
    mount adds no plane cache of its own, which would hold the same pixels twice."""
    planes_in_memory: bool
    """Planes are already decoded in RAM: nothing to decode ahead of a reader."""
    frozen: bool
    """Its planes do not change while mounted (the plate itself; not a run's outputs): a passed-through
    file whose status changed after the mount began is refused rather than served mixed."""

    def keys(self) -> Iterable[PlaneKey]:
        """All plane keys, in natural plate order."""
        ...

    def info(self, key: PlaneKey) -> PlaneInfo:
        """One plane's info; raises :class:`~hcsfs.errors.PlaneNotFoundError`."""
        ...

    def info_ready(self, key: PlaneKey) -> PlaneInfo | None:
        """:meth:`info` when it is known without I/O (metadata already read; it may raise as ``info``
        does), else ``None`` ("ask ``info``"): the mount then answers without a worker-thread trip."""
        ...

    def listed(self) -> Iterable[Listed]:
        """Every plane as ``(key, size, mtime_ns)`` in :meth:`keys` order, for listings: the sizes and
        times :meth:`info` gives, without building each plane's info where the format knows them per
        field. A plane whose metadata cannot be read is listed with size 0 and time ``None`` (opening
        it reports why); a key that is not a plane is left out."""
        ...

    def wells(self) -> Sequence[str] | None:
        """The plate's wells from its own index, or ``None`` when only a pass over :meth:`keys` tells."""
        ...

    def well_keys(self, well: str) -> Iterable[PlaneKey]:
        """One well's keys in natural order (from the source's own index where :meth:`wells` has one)."""
        ...

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        """One plane's pixels as a 2-D array; raises ``PlaneNotFoundError``/``PlaneReadError``."""
        ...

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        """``(shape, dtype, pixel_size_um)`` of one plane, reading no more than its header."""
        ...

    def describe(self) -> PlateDescription:
        """Plate-level metadata (format, channel names, pixel size, skipped and missing entries)."""
        ...

    def close(self) -> None:
        ...


class SourceDefaults:
    """The optional members of :class:`PlateSource` at their conservative values: metadata needs I/O,
    no cache or planes of its own, frozen while mounted, no well index."""

    blocking_info: bool = True
    caches_planes: bool = False
    planes_in_memory: bool = False
    frozen: bool = True

    def keys(self) -> Iterable[PlaneKey]:
        raise NotImplementedError

    def info(self, key: PlaneKey) -> PlaneInfo:
        raise NotImplementedError

    def info_ready(self, key: PlaneKey) -> PlaneInfo | None:
        """A source whose ``info`` does no I/O answers every plane now; others have nothing ready."""
        return None if self.blocking_info else self.info(key)

    def listed(self) -> Iterator[Listed]:
        for key in self.keys():
            try:
                info = self.info(key)
            except (NotAPlaneError, PlaneNotFoundError):
                continue  # not a plane, or gone since the listing began (a replaced run's outputs)
            except PlaneReadError as exc:
                log.warning("%s", exc)
                yield key, 0, None
                continue
            yield key, info.size, info.mtime_ns

    def wells(self) -> Sequence[str] | None:
        return None

    def well_keys(self, well: str) -> Iterable[PlaneKey]:
        return [key for key in self.keys() if key.well == well]


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
