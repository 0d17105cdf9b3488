"""Running one spec over a source: plan the units, hand them to an executor, fold outcomes into sinks.

A :class:`Run` has a driver thread. It plans the units, checks the spec's graph, chooses an executor
(:mod:`hcsfs.pipelines.executors`: the shared thread pool, or Dask) that runs
:func:`~hcsfs.pipelines.worker.process_unit` for each unit, and folds each outcome into the run's sinks:
planes are published (visible under ``/<name>/``) only after their store holds them completely, ROI sets
appear as units finish, tables, ``image.csv``, ``wells.csv`` and heatmaps when the run is done. A failing
unit is recorded in the status and the run goes on; cancelling stops feeding units.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hcsfs import memory as hm
from hcsfs.errors import SpecError
from hcsfs.memory import MemoryType
from hcsfs.naming import PlaneKey
from hcsfs.pipelines.analysis import graph_of
from hcsfs.pipelines.compute import HOST_MEMORY
from hcsfs.pipelines.executors import ThreadExecutor, UnitExecutor
from hcsfs.pipelines.illumination import Profile
from hcsfs.pipelines.journal import UNITS_FILE, UnitJournal
from hcsfs.pipelines.outputs import (
    PLANES_FILE,
    TABLES_DIR,
    OutputPlate,
    PlaneJournal,
    RunOutput,
    write_atomic,
)
from hcsfs.pipelines.registry import FunctionRegistry
from hcsfs.pipelines.spec import PipelineSpec
from hcsfs.pipelines.status import RunStatus
from hcsfs.pipelines.units import Unit, plan_units
from hcsfs.pipelines.worker import (
    PlanePlacement,
    UnitContext,
    UnitOutcome,
    make_stores,
    placement_of,
    process_unit,
)
from hcsfs.sinks import ZarrArrayCache
from hcsfs.sources.base import PlateSource
from hcsfs.sources.memory import MemoryPlate

if TYPE_CHECKING:
    from hcsfs.pipelines.distributed import DaskTarget

__all__ = ["Run", "resolve_device", "UNIT_TIMEOUT_S"]

PERSIST_INTERVAL_S = 2.0
"""How often a running run saves its status.json (what a crash leaves)."""
UNIT_TIMEOUT_S = 3600.0
"""Default limit on one unit's computation (reading, steps, writing); PipelineManager(unit_timeout=)."""


def resolve_device(spec: PipelineSpec) -> tuple[int | None, str, str | None]:
    """``(gpu_id, device name, fallback message)`` for the run's GPU-capable steps; the message also
    names the steps that run on the CPU for want of a GPU implementation."""
    gpu_id, device, fallback = _device_for(spec)
    notes = [*([fallback] if fallback else []), *dict.fromkeys(s.fallback for s in spec.steps if s.fallback)]
    return gpu_id, device, "; ".join(notes) or None


