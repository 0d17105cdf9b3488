"""Pipeline specs: YAML or JSON bytes parsed into frozen models, validated completely.

Every problem raises :class:`~hcsfs.errors.SpecError` whose ``field`` is a dotted path into the spec
(``steps[0].args.sigma``). Parsing is hostile-input safe: a size limit, ``yaml`` safe loading with no
aliases (no "billion laughs") and no object-constructing tags, a nesting-depth bound, bounded list
lengths, and every argument checked against its function's declared type and range.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from hcsfs.errors import PlaneNameError, SpecError
from hcsfs.memory import MemoryType
from hcsfs.naming import parse_well
from hcsfs.pipelines.illumination import IlluminationSpec, parse_illumination
from hcsfs.pipelines.registry import REQUIRED, FunctionRegistry, framework_installed

__all__ = [
    "AXES",
    "DEFAULT_GROUP_BY",
    "MAX_SPEC_BYTES",
    "PipelineSpec",
    "MeasureSpec",
    "Selection",
    "StepSpec",
    "check_run_name",
    "parse_spec",
    "spec_extension",
]

MAX_SPEC_BYTES = 64 * 1024
MAX_DEPTH = 12
MAX_STEPS = 50
MAX_LIST = 10_000
MAX_INDEX = 1_000_000
AXES = ("well", "site", "channel", "z", "t")
DEFAULT_GROUP_BY = ("well", "site", "channel", "t")
STACKABLE = ("channel", "z", "t")
EXTENSIONS = (".yaml", ".yml", ".json")
OUTPUTS = ("zarr", "tiff", "memory")
RESERVED_NAMES = frozenset({"hcsfs", "pipelines", "readme", "con", "nul"})
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_DEVICE_RE = re.compile(r"cuda:(\d{1,2})")
_TOP_FIELDS = ("name", "select", "group_by", "device", "output", "scheduler", "resources", "steps",
               "channels", "save", "rois", "heatmaps", "table_format", "resume", "illumination")
ANALYSIS_FIELDS = ("channels", "save", "rois", "heatmaps", "table_format")
"""Top-level fields of analysis specs (docs/pipelines.md, "Analysis specs")."""
_SCHEDULER_RE = re.compile(r"(tcp|tls)://[A-Za-z0-9_.:\[\]-]{1,250}")
_RESOURCE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
MAX_RESOURCES = 8
_STEP_FIELDS = ("func", "memory", "args", "tables", "input", "inputs", "as")
ANALYSIS_STEP_FIELDS = ("input", "inputs", "as")


@dataclass(frozen=True, slots=True)
class Selection:
    """Filters over the plate's axes; ``None`` keeps every value of that axis."""

    well: frozenset[str] | None = None
    site: frozenset[int] | None = None
    channel: frozenset[int] | None = None
    z: frozenset[int] | None = None
    t: frozenset[int] | None = None

    def matches(self, key: Any) -> bool:
        for axis in AXES:
            allowed = getattr(self, axis)
            if allowed is not None and getattr(key, axis) not in allowed:
                return False
        return True


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One function step. In analysis specs ``input``, ``inputs`` and ``name`` (``as:``) wire the graph;
    ``input`` is always resolved (the previous result when the spec leaves it out)."""

    func: str
    memory: MemoryType
    args: tuple[tuple[str, Any], ...]
    tables: tuple[str, ...] = ()
    input: str | None = None
    inputs: tuple[tuple[str, str], ...] = ()
    """Array arguments besides the main input: ``(parameter, result name)``."""
    name: str | None = None
    """The result's name (``as:``); ``None``: anonymous, usable only by the next step."""
    position: int = 0
    """Index in the spec's ``steps`` list (measure steps included), for messages."""
    fallback: str | None = None
    """Why this step runs on the CPU though the spec asked for a GPU (a library function without a GPU
    twin); the run's status ``fallback`` says it."""

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)

    @property
    def result(self) -> str:
        """The name the step's result is known by inside the run (``#3`` when anonymous)."""
        return self.name if self.name is not None else f"#{self.position}"


