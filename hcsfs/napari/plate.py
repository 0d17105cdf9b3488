"""Lazy arrays over a plate for napari: one well as ``(site, z, y, x)``, the whole plate as a pyramid.

Nothing here imports napari or Qt: the arrays are dask arrays whose chunks are single planes (a well) or
single sites (the montage), computed only when napari slices them, so a layer decodes only the planes
its current view needs.

The montage reuses :mod:`hcsfs.overview`'s geometry (plate grid, near-square site mosaic, gaps between
wells and sites) at power-of-two levels: level ``k`` is level 0 downsampled ``2**k`` times, level 0 is
full resolution, and the top level fits the overview's 4096 px. To make every level an exact
downsample, each site gets a slot of a multiple of ``2**top`` pixels (the plane at its top-left, the
rest 0) and the gaps at level 0 are the overview's gaps times ``2**top``. There are at least two
levels. Pixel values are the plate's
own (block means for images, nearest samples for labels), so one contrast setting fits every level.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hcsfs.errors import HcsfsError, PlaneNameError, PlaneNotFoundError
from hcsfs.naming import PlaneKey, format_well, parse_name, parse_well, sort_key
from hcsfs.overview import SITE_GAP, WELL_GAP, OverviewGeometry, overview_geometry
from hcsfs.sources.base import PlaneInfo, PlateDescription, SourceDefaults
from hcsfs.sources.tiffprobe import read_tiff_format, read_tiff_plane

if TYPE_CHECKING:
    import dask.array as da

    from hcsfs.sources.base import PlateSource

__all__ = ["FlatFolder", "Montage", "PlateLayout", "is_mount_root", "montage_levels", "resolver",
           "sample_limits", "well_array"]

log = logging.getLogger("hcsfs.napari")

Index = int | str
_token = itertools.count(1)


def axis_sorted(values: Iterable[Index]) -> tuple[Index, ...]:
    """Indexes first (ascending), then reduction names (``zmax``), as hcsfs orders axes."""
    return tuple(sorted(set(values), key=lambda v: (0, v, "") if isinstance(v, int) else (1, 0, v)))


def is_mount_root(path: Path) -> bool:
    """A folder served by hcsfs (it has ``.hcsfs/plate.json``)."""
    return (path / ".hcsfs" / "plate.json").is_file()


class FlatFolder(SourceDefaults):
    """The planes of one folder of a mount (its root or a run's result folder), read as files.

    Lists the folder once, names only, and leaves out what is not a plane name (run folders, hidden
    control folders) without a word; the description comes from the mount's ``.hcsfs/plate.json``.
    """

    format_name = "hcsfs-mount"
    blocking_info = True

    def __init__(self, folder: Path, plate_json: Mapping[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        keys: list[PlaneKey] = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.endswith(".tif"):
                    continue
                try:
                    keys.append(parse_name(entry.name))
                except PlaneNameError:
                    continue
        self._keys = sorted(keys, key=sort_key)
        self._known = frozenset(self._keys)
        plate = dict(plate_json or {})
        names = {int(c["index"]): c["name"] for c in plate.get("channels", [])
                 if isinstance(c.get("index"), int) and c.get("name")}
        self._description = PlateDescription(
            format=str(plate.get("format") or self.format_name), source=str(self.folder),
            channel_names=names, pixel_size_um=plate.get("pixel_size_um"))

    @classmethod
    def mount_root(cls, root: Path) -> FlatFolder:
        return cls(root, json.loads((root / ".hcsfs" / "plate.json").read_text(encoding="utf-8")))

    def keys(self) -> list[PlaneKey]:
        return self._keys

    def _path(self, key: PlaneKey) -> Path:
        if key not in self._known:
            raise PlaneNotFoundError(f"{key.name}: no such plane in {self.folder}")
        return self.folder / key.name

    def info(self, key: PlaneKey) -> PlaneInfo:
        path = self._path(key)
        stat = path.stat()
        return PlaneInfo(key=key, size=stat.st_size, mtime_ns=stat.st_mtime_ns, passthrough=path,
                         pixel_size_um=self._description.pixel_size_um)

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        return read_tiff_plane(self._path(key))

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        shape, dtype, pixel_size = read_tiff_format(self._path(key))
        return shape, dtype, self._description.pixel_size_um or pixel_size

    def describe(self) -> PlateDescription:
        return self._description

    def close(self) -> None:
        """Holds no open files."""


@dataclass(frozen=True)
class PlateLayout:
    """The axes of a plate (or of a run's results) and its planes' format; one pass over the keys."""

    wells: tuple[str, ...]
    sites: tuple[int, ...]
    channels: tuple[Index, ...]
    zs: tuple[Index, ...]
    ts: tuple[Index, ...]
    plane_shape: tuple[int, int]
    dtype: np.dtype
    pixel_size_um: float | None
    channel_names: Mapping[int, str]

    @classmethod
    def of(cls, source: PlateSource, keys: Iterable[PlaneKey] | None = None) -> PlateLayout:
        """Raises ``ValueError`` for a plate without (numbered) sites: nothing to show."""
        wells: set[str] = set()
        sites: set[int] = set()
        channels: set[Index] = set()
        zs: set[Index] = set()
        ts: set[Index] = set()
        first: PlaneKey | None = None
        for key in source.keys() if keys is None else keys:
            if not isinstance(key.site, int):
                continue
            first = first or key
            wells.add(key.well)
            sites.add(key.site)
            channels.add(key.channel)
            zs.add(key.z)
            ts.add(key.t)
        if first is None:
            raise ValueError("the plate has no planes to show")
        shape, dtype, pixel_size = source.plane_format(first)
        description = source.describe()
        return cls(
            wells=tuple(sorted(wells, key=parse_well)), sites=tuple(sorted(sites)),
            channels=axis_sorted(channels), zs=axis_sorted(zs), ts=axis_sorted(ts),
            plane_shape=(int(shape[0]), int(shape[1])), dtype=np.dtype(dtype),
            pixel_size_um=description.pixel_size_um or pixel_size,
            channel_names=dict(description.channel_names),
        )

    @property
    def axes(self) -> tuple[str, ...]:
        """Axes of a well's arrays: ``(t,) site, z, y, x`` (t only when the plate has several)."""
        return ("t", "site", "z", "y", "x") if len(self.ts) > 1 else ("site", "z", "y", "x")

    @property
    def scale(self) -> tuple[float, ...]:
        pixel = self.pixel_size_um or 1.0
        return (*([1.0] * (len(self.axes) - 2)), pixel, pixel)

    def channel_label(self, channel: Index) -> str:
        name = self.channel_names.get(channel) if isinstance(channel, int) else None
        return name or f"w{channel}"


class _FormatOnly:
    """Enough of a PlateSource for :func:`overview_geometry`: the format of any plane."""

    def __init__(self, layout: PlateLayout) -> None:
        self._format = (layout.plane_shape, layout.dtype.str.lstrip("<>|="), layout.pixel_size_um)

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        return self._format


Resolver = Callable[[PlaneKey], PlaneKey | None]


def resolver(keys: Iterable[PlaneKey], *, any_z: bool = False) -> Resolver:
    """A lookup of wanted keys among ``keys`` (None: not there).

    ``any_z``: a result with one z value (a projection's ``zmax``, or one plane per site) shows at every
    z of the plate; otherwise a plane shows at its own z only.
    """
    known = frozenset(keys)
    zs = {key.z for key in known}
    only = next(iter(zs)) if any_z and len(zs) == 1 else None

    def resolve(key: PlaneKey) -> PlaneKey | None:
        if key in known:
            return key
        if only is not None:
            moved = PlaneKey(key.well, key.site, key.channel, only, key.t)
            return moved if moved in known else None
        return None

    return resolve


def _fit(plane: np.ndarray, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """``plane`` cropped or zero-padded to ``shape`` (a plane of another size must not break a chunk)."""
    plane = np.asarray(plane)
    if plane.shape == shape and plane.dtype == dtype:
        return plane
    out = np.zeros(shape, dtype)
    h, w = min(shape[0], plane.shape[0]), min(shape[1], plane.shape[1])
    out[:h, :w] = plane[:h, :w]
    return out


def _read(source: PlateSource, key: PlaneKey | None) -> np.ndarray | None:
    if key is None:
        return None
    try:
        return source.read_plane(key)
    except (HcsfsError, KeyError, OSError, ValueError) as exc:  # shown as black, said in the log
        log.warning("napari: %s left empty: %s", key.name, exc)
        return None


def well_array(source: PlateSource, layout: PlateLayout, resolve: Resolver, well: str, channel: Index, *,
               dtype: np.dtype | None = None, label: str = "well") -> da.Array:
    """``(t,) site, z, y, x`` of ``well`` and ``channel``: one chunk per plane, read when sliced.

    ``resolve`` maps a wanted key to the key to read (see :func:`resolver`); a plane that is not there
    (or fails to read) is zeros.
    """
    import dask.array as da

    dtype = np.dtype(dtype or layout.dtype)
    has_t = len(layout.ts) > 1
    leading = len(layout.axes) - 2

    def block(block_id: tuple[int, ...] | None = None) -> np.ndarray:
        assert block_id is not None
        t = layout.ts[block_id[0]] if has_t else layout.ts[0]
        site, z = layout.sites[block_id[-4]], layout.zs[block_id[-3]]
        plane = _read(source, resolve(PlaneKey(well, site, channel, z, t)))
        out = np.zeros(layout.plane_shape, dtype) if plane is None else _fit(plane, layout.plane_shape, dtype)
        return out.reshape((1,) * leading + layout.plane_shape)

    counts = ([len(layout.ts)] if has_t else []) + [len(layout.sites), len(layout.zs)]
    chunks = tuple((1,) * n for n in counts) + ((layout.plane_shape[0],), (layout.plane_shape[1],))
    name = f"hcsfs-{label}-{well}-w{channel}-{next(_token)}"
    return da.map_blocks(block, dtype=dtype, chunks=chunks, name=name,
                         meta=np.empty((0,) * len(layout.axes), dtype))


@dataclass(frozen=True)
class Montage:
    """The plate's montage pyramid: one :class:`OverviewGeometry` per level, level ``k`` at ``2**k``."""

    levels: tuple[OverviewGeometry, ...]

    @classmethod
    def of(cls, layout: PlateLayout) -> Montage:
        wells = layout.wells
        keys = [PlaneKey(w, s, layout.channels[0], layout.zs[0], layout.ts[0])
                for w in wells for s in layout.sites]
        top = overview_geometry(_FormatOnly(layout), keys=keys)  # type: ignore[arg-type]
        # At least two levels: napari 0.9.2 cannot make a Labels layer of a one-level pyramid.
        steps = max(1, math.ceil(math.log2(top.factor)))
        step = 2**steps
        height, width = layout.plane_shape
        slot = (math.ceil(height / step) * step, math.ceil(width / step) * step)
        levels = []
        for k in range(steps + 1):
            factor = 2**k
            levels.append(replace(
                top, factor=factor, tile_shape=(slot[0] // factor, slot[1] // factor),
                well_gap=WELL_GAP * (step // factor), site_gap=SITE_GAP * (step // factor),
                dtype=layout.dtype.str, pixel_size_um=None if layout.pixel_size_um is None
                else layout.pixel_size_um * factor))
        return cls(tuple(levels))

    @property
    def base(self) -> OverviewGeometry:
        return self.levels[0]

    def origin(self, well: str, site: int) -> tuple[int, int]:
        """Level-0 (y, x) of the top-left pixel of ``site`` of ``well``."""
        return self.base.site_origin(well, site)


def _starts(geometry: OverviewGeometry, axis: int) -> list[int]:
    """Where each mosaic cell starts along ``axis`` (0: rows, 1: columns)."""
    cells = geometry.site_rows if axis == 0 else geometry.site_cols
    plates = geometry.plate_rows if axis == 0 else geometry.plate_cols
    tile = geometry.tile_shape[axis]
    well = geometry.well_shape[axis]
    return [geometry.well_gap + p * (well + geometry.well_gap) + c * (tile + geometry.site_gap)
            for p in range(plates) for c in range(cells)]


def _reduce(plane: np.ndarray, factor: int, tile: tuple[int, int], labels: bool,
            dtype: np.dtype) -> np.ndarray:
    """One site at a level: nearest samples (labels) or block means (images), cropped to ``tile``."""
    if factor == 1 or labels:
        small = np.asarray(plane)[::factor, ::factor]
    else:
        data = np.asarray(plane, dtype=np.float32)
        h, w = (data.shape[0] // factor) * factor, (data.shape[1] // factor) * factor
        small = data[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
        if dtype.kind in "iu":
            small = np.rint(small)
    small = small[: tile[0], : tile[1]]
    return small.astype(dtype, copy=False)


def montage_levels(source: PlateSource, layout: PlateLayout, resolve: Resolver, montage: Montage,
                   channel: Index, *, labels: bool = False, dtype: np.dtype | None = None,
                   label: str = "montage") -> list[da.Array]:
    """The pyramid of ``channel`` at the plate's first z and t: one chunk per site, read when shown.

    Gaps, wells the plate lacks and missing sites are 0.
    """
    import dask.array as da

    dtype = np.dtype(dtype or layout.dtype)
    present = set(layout.wells)
    z, t = layout.zs[0], layout.ts[0]
    token = next(_token)
    arrays = []
    for geometry in montage.levels:
        ys, xs = _starts(geometry, 0), _starts(geometry, 1)
        height, width = geometry.shape
        ybounds, xbounds = [0, *ys[1:], height], [0, *xs[1:], width]
        chunks = (tuple(np.diff(ybounds).tolist()), tuple(np.diff(xbounds).tolist()))

        def block(block_id: tuple[int, int] | None = None, *, geometry: OverviewGeometry = geometry,
                  ys: list[int] = ys, xs: list[int] = xs, ybounds: list[int] = ybounds,
                  xbounds: list[int] = xbounds) -> np.ndarray:
            assert block_id is not None
            by, bx = block_id
            out = np.zeros((ybounds[by + 1] - ybounds[by], xbounds[bx + 1] - xbounds[bx]), dtype)
            row, site_row = divmod(by, geometry.site_rows)
            col, site_col = divmod(bx, geometry.site_cols)
            cell = site_row * geometry.site_cols + site_col
            well = format_well(row + 1, col + 1)
            if well not in present or cell >= len(geometry.sites):
                return out
            plane = _read(source, resolve(PlaneKey(well, geometry.sites[cell], channel, z, t)))
            if plane is None:
                return out
            small = _reduce(plane, geometry.factor, geometry.tile_shape, labels, dtype)
            oy, ox = ys[by] - ybounds[by], xs[bx] - xbounds[bx]
            out[oy : oy + small.shape[0], ox : ox + small.shape[1]] = small
            return out

        name = f"hcsfs-{label}-w{channel}-{token}-l{geometry.factor}"
        arrays.append(da.map_blocks(block, dtype=dtype, chunks=chunks, name=name,
                                    meta=np.empty((0, 0), dtype)))
    return arrays


def sample_limits(source: PlateSource, key: PlaneKey, dtype: np.dtype) -> tuple[float, float]:
    """Contrast limits from one plane (0.1th..99.9th percentile); the dtype's range if it is flat."""
    plane = _read(source, key)
    if plane is not None and plane.size:
        finite = np.asarray(plane, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            low, high = (float(v) for v in np.percentile(finite, (0.1, 99.9)))
            if high > low:
                return low, high
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0
