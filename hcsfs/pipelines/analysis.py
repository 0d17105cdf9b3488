"""Analysis specs: channels by alias, named results wired into a graph, ``measure`` steps, outputs.

:func:`parse_analysis` reads the analysis fields of a spec document (DESIGN.md section 2, "Analysis
specs"); :func:`build_graph` checks the graph they describe before anything runs: every name defined
once and before its use, the kind of each result (image, mask, labels) fitting what reads it, array
arguments the function takes, reductions matched, table and heatmap names that exist. Each problem is a
:class:`~hcsfs.errors.SpecError` naming its field. The same :class:`Graph` drives the per-unit
computation (:mod:`hcsfs.pipelines.compute`): which result each step reads, and when a result is no
longer needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hcsfs.errors import SpecError
from hcsfs.pipelines.registry import RESULT_KINDS, FunctionRegistry

if TYPE_CHECKING:
    from hcsfs.pipelines.spec import MeasureSpec, PipelineSpec, StepSpec

__all__ = ["FEATURES", "Graph", "ResultInfo", "build_graph", "graph_of", "parse_analysis", "well_columns"]

FEATURES = ("shape", "intensity")
ANALYSIS_GROUP_BY = ("well", "site", "t")
TABLE_FORMATS = ("csv", "parquet")
RESERVED_RESULTS = frozenset({"rois", "heatmaps", "tables", "data", "spec", "image", "wells", "illumination"})
_ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_MEASURE_FIELDS = ("measure", "objects", "channels", "table")
MAX_CHANNELS = 16


@dataclass(frozen=True, slots=True)
class ResultInfo:
    """What the graph knows of a name: a channel alias or a step's result."""

    name: str
    kind: str
    """``image``, ``mask`` or ``labels`` (channel aliases are images)."""
    alias: str
    """The channel alias it derives from through main inputs: its planes carry that channel."""
    reduced: str | None = None
    """The reduction (``max``) on its way from the channel, if any: one plane per unit."""
    step: int | None = None
    """Index in ``spec.steps`` of the step that makes it; ``None`` for an alias."""


@dataclass(frozen=True, slots=True)
class Graph:
    """The checked graph of an analysis spec (version-1 specs make a chain over one alias)."""

    results: Mapping[str, ResultInfo]
    last_use: Mapping[str, int]
    """Name -> position (in the spec's ``steps`` list) of the last step that reads it."""
    keep: frozenset[str]
    """Results needed after the steps: saved, ROI sets."""

    def kind(self, name: str) -> str:
        return self.results[name].kind


def _where(position: int) -> str:
    return f"steps[{position}]"


