"""One unit where it runs (a local thread or a Dask worker): read, compute, store planes, encode ROIs.

:func:`process_unit` wraps the pure computation (:mod:`hcsfs.pipelines.compute`) with the unit's I/O:
it reads the unit's stacks, stores each kept result's planes in that result's plane store (complete on
storage when the call returns), encodes ROI sets, and returns a picklable :class:`UnitOutcome` that the
run's driver folds into its sinks (publishing planes, tables, ROI files). Nothing becomes visible here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcsfs.naming import PlaneKey
from hcsfs.pipelines.analysis import Graph
from hcsfs.pipelines.compute import compute_unit
from hcsfs.pipelines.illumination import Profile, correct_stacks
from hcsfs.pipelines.registry import FunctionRegistry
from hcsfs.pipelines.spec import PipelineSpec, StepSpec
from hcsfs.pipelines.units import Unit, read_unit, result_keys
from hcsfs.sources.base import PlateSource

__all__ = ["PlanePlacement", "UnitContext", "UnitOutcome", "make_stores", "placement_of", "process_unit",
           "roi_file_name"]

Axes = tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]
"""The (t, channel, z) index values a result's zarr plate holds."""


@dataclass(frozen=True, slots=True)
class PlanePlacement:
    """Where the planes of each saved result go: its folder name in the run (``""``: the run folder
    itself, version 1) and the axes of its zarr plate."""

    folders: tuple[tuple[str, str], ...]
    axes: tuple[tuple[str, Axes], ...] = ()

    def folder(self, result: str) -> str:
        return dict(self.folders)[result]


@dataclass(slots=True)
class UnitContext:
    """What a unit needs besides itself; made once per run and process."""

    spec: PipelineSpec
    steps: tuple[StepSpec, ...]
    graph: Graph
    registry: FunctionRegistry
    source: PlateSource
    stores: Mapping[str, Any]
    """Saved result -> its plane store (``None``: memory output, planes go back to the driver)."""
    gpu_id: int | None = None
    device: str = "cpu"
    illumination: Mapping[Any, Profile] | None = None
    """Channel -> its fitted illumination profiles (the spec's ``illumination:``), applied to every plane
    read, before the first step; ``None``: no correction."""


@dataclass(slots=True)
class UnitOutcome:
    """What one unit produced, for the driver; small enough to travel back from a Dask worker."""

    label: str
    index: int
    planes: list[tuple[str, PlaneKey, tuple[int, int], str, dict[str, Any], np.ndarray | None]] = field(
        default_factory=list)
    """``(result, key, shape, dtype, location record, plane or None)`` of each stored plane."""
    measurements: dict[str, list[tuple[PlaneKey, dict[str, np.ndarray]]]] = field(default_factory=dict)
    """Table -> ``(plane key, per-object columns)`` for each plane of the unit."""
    legacy_rows: list[tuple[str, PlaneKey, dict[str, Any]]] = field(default_factory=list)
    rois: list[tuple[str, bytes, int]] = field(default_factory=list)
    """``(file name, .roi.zip bytes, object count)``."""
    error: str | None = None
    oom_fallback: bool = False
    worker: str | None = None
    device: str | None = None


def roi_file_name(key: PlaneKey, result: str) -> str:
    """``A01_s001_w1_z001_t001_nuclei.roi.zip``: the labels plane's stem and the result's name."""
    return f"{key.name.removesuffix('.tif')}_{result}.roi.zip"