@dataclass(frozen=True, slots=True)
class MeasureSpec:
    """A ``measure`` step: per-object rows of ``objects`` (a labels result) into ``table``."""

    features: tuple[str, ...]
    objects: str
    channels: tuple[str, ...]
    table: str
    position: int = 0


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    name: str
    steps: tuple[StepSpec, ...]
    select: Selection = Selection()
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    device: str = "auto"
    output: str = "zarr"
    scheduler: str | None = None
    """``tcp://host:port`` of a Dask scheduler, ``local`` for this machine's threads, ``None`` for the
    mount's default. The manager runs only on schedulers the mount's owner allowed."""
    resources: tuple[tuple[str, float], ...] = ()
    """Dask worker resources each unit needs (``{GPU: 1}`` runs units on GPU workers only)."""
    channels: tuple[tuple[str, int | str], ...] = ()
    """Analysis specs: ``(alias, channel number or the plate's channel name)``; empty for version 1."""
    measures: tuple[MeasureSpec, ...] = ()
    save: tuple[str, ...] = ()
    """Analysis specs: the results written as planes (under ``/<name>/<result>/``)."""
    rois: tuple[str, ...] = ()
    heatmaps: tuple[str, ...] = ()
    table_format: str = "csv"
    """``csv``, or ``parquet``: the analysis tables as Parquet files too."""
    resume: bool = False
    """Continue an interrupted run of the same spec: only the units it had not finished run."""
    illumination: IlluminationSpec | None = None
    """Flat-field correction fitted before the units run and applied to every plane they read."""

    @property
    def is_analysis(self) -> bool:
        """Whether this is an analysis spec (several channels, named results), not version 1."""
        return bool(self.channels)

    @property
    def stacked_axis(self) -> str | None:
        """The axis each unit stacks (``z`` by default), ``None`` when units are single planes."""
        rest = [a for a in AXES if a not in self.group_by and not (a == "channel" and self.channels)]
        return rest[0] if rest else None


def spec_extension(filename: str) -> str:
    """The lower-case extension of a spec file name, or :class:`SpecError` (field ``filename``)."""
    for ext in EXTENSIONS:
        if filename.lower().endswith(ext) and len(filename) > len(ext):
            return ext
    raise SpecError("filename", f"{filename!r}: a spec file ends with {', '.join(EXTENSIONS)}")


def check_run_name(name: Any, where: str = "name") -> str:
    """A safe run name (it names a folder at the mount's root and under the outputs directory)."""
    if not isinstance(name, str):
        raise SpecError(where, f"must be a string, not {type(name).__name__}")
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise SpecError(where, f"{name!r} is not a valid run name: 1-100 letters, digits, '_', '-', '.', "
                               "starting with a letter or digit")
    lowered = name.lower()
    if lowered in RESERVED_NAMES or lowered.endswith((".tif", ".tiff", ".status", ".log", ".csv")):
        raise SpecError(where, f"{name!r} is reserved or looks like a plane or control file name")
    return name


