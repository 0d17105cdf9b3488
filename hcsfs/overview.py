"""Whole-plate overview pictures: one montage per channel, wells in plate geometry.

Each well shows a downsampled mosaic of its sites (first z and t of the plate), contrast-stretched per
channel, with a gap of background between wells and a thinner one between sites. The picture's
geometry (and so the served file's size) follows from the plane keys and the first plane's header
alone, so ``stat`` can answer before a pixel is decoded; :func:`render_overview` does the reading.

Choices (documented in ``docs/clients.md``):

- Plate grid: the smallest standard plate (96 = 8 x 12, 384 = 16 x 24, 1536 = 32 x 48) holding every
  well present; past 1536 wells' rows or columns, the wells' own extent. So a plate with a few wells
  still shows them where they sit on a 96-well plate.
- Sites: numbered sites laid out in raster order on a near-square grid (``ceil(sqrt(n))`` columns);
  instrument positions are not used (sites may overlap or be sparse).
- Scale: one integer block-mean factor for the whole plate, the smallest that keeps the montage within
  ``max_side`` pixels (default 4096) on both axes.
- Pixels: ``uint8``; per channel, the 0.5th..99.5th percentile of the downsampled sites maps to 1..255;
  0 is a site that is missing or could not be read, :data:`EMPTY_WELL_VALUE` a well the plate does
  not have, :data:`GAP_VALUE` the lines between wells.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hcsfs.naming import PlaneKey, parse_well

if TYPE_CHECKING:
    from hcsfs.sources.base import PlateSource

__all__ = ["EMPTY_WELL_VALUE", "GAP_VALUE", "OverviewGeometry", "overview_geometry", "overview_png",
           "render_overview"]

log = logging.getLogger("hcsfs.overview")

STANDARD_PLATES = ((8, 12), (16, 24), (32, 48))
"""(rows, columns) of the plate grids tried in order; 6..48-well plates are drawn on the 96 grid."""
GAP_VALUE = 48
"""Grey of the lines between wells: dark enough not to compete with signal."""
EMPTY_WELL_VALUE = 16
"""Wells of the grid the plate does not have (a present well's missing site stays 0)."""
WELL_GAP = 4
SITE_GAP = 1
DEFAULT_MAX_SIDE = 4096
PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True, slots=True)
class OverviewGeometry:
    """Where everything goes in the overview picture; computed without decoding pixels."""

    plate_rows: int
    plate_cols: int
    wells: tuple[str, ...]
    """Wells present, in plate order."""
    sites: tuple[int, ...]
    """Numbered sites present (sorted); site ``sites[i]`` goes to mosaic cell ``i``."""
    site_rows: int
    site_cols: int
    channels: tuple[int | str, ...]
    z: int | str
    t: int | str
    plane_shape: tuple[int, int]
    factor: int
    """Block-mean downsampling factor applied to each site."""
    tile_shape: tuple[int, int]
    """One downsampled site."""
    well_gap: int
    site_gap: int
    dtype: str = "uint8"
    pixel_size_um: float | None = None
    """Pixel size inside a site tile (source pixel size times ``factor``); gaps break distances."""

    @property
    def well_shape(self) -> tuple[int, int]:
        th, tw = self.tile_shape
        return (self.site_rows * th + (self.site_rows - 1) * self.site_gap,
                self.site_cols * tw + (self.site_cols - 1) * self.site_gap)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the picture: wells with a gap between and around them."""
        wh, ww = self.well_shape
        return (self.plate_rows * wh + (self.plate_rows + 1) * self.well_gap,
                self.plate_cols * ww + (self.plate_cols + 1) * self.well_gap)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize

    def well_origin(self, well: str) -> tuple[int, int]:
        """(y, x) of the top-left pixel of ``well``'s mosaic."""
        row, col = parse_well(well)
        wh, ww = self.well_shape
        return (self.well_gap + (row - 1) * (wh + self.well_gap),
                self.well_gap + (col - 1) * (ww + self.well_gap))

    def site_origin(self, well: str, site: int) -> tuple[int, int]:
        """(y, x) of the top-left pixel of ``site`` of ``well``."""
        y, x = self.well_origin(well)
        cell = self.sites.index(site)
        row, col = divmod(cell, self.site_cols)
        th, tw = self.tile_shape
        return y + row * (th + self.site_gap), x + col * (tw + self.site_gap)


def _axis_first(values: Iterable[int | str]) -> int | str:
    """The first value in plate order: the smallest index, else the first reduction name."""
    return min(values, key=lambda v: (0, v, "") if isinstance(v, int) else (1, 0, v))


def _plate_grid(rows: int, cols: int) -> tuple[int, int]:
    for plate_rows, plate_cols in STANDARD_PLATES:
        if rows <= plate_rows and cols <= plate_cols:
            return plate_rows, plate_cols
    return rows, cols


