"""Views of a source that keep huge plates usable: a selection (``--select channel=1,t=1-10``) and an
index of the plate's planes by well (for ``/.by-well/A01/``).

Both wrap any :class:`~hcsfs.sources.base.PlateSource` without copying its planes. A plane outside a
selection is simply not there (``PlaneNotFoundError``); wells are read from the source's own well list
when it has one (``wells()``/``well_keys(well)``), else indexed from one pass over its keys.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hcsfs.errors import PlaneNotFoundError
from hcsfs.naming import PlaneKey, parse_well

if TYPE_CHECKING:
    import numpy as np

    from hcsfs.sources.base import PlaneInfo, PlateDescription, PlateSource

__all__ = ["Selection", "parse_selection", "SelectedSource", "WellIndex", "WellSource"]

_AXES = ("well", "site", "channel", "z", "t")


@dataclass(frozen=True, slots=True)
class Selection:
    """Allowed values per axis; an axis not named allows everything."""

    allowed: tuple[tuple[str, frozenset[Any]], ...]

    def __contains__(self, key: PlaneKey) -> bool:
        return all(getattr(key, axis) in values for axis, values in self.allowed)

    def describe(self) -> dict[str, list[Any]]:
        return {axis: sorted(values, key=str) for axis, values in self.allowed}


def _well_range(first: str, last: str) -> set[str]:
    """``A01-B03``: the rectangle of rows A..B and columns 1..3."""
    from hcsfs.naming import format_well

    (r1, c1), (r2, c2) = parse_well(first), parse_well(last)
    return {format_well(r, c) for r in range(min(r1, r2), max(r1, r2) + 1)
            for c in range(min(c1, c2), max(c1, c2) + 1)}


def _values(axis: str, text: str) -> set[Any]:
    values: set[Any] = set()
    for part in text.split("+"):
        low, dash, high = part.partition("-")
        try:
            if axis == "well" and dash:
                values |= _well_range(low, high)
            elif axis == "well":
                parse_well(part)  # only canonical well names
                values.add(part)
            elif dash:
                values |= set(range(int(low), int(high) + 1))
            else:
                values.add(int(part) if part.isdigit() else part)
        except ValueError as exc:
            raise ValueError(f"--select {axis}={text}: {part!r} is not a value or range ({exc})") from None
    return values


def parse_selection(terms: Iterable[str]) -> Selection:
    """``["channel=1,t=1-10", "well=A01-B12+C03"]`` → a :class:`Selection`.

    Terms are ``axis=values`` separated by commas; values are ``v``, ranges ``a-b`` and ``+`` between
    them (wells: ``A01-B12`` is the rectangle A..B x 1..12).
    """
    allowed: dict[str, set[Any]] = {}
    for text in terms:
        for term in filter(None, (t.strip() for t in re.split(r",(?=\s*[a-z]+\s*=)", text))):
            axis, equals, values = term.partition("=")
            axis = axis.strip()
            if not equals or axis not in _AXES:
                raise ValueError(
                    f"--select {term!r}: expected AXIS=VALUES with AXIS one of {', '.join(_AXES)}")
            chosen = _values(axis, values.strip())
            allowed[axis] = allowed[axis] & chosen if axis in allowed else chosen
    return Selection(tuple((axis, frozenset(v)) for axis, v in sorted(allowed.items())))


class SelectedSource:
    """Only the planes of ``source`` inside ``selection``."""

    def __init__(self, source: PlateSource, selection: Selection) -> None:
        self.source = source
        self.selection = selection
        self.format_name = source.format_name
        self.blocking_info = source.blocking_info
        # Declared capabilities are forwarded, so a plane opened through a view takes the same fast
        # path as through the source itself (no worker-thread trip when its metadata is known).
        self.caches_planes = bool(getattr(source, "caches_planes", False))
        self.planes_in_memory = bool(getattr(source, "planes_in_memory", False))
        self._info_ready = getattr(source, "info_ready", None)

    def info_ready(self, key: PlaneKey) -> PlaneInfo | None:
        """The source's metadata-already-known answer (``None`` when it would need I/O)."""
        if self._info_ready is None or key not in self.selection:
            return None
        return self._info_ready(key)  # type: ignore[no-any-return]

    def _check(self, key: PlaneKey) -> None:
        if key not in self.selection:
            raise PlaneNotFoundError(f"{key.name}: outside the mount's --select")

    def keys(self) -> Iterator[PlaneKey]:
        return (key for key in self.source.keys() if key in self.selection)

    def info(self, key: PlaneKey) -> PlaneInfo:
        self._check(key)
        return self.source.info(key)

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        self._check(key)
        return self.source.read_plane(key)

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        return self.source.plane_format(key)

    def describe(self) -> PlateDescription:
        description = self.source.describe()
        description.extra = {**description.extra, "selection": self.selection.describe()}
        return description

    def close(self) -> None:
        self.source.close()


class WellIndex:
    """The plate's wells and each well's keys, from the source's own lists or one pass over keys."""

    def __init__(self, source: PlateSource) -> None:
        self.source = source
        self._by_well: dict[str, list[PlaneKey]] | None = None
        self._lock = threading.Lock()

    def _index(self) -> dict[str, list[PlaneKey]]:
        with self._lock:
            if self._by_well is None:
                by_well: dict[str, list[PlaneKey]] = {}
                for key in self.source.keys():
                    by_well.setdefault(key.well, []).append(key)
                self._by_well = by_well
            return self._by_well

    def wells(self) -> list[str]:
        own = getattr(self.source, "wells", None)
        wells = own() if callable(own) else list(self._index())
        return sorted(wells, key=parse_well)

    def keys(self, well: str) -> Iterable[PlaneKey]:
        own = getattr(self.source, "well_keys", None)
        if callable(own):
            return own(well)  # type: ignore[no-any-return]
        return self._index().get(well, [])


class WellSource(SelectedSource):
    """The planes of one well (``/.by-well/A01/``)."""

    def __init__(self, source: PlateSource, index: WellIndex, well: str) -> None:
        super().__init__(source, Selection((("well", frozenset({well})),)))
        self.index = index
        self.well = well

    def keys(self) -> Iterator[PlaneKey]:
        return iter(self.index.keys(self.well))