class _Loader(yaml.SafeLoader):
    """Safe YAML without aliases, with bounded nesting and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise SpecError("spec", "YAML aliases (*name) are not allowed")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise SpecError("spec", f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        keys = [self.construct_object(k, deep=True) for k, _ in node.value]
        for key in keys:
            if not isinstance(key, str):
                raise SpecError("spec", f"mapping key {key!r} is not a string")
        duplicate = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
        if duplicate is not None:
            raise SpecError(str(duplicate), "given twice")
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats: PyYAML (YAML 1.1) reads ``1e3`` as a string; users mean a number.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, Mapping):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise SpecError(key, "given twice")
        seen[key] = value
    return seen


def load_document(data: bytes, extension: str) -> Any:
    """Bytes to plain Python data (dicts, lists, scalars); :class:`SpecError` on anything odd."""
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError("spec", f"{len(data)} bytes is more than the {MAX_SPEC_BYTES} allowed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("spec", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        if extension == ".json":
            document = json.loads(text, object_pairs_hook=_no_duplicates)
        else:
            loader = _Loader(text)
            try:
                document = loader.get_single_data()
            finally:
                loader.dispose()
    except SpecError:
        raise
    except RecursionError:
        raise SpecError("spec", f"nested deeper than {MAX_DEPTH} levels") from None
    except (yaml.YAMLError, ValueError) as exc:
        kind = "JSON" if extension == ".json" else "YAML"
        message = " ".join(str(exc).split())
        raise SpecError("spec", f"not valid {kind}: {message[:300]}") from None
    if _depth(document) > MAX_DEPTH:
        raise SpecError("spec", f"nested deeper than {MAX_DEPTH} levels")
    return document


def _list(value: Any, where: str, *, allow_scalar: bool = False) -> list[Any]:
    if allow_scalar and not isinstance(value, list | dict):
        value = [value]
    if not isinstance(value, list):
        raise SpecError(where, f"must be a list, not {type(value).__name__}")
    if len(value) > MAX_LIST:
        raise SpecError(where, f"has {len(value)} entries, more than {MAX_LIST}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(where, f"must be a mapping, not {type(value).__name__}")
    return value


def _unknown(doc: dict[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in doc:
        if key not in allowed:
            shown = key[:50] if key.isidentifier() else repr(key[:50])
            raise SpecError(f"{prefix}{shown}", f"unknown field (allowed: {', '.join(allowed)})")


def _parse_selection(value: Any) -> Selection:
    doc = _mapping(value, "select")
    _unknown(doc, AXES, "select.")
    fields: dict[str, frozenset[Any]] = {}
    for axis, raw in doc.items():
        where = f"select.{axis}"
        items = _list(raw, where, allow_scalar=True)
        if not items:
            raise SpecError(where, "an empty list selects nothing")
        values = set()
        for i, item in enumerate(items):
            values.add(_select_value(axis, item, f"{where}[{i}]"))
        fields[axis] = frozenset(values)
    return Selection(**fields)


def _select_value(axis: str, item: Any, where: str) -> Any:
    if axis == "well":
        if not isinstance(item, str):
            raise SpecError(where, f"a well is a string like 'A01', not {type(item).__name__}")
        try:
            parse_well(item)
        except PlaneNameError as exc:
            raise SpecError(where, str(exc)) from None
        return item
    if isinstance(item, bool) or not isinstance(item, int):
        raise SpecError(where, f"must be a 1-based integer index, not {item!r}")
    if not 1 <= item <= MAX_INDEX:
        raise SpecError(where, f"{item} is not a 1-based index (1..{MAX_INDEX})")
    return item


def _parse_group_by(value: Any) -> tuple[str, ...]:
    items = _list(value, "group_by")
    for i, axis in enumerate(items):
        if axis not in AXES:
            raise SpecError(f"group_by[{i}]", f"unknown axis {axis!r} (axes: {', '.join(AXES)})")
        if axis in items[:i]:
            raise SpecError(f"group_by[{i}]", f"axis {axis!r} given twice")
    missing = [a for a in AXES if a not in items]
    if "well" in missing or "site" in missing:
        raise SpecError("group_by", "must contain well and site (a unit never spans fields)")
    if len(missing) > 1:
        raise SpecError("group_by", f"leaves out {', '.join(missing)}: at most one of "
                                    f"{', '.join(STACKABLE)} can be stacked into a unit")
    return tuple(a for a in AXES if a in items)


def _parse_device(value: Any) -> str:
    if value in ("auto", "cpu"):
        return str(value)
    if isinstance(value, str) and _DEVICE_RE.fullmatch(value):
        return value
    raise SpecError("device", f"{value!r} is not auto, cpu or cuda:N")


def _parse_scheduler(value: Any) -> str | None:
    if value is None:
        return None
    if value == "local" or (isinstance(value, str) and _SCHEDULER_RE.fullmatch(value)):
        return str(value)
    raise SpecError("scheduler", f"{value!r} is not local or a Dask scheduler address tcp://host:port")


def _parse_resources(value: Any) -> tuple[tuple[str, float], ...]:
    doc = _mapping(value, "resources")
    if len(doc) > MAX_RESOURCES:
        raise SpecError("resources", f"{len(doc)} resources, more than {MAX_RESOURCES}")
    resources = []
    for name, amount in doc.items():
        if not _RESOURCE_RE.fullmatch(name):
            raise SpecError(f"resources.{name}", "a resource name is 1-32 letters, digits, '_' or '-'")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount <= 1e6:
            raise SpecError(f"resources.{name}", f"{amount!r} is not a number in (0, 1e6]")
        resources.append((name, float(amount)))
    return tuple(sorted(resources))


def _parse_step(value: Any, i: int, registry: FunctionRegistry, device: str = "auto") -> StepSpec:
    where = f"steps[{i}]"
    doc = _mapping(value, where)
    _unknown(doc, _STEP_FIELDS, f"{where}.")
    func = doc.get("func")
    if not isinstance(func, str):
        raise SpecError(f"{where}.func", "required: the name of a registered function")
    if func not in registry:
        raise SpecError(f"{where}.func", f"unknown function {func!r} (see .pipelines/README)")
    definition = registry.get(func)
    memory_value, fallback = doc.get("memory"), None
    if getattr(definition, "gpu_fallback", False):  # library functions: GPU twins (hcsfs.pipelines.library)
        from hcsfs.pipelines.library import gpu_choice

        memory_value, fallback = gpu_choice(memory_value, func, registry, device)
    memory = _parse_memory(memory_value, func, registry, f"{where}.memory")
    args = _mapping(doc.get("args", {}) if doc.get("args") is not None else {}, f"{where}.args")
    checked: dict[str, Any] = {}
    for key, raw in args.items():
        param = definition.param(key)
        if param is None:
            names = ", ".join(p.name for p in definition.params) or "none"
            raise SpecError(f"{where}.args.{key}", f"{func} has no argument {key!r} (arguments: {names})")
        checked[key] = param.check(raw, f"{where}.args.{key}")
    for param in definition.params:
        if param.name not in checked:
            if param.default is REQUIRED:
                raise SpecError(f"{where}.args.{param.name}", "required")
            checked[param.name] = param.default
    if definition.check is not None:
        definition.check(checked, f"{where}.args")
    tables = _list(doc.get("tables", []), f"{where}.tables")
    for j, table in enumerate(tables):
        if not isinstance(table, str):  # a list or mapping here is unhashable: never reach the lookup
            raise SpecError(f"{where}.tables[{j}]", f"a table name is a string, not {type(table).__name__}")
        if table not in definition.tables:
            offered = ", ".join(definition.tables) or "none"
            raise SpecError(f"{where}.tables[{j}]", f"{func} writes no table {table!r} (tables: {offered})")
        if table in tables[:j]:
            raise SpecError(f"{where}.tables[{j}]", f"table {table!r} given twice")
    return StepSpec(func, memory, tuple(checked.items()), tuple(tables), position=i, fallback=fallback)


def _wire_step(step: StepSpec, doc: dict[str, Any], previous: str | None, registry: FunctionRegistry
               ) -> StepSpec:
    """An analysis step's ``input``, ``inputs`` and ``as`` (names are resolved by the graph check)."""
    from hcsfs.pipelines.analysis import check_name

    where = f"steps[{step.position}]"
    definition = registry.get(step.func)
    main = doc.get("input")
    if main is not None and not isinstance(main, str):
        raise SpecError(f"{where}.input", f"a channel or result name, not {type(main).__name__}")
    wired: list[tuple[str, str]] = []
    raw_inputs = doc.get("inputs")
    for param, name in _mapping(raw_inputs, f"{where}.inputs").items() if raw_inputs is not None else ():
        if not isinstance(name, str):
            raise SpecError(f"{where}.inputs.{param}", f"a result name, not {type(name).__name__}")
        if param == definition.input_name:
            if main is not None:
                raise SpecError(f"{where}.inputs.{param}", f"the main input, already given by input: {main}")
            main = name
        elif definition.array_param(param) is None:
            names = ", ".join([definition.input_name, *(p.name for p in definition.array_params)])
            raise SpecError(f"{where}.inputs.{param}",
                            f"{step.func} takes no array {param!r} (takes: {names})")
        else:
            wired.append((param, name))
    for declared in definition.array_params:
        if declared.required and declared.name not in dict(wired):
            raise SpecError(f"{where}.inputs.{declared.name}", f"required: {step.func} needs a "
                                                                f"{declared.name} result")
    if main is None:
        if previous is None:
            raise SpecError(f"{where}.input", "required: which channel the first step reads")
        main = previous
    name = check_name(doc["as"], f"{where}.as", "result name") if doc.get("as") is not None else None
    return dataclasses.replace(step, input=main, inputs=tuple(wired), name=name)


