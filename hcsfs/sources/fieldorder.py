"""Raster numbering of fields from their stage positions (``--site-order raster``).

Harmony numbers fields in acquisition order, which is often a snake or a spiral. Raster order numbers
them top-left to bottom-right instead. Stage coordinates of one grid row or column are never exactly
equal (they are floats from a moving stage), so positions are grouped into rows and columns by
clustering with a tolerance, never by float equality, and the result is checked to be one-to-one.

The Phenix stage Y axis points up (the index's ``OrientationMatrix`` flips y between stage and image),
so the top row is the one with the largest ``PositionY``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from hcsfs.errors import PlateFormatError
from hcsfs.naming import format_well

if TYPE_CHECKING:
    from hcsfs.sources.phenix import IndexImage

__all__ = ["cluster", "raster_sites"]

_TOLERANCE_OF_FIELD = 0.25
"""Positions closer than this fraction of a field's width belong to one row or column."""
_FALLBACK_TOLERANCE_M = 1e-6


def cluster(values: Iterable[float], tolerance: float) -> dict[float, int]:
    """Each value → the index of its group (ascending); a new group starts after a gap > tolerance."""
    groups: dict[float, int] = {}
    previous: float | None = None
    index = -1
    for value in sorted(set(values)):
        if previous is None or value - previous > tolerance:
            index += 1
        groups[value] = index
        previous = value
    return groups


def _tolerance(facts: Mapping[int, Mapping[str, str]]) -> float:
    widths = []
    for channel in facts.values():
        try:
            widths.append(float(channel["ImageSizeX"]) * float(channel["ImageResolutionX"]))
        except (KeyError, ValueError):
            continue
    return _TOLERANCE_OF_FIELD * min(widths) if widths else _FALLBACK_TOLERANCE_M


def raster_sites(
    images: Iterable[IndexImage], facts: Mapping[int, Mapping[str, str]]
) -> dict[tuple[int, int, int], int]:
    """``(row, col, field)`` → site, 1-based, top-left to bottom-right within each well."""
    positions: dict[tuple[int, int], dict[int, tuple[float, float]]] = {}
    for image in images:
        well = (image.number("Row"), image.number("Col"))
        field = image.number("FieldID")
        if field in positions.get(well, {}):
            continue
        try:
            xy = (float(image.fields["PositionX"]), float(image.fields["PositionY"]))
        except (KeyError, ValueError):
            raise PlateFormatError(
                f"site order raster needs PositionX/PositionY; image {image.fields.get('URL')!r} "
                "has none"
            ) from None
        positions.setdefault(well, {})[field] = xy
    tolerance = _tolerance(facts)
    sites: dict[tuple[int, int, int], int] = {}
    for (row, col), fields in positions.items():
        columns = cluster((x for x, _ in fields.values()), tolerance)
        rows = cluster((-y for _, y in fields.values()), tolerance)  # largest Y is the top row
        cells: dict[tuple[int, int], int] = {}
        for field, (x, y) in fields.items():
            cell = (rows[-y], columns[x])
            other = cells.setdefault(cell, field)
            if other != field:
                raise PlateFormatError(
                    f"well {format_well(row, col)}: fields {other} and {field} fall in the same "
                    f"grid cell (tolerance {tolerance * 1e6:.2f} um); raster order is ambiguous"
                )
        for site, cell in enumerate(sorted(cells), start=1):
            sites[(row, col, cells[cell])] = site
    return sites