def check_name(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not _ALIAS_RE.fullmatch(value):
        raise SpecError(where, f"{value!r} is not a valid {what}: 1-32 letters, digits or '_', starting "
                               "with a letter")
    if value.lower() in RESERVED_RESULTS:
        raise SpecError(where, f"{value!r} is reserved (it names a file or folder of the run)")
    return value


def parse_channels(value: Any) -> tuple[tuple[str, int | str], ...]:
    if not isinstance(value, dict) or not value:
        raise SpecError("channels", "must be a mapping of names to channel numbers, like {DAPI: 1, GFP: 2}")
    if len(value) > MAX_CHANNELS:
        raise SpecError("channels", f"{len(value)} channels, more than {MAX_CHANNELS}")
    channels = []
    for alias, channel in value.items():
        where = f"channels.{alias}"
        check_name(alias, where, "channel name")
        if isinstance(channel, bool) or not isinstance(channel, int | str):
            raise SpecError(where, f"must be a channel number or the plate's channel name, not {channel!r}")
        if isinstance(channel, int) and not 1 <= channel <= 1_000_000:
            raise SpecError(where, f"{channel} is not a 1-based channel number")
        if isinstance(channel, str) and not 0 < len(channel) <= 200:
            raise SpecError(where, "a channel name is 1-200 characters")
        channels.append((alias, channel))
    return tuple(channels)


def parse_group_by(value: Any) -> tuple[str, ...]:
    """Analysis units are one site at one time point (z stacked), or one plane (``z`` grouped too)."""
    if value is None:
        return ANALYSIS_GROUP_BY
    if not isinstance(value, list):
        raise SpecError("group_by", f"must be a list, not {type(value).__name__}")
    if "channel" in value:
        raise SpecError("group_by", "with channels:, a unit holds every named channel: leave channel out")
    allowed = ("well", "site", "z", "t")
    for i, axis in enumerate(value):
        if axis not in allowed:
            raise SpecError(f"group_by[{i}]", f"unknown axis {axis!r} (axes: {', '.join(allowed)})")
        if axis in value[:i]:
            raise SpecError(f"group_by[{i}]", f"axis {axis!r} given twice")
    if "well" not in value or "site" not in value:
        raise SpecError("group_by", "must contain well and site (a unit never spans fields)")
    if "z" not in value and "t" not in value:
        raise SpecError("group_by", "leaves out z and t: at most one of them can be stacked into a unit")
    return tuple(a for a in ("well", "site", "channel", "z", "t") if a in value)


def parse_measure(doc: dict[str, Any], position: int) -> MeasureSpec:
    from hcsfs.pipelines.spec import MeasureSpec

    where = _where(position)
    for key in doc:
        if key not in _MEASURE_FIELDS:
            raise SpecError(f"{where}.{key}", f"unknown field of a measure step (allowed: "
                                              f"{', '.join(_MEASURE_FIELDS)})")
    features = doc["measure"]
    features = [features] if isinstance(features, str) else features
    if not isinstance(features, list) or not features:
        raise SpecError(f"{where}.measure", f"a list of {' and '.join(FEATURES)}")
    for j, feature in enumerate(features):
        if feature not in FEATURES:
            raise SpecError(f"{where}.measure[{j}]", f"{feature!r} is not one of {', '.join(FEATURES)}")
        if feature in features[:j]:
            raise SpecError(f"{where}.measure[{j}]", f"{feature!r} given twice")
    objects = doc.get("objects")
    if not isinstance(objects, str):
        raise SpecError(f"{where}.objects", "required: the name of a labels result")
    channels = doc.get("channels", [])
    channels = [channels] if isinstance(channels, str) else channels
    if not isinstance(channels, list) or len(channels) > MAX_CHANNELS:
        raise SpecError(f"{where}.channels", "a list of channel or image result names")
    for j, channel in enumerate(channels):
        if not isinstance(channel, str):
            raise SpecError(f"{where}.channels[{j}]", f"a name, not {type(channel).__name__}")
        if channel in channels[:j]:
            raise SpecError(f"{where}.channels[{j}]", f"{channel!r} given twice")
    if "intensity" in features and not channels:
        raise SpecError(f"{where}.channels", "required by intensity: the channels to measure")
    if "intensity" not in features and channels:
        raise SpecError(f"{where}.channels", "only intensity measurements read channels")
    table = check_name(doc.get("table", objects), f"{where}.table", "table name")
    ordered = tuple(f for f in FEATURES if f in features)
    return MeasureSpec(ordered, objects, tuple(channels), table, position)


def parse_name_list(document: Mapping[str, Any], field: str) -> tuple[str, ...] | None:
    if document.get(field) is None:
        return None
    value = document[field]
    if not isinstance(value, list):
        raise SpecError(field, f"must be a list of names, not {type(value).__name__}")
    if len(value) > 1000:
        raise SpecError(field, f"{len(value)} entries, more than 1000")
    for j, item in enumerate(value):
        if not isinstance(item, str):
            raise SpecError(f"{field}[{j}]", f"a name, not {type(item).__name__}")
        if item in value[:j]:
            raise SpecError(f"{field}[{j}]", f"{item!r} given twice")
    return tuple(value)


def parse_analysis(document: Mapping[str, Any]) -> dict[str, Any]:
    """The analysis-only top-level fields (``channels``, ``table_format``; the rest need the steps)."""
    fields: dict[str, Any] = {"channels": parse_channels(document["channels"])}
    table_format = document.get("table_format", "csv")
    if table_format not in TABLE_FORMATS:
        raise SpecError("table_format", f"{table_format!r} is not one of {', '.join(TABLE_FORMATS)}")
    if table_format == "parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise SpecError("table_format", "parquet needs pyarrow (pip install 'hcsfs[parquet]')")
    fields["table_format"] = table_format
    return fields


def build_graph(spec: PipelineSpec, registry: FunctionRegistry) -> Graph:
    """Check the steps, measures and outputs of ``spec`` as a graph; :class:`SpecError` on a problem."""
    results: dict[str, ResultInfo] = {}
    last_use: dict[str, int] = {}
    aliases = [alias for alias, _ in spec.channels] or [V1_INPUT]
    for alias in aliases:
        results[alias] = ResultInfo(alias, "image", alias)

    def use(name: str, position: int, where: str, kinds: frozenset[str] | None, what: str) -> ResultInfo:
        info = results.get(name)
        if info is None:
            later = next((s for s in spec.steps if s.name == name), None)
            known = ", ".join(n for n in results if not n.startswith("#")) or "none"
            if later is not None:
                raise SpecError(where, f"{name!r} is used before steps[{later.position}] makes it")
            raise SpecError(where, f"unknown name {name!r} (channels and results so far: {known})")
        if kinds is not None and info.kind not in kinds:
            raise SpecError(where, f"{name!r} is a{'n' if info.kind == 'image' else ''} {info.kind} result; "
                                   f"{what} needs {' or '.join(sorted(kinds))}")
        last_use[name] = position
        return info

    for step in spec.steps:
        definition = registry.get(step.func)
        where = _where(step.position)
        assert step.input is not None
        main = use(step.input, step.position, f"{where}.input", definition.accepts, step.func)
        for param, name in step.inputs:
            declared = definition.array_param(param)
            assert declared is not None  # checked when the step was parsed
            kinds = frozenset({declared.kind}) if declared.kind is not None else None
            info = use(name, step.position, f"{where}.inputs.{param}", kinds, f"{step.func}'s {param}")
            if info.reduced != main.reduced:
                raise SpecError(f"{where}.inputs.{param}", f"{name!r} and {step.input!r} differ in "
                                f"reduction ({info.reduced or 'none'} vs {main.reduced or 'none'})")
        reduces = definition.reduces
        if reduces and main.reduced:
            raise SpecError(f"{where}.func", f"{step.input!r} is already reduced ({main.reduced})")
        if reduces and spec.stacked_axis is None:
            raise SpecError(f"{where}.func", "nothing to reduce: group_by stacks no axis")
        kind = definition.result_kind(main.kind, step.kwargs)
        assert kind in RESULT_KINDS
        if step.name is not None and step.name in results:
            raise SpecError(f"{where}.as", f"{step.name!r} is already defined")
        results[step.result] = ResultInfo(step.result, kind, main.alias, reduces or main.reduced,
                                          step.position)
    measured: dict[str, int] = {}
    tables = {t: s.position for s in spec.steps for t in s.tables}
    for measure in spec.measures:
        where = _where(measure.position)
        objects = use(measure.objects, measure.position, f"{where}.objects", frozenset({"labels"}),
                      "a measure step")
        if measure.objects in measured:
            raise SpecError(f"{where}.objects", f"{measure.objects!r} is already measured by "
                                                f"steps[{measured[measure.objects]}]: measure it in one step")
        measured[measure.objects] = measure.position
        for j, channel in enumerate(measure.channels):
            info = use(channel, measure.position, f"{where}.channels[{j}]", frozenset({"image", "mask"}),
                       "an intensity measurement")
            if info.reduced != objects.reduced:
                raise SpecError(f"{where}.channels[{j}]", f"{channel!r} and {measure.objects!r} differ in "
                                f"reduction ({info.reduced or 'none'} vs {objects.reduced or 'none'})")
        if measure.table in tables or measure.table in ("image", "wells"):
            raise SpecError(f"{where}.table", f"table {measure.table!r} is already written")
        tables[measure.table] = measure.position
    end = len(spec.steps) + len(spec.measures)
    for j, name in enumerate(spec.save):
        info = use(name, end, f"save[{j}]", None, "save")
        if info.step is None:
            raise SpecError(f"save[{j}]", f"{name!r} is a channel of the plate, not a result")
    for j, name in enumerate(spec.rois):
        use(name, end, f"rois[{j}]", frozenset({"labels"}), "an ROI set")
    columns = well_columns(spec)
    for j, column in enumerate(spec.heatmaps):
        if column not in columns:
            shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "") if columns else "none"
            raise SpecError(f"heatmaps[{j}]", f"no table has the column {column!r} (wells.csv columns: "
                                              f"{shown})")
    return Graph(results, last_use, frozenset(spec.save) | frozenset(spec.rois))