def _parse_memory(value: Any, func: str, registry: FunctionRegistry, where: str) -> MemoryType:
    implemented = registry.memory_types(func)
    if value is None:
        available = registry.available_memory_types(func)
        if not available:
            raise SpecError(where, f"no implementation of {func} can run here")
        return available[0]
    try:
        memory = MemoryType(value)
    except ValueError:
        names = ", ".join(m.value for m in MemoryType)
        raise SpecError(where, f"{value!r} is not a memory type ({names})") from None
    if memory not in implemented:
        have = ", ".join(m.value for m in implemented)
        raise SpecError(where, f"{func} has no {memory.value} implementation (has: {have})")
    if not framework_installed(memory):
        raise SpecError(where, f"{memory.value} is not installed here")
    return memory


def parse_spec(filename: str, data: bytes, registry: FunctionRegistry) -> PipelineSpec:
    """Parse and validate a whole spec; the run name defaults to the file's stem."""
    extension = spec_extension(filename)
    document = load_document(data, extension)
    if not isinstance(document, dict):
        raise SpecError("spec", "must be a mapping with at least 'steps'")
    _unknown(document, _TOP_FIELDS, "")
    analysis = document.get("channels") is not None
    if not analysis:
        _no_analysis_fields(document)
    name = check_run_name(document.get("name", filename[: -len(extension)]))
    select = _parse_selection(document["select"]) if document.get("select") is not None else Selection()
    if analysis:
        from hcsfs.pipelines.analysis import parse_group_by

        group_by = parse_group_by(document.get("group_by"))
        if select.channel is not None:
            raise SpecError("select.channel", "with channels:, the channels a unit holds are named there")
    else:
        group_by = _parse_group_by(document["group_by"]) if "group_by" in document else DEFAULT_GROUP_BY
    device = _parse_device(document.get("device", "auto"))
    output = document.get("output", "zarr" if _zarr_installed() else "tiff")
    if output not in OUTPUTS:
        raise SpecError("output", f"{output!r} is not one of {', '.join(OUTPUTS)}")
    if output == "zarr" and not _zarr_installed():
        raise SpecError("output", "zarr output needs zarr (pip install 'hcsfs[zarr]'); use tiff or memory")
    steps_doc = _list(document.get("steps"), "steps") if "steps" in document else None
    if not steps_doc:
        raise SpecError("steps", "required: a non-empty list of steps")
    if len(steps_doc) > MAX_STEPS:
        raise SpecError("steps", f"{len(steps_doc)} steps, more than {MAX_STEPS}")
    scheduler = _parse_scheduler(document.get("scheduler"))
    resources = _parse_resources(document["resources"]) if document.get("resources") is not None else ()
    if resources and scheduler == "local":
        raise SpecError("resources", "worker resources need a Dask scheduler, not local")
    resume = document.get("resume", False)
    if not isinstance(resume, bool):
        raise SpecError("resume", f"must be true or false, not {resume!r}")
    common: dict[str, Any] = {"name": name, "select": select, "group_by": group_by, "device": device,
                              "output": str(output), "scheduler": scheduler, "resources": resources,
                              "resume": resume}
    if document.get("illumination") is not None:
        common["illumination"] = parse_illumination(document["illumination"])
    if analysis:
        return _parse_analysis_spec(document, steps_doc, common, registry)
    for i, raw in enumerate(steps_doc):
        if isinstance(raw, dict) and "measure" in raw:
            raise SpecError(f"steps[{i}].measure", "measure steps need channels: (an analysis spec)")
    steps = tuple(_parse_step(s, i, registry, device) for i, s in enumerate(steps_doc))
    for step, raw in zip(steps, steps_doc, strict=True):
        for key in ANALYSIS_STEP_FIELDS:
            if key in raw:
                raise SpecError(f"steps[{step.position}].{key}", "named inputs and results need channels: "
                                                                  "(an analysis spec, docs/pipelines.md)")
    _check_flow(steps, group_by, registry)
    return PipelineSpec(steps=steps, **common)


