"""Running one pipeline: units from the selection, steps in order, planes published when complete.

A :class:`Run` has a driver thread that plans the units and feeds them to the manager's shared thread
pool, at most as many at once as the shared limiter allows (so the mount keeps its threads and cores
for reads). Cancellation stops feeding units; a unit checks it between steps and before writing, and a
plane becomes visible only after its sink stored it completely. A failing unit is recorded in the
status and the run goes on.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hcsfs import memory as hm
from hcsfs.errors import SpecError
from hcsfs.memory import MemoryType, OomEvent
from hcsfs.naming import PlaneKey, sort_key
from hcsfs.pipelines.outputs import (
    KEY_COLUMNS,
    PLANES_FILE,
    TABLES_DIR,
    OutputPlate,
    PlaneJournal,
    RunOutput,
    tables_csv,
    write_atomic,
)
from hcsfs.pipelines.registry import FunctionRegistry
from hcsfs.pipelines.spec import AXES, PipelineSpec, reduction_of
from hcsfs.pipelines.status import RunStatus
from hcsfs.sinks import MemoryPlaneSink, TiffFolderSink, ZarrArrayCache, ZarrPlaneSink
from hcsfs.sources.base import PlateSource
from hcsfs.sources.memory import MemoryPlate

if TYPE_CHECKING:
    from hcsfs.pipelines.distributed import DaskTarget

__all__ = ["Run", "Unit", "plan_units", "host_plane", "resolve_device"]

UNIT_TIMEOUT_S = 3600.0
"""Default limit on one unit's computation (reading, steps, writing); PipelineManager(unit_timeout=)."""
MAX_ABANDONED = 8
"""Units abandoned for overrunning the limit after which the run stops."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One ``[Z, Y, X]`` stack of source planes, ordered along the stacked axis."""

    label: str
    keys: tuple[PlaneKey, ...]


def plan_units(keys: list[PlaneKey], spec: PipelineSpec) -> list[Unit]:
    """Group the selected keys into units (natural order of their first plane)."""
    stacked = spec.stacked_axis
    groups: dict[tuple[Any, ...], list[PlaneKey]] = {}
    for key in keys:
        if spec.select.matches(key):
            groups.setdefault(tuple(getattr(key, a) for a in spec.group_by), []).append(key)
    units = []
    for members in groups.values():
        members.sort(key=sort_key)
        label = members[0].name.removesuffix(".tif")
        if stacked is not None:
            prefix = {"channel": "_w", "z": "_z", "t": "_t"}[stacked]
            head, _, tail = label.partition(prefix)
            label = f"{head}{prefix}*{tail[tail.find('_'):] if '_' in tail else ''}"
        units.append(Unit(label, tuple(members)))
    units.sort(key=lambda u: sort_key(u.keys[0]))
    return units


def output_keys(spec: PipelineSpec, reduction: str | None, unit: Unit, depth: int | None) -> list[PlaneKey]:
    """The keys of a unit's output planes (the stacked axis renamed by a reduction)."""
    axis = spec.stacked_axis
    if reduction is None or axis is None:
        if depth is not None and depth != len(unit.keys):
            raise ValueError(f"the steps turned {len(unit.keys)} planes into {depth}")
        return list(unit.keys)
    if depth is not None and depth != 1:
        raise ValueError(f"a {reduction} reduction gave {depth} planes, not 1")
    return [unit.keys[0].replace(**{axis: reduction})]


@dataclass(slots=True)
class UnitResult:
    """What one unit computed: output planes by key, table rows, and whether it left the GPU."""

    keys: list[PlaneKey]
    planes: list[np.ndarray]
    rows: list[tuple[str, PlaneKey, dict[str, Any]]]
    oom_fallback: bool = False


