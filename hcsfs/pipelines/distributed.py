"""Runs on a Dask distributed cluster: each unit is a Dask task; workers read the plate themselves.

The mount's machine plans the units and submits one task per unit (:func:`run_unit`) with a small
picklable :class:`UnitJob`: where the plate is (a path on a shared filesystem or an ``s3://`` URL, never
the FUSE mount of another machine), the spec, the plugin modules, and where outputs go. A worker opens
the plate, builds the registry (built-ins plus the same plugins) and its output writer once per run and
process, runs the unit with the same code as the local threads
(:func:`hcsfs.pipelines.worker.process_unit`): planes go into the shared store, and the outcome (their
location records, measurement rows, ROI sets) returns to the driver, which folds it into the run as
it does local outcomes (progress and per-unit errors in the status); plate documents are written by
the driver at the end.

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

from hcsfs.errors import HcsfsError, SpecError
from hcsfs.pipelines.worker import PlanePlacement, UnitContext, UnitOutcome

if TYPE_CHECKING:
    from hcsfs.pipelines.executors import Deliver
    from hcsfs.pipelines.illumination import Profile
    from hcsfs.pipelines.registry import FunctionRegistry
    from hcsfs.pipelines.runner import Run
    from hcsfs.pipelines.spec import PipelineSpec
    from hcsfs.pipelines.units import Unit
    from hcsfs.sources.base import PlateSource

__all__ = ["DaskExecutor", "DaskTarget", "SourceRef", "UnitJob", "run_unit", "check_worker_registry",
           "connect", "dask_executor"]


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
    """The run's data location (a shared path or an ``s3://`` URL): results' plane stores under it."""
    s3_options: tuple[tuple[str, Any], ...] = ()
    placement: PlanePlacement = PlanePlacement(())
    channel_names: tuple[tuple[int, str], ...] = ()
    pixel_size_um: float | None = None
    models: str | None = None
    """The driver's ``--models`` folder: ``func: model`` reads the same path on the worker (shared)."""
    illumination: tuple[Profile, ...] = field(default=(), compare=False)
    """The run's fitted illumination profiles (a few MB: the job is scattered to the workers once)."""


_worker_runs: OrderedDict[str, UnitContext] = OrderedDict()
_worker_lock = threading.Lock()


def _make_registry(plugins: tuple[str, ...], models: str | None = None) -> FunctionRegistry:
    from hcsfs.pipelines.models import use_models
    from hcsfs.pipelines.registry import default_registry, load_plugins

    registry = default_registry()
    load_plugins(registry, plugins)
    use_models(registry, models, must_exist=False)  # a worker without the folder fails its model steps only
    return registry


def _worker_run(job: UnitJob) -> UnitContext:
    """The opened plate, registry, graph and plane stores of a run in this worker process (made once)."""
    with _worker_lock:
        found = _worker_runs.get(job.run_id)
        if found is not None:
            _worker_runs.move_to_end(job.run_id)
            return found
        from hcsfs import memory as hm
        from hcsfs.pipelines.analysis import graph_of
        from hcsfs.pipelines.runner import resolve_device
        from hcsfs.pipelines.worker import make_stores
        from hcsfs.sinks.zarr import zarr_location

        registry = _make_registry(job.plugins, job.models)
        hm.load_frameworks(*{s.memory for s in job.spec.steps})
        gpu_id, device, _ = resolve_device(job.spec)
        steps, graph = graph_of(job.spec, registry)
        data = zarr_location(job.data, **dict(job.s3_options))
        stores = make_stores(job.spec, data, job.placement, channel_names=dict(job.channel_names),
                             pixel_size_um=job.pixel_size_um, shared=True)
        found = UnitContext(job.spec, steps, graph, registry, job.source.open(), stores, gpu_id, device,
                            illumination={p.channel: p for p in job.illumination} or None)
        _worker_runs[job.run_id] = found
        while len(_worker_runs) > 4:
            _, old = _worker_runs.popitem(last=False)
            old.source.close()
        return found