def _no_analysis_fields(document: dict[str, Any]) -> None:
    for key in ANALYSIS_FIELDS:
        if key in document:
            raise SpecError(key, "needs channels: (an analysis spec, docs/pipelines.md)")


def _parse_analysis_spec(document: dict[str, Any], steps_doc: list[Any], common: dict[str, Any],
                         registry: FunctionRegistry) -> PipelineSpec:
    from hcsfs.pipelines import analysis

    fields = analysis.parse_analysis(document)
    aliases = [alias for alias, _ in fields["channels"]]
    previous: str | None = aliases[0] if len(aliases) == 1 else None
    steps: list[StepSpec] = []
    measures = []
    for i, raw in enumerate(steps_doc):
        if isinstance(raw, dict) and "measure" in raw:
            measures.append(analysis.parse_measure(raw, i))
            continue
        step = _wire_step(_parse_step(raw, i, registry, common["device"]), raw, previous, registry)
        steps.append(step)
        previous = step.result
    if not steps:
        raise SpecError("steps", "needs at least one function step")
    save = analysis.parse_name_list(document, "save")
    if save is None:
        save = (steps[-1].result,) if steps[-1].name is not None else ()
    spec = PipelineSpec(steps=tuple(steps), measures=tuple(measures), save=save,
                        rois=analysis.parse_name_list(document, "rois") or (),
                        heatmaps=analysis.parse_name_list(document, "heatmaps") or (),
                        channels=fields["channels"], table_format=fields["table_format"], **common)
    tables: dict[str, int] = {}
    for step in spec.steps:
        for j, table in enumerate(step.tables):
            if table in tables:
                raise SpecError(f"steps[{step.position}].tables[{j}]", f"table {table!r} is already written "
                                                                      f"by steps[{tables[table]}]")
            tables[table] = step.position
    analysis.build_graph(spec, registry)
    return spec