def compute_unit(spec: PipelineSpec, registry: FunctionRegistry, source: PlateSource, unit: Unit,
                 gpu_id: int | None, *, cancelled: Callable[[], bool] = lambda: False) -> UnitResult | None:
    """Read a unit's planes and run the steps on them (``None`` when cancelled between steps).

    Shared by the local runner and Dask workers (:mod:`hcsfs.pipelines.distributed`).
    """
    stack = np.stack([np.asarray(source.read_plane(k)) for k in unit.keys])
    fallbacks = hm.stats()[OomEvent.CPU_FALLBACK]
    data: Any = stack
    intensity = stack
    rows: list[tuple[str, int, dict[str, Any]]] = []
    for step in spec.steps:
        if cancelled():
            return None
        definition = registry.get(step.func)
        impl = registry.implementation(step.func, step.memory)
        gpu = None if step.memory in (MemoryType.NUMPY, MemoryType.PYCLESPERANTO) else gpu_id
        data = impl(data, **step.kwargs) if gpu is None else impl(data, gpu_id=gpu, **step.kwargs)
        if isinstance(data, tuple):
            data = data[0]
        if definition.reduces:
            intensity = (intensity.max(axis=0, keepdims=True) if definition.reduces == "max"
                         else intensity.mean(axis=0, keepdims=True))
        for table in step.tables:
            host = np.asarray(hm.convert(data, MemoryType.NUMPY))
            rows += [(table, z, row) for z, row in definition.tables[table].func(host, intensity)]
    out = host_plane(np.asarray(hm.convert(data, MemoryType.NUMPY)))
    if out.ndim != 3:
        raise ValueError(f"the steps returned a {out.ndim}-D result, not [Z, Y, X]")
    keys = output_keys(spec, reduction_of(spec, registry), unit, out.shape[0])
    return UnitResult(keys, list(out), [(table, keys[z], row) for table, z, row in rows],
                      hm.stats()[OomEvent.CPU_FALLBACK] > fallbacks)


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


def resolve_device(spec: PipelineSpec) -> tuple[int | None, str, str | None]:
    """``(gpu_id, device name, fallback message)`` for the run's GPU-capable steps."""
    gpu_types = {s.memory for s in spec.steps} - {MemoryType.NUMPY, MemoryType.PYCLESPERANTO}
    if spec.device == "cpu" or not gpu_types:
        return None, "cpu", None
    from hcsfs.memory.backends import cuda_device_count

    try:
        count = cuda_device_count()
    except Exception:  # a broken driver is "no device" here; the fallback says so
        count = 0
    if spec.device == "auto":
        return (0, "cuda:0", None) if count else (None, "cpu", None)
    index = int(spec.device.partition(":")[2])
    if index < count:
        return index, spec.device, None
    return None, "cpu", f"{spec.device} asked for, {count} CUDA device(s) here: running on the CPU"