def run_unit(job: UnitJob, unit: Unit, index: int) -> UnitOutcome:
    """One unit on a worker: compute, write the planes to the shared store, report the outcome."""
    from hcsfs.pipelines.worker import process_unit

    worker = None
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        pass
    try:
        outcome = process_unit(_worker_run(job), unit, index)
        assert outcome is not None
    except Exception as exc:  # this unit's failure, reported in the status like a local one
        outcome = UnitOutcome(unit.label, index, error=f"{type(exc).__name__}: {exc}")
    outcome.worker = worker
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


def dask_executor(run: Run, steps: tuple[Any, ...], graph: Any) -> DaskExecutor:
    """The Dask executor of ``run`` (its spec checked for workers, its data location chosen)."""
    target = run._dask
    assert target is not None
    check_worker_registry(run.spec, run.registry)
    source = SourceRef.of(run.source)
    data: Any = run.folder / "data"
    if target.shared_outputs is not None:
        from hcsfs.sinks.zarr import zarr_location

        data = zarr_location(target.shared_outputs, **dict(target.s3_options)) / run.folder.name
        if run.spec.output == "tiff" and not isinstance(data, Path):
            raise SpecError("output", "tiff outputs need a shared filesystem, not object storage: use zarr")
    run.set_data_location(data)
    run.make_stores(shared=True)
    description = run.source.describe()
    job = UnitJob(run_id=run.folder.name, spec=run.spec, source=source, plugins=tuple(run.registry.plugins),
                  data=str(data), s3_options=target.s3_options, placement=run.placement,
                  channel_names=tuple(sorted(description.channel_names.items())),
                  pixel_size_um=description.pixel_size_um,
                  models=None if run.registry.models_dir is None else str(run.registry.models_dir),
                  illumination=tuple(run.illumination.values()))
    run.status.update(state="running", device="dask", scheduler=target.address)
    run.status.log(f"running {run.status.to_dict()['total']} units on the Dask scheduler {target.address}; "
                   f"workers read {source.location} and write {data}")
    return DaskExecutor(run, job, target.client())


class DaskExecutor:
    """One Dask task per unit; outcomes folded into the run as they complete."""

    def __init__(self, run: Run, job: UnitJob, client: Any) -> None:
        self.run_, self.job, self.client = run, job, client

    def run(self, units: list[tuple[int, Unit]], deliver: Deliver) -> None:
        from distributed import as_completed

        run, client, job = self.run_, self.client, self.job
        resources = dict(run.spec.resources) or None
        # illumination profiles make the job a few MB: it goes to the workers once, not with every task
        shipped: Any = client.scatter(job, broadcast=True, hash=False) if job.illumination else job
        futures = [
            client.submit(run_unit, shipped, unit, i, key=f"hcsfs-{job.run_id}-{i}", pure=False,
                          resources=resources)
            for i, unit in units
        ]
        finished = threading.Event()

        def cancel_when_asked() -> None:
            while not finished.is_set():
                if run.wait_cancelled(0.2):
                    client.cancel(futures)
                    return

        watcher = threading.Thread(target=cancel_when_asked, name=f"hcsfs-dask-cancel-{run.spec.name}",
                                   daemon=True)
        watcher.start()
        by_key = {f.key: pair for f, pair in zip(futures, units, strict=True)}
        devices: set[str] = set()
        try:
            for future in as_completed(futures, loop=client.loop):
                index, unit = by_key[future.key]
                if future.status == "cancelled":
                    continue
                try:
                    outcome: UnitOutcome = future.result()
                except Exception as exc:  # the task itself failed: e.g. KilledWorker after repeated deaths
                    outcome = UnitOutcome(unit.label, index, error=f"{type(exc).__name__}: {exc}")
                finally:
                    future.release()
                if outcome.device and outcome.device not in devices:
                    devices.add(outcome.device)
                    run.status.update(device=", ".join(sorted(devices)))
                deliver(unit, index, outcome)
        finally:
            finished.set()
            watcher.join(1)
