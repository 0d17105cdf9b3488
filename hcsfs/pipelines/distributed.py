"""Runs on a Dask distributed cluster: each unit is a Dask task; workers read the plate themselves.

The mount's machine plans the units and submits one task per unit (:func:`run_unit`) with a small
picklable :class:`UnitJob`: where the plate is (a path on a shared filesystem or an ``s3://`` URL, never
the FUSE mount of another machine), the spec, the plugin modules, and where outputs go. A worker opens
the plate, builds the registry (built-ins plus the same plugins) and its output writer once per run and
process, computes the unit with the same code as the local runner
(:func:`hcsfs.pipelines.runner.compute_unit`), writes its planes into the shared store, and returns
their location records and table rows. The driver publishes them, so progress and per-unit errors land
in the status as with local runs; plate documents are written by the driver at the end.

- ``zarr`` outputs: one OME-Zarr plate in the shared store. Workers create field images on first use;
  two creating the same field write identical documents, so no coordination is needed.
- ``tiff``: files in the run's shared folder. ``memory``: planes are returned to the driver.
- A unit's own failure comes back as its error (not retried: it would fail again). A worker that dies
  is Dask's business: the scheduler reruns its tasks elsewhere (rewriting a plane is harmless).
- Cancelling cancels the futures; units already running finish their current task.
- GPU workers: ``resources: {GPU: 1}`` in the spec becomes the tasks' Dask resources.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hcsfs.errors import HcsfsError, SpecError
from hcsfs.naming import PlaneKey

if TYPE_CHECKING:
    from hcsfs.pipelines.registry import FunctionRegistry
    from hcsfs.pipelines.runner import Run, Unit
    from hcsfs.pipelines.spec import PipelineSpec
    from hcsfs.sources.base import PlateSource

__all__ = ["DaskTarget", "SourceRef", "UnitJob", "run_unit", "check_worker_registry", "connect"]


@dataclass(frozen=True, slots=True)
class SourceRef:
    """How a worker opens the plate: :func:`hcsfs.open_plate` arguments."""

    location: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, source: PlateSource) -> SourceRef:
        arguments = getattr(source, "open_arguments", None)
        if callable(arguments):
            location, options = arguments()
            return cls(location, tuple(sorted(options.items())))
        described = source.describe().source
        path = Path(described)
        if not path.is_absolute() or not path.exists():
            raise HcsfsError(f"a {source.format_name} plate without a path ({described!r}) cannot be opened "
                             "by Dask workers: mount a plate folder on a shared filesystem or an s3:// plate")
        return cls(str(path), (("format", source.format_name),))

    def open(self) -> PlateSource:
        from hcsfs.sources import open_plate

        return open_plate(self.location, **dict(self.options))


@dataclass(frozen=True, slots=True)
class UnitJob:
    """Everything a worker needs besides the unit (small: it travels with every task)."""

    run_id: str
    spec: PipelineSpec
    source: SourceRef
    plugins: tuple[str, ...]
    data: str
    """Where outputs go: the zarr plate or TIFF folder (a shared path or an ``s3://`` URL)."""
    s3_options: tuple[tuple[str, Any], ...] = ()
    axes: tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]] = ((), (), ())
    channel_names: tuple[tuple[int, str], ...] = ()
    pixel_size_um: float | None = None


@dataclass
class _WorkerRun:
    source: PlateSource
    registry: FunctionRegistry
    sink: Any
    gpu_id: int | None
    device: str


_worker_runs: OrderedDict[str, _WorkerRun] = OrderedDict()
_worker_lock = threading.Lock()


def _make_registry(plugins: tuple[str, ...]) -> FunctionRegistry:
    from hcsfs.pipelines.registry import default_registry, load_plugins

    registry = default_registry()
    load_plugins(registry, plugins)
    return registry


def _worker_run(job: UnitJob) -> _WorkerRun:
    """The opened plate, registry and writer of a run in this worker process (made once)."""
    with _worker_lock:
        found = _worker_runs.get(job.run_id)
        if found is not None:
            _worker_runs.move_to_end(job.run_id)
            return found
        from hcsfs import memory as hm
        from hcsfs.pipelines.runner import resolve_device

        registry = _make_registry(job.plugins)
        hm.load_frameworks(*{s.memory for s in job.spec.steps})
        gpu_id, device, _ = resolve_device(job.spec)
        found = _WorkerRun(job.source.open(), registry, _worker_sink(job), gpu_id, device)
        _worker_runs[job.run_id] = found
        while len(_worker_runs) > 4:
            _, old = _worker_runs.popitem(last=False)
            old.source.close()
        return found


