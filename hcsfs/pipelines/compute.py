"""The pure per-unit computation: a unit's input stacks in, its kept results and table rows out.

No I/O and no threads: reading the unit (:func:`hcsfs.pipelines.units.read_unit`), storing planes and
writing tables belong to the callers (:mod:`hcsfs.pipelines.worker`, the sinks). The steps run in the
spec's order over the checked :class:`~hcsfs.pipelines.analysis.Graph`: each result is computed once,
converted to the memory type of each step that reads it, and dropped after its last use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hcsfs import memory as hm
from hcsfs.memory import MemoryType, OomEvent
from hcsfs.pipelines.analysis import Graph
from hcsfs.pipelines.measure import measure_stack
from hcsfs.pipelines.registry import FunctionRegistry
from hcsfs.pipelines.spec import MeasureSpec, StepSpec

__all__ = ["UnitComputation", "compute_unit", "host_plane"]

HOST_MEMORY = (MemoryType.NUMPY, MemoryType.PYCLESPERANTO)
"""Memory types whose implementations take no ``gpu_id``."""


@dataclass(slots=True)
class UnitComputation:
    """What one unit computed, on the host."""

    results: dict[str, np.ndarray]
    """Kept results (saved, ROI sets) as ``[Z, Y, X]`` in their output dtype (:func:`host_plane`)."""
    measurements: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    """Table -> per plane of the stack, columns of per-object values (``measure`` steps)."""
    legacy_rows: list[tuple[str, str, int, dict[str, Any]]] = field(default_factory=list)
    """Version-1 ``tables:`` rows: ``(table, result, z index, row)``."""
    oom_fallback: bool = False


def compute_unit(steps: tuple[StepSpec, ...], measures: tuple[MeasureSpec, ...], graph: Graph,
                 registry: FunctionRegistry, stacks: Mapping[str, np.ndarray], gpu_id: int | None, *,
                 cancelled: Callable[[], bool] = lambda: False) -> UnitComputation | None:
    """Run the steps over ``stacks`` (input name -> ``[Z, Y, X]``); ``None`` when cancelled between steps."""
    fallbacks = hm.stats()[OomEvent.CPU_FALLBACK]
    values: dict[str, Any] = dict(stacks)
    done = UnitComputation({})
    operations: list[StepSpec | MeasureSpec] = sorted((*steps, *measures), key=lambda op: op.position)
    for operation in operations:
        if cancelled():
            return None
        if isinstance(operation, MeasureSpec):
            done.measurements[operation.table] = _measure(operation, values)
        else:
            values[operation.result] = _apply(operation, registry, values, gpu_id)
            for table in operation.tables:
                done.legacy_rows += _legacy_rows(operation, table, registry, graph, values, stacks)
        _forget(values, graph, operation.position, stacks)
    for name in graph.keep:
        done.results[name] = host_plane(np.asarray(hm.convert(values[name], MemoryType.NUMPY)))
        if done.results[name].ndim != 3:
            raise ValueError(f"{name}: the steps returned a {done.results[name].ndim}-D result, "
                             "not [Z, Y, X]")
    done.oom_fallback = hm.stats()[OomEvent.CPU_FALLBACK] > fallbacks
    return done


def _apply(step: StepSpec, registry: FunctionRegistry, values: Mapping[str, Any], gpu_id: int | None) -> Any:
    impl = registry.implementation(step.func, step.memory)
    gpu = None if step.memory in HOST_MEMORY else gpu_id
    extra = {param: hm.convert(values[name], step.memory, gpu) for param, name in step.inputs}
    assert step.input is not None
    data = values[step.input]
    if gpu is not None:
        extra["gpu_id"] = gpu
    result = impl(data, **extra, **step.kwargs)
    return result[0] if isinstance(result, tuple) else result


def _host(value: Any) -> np.ndarray:
    return np.asarray(hm.convert(value, MemoryType.NUMPY))


def _measure(measure: MeasureSpec, values: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
    labels = _host(values[measure.objects])
    intensities = {name: _host(values[name]) for name in measure.channels}
    for name, stack in intensities.items():
        if stack.shape != labels.shape:
            raise ValueError(f"{name} is {stack.shape}, the {measure.objects} labels {labels.shape}")
    return measure_stack(labels, intensities, measure.features)


def _legacy_rows(step: StepSpec, table: str, registry: FunctionRegistry, graph: Graph,
                 values: Mapping[str, Any], stacks: Mapping[str, np.ndarray]
                 ) -> list[tuple[str, str, int, dict[str, Any]]]:
    """Version-1 tables: the step's result with the intensities of the stack it derives from."""
    info = graph.results[step.result]
    intensity = stacks[info.alias]
    if info.reduced == "max":
        intensity = intensity.max(axis=0, keepdims=True)
    elif info.reduced is not None:
        intensity = intensity.mean(axis=0, keepdims=True)
    rows = registry.get(step.func).tables[table].func(_host(values[step.result]), intensity)
    return [(table, step.result, z, row) for z, row in rows]


def _forget(values: dict[str, Any], graph: Graph, position: int, stacks: Mapping[str, np.ndarray]) -> None:
    """Drop results no later step reads and no output keeps (device memory is freed with them)."""
    for name in list(values):
        if name not in graph.keep and name not in stacks and graph.last_use.get(name, -1) <= position:
            del values[name]


def host_plane(array: np.ndarray) -> np.ndarray:
    """The dtype an output plane is stored and served as (docs/pipelines.md, "Output dtypes")."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype.kind in "iu" and array.dtype.itemsize >= 4 and array.dtype != np.int32:
        if array.size and (array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max):
            raise ValueError(f"{array.dtype} values do not fit the int32 output")
        return array.astype(np.int32)
    if array.dtype.kind not in "iu":
        raise ValueError(f"cannot store a {array.dtype} output plane")
    return array
