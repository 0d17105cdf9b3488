"""Views of a source that keep huge plates usable: a selection (``--select channel=1,t=1-10``) and an
index of the plate's planes by well (for ``/.by-well/A01/``).

Both wrap any :class:`~hcsfs.sources.base.PlateSource` without copying its planes. A plane outside a
selection is simply not there (``PlaneNotFoundError``); wells are read from the source's own well list
when it has one (``wells()``/``well_keys(well)``), else indexed from one pass over its keys.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hcsfs.errors import PlaneNotFoundError
from hcsfs.naming import PlaneKey, parse_well
from hcsfs.sources.base import Listed, SourceDefaults

if TYPE_CHECKING:
    import numpy as np

    from hcsfs.sources.base import PlaneInfo, PlateDescription, PlateSource

__all__ = ["Selection", "parse_selection", "SourceView", "SelectedSource", "WellIndex", "WellSource"]

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


class SourceView(SourceDefaults):
    """A view of a source that shows some of its planes (``allows``) and forwards everything else,
    declared capabilities included: a plane opened through a view takes the same fast path as through
    the source itself (no worker-thread trip when its metadata is known, no second plane cache)."""

    def __init__(self, source: PlateSource) -> None:
        self.source = source
        self.format_name = source.format_name
        self.blocking_info = source.blocking_info
        self.caches_planes = source.caches_planes
        self.planes_in_memory = source.planes_in_memory
        self.frozen = source.frozen

    def allows(self, key: PlaneKey) -> bool:
        return True

    def why_not(self, key: PlaneKey) -> str:
        return f"{key.name}: not in this view"

    def _check(self, key: PlaneKey) -> None:
        if not self.allows(key):
            raise PlaneNotFoundError(self.why_not(key))

    def keys(self) -> Iterator[PlaneKey]:
        return (key for key in self.source.keys() if self.allows(key))

    def info_ready(self, key: PlaneKey) -> PlaneInfo | None:
        return self.source.info_ready(key) if self.allows(key) else None

    def listed(self) -> Iterator[Listed]:
        return (entry for entry in self.source.listed() if self.allows(entry[0]))

    def info(self, key: PlaneKey) -> PlaneInfo:
        self._check(key)
        return self.source.info(key)

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        self._check(key)
        return self.source.read_plane(key)

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        return self.source.plane_format(key)

    def describe(self) -> PlateDescription:
        return self.source.describe()

    def close(self) -> None:
        self.source.close()


class SelectedSource(SourceView):
    """Only the planes of ``source`` inside ``selection``."""

    def __init__(self, source: PlateSource, selection: Selection) -> None:
        super().__init__(source)
        self.selection = selection

    def allows(self, key: PlaneKey) -> bool:
        return key in self.selection

    def why_not(self, key: PlaneKey) -> str:
        return f"{key.name}: outside the mount's --select"

    def wells(self) -> Sequence[str] | None:
        wells = self.source.wells()
        allowed = dict(self.selection.allowed).get("well")
        return None if wells is None else [w for w in wells if allowed is None or w in allowed]

    def well_keys(self, well: str) -> Iterable[PlaneKey]:
        if self.source.wells() is None:
            return super().well_keys(well)
        return [key for key in self.source.well_keys(well) if key in self.selection]

    def describe(self) -> PlateDescription:
        description = self.source.describe()
        description.extra = {**description.extra, "selection": self.selection.describe()}
        return description


class WellIndex:
    """The plate's wells and each well's keys, from the source's own index or one pass over its keys."""

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
        own = self.source.wells()
        return sorted(own if own is not None else self._index(), key=parse_well)

    def keys(self, well: str) -> Iterable[PlaneKey]:
        if self.source.wells() is not None:
            return self.source.well_keys(well)
        return self._index().get(well, [])


class WellSource(SourceView):
    """The planes of one well (``/.by-well/A01/``)."""

    def __init__(self, source: PlateSource, index: WellIndex, well: str) -> None:
        super().__init__(source)
        self.index = index
        self.well = well

    def allows(self, key: PlaneKey) -> bool:
        return key.well == self.well

    def why_not(self, key: PlaneKey) -> str:
        return f"{key.name}: not in well {self.well}"

    def keys(self) -> Iterator[PlaneKey]:
        return iter(self.index.keys(self.well))

    def listed(self) -> Iterator[Listed]:
        return SourceDefaults.listed(self)  # the well's own keys, not a pass over the whole plate

    def wells(self) -> Sequence[str] | None:
        return [self.well]

    def well_keys(self, well: str) -> Iterable[PlaneKey]:
        return self.keys() if well == self.well else []