def _worker_sink(job: UnitJob) -> Any:
    from hcsfs.sinks import TiffFolderSink, ZarrPlaneSink
    from hcsfs.sinks.zarr import zarr_location

    if job.spec.output == "memory":
        return None
    target = zarr_location(job.data, **dict(job.s3_options))
    if job.spec.output == "tiff":
        return TiffFolderSink(target, pixel_size_um=job.pixel_size_um)  # type: ignore[arg-type]
    t, channel, z = job.axes
    return ZarrPlaneSink(target, t=t, channel=channel, z=z, channel_names=dict(job.channel_names),
                         pixel_size_um=job.pixel_size_um, name=job.spec.name, shared=True)


@dataclass(slots=True)
class UnitOutcome:
    """What a task returns to the driver."""

    label: str
    planes: list[tuple[PlaneKey, tuple[int, int], str, dict[str, Any], np.ndarray | None]] = field(
        default_factory=list)
    rows: list[tuple[str, PlaneKey, dict[str, Any]]] = field(default_factory=list)
    error: str | None = None
    oom_fallback: bool = False
    worker: str | None = None
    device: str | None = None


def run_unit(job: UnitJob, unit: Unit) -> UnitOutcome:
    """One unit on a worker: compute, write the planes to the shared store, report them."""
    from hcsfs.pipelines.runner import compute_unit

    outcome = UnitOutcome(unit.label)
    try:
        from distributed import get_worker

        outcome.worker = get_worker().address
    except (ImportError, ValueError):
        pass
    try:
        state = _worker_run(job)
        outcome.device = state.device
        result = compute_unit(job.spec, state.registry, state.source, unit, state.gpu_id)
        assert result is not None
        outcome.oom_fallback = result.oom_fallback
        outcome.rows = result.rows
        for key, plane in zip(result.keys, result.planes, strict=True):
            shape = (int(plane.shape[0]), int(plane.shape[1]))
            if state.sink is None:  # memory: the driver keeps the plane
                outcome.planes.append((key, shape, plane.dtype.str, {}, plane))
            else:
                record = state.sink.write(key, plane)
                outcome.planes.append((key, shape, plane.dtype.str, record, None))
    except Exception as exc:  # this unit's failure, reported in the status like a local one
        outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome


def check_worker_registry(spec: PipelineSpec, registry: FunctionRegistry) -> None:
    """Workers know the built-ins and the registry's plugin modules: a function registered only in
    this process (``registry.register`` in a notebook) cannot run there."""
    workers = _make_registry(tuple(registry.plugins))
    for i, step in enumerate(spec.steps):
        try:
            workers.implementation(step.func, step.memory)
        except Exception:  # noqa: BLE001 - any lookup failure means the same thing here
            raise SpecError(f"steps[{i}].func", f"{step.func!r} ({step.memory.value}) is registered in "
                            "this process only; Dask workers know the built-ins and --plugins modules"
                            ) from None


def connect(address: str, timeout: float = 10.0) -> Any:
    """A Dask client of the scheduler at ``address`` (not made the process's default client)."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise HcsfsError(f"Dask runs need distributed (pip install 'hcsfs[distributed]'): {exc}") from exc
    return Client(address, timeout=timeout, set_as_default=False)


@dataclass(frozen=True, slots=True)
class DaskTarget:
    """Where a run goes: the scheduler's address and a way to get (one shared) client for it."""

    address: str
    client: Callable[[], Any]
    shared_outputs: str | None = None
    """Folder on a shared filesystem or ``s3://`` prefix for run data; default: the run folder."""
    s3_options: tuple[tuple[str, Any], ...] = ()


def drive(run: Run, units: list[Unit], job: UnitJob, client: Any) -> None:
    """Submit one task per unit and fold the outcomes into the run as they complete."""
    from distributed import as_completed

    spec = run.spec
    resources = dict(spec.resources) or None
    futures = [
        client.submit(run_unit, job, unit, key=f"hcsfs-{job.run_id}-{i}", pure=False, resources=resources)
        for i, unit in enumerate(units)
    ]
    finished = threading.Event()

    def cancel_when_asked() -> None:
        while not finished.is_set():
            if run.wait_cancelled(0.2):
                client.cancel(futures)
                return

    watcher = threading.Thread(target=cancel_when_asked, name=f"hcsfs-dask-cancel-{spec.name}", daemon=True)
    watcher.start()
    labels = {f.key: u.label for f, u in zip(futures, units, strict=True)}
    devices: set[str] = set()
    try:
        for future in as_completed(futures, loop=client.loop):
            label = labels[future.key]
            if future.status == "cancelled":
                continue
            try:
                outcome: UnitOutcome = future.result()
            except Exception as exc:  # the task itself failed: e.g. KilledWorker after repeated deaths
                run.status.add_error(label, f"{type(exc).__name__}: {exc}")
                run.status.add_done()
                continue
            finally:
                future.release()
            if outcome.device and outcome.device not in devices:
                devices.add(outcome.device)
                run.status.update(device=", ".join(sorted(devices)))
            run.take_outcome(outcome)
    finally:
        finished.set()
        watcher.join(1)