def _zarr_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("zarr") is not None


def _check_flow(steps: tuple[StepSpec, ...], group_by: tuple[str, ...], registry: FunctionRegistry) -> None:
    """Checks across steps: one reduction at most, something to reduce, table names unique."""
    reduced_by: int | None = None
    tables: dict[str, int] = {}
    stacked = len(group_by) < len(AXES)
    for i, step in enumerate(steps):
        if registry.get(step.func).reduces:
            if not stacked:
                raise SpecError(f"steps[{i}].func", "nothing to reduce: group_by stacks no axis")
            if reduced_by is not None:
                raise SpecError(f"steps[{i}].func",
                                f"the stacked axis is already reduced by steps[{reduced_by}]")
            reduced_by = i
        for j, table in enumerate(step.tables):
            if table in tables:
                raise SpecError(f"steps[{i}].tables[{j}]", f"table {table!r} is already written by "
                                                          f"steps[{tables[table]}]")
            tables[table] = i


def reduction_of(spec: PipelineSpec, registry: FunctionRegistry) -> str | None:
    """The reduction's name (``max``) if a step collapses the stacked axis."""
    return next((registry.get(s.func).reduces for s in spec.steps if registry.get(s.func).reduces), None)


def with_resume(data: bytes, extension: str) -> bytes:
    """The spec document ``data`` with ``resume: true`` (``hcsfs run --resume``, ``process --resume``)."""
    document = load_document(data, extension)
    if not isinstance(document, dict):
        raise SpecError("spec", "must be a mapping with at least 'steps'")
    document["resume"] = True
    if extension == ".json":
        return json.dumps(document, indent=2).encode()
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode()