def process_unit(context: UnitContext, unit: Unit, index: int, *,
                 cancelled: Callable[[], bool] = lambda: False) -> UnitOutcome | None:
    """Compute one unit and store its planes; ``None`` when cancelled. Exceptions are the unit's error."""
    spec, graph = context.spec, context.graph
    stacks = read_unit(context.source, unit)
    if context.illumination:
        stacks = correct_stacks(stacks, unit, context.illumination)
    done = compute_unit(context.steps, spec.measures, graph, context.registry, stacks, context.gpu_id,
                        cancelled=cancelled)
    if done is None:
        return None
    outcome = UnitOutcome(unit.label, index, oom_fallback=done.oom_fallback, device=context.device)

    def keys_of(name: str, depth: int) -> list[PlaneKey]:
        info = graph.results[name]
        return result_keys(spec, unit, info.alias, info.reduced, depth)

    for table, planes in done.measurements.items():
        objects = next(m.objects for m in spec.measures if m.table == table)
        outcome.measurements[table] = list(zip(keys_of(objects, len(planes)), planes, strict=True))
    for table, result, z, row in done.legacy_rows:
        keys = keys_of(result, _depth(graph, result, stacks, done.results))
        outcome.legacy_rows.append((table, keys[z], row))
    for result in spec.rois:
        from hcsfs.pipelines.roisets import roi_zip_bytes

        labels = done.results[result]
        for key, plane in zip(keys_of(result, labels.shape[0]), labels, strict=True):
            count = _count(plane)
            if count:  # ImageJ answers a zip without ROIs with a modal dialog: no file for no objects
                outcome.rois.append((roi_file_name(key, result), roi_zip_bytes(plane), count))
    for result, store in context.stores.items():
        stack = done.results[result]
        for key, plane in zip(keys_of(result, stack.shape[0]), stack, strict=True):
            if cancelled():
                return None
            shape = (int(plane.shape[0]), int(plane.shape[1]))
            if store is None:
                outcome.planes.append((result, key, shape, plane.dtype.str, {}, plane))
            else:
                outcome.planes.append((result, key, shape, plane.dtype.str, store.write(key, plane), None))
    return outcome


def _depth(graph: Graph, result: str, stacks: Mapping[str, np.ndarray], results: Mapping[str, np.ndarray]
           ) -> int:
    if result in results:
        return int(results[result].shape[0])
    return 1 if graph.results[result].reduced else int(stacks[graph.results[result].alias].shape[0])


def _count(labels: np.ndarray) -> int:
    """Objects in a labels plane: a histogram when the numbers are dense (no sort of the plane)."""
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= 0:
        return 0
    if top <= 4 * flat.size and flat.min() >= 0:
        return int(np.count_nonzero(np.bincount(flat, minlength=top + 1)[1:]))
    return int(np.count_nonzero(np.unique(flat)))


def make_stores(spec: PipelineSpec, data: Any, placement: PlanePlacement, *, channel_names: Mapping[int, str],
                pixel_size_um: float | None, shared: bool) -> dict[str, Any]:
    """Each saved result's plane store under ``data`` (a run's data folder, or a shared location)."""
    from hcsfs.sinks import TiffFolderSink, ZarrPlaneSink

    stores: dict[str, Any] = {}
    axes = dict(placement.axes)
    for result, folder in placement.folders:
        base = data / folder if folder else data
        if spec.output == "memory":
            stores[result] = None
        elif spec.output == "tiff":
            if not isinstance(base, (Path, os.PathLike)):
                from hcsfs.errors import SpecError

                raise SpecError("output", "tiff outputs need a shared filesystem, not object storage")
            stores[result] = TiffFolderSink(Path(base) / "tiff", pixel_size_um=pixel_size_um)
        else:
            t, channel, z = axes[result]
            stores[result] = ZarrPlaneSink(base / "plate.ome.zarr", t=t, channel=channel, z=z,
                                           channel_names=channel_names, pixel_size_um=pixel_size_um,
                                           name=spec.name if not folder else f"{spec.name} {folder}",
                                           shared=shared)
    return stores


def placement_of(spec: PipelineSpec, graph: Graph, units: list[Unit]) -> PlanePlacement:
    """Folders and zarr axes of the saved results, from the planned units (no I/O)."""
    folders = tuple((r, r if spec.is_analysis else "") for r in (spec.save if spec.is_analysis
                                                                 else sorted(graph.keep)))
    axes = []
    for result, _ in folders:
        info = graph.results[result]
        seen: dict[str, list[Any]] = {"t": [], "channel": [], "z": []}
        for unit in units:
            if unit.problem is not None:
                continue
            depth = 1 if info.reduced else len(unit.stack_keys(info.alias))
            for key in result_keys(spec, unit, info.alias, info.reduced, depth):
                for axis, values in seen.items():
                    if getattr(key, axis) not in values:
                        values.append(getattr(key, axis))
        ordered = [tuple(sorted(v, key=_index_order)) for v in (seen["t"], seen["channel"], seen["z"])]
        axes.append((result, (ordered[0], ordered[1], ordered[2])))
    return PlanePlacement(folders, tuple(axes))


def _index_order(value: Any) -> tuple[bool, int, str]:
    return (isinstance(value, str), value if isinstance(value, int) else 0, str(value))