AGGREGATED_PREFIXES = ("AreaShape_", "Intensity_")
CENTER_COLUMNS = ("AreaShape_Center_X", "AreaShape_Center_Y")


def aggregated_columns(measure: MeasureSpec) -> list[str]:
    """The per-object columns image.csv and wells.csv summarize (object centres are not)."""
    from hcsfs.pipelines.measure import measure_columns

    return [c for c in measure_columns(measure.features, measure.channels)
            if c.startswith(AGGREGATED_PREFIXES) and c not in CENTER_COLUMNS]


def well_columns(spec: PipelineSpec) -> list[str]:
    """The value columns of ``wells.csv``: ``Count_<objects>``, then per aggregated column the mean
    (``<column>_<objects>``) and the median (``Median_<column>_<objects>``)."""
    columns = []
    for measure in spec.measures:
        columns.append(f"Count_{measure.objects}")
        for column in aggregated_columns(measure):
            columns += [f"{column}_{measure.objects}", f"Median_{column}_{measure.objects}"]
    return columns


def graph_of(spec: PipelineSpec, registry: FunctionRegistry) -> tuple[tuple[StepSpec, ...], Graph]:
    """The wired steps and checked graph of any spec: a version-1 spec is a chain over its one stack
    whose last result is saved."""
    if spec.is_analysis:
        return spec.steps, build_graph(spec, registry)
    import dataclasses

    steps = []
    previous = V1_INPUT
    for step in spec.steps:
        steps.append(dataclasses.replace(step, input=previous))
        previous = steps[-1].result
    wired = dataclasses.replace(spec, steps=tuple(steps), save=(previous,))
    return wired.steps, build_graph(wired, registry)


V1_INPUT = "#input"
"""The name of a version-1 unit's one stack inside the graph."""