def _device_for(spec: PipelineSpec) -> tuple[int | None, str, str | None]:
    gpu_types = {s.memory for s in spec.steps} - set(HOST_MEMORY)
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
                 unit_timeout: float | None = UNIT_TIMEOUT_S, resume: bool = False) -> None:
        """``resume``: ``folder`` holds an interrupted run of the same spec; its committed units are
        shown again and not rerun (memory outputs are gone with the mount: they rerun)."""
        self.spec, self.source, self.registry, self.folder = spec, source, registry, folder
        self._resume = resume and spec.output != "memory"
        self._units = UnitJournal(folder / UNITS_FILE)
        self._persisted = 0.0
        self._restored_fields: dict[str, set[tuple[str, Any]]] = {}
        self.status = status
        self._pool, self._limiter, self._on_finish = executor, limiter, on_finish
        self._dask = dask
        self._unit_timeout = unit_timeout
        self._cancel = threading.Event()
        self.superseded = False
        description = source.describe()
        self._pixel_size = description.pixel_size_um
        self._channel_names = description.channel_names
        self._data: Any = folder / "data"  # where planes are stored (a shared location for Dask runs)
        self.output = RunOutput(None if spec.is_analysis else self._new_plate(spec.name))
        self._plates: dict[str, Any] = {}
        self._caches: dict[str, ZarrArrayCache] = {}
        self._stores: dict[str, Any] = {}
        self._placement = PlanePlacement(())
        self._journal = PlaneJournal(folder / PLANES_FILE)
        self._sinks: list[Any] = []
        self.illumination: dict[Any, Profile] = {}
        """Channel -> its illumination profiles (fitted before the units run; empty: no correction)."""
        self._thread = threading.Thread(target=self._drive, name=f"hcsfs-run-{spec.name}", daemon=True)

    def _new_plate(self, name: str) -> Any:
        if self.spec.output == "memory":
            return MemoryPlate(name=name, pixel_size_um=self._pixel_size, channel_names=self._channel_names)
        return OutputPlate(name, pixel_size_um=self._pixel_size, channel_names=self._channel_names)

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
            units = plan_units(self.source.keys(), self.spec, self._channel_names)
            if not units:
                raise SpecError("select", "matches no plane of the plate")
            status.update(total=len(units))
            steps, graph = graph_of(self.spec, self.registry)
            self._placement = placement_of(self.spec, graph, units)
            for result, folder in self._placement.folders:
                plate = self.output.source if not folder else self._new_plate(f"{self.spec.name}/{folder}")
                self._plates[result] = plate
                if folder:
                    self.output.set_result(folder, plate)
            self._sinks = self._make_sinks(units)
            fitted = self._fit_illumination(units)
            pending = self._restore(units) if self._resume else list(enumerate(units))
            if not fitted:  # cancelled while fitting the illumination profiles: no unit runs
                pending = []
            executor = self._executor(steps, graph)
            executor.run(pending, self._deliver)
            self._finish()
        except SpecError as exc:  # a spec this plate or executor cannot run: nothing ran
            status.add_error(None, str(exc))
            status.update(state="failed", field=exc.field, message=str(exc), finished=_now())
        except Exception as exc:  # the run itself broke (not one unit): say so in the status
            status.add_error(None, f"{type(exc).__name__}: {exc}")
            status.update(state="failed", message=f"{type(exc).__name__}: {exc}", finished=_now())
        finally:
            try:
                for sink in self._sinks:
                    sink.finish(False)  # after a failure: removes spool files; a no-op once finished
                if self.superseded:
                    shutil.rmtree(self.folder, ignore_errors=True)
            finally:
                self._on_finish(self)

    def _make_sinks(self, units: list[Unit]) -> list[Any]:
        from hcsfs.pipelines.tables import AnalysisTables, LegacyTables

        tables_dir = self.folder / TABLES_DIR
        sinks: list[Any] = []
        if self.spec.measures:
            sinks.append(_Once(AnalysisTables(self.spec, units, tables_dir, self.output,
                                              resume=self._resume)))
        if any(s.tables for s in self.spec.steps):
            sinks.append(_Once(LegacyTables(self.spec, self.registry, tables_dir, self.output,
                                            resume=self._resume)))
        return sinks

    def _restore(self, units: list[Unit]) -> list[tuple[int, Unit]]:
        """Resuming: show the committed units' planes and ROI sets again, hand their rows back to the
        table sinks; the units still to run, with their plan indexes."""
        from hcsfs.pipelines.outputs import load_output

        records = self._units.load()
        loaded = load_output(self.folder, self.spec.name, pixel_size_um=self._pixel_size,
                             channel_names=self._channel_names, committed=records)
        for result, folder in self._placement.folders:
            plate = loaded.source if not folder else loaded.results().get(folder)
            if plate is None:
                continue
            self._plates[result] = plate
            if folder:
                self.output.set_result(folder, plate)
            else:
                self.output.source = plate
            self._restored_fields[result] = {(k.well, k.site) for k in plate.keys()}
        for name, path in loaded.folder_files("rois").items():
            self.output.add_file("rois", name, path)
        pending = []
        restored = 0
        for index, unit in enumerate(units):
            record = records.get(unit.label)
            if record is None:
                pending.append((index, unit))
                continue
            record = {**record, "index": index}
            for sink in self._sinks:
                sink.restore(unit, record)
            restored += 1
        self.status.update(done=restored)
        self.status.log(f"resuming: {restored} of {len(units)} units were complete; running {len(pending)}")
        return pending

    def _fit_illumination(self, units: list[Unit]) -> bool:
        """The spec's illumination profiles, fitted (resuming: read back) and saved under
        ``illumination/`` before any unit runs; ``False`` when cancelled meanwhile. A fit that fails
        fails the run (:class:`SpecError`, field ``illumination``)."""
        config = self.spec.illumination
        if config is None:
            return True
        from hcsfs.pipelines import illumination

        folder = self.folder / illumination.FOLDER
        channels = list(illumination.selected_planes(units))
        profiles = illumination.read_profiles(folder, channels, config) if self._resume else None
        if profiles is not None:
            self.status.log(f"illumination: the saved profiles of {len(profiles)} channel(s) read back")
            files = [(name, folder / name) for p in profiles.values() for name in p.file_names()]
        else:
            self.status.update(state="running")
            self.status.log(f"illumination: fitting {config.method} profiles of {len(channels)} channel(s) "
                            f"from up to {config.sample} planes each")
            profiles = illumination.fit_run_profiles(config, self.source, units, device=self.spec.device,
                                                     cancelled=lambda: self.cancelled, log=self.status.log)
            if profiles is None:
                return False
            files = illumination.write_profiles(profiles, folder)
        for name, path in files:
            self.output.add_file(illumination.FOLDER, name, path)
        self.illumination = profiles
        return True

    def _executor(self, steps: tuple[Any, ...], graph: Any) -> UnitExecutor:
        if self._dask is not None:
            from hcsfs.pipelines.distributed import dask_executor

            return dask_executor(self, steps, graph)
        hm.load_frameworks(*{s.memory for s in self.spec.steps})
        gpu_id, device, fallback = resolve_device(self.spec)
        cuda_only = next((s for s in self.spec.steps if s.memory is MemoryType.CUPY), None)
        if gpu_id is None and cuda_only is not None:  # cupy cannot fall back to the CPU
            raise SpecError(f"steps[{cuda_only.position}].memory",
                            "cupy needs a CUDA device and this machine has none (or device: cpu): use "
                            "numpy, torch or jax")
        self._stores = self.make_stores(shared=False)
        context = UnitContext(self.spec, steps, graph, self.registry, self.source, self._stores, gpu_id,
                              device, illumination=self.illumination or None)
        total = self.status.to_dict()["total"]
        self.status.update(state="running", device=device, fallback=fallback)
        self.status.log(f"running {total} units on {device}" + (f" ({fallback})" if fallback else ""))

        def work(unit: Unit, index: int, stop: Callable[[], bool]) -> UnitOutcome | None:
            return process_unit(context, unit, index, cancelled=stop)

        def stopped(message: str) -> None:
            self.status.update(message=message)
            self.status.log(message.replace("stopped: ", "") + ": stopping the run")

        return ThreadExecutor(work, self._pool, self._limiter, self._cancel, self._unit_timeout, stopped)

    def make_stores(self, *, shared: bool) -> dict[str, Any]:
        """The plane stores of the saved results under the run's data location."""
        # A resumed run is the second writer of the plates the interrupted one began.
        self._stores = make_stores(self.spec, self._data, self._placement, channel_names=self._channel_names,
                                   pixel_size_um=self._pixel_size, shared=shared or self._resume)
        return self._stores

    @property
    def placement(self) -> PlanePlacement:
        return self._placement

    def set_data_location(self, data: Any) -> None:
        """Dask runs with shared outputs: planes are stored (and read back) there."""
        self._data = data

    # --- outcomes (from executor threads) --------------------------------------------------------

    def _deliver(self, unit: Unit, index: int, outcome: UnitOutcome) -> None:
        try:
            if outcome.error is not None:
                self.status.add_error(outcome.label, outcome.error)
            else:
                if outcome.oom_fallback:
                    self.status.log(f"{outcome.label}: ran out of GPU memory, finished on the CPU")
                    self.status.update(fallback="out of GPU memory: some units ran on the CPU")
                for result, key, shape, dtype, record, plane in outcome.planes:
                    if self.cancelled and self._dask is None:
                        return
                    self._publish(result, key, shape, np.dtype(dtype), record, plane, unit.label)
                self._write_rois(outcome)
            for sink in self._sinks:
                sink.take(outcome, unit)
            if outcome.error is None:
                self._commit(unit, index, [name for name, _, _ in outcome.rois])
        finally:
            self.status.add_done()
            self._persist_now_and_then()

    def _commit(self, unit: Unit, index: int, rois: list[str]) -> None:
        """Everything of ``unit`` is on storage: record it (after its rows are made durable)."""
        record: dict[str, Any] = {"unit": unit.label, "index": index, "rois": rois}
        for sink in self._sinks:
            record.update(sink.commit(index))
        self._units.commit(record)

    def _persist_now_and_then(self) -> None:
        """Save the status every few seconds, so a crash leaves a recent ``status.json``."""
        now = time.monotonic()
        if now - self._persisted < PERSIST_INTERVAL_S:
            return
        self._persisted = now
        try:
            write_atomic(self.folder / "status.json", self.status.status_bytes())
        except OSError:
            pass  # the final save reports problems; a missed intermediate one costs nothing

    def _write_rois(self, outcome: UnitOutcome) -> None:
        if not outcome.rois:
            return
        folder = self.folder / "rois"
        folder.mkdir(exist_ok=True)
        for name, data, _ in outcome.rois:
            write_atomic(folder / name, data)
            self.output.add_file("rois", name, folder / name)

    def _publish(self, result: str, key: PlaneKey, shape: tuple[int, int], dtype: np.dtype,
                 record: dict[str, Any], plane: np.ndarray | None, unit: str) -> None:
        """Make a completely stored plane visible and journal it."""
        plate = self._plates[result]
        if plane is not None:  # memory output: the plate holds it
            plate.add(key, plane)
            self.status.add_planes(1)
            return
        folder = self._placement.folder(result)
        base = self._data / folder if folder else self._data
        if "file" in record:
            path = Path(base) / "tiff" / record["file"]
            plate.publish(key, shape, dtype, _tiff_reader(path), passthrough=path)
        else:
            store = self._stores.get(result)
            if self._dask is not None and store is not None:
                store.add_field(key.well, key.site)  # a worker made it; the driver writes the documents
            cache = self._caches.get(result)
            if cache is None:
                cache = self._caches[result] = ZarrArrayCache(base / "plate.ome.zarr")
            location = dict(record)
            plate.publish(key, shape, dtype, lambda: cache.read(location))
        extra: dict[str, Any] = {"unit": unit, **({"result": folder} if folder else {})}
        if self._data != self.folder / "data":
            extra["data"] = str(self._data)
        self._journal.append(key, {"shape": list(shape), "dtype": dtype.str, **record, **extra})
        self.status.add_planes(1)

    # --- the end --------------------------------------------------------------------------------

    def _finish(self) -> None:
        status = self.status
        for result, store in self._stores.items():
            if store is None:
                continue
            if hasattr(store, "add_field"):  # fields the interrupted run wrote belong to the plate too
                for well, site in sorted(self._restored_fields.get(result, ())):
                    store.add_field(well, site)
            store.finish()
        if self.cancelled:
            status.update(state="cancelled", finished=_now())
            status.log("cancelled")
            return
        doc = status.to_dict()
        if doc["total"] and len(doc["errors"]) + doc["errors_dropped"] >= doc["total"]:
            status.update(state="failed", message="every unit failed", finished=_now())
            return
        for sink in self._sinks:
            for line in sink.finish(True):
                status.log(line)
        self._render_heatmaps()
        status.update(state="done", finished=_now())
        status.log(f"done: {doc['planes']} planes, {len(doc['errors'])} unit errors")

    def _render_heatmaps(self) -> None:
        if not self.spec.heatmaps:
            return
        from hcsfs.pipelines.heatmap import heatmap_png, plate_shape
        from hcsfs.pipelines.tables import AnalysisTables

        tables = next(s.sink for s in self._sinks if isinstance(s.sink, AnalysisTables))
        rows, columns = plate_shape(tables.well_rows or ["A01"])
        folder = self.folder / "heatmaps"
        folder.mkdir(exist_ok=True)
        for column in self.spec.heatmaps:
            values = {well: row.get(column) for well, row in tables.well_rows.items()}
            path = folder / f"{column}.png"
            write_atomic(path, heatmap_png(values, column, rows=rows, columns=columns))
            self.output.add_file("heatmaps", path.name, path)
        self.status.log(f"heatmaps: {len(self.spec.heatmaps)} pictures of {rows}x{columns} wells")


class _Once:
    """A sink whose ``finish`` runs once (the driver calls it again after failures)."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self._finished = False
        self._lock = threading.Lock()

    def take(self, outcome: UnitOutcome, unit: Unit) -> None:
        self.sink.take(outcome, unit)

    def commit(self, index: int) -> dict[str, Any]:
        found: dict[str, Any] = self.sink.commit(index)
        return found

    def restore(self, unit: Unit, record: dict[str, Any]) -> None:
        self.sink.restore(unit, record)

    def finish(self, complete: bool) -> list[str]:
        with self._lock:
            if self._finished:
                return []
            self._finished = True
        lines: list[str] = self.sink.finish(complete)
        return lines


def _tiff_reader(path: Path) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import tifffile

        return np.asarray(tifffile.imread(path))

    return read


def _now() -> str:
    from hcsfs.pipelines.status import now_iso

    return now_iso()

