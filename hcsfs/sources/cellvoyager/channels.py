"""CellVoyager channels in the flat view: one ``w`` per (timeline, action, camera channel).

A CellVoyager measurement runs timelines, each a sequence of actions (``A01``, ``A02``: a 2-D or 3-D
acquisition of a group of camera channels ``Ch``). In all data seen each ``Ch`` belongs to one action,
and then ``w`` is simply ``Ch`` (``C03`` in the file name is ``w3``). When one ``Ch`` is acquired by
several actions or timelines, ``Ch`` alone no longer names a channel: every distinct (timeline, action,
Ch) becomes its own ``w``, numbered 1.. in that order. ``plate.json`` (``channel_map``) says which.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hcsfs.sources.cellvoyager.meta import ChannelGeometry

__all__ = ["FlatChannel", "map_channels", "plate_pixel_size"]

Source = tuple[int, int, int]
"""(timeline, action, Ch) of a record."""


@dataclass(frozen=True, slots=True)
class FlatChannel:
    """One flat channel ``w``: the acquisition it comes from and how its images look."""

    index: int
    timeline: int
    action: int
    ch: int
    action_kind: str | None
    name: str | None
    geometry: ChannelGeometry | None

    def describe(self) -> dict[str, object]:
        geometry = self.geometry
        return {
            "channel": self.index,
            "timeline": self.timeline,
            "action": self.action,
            "action_kind": self.action_kind,
            "ch": self.ch,
            "name": self.name,
            "pixel_size_um": geometry.pixel_size_um if geometry else None,
            "pixel_size_y_um": geometry.pixel_size_y_um if geometry else None,
            "image_size": [geometry.height, geometry.width]
            if geometry and geometry.width and geometry.height else None,
            "bit_depth": geometry.bit_depth if geometry else None,
        }


def _name(setting: Mapping[str, str] | None) -> str | None:
    if not setting:
        return None
    for attribute in ("Target", "Acquisition"):  # the user's label, else the emission filter
        value = (setting.get(attribute) or "").strip()
        if value:
            return value
    return None


def map_channels(
    sources: Mapping[Source, str | None],
    geometry: Mapping[int, ChannelGeometry],
    settings: Mapping[int, Mapping[str, str]],
) -> tuple[dict[Source, FlatChannel], str]:
    """Each (timeline, action, Ch) seen in the records → its flat channel; and the numbering used.

    ``sources`` maps each triple to its records' ``Action`` kind (``3D``, ``2D``).
    """
    by_ch: dict[int, set[tuple[int, int]]] = {}
    for timeline, action, ch in sources:
        by_ch.setdefault(ch, set()).add((timeline, action))
    ch_is_enough = all(len(groups) == 1 for groups in by_ch.values())
    timelines = {timeline for timeline, _, _ in sources}
    mapping: dict[Source, FlatChannel] = {}
    for number, source in enumerate(sorted(sources), start=1):
        timeline, action, ch = source
        name = _name(settings.get(ch))
        if not ch_is_enough and name is not None and len(by_ch[ch]) > 1:
            # The same camera channel in several acquisitions: tell them apart the way the files do.
            name += f" L{timeline:02d}A{action:02d}" if len(timelines) > 1 else f" A{action:02d}"
        mapping[source] = FlatChannel(
            index=ch if ch_is_enough else number, timeline=timeline, action=action, ch=ch,
            action_kind=sources[source], name=name, geometry=geometry.get(ch),
        )
    return mapping, "Ch" if ch_is_enough else "timeline, action, Ch"


def plate_pixel_size(channels: Iterable[FlatChannel]) -> float | None:
    """The pixel size all channels share, or None when they differ (then it is per plane)."""
    sizes = {c.geometry.pixel_size_um if c.geometry else None for c in channels}
    return sizes.pop() if len(sizes) == 1 else None