def overview_geometry(source: PlateSource, *, max_side: int = DEFAULT_MAX_SIDE,
                      keys: Iterable[PlaneKey] | None = None) -> OverviewGeometry:
    """The overview's layout for ``source``: one pass over the keys and one plane header.

    Raises ``ValueError`` for a plate with no planes (there is nothing to draw).
    """
    wells: set[str] = set()
    sites: set[int] = set()
    channels: set[int | str] = set()
    zs: set[int | str] = set()
    ts: set[int | str] = set()
    first: PlaneKey | None = None
    for key in source.keys() if keys is None else keys:
        first = first or key
        wells.add(key.well)
        if isinstance(key.site, int):
            sites.add(key.site)
        channels.add(key.channel)
        zs.add(key.z)
        ts.add(key.t)
    if first is None or not sites:
        raise ValueError("the plate has no planes to draw an overview of")
    positions = [parse_well(w) for w in wells]
    plate_rows, plate_cols = _plate_grid(max(r for r, _ in positions), max(c for _, c in positions))
    site_cols = math.ceil(math.sqrt(len(sites)))
    site_rows = math.ceil(len(sites) / site_cols)
    shape, _dtype, pixel_size = source.plane_format(first)
    height, width = int(shape[0]), int(shape[1])
    # Space left for pixels once the gaps are drawn, per axis; the factor makes both fit.
    room_y = max_side - (plate_rows + 1) * WELL_GAP - plate_rows * (site_rows - 1) * SITE_GAP
    room_x = max_side - (plate_cols + 1) * WELL_GAP - plate_cols * (site_cols - 1) * SITE_GAP
    per_tile_y = max(1, room_y // (plate_rows * site_rows))
    per_tile_x = max(1, room_x // (plate_cols * site_cols))
    factor = max(1, math.ceil(height / per_tile_y), math.ceil(width / per_tile_x))
    tile = (max(1, height // factor), max(1, width // factor))
    return OverviewGeometry(
        plate_rows=plate_rows, plate_cols=plate_cols,
        wells=tuple(sorted(wells, key=parse_well)), sites=tuple(sorted(sites)),
        site_rows=site_rows, site_cols=site_cols,
        channels=tuple(sorted(channels, key=lambda v: (0, v, "") if isinstance(v, int) else (1, 0, v))),
        z=_axis_first(zs), t=_axis_first(ts), plane_shape=(height, width), factor=factor,
        tile_shape=tile, well_gap=WELL_GAP, site_gap=SITE_GAP,
        pixel_size_um=None if pixel_size is None else pixel_size * factor,
    )


def downsample(plane: np.ndarray, factor: int, tile_shape: tuple[int, int]) -> np.ndarray:
    """Block mean over ``factor`` x ``factor`` blocks, cropped or zero-padded to ``tile_shape``."""
    data = np.asarray(plane, dtype=np.float32)
    th, tw = tile_shape
    h, w = (data.shape[0] // factor) * factor, (data.shape[1] // factor) * factor
    if h == 0 or w == 0:
        return np.full(tile_shape, np.nan, np.float32)
    small = data[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    out = np.full(tile_shape, np.nan, np.float32)
    out[: min(th, small.shape[0]), : min(tw, small.shape[1])] = small[:th, :tw]
    return out


def _stretch(tiles: dict[tuple[str, int], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Percentile contrast stretch shared by the whole channel, to 1..255 (NaN -> 0)."""
    values = np.concatenate([t[np.isfinite(t)] for t in tiles.values()]) if tiles else np.empty(0)
    if values.size == 0:
        low, high = 0.0, 1.0
    else:
        low, high = (float(v) for v in np.percentile(values, PERCENTILES))
    span = high - low if high > low else 1.0

    def apply(tile: np.ndarray) -> np.ndarray:
        scaled = np.clip((tile - low) / span, 0.0, 1.0) * 254.0 + 1.0
        return np.where(np.isfinite(tile), np.rint(scaled), 0).astype(np.uint8)

    return apply


def render_overview(
    source: PlateSource, channel: int | str, geometry: OverviewGeometry, *,
    workers: int = 4, progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The overview picture of ``channel``: ``geometry.shape``, ``uint8``.

    Reads the first z and t of every site of every well (``workers`` planes at a time); a plane that is
    missing or fails to read is logged and left black.
    """
    keys = [PlaneKey(well, site, channel, geometry.z, geometry.t)
            for well in geometry.wells for site in geometry.sites]

    def load(key: PlaneKey) -> tuple[PlaneKey, np.ndarray | None]:
        try:
            return key, downsample(source.read_plane(key), geometry.factor, geometry.tile_shape)
        except (KeyError, OSError, ValueError) as exc:  # PlaneNotFoundError is a KeyError
            log.debug("overview w%s: %s left empty: %s", channel, key.name, exc)
            return key, None

    tiles: dict[tuple[str, int], np.ndarray] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="hcsfs-overview") as pool:
        for done, (key, tile) in enumerate(pool.map(load, keys), 1):
            if tile is not None:
                tiles[(key.well, key.site)] = tile  # type: ignore[index]
            if progress is not None:
                progress(done, len(keys))
    missing = len(keys) - len(tiles)
    if missing:
        log.info("overview w%s: %d of %d sites missing or unreadable", channel, missing, len(keys))
    picture = _background(geometry)
    stretch = _stretch(tiles)
    th, tw = geometry.tile_shape
    for (well, site), tile in tiles.items():
        y, x = geometry.site_origin(well, site)
        picture[y : y + th, x : x + tw] = stretch(tile)
    return picture


def _background(geometry: OverviewGeometry) -> np.ndarray:
    """Gap-grey lines, dark grey for wells the plate lacks, black where present wells go."""
    picture = np.full(geometry.shape, GAP_VALUE, np.uint8)
    wh, ww = geometry.well_shape
    present = {parse_well(well) for well in geometry.wells}
    for row in range(1, geometry.plate_rows + 1):
        for col in range(1, geometry.plate_cols + 1):
            y = geometry.well_gap + (row - 1) * (wh + geometry.well_gap)
            x = geometry.well_gap + (col - 1) * (ww + geometry.well_gap)
            picture[y : y + wh, x : x + ww] = 0 if (row, col) in present else EMPTY_WELL_VALUE
    return picture


def overview_png(array: np.ndarray) -> bytes:
    """``array`` (uint8 or uint16, 2-D) as PNG bytes; the same array always gives the same bytes."""
    import io

    from PIL import Image

    if array.ndim != 2 or array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2-D uint8 or uint16 array, got {array.dtype} {array.shape}")
    buffer = io.BytesIO()  # Pillow picks mode L for uint8 and I;16 for uint16
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