class Run:
    """One run of a spec over a source, writing into ``folder``."""

    def __init__(self, spec: PipelineSpec, source: PlateSource, registry: FunctionRegistry, folder: Path,
                 status: RunStatus, *, executor: Executor, limiter: threading.Semaphore,
                 on_finish: Callable[[Run], None] = lambda run: None, dask: DaskTarget | None = None,
                 unit_timeout: float | None = UNIT_TIMEOUT_S) -> None:
        self.spec, self.source, self.registry, self.folder = spec, source, registry, folder
        self._unit_timeout = unit_timeout
        self._abandoned = 0
        self._dask = dask
        self._data: Any = folder / "data"  # where planes are stored (a shared location for Dask runs)
        self._axes: tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]] = ((), (), ())
        self.status = status
        self._executor, self._limiter, self._on_finish = executor, limiter, on_finish
        self._cancel = threading.Event()
        self.superseded = False
        self._lock = threading.Lock()
        self._rows: dict[str, list[tuple[PlaneKey, dict[str, Any]]]] = {}
        description = source.describe()
        self._pixel_size = description.pixel_size_um
        self._channel_names = description.channel_names
        self.plate: Any = (MemoryPlate(name=spec.name, pixel_size_um=self._pixel_size,
                                       channel_names=self._channel_names) if spec.output == "memory" else
                           OutputPlate(spec.name, pixel_size_um=self._pixel_size,
                                       channel_names=self._channel_names))
        self.output = RunOutput(self.plate)
        self._journal = PlaneJournal(folder / PLANES_FILE)
        self._sink: Any = None
        self._gpu_id: int | None = None
        self._reduction = reduction_of(spec, registry)
        self._thread = threading.Thread(target=self._drive, name=f"hcsfs-run-{spec.name}", daemon=True)

    # --- control --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait_cancelled(self, timeout: float) -> bool:
        return self._cancel.wait(timeout)

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the driver -----------------------------------------------------------------------------

    def _drive(self) -> None:
        status = self.status
        try:
            units = plan_units(list(self.source.keys()), self.spec)
            if not units:
                status.update(state="failed", field="select", message="select: matches no plane of the plate",
                              finished=_now())
                status.add_error(None, "select: matches no plane of the plate")
                return
            if self._dask is not None:
                self._drive_dask(units)
            else:
                hm.load_frameworks(*{s.memory for s in self.spec.steps})
                self._gpu_id, device, fallback = resolve_device(self.spec)
                self._sink = self._make_sink(units)
                status.update(state="running", total=len(units), device=device, fallback=fallback)
                status.log(f"running {len(units)} units on {device}" + (f" ({fallback})" if fallback else ""))
                futures = self._feed(units)
                for future in futures:
                    future.result()
            self._finish()
        except SpecError as exc:  # a spec the chosen executor cannot run (e.g. Dask workers)
            status.add_error(None, str(exc))
            status.update(state="failed", field=exc.field, message=str(exc), finished=_now())
        except Exception as exc:  # the run itself broke (not one unit): say so in the status
            status.add_error(None, f"{type(exc).__name__}: {exc}")
            status.update(state="failed", message=f"{type(exc).__name__}: {exc}", finished=_now())
        finally:
            try:
                if self.superseded:
                    shutil.rmtree(self.folder, ignore_errors=True)
            finally:
                self._on_finish(self)

    def _feed(self, units: list[Unit]) -> list[Future[None]]:
        futures: list[Future[None]] = []
        for unit in units:
            while not self._limiter.acquire(timeout=0.1):
                if self.cancelled:
                    return futures
            if self.cancelled:
                self._limiter.release()
                return futures
            try:
                futures.append(self._executor.submit(self._unit, unit))
            except RuntimeError:  # the pool is shut down: the mount is closing
                self._limiter.release()
                self.cancel()
                return futures
        return futures

    def _drive_dask(self, units: list[Unit]) -> None:
        """Units as Dask tasks (:mod:`hcsfs.pipelines.distributed`)."""
        from hcsfs.pipelines.distributed import SourceRef, UnitJob, check_worker_registry, drive

        target = self._dask
        assert target is not None
        check_worker_registry(self.spec, self.registry)
        source = SourceRef.of(self.source)
        if target.shared_outputs is not None:
            from hcsfs.sinks.zarr import zarr_location

            self._data = zarr_location(target.shared_outputs, **dict(target.s3_options)) / self.folder.name
            if self.spec.output == "tiff" and not isinstance(self._data, Path):
                raise SpecError("output", "tiff outputs need a shared filesystem, not object storage: "
                                          "use zarr")
        self._sink = self._make_sink(units)
        data = self._data / ("tiff" if self.spec.output == "tiff" else "plate.ome.zarr")
        job = UnitJob(run_id=self.folder.name, spec=self.spec, source=source,
                      plugins=tuple(self.registry.plugins), data=str(data), s3_options=target.s3_options,
                      axes=self._axes, channel_names=tuple(sorted(self._channel_names.items())),
                      pixel_size_um=self._pixel_size)
        self.status.update(state="running", total=len(units), device="dask", scheduler=target.address)
        self.status.log(f"running {len(units)} units on the Dask scheduler {target.address}; "
                        f"workers read {source.location} and write {data}")
        client = target.client()
        drive(self, units, job, client)

    def take_outcome(self, outcome: Any) -> None:
        """Fold one Dask task's :class:`~hcsfs.pipelines.distributed.UnitOutcome` into the run."""
        try:
            if outcome.error is not None:
                self.status.add_error(outcome.label, outcome.error)
                return
            if outcome.oom_fallback:
                self.note_oom_fallback(outcome.label)
            for key, shape, dtype, record, plane in outcome.planes:
                if plane is not None:  # memory output: stored here
                    self._sink.write(key, plane)
                    self.status.add_planes(1)
                    continue
                if self.spec.output == "zarr":
                    self._sink.add_field(key.well, key.site)
                self._publish(key, shape, np.dtype(dtype), record)
            self.add_rows(outcome.rows)
        finally:
            self.status.add_done()

    def _make_sink(self, units: list[Unit]) -> Any:
        data = self._data
        if self.spec.output == "memory":
            return MemoryPlaneSink(self.plate)
        if self.spec.output == "tiff":
            return TiffFolderSink(data / "tiff", pixel_size_um=self._pixel_size)
        values: dict[str, list[Any]] = {"t": [], "channel": [], "z": []}
        for unit in units:
            for key in self._output_keys(unit, None):
                for axis, seen in values.items():
                    if getattr(key, axis) not in seen:
                        seen.append(getattr(key, axis))
        order = {a: sorted(v, key=lambda x: (isinstance(x, str), x if isinstance(x, int) else 0, str(x)))
                 for a, v in values.items()}
        self._axes = (tuple(order["t"]), tuple(order["channel"]), tuple(order["z"]))
        self._zarr_cache = ZarrArrayCache(data / "plate.ome.zarr")
        return ZarrPlaneSink(data / "plate.ome.zarr", t=order["t"], channel=order["channel"], z=order["z"],
                             channel_names=self._channel_names, pixel_size_um=self._pixel_size,
                             name=self.spec.name, shared=self._dask is not None)

    def _output_keys(self, unit: Unit, depth: int | None) -> list[PlaneKey]:
        return output_keys(self.spec, self._reduction, unit, depth)

    def _finish(self) -> None:
        status = self.status
        if self._sink is not None:
            self._sink.finish()
        if self.cancelled:
            status.update(state="cancelled", finished=_now())
            status.log("cancelled")
            return
        doc = status.to_dict()
        if doc["total"] and len(doc["errors"]) + doc["errors_dropped"] >= doc["total"]:
            status.update(state="failed", message="every unit failed", finished=_now())
            return
        self._write_tables()
        status.update(state="done", finished=_now())
        status.log(f"done: {doc['planes']} planes, {len(doc['errors'])} unit errors")

    def _write_tables(self) -> None:
        (self.folder / TABLES_DIR).mkdir(parents=True, exist_ok=True)
        for step in self.spec.steps:
            definition = self.registry.get(step.func)
            for table in step.tables:
                columns = (*KEY_COLUMNS, *definition.tables[table].columns)
                rows = sorted(self._rows.get(table, []), key=lambda r: (sort_key(r[0]), r[1].get("label", 0)))
                data = tables_csv(columns, (_key_row(key) | row for key, row in rows))
                write_atomic(self.folder / TABLES_DIR / f"{table}.csv", data)
                self.output.set_table(f"{table}.csv", data)
                self.status.log(f"table {table}.csv: {len(rows)} rows")

    # --- one unit (in a pool thread) ------------------------------------------------------------

    def _unit(self, unit: Unit) -> None:
        try:
            if not self.cancelled:
                self._unit_in_time(unit)
        except Exception as exc:
            self.status.add_error(unit.label, f"{type(exc).__name__}: {exc}")
        finally:
            self.status.add_done()
            self._limiter.release()

    def _unit_in_time(self, unit: Unit) -> None:
        """Run one unit in a thread of its own, at most ``unit_timeout`` seconds.

        A thread cannot be killed: a unit that overruns is abandoned (its thread left to finish, or
        hang, as a daemon thread), reported as a failed unit, and whatever it computes later is
        discarded (it checks before each plane it would write). After ``MAX_ABANDONED`` of them the run
        stops: a function that hangs every unit would otherwise pile up threads.
        """
        if self._unit_timeout is None:
            self._compute_and_write(unit, threading.Event())
            return
        abandoned = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self._compute_and_write(unit, abandoned)
            except BaseException as exc:  # re-raised in the pool thread below
                failure.append(exc)

        thread = threading.Thread(target=work, name=f"hcsfs-unit-{unit.label}", daemon=True)
        thread.start()
        thread.join(self._unit_timeout)
        if thread.is_alive():
            abandoned.set()
            with self._lock:
                self._abandoned += 1
                too_many = self._abandoned >= MAX_ABANDONED
            if too_many and not self.cancelled:
                self.status.update(message=f"stopped: {self._abandoned} units timed out")
                self.status.log(f"{self._abandoned} units timed out: stopping the run")
                self.cancel()
            raise TimeoutError(f"took longer than {self._unit_timeout:g} s: abandoned, its result "
                               f"is discarded")
        if failure:
            raise failure[0]

    def _compute_and_write(self, unit: Unit, abandoned: threading.Event) -> None:
        def stop() -> bool:
            return self.cancelled or abandoned.is_set()

        result = compute_unit(self.spec, self.registry, self.source, unit, self._gpu_id, cancelled=stop)
        if result is None:
            return
        if result.oom_fallback:
            self.note_oom_fallback(unit.label)
        for key, plane in zip(result.keys, result.planes, strict=True):
            if stop():
                return
            self._write_plane(key, plane)
        self.add_rows(result.rows)

    def note_oom_fallback(self, label: str) -> None:
        self.status.log(f"{label}: ran out of GPU memory, finished on the CPU")
        self.status.update(fallback="out of GPU memory: some units ran on the CPU")

    def add_rows(self, rows: list[tuple[str, PlaneKey, dict[str, Any]]]) -> None:
        with self._lock:
            for table, key, row in rows:
                self._rows.setdefault(table, []).append((key, row))

    def _write_plane(self, key: PlaneKey, plane: np.ndarray) -> None:
        record = self._sink.write(key, plane)  # complete on storage when this returns
        if self.spec.output == "memory":
            self.status.add_planes(1)
            return
        self._publish(key, (int(plane.shape[0]), int(plane.shape[1])), plane.dtype, record)

    def _publish(self, key: PlaneKey, shape: tuple[int, int], dtype: np.dtype,
                 record: dict[str, Any]) -> None:
        """Make a completely stored plane visible under ``/<name>/`` and journal it."""
        if "file" in record:
            path = self._data / "tiff" / record["file"]
            self.plate.publish(key, shape, dtype, _tiff_reader(path), passthrough=path)
        else:
            location = dict(record)
            cache = self._zarr_cache
            self.plate.publish(key, shape, dtype, lambda: cache.read(location))
        extra = {} if self._data == self.folder / "data" else {"data": str(self._data)}
        self._journal.append(key, {"shape": list(shape), "dtype": dtype.str, **record, **extra})
        self.status.add_planes(1)


def _key_row(key: PlaneKey) -> dict[str, Any]:
    return {axis: getattr(key, axis) for axis in AXES}


def _tiff_reader(path: Path) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import tifffile

        return np.asarray(tifffile.imread(path))

    return read


def _now() -> str:
    from hcsfs.pipelines.status import now_iso

    return now_iso()
