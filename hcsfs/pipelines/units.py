"""Units of work: which source planes one computation reads, and the keys of what it writes.

A version-1 unit is one ``[Z, Y, X]`` stack of one channel (``group_by`` says which axes stay apart).
An analysis unit is one site at one time point with every channel the spec names, each a ``[Z, Y, X]``
stack over the same z values; a unit missing a channel, or whose channels differ in z, fails on its own
(:class:`UnitInputError`), the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcsfs.errors import SpecError
from hcsfs.naming import PlaneKey, sort_key
from hcsfs.pipelines.analysis import V1_INPUT
from hcsfs.pipelines.spec import PipelineSpec
from hcsfs.sources.base import PlateSource

__all__ = ["Unit", "UnitInputError", "plan_units", "read_unit", "resolve_channels", "result_keys"]



class UnitInputError(ValueError):
    """A unit's planes do not make the stacks its spec needs (a channel missing at that site)."""


@dataclass(frozen=True, slots=True)
class Unit:
    """The planes of one computation: ``stacks`` maps each input name to its keys along the stacked axis."""

    label: str
    stacks: tuple[tuple[str, tuple[PlaneKey, ...]], ...]
    problem: str | None = None
    """Why this unit cannot run (reported as its error), or ``None``."""

    @property
    def keys(self) -> tuple[PlaneKey, ...]:
        """Every source plane the unit reads."""
        return tuple(k for _, keys in self.stacks for k in keys)

    def stack_keys(self, name: str) -> tuple[PlaneKey, ...]:
        return dict(self.stacks)[name]


def resolve_channels(spec: PipelineSpec, channel_names: Mapping[int, str], present: Iterable[int]
                     ) -> dict[str, int]:
    """Each alias's channel number; a channel the plate lacks is a :class:`SpecError` naming the alias."""
    numbers = sorted(set(present))
    by_name = {name: number for number, name in channel_names.items()}
    lowered = {name.lower(): number for name, number in by_name.items()}
    resolved = {}
    for alias, channel in spec.channels:
        where = f"channels.{alias}"
        if isinstance(channel, str):
            number = by_name.get(channel, lowered.get(channel.lower()))
            if number is None:
                names = ", ".join(f"{n} ({c})" for c, n in sorted(channel_names.items())) or "none"
                raise SpecError(where, f"the plate has no channel named {channel!r} (channels: {names})")
            channel = number
        if channel not in numbers:
            raise SpecError(where, f"the plate has no channel {channel} (channels: "
                                   f"{', '.join(map(str, numbers)) or 'none'})")
        resolved[alias] = channel
    return resolved


def plan_units(keys: Iterable[PlaneKey], spec: PipelineSpec,
               channel_names: Mapping[int, str] | None = None) -> list[Unit]:
    """Group the selected keys into units, in the natural order of their first plane."""
    if spec.is_analysis:
        return _plan_analysis(keys, spec, channel_names or {})
    stacked = spec.stacked_axis
    groups: dict[tuple[Any, ...], list[PlaneKey]] = {}
    for key in keys:
        if spec.select.matches(key):
            groups.setdefault(tuple(getattr(key, a) for a in spec.group_by), []).append(key)
    units = []
    for members in groups.values():
        members.sort(key=sort_key)
        units.append(Unit(_label(members[0], stacked), ((V1_INPUT, tuple(members)),)))
    units.sort(key=lambda u: sort_key(u.keys[0]))
    return units


def _label(first: PlaneKey, *stacked: str | None) -> str:
    label = first.name.removesuffix(".tif")
    for axis in stacked:
        if axis is None:
            continue
        prefix = {"channel": "_w", "z": "_z", "t": "_t"}[axis]
        head, _, tail = label.partition(prefix)
        label = f"{head}{prefix}*{tail[tail.find('_'):] if '_' in tail else ''}"
    return label


def _plan_analysis(keys: Iterable[PlaneKey], spec: PipelineSpec, channel_names: Mapping[int, str]
                   ) -> list[Unit]:
    groups: dict[tuple[Any, ...], dict[int, list[PlaneKey]]] = {}
    present: set[int] = set()
    for key in keys:
        if not spec.select.matches(key) or not isinstance(key.channel, int):
            continue
        present.add(key.channel)
        group = tuple(getattr(key, a) for a in spec.group_by)
        groups.setdefault(group, {}).setdefault(key.channel, []).append(key)
    if not groups:
        return []
    aliases = resolve_channels(spec, channel_names, present)
    units = []
    for channels in groups.values():
        stacks = []
        problem = None
        for alias, number in aliases.items():
            members = sorted(channels.get(number, []), key=sort_key)
            if not members:
                problem = problem or f"no plane of channel {alias} (w{number}) here"
            stacks.append((alias, tuple(members)))
        depths = {tuple(_stack_position(k, spec) for k in members) for _, members in stacks if members}
        if problem is None and len(depths) > 1:
            problem = "the channels differ in their " + (spec.stacked_axis or "planes")
        first = min((m[0] for _, m in stacks if m), key=sort_key)
        units.append(Unit(_label(first, "channel", spec.stacked_axis), tuple(stacks), problem))
    units.sort(key=lambda u: sort_key(min(u.keys, key=sort_key)))
    return units


def _stack_position(key: PlaneKey, spec: PipelineSpec) -> Any:
    axis = spec.stacked_axis
    return getattr(key, axis) if axis is not None else None


def read_unit(source: PlateSource, unit: Unit) -> dict[str, np.ndarray]:
    """The unit's stacks, read from the source (the only I/O of a computation)."""
    if unit.problem is not None:
        raise UnitInputError(unit.problem)
    stacks = {name: np.stack([np.asarray(source.read_plane(k)) for k in keys]) for name, keys in unit.stacks}
    shapes = {s.shape for s in stacks.values()}
    if len(shapes) > 1:
        raise UnitInputError(f"the channels differ in shape ({', '.join(str(s) for s in sorted(shapes))})")
    return stacks


def result_keys(spec: PipelineSpec, unit: Unit, alias: str, reduced: str | None, depth: int
                ) -> list[PlaneKey]:
    """The keys of a result's planes: the channel it derives from, the stacked axis renamed by a
    reduction (``zmax``)."""
    keys = unit.stack_keys(alias)
    axis = spec.stacked_axis
    if reduced is None or axis is None:
        if depth != len(keys):
            raise ValueError(f"the steps turned {len(keys)} planes into {depth}")
        return list(keys)
    if depth != 1:
        raise ValueError(f"a {reduced} reduction gave {depth} planes, not 1")
    return [keys[0].replace(**{axis: reduced})]
