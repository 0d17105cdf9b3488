"""The engine without FUSE: run one spec over a plate into a folder (``hcsfs process``).

Cluster nodes often forbid FUSE; this runs the same :class:`~hcsfs.pipelines.runner.Run` as the mount's
``.pipelines/`` does, into ``out``, which then holds what a run folder under ``--outputs`` holds:
``tables/`` (the tables, ``image.csv``, ``wells.csv``), ``rois/``, ``heatmaps/``, ``data/`` (the saved
planes: OME-Zarr or TIFF), ``status.json``, ``run.log`` and ``spec/``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hcsfs.errors import HcsfsError, SpecError
from hcsfs.pipelines.journal import UNITS_FILE, check_resumable
from hcsfs.pipelines.outputs import write_atomic
from hcsfs.pipelines.registry import FunctionRegistry, default_registry, load_plugins
from hcsfs.pipelines.runner import Run
from hcsfs.pipelines.spec import parse_spec
from hcsfs.pipelines.status import RunStatus, now_iso
from hcsfs.sources.base import PlateSource

__all__ = ["process_plate"]


def process_plate(source: PlateSource, spec_file: Path, out: Path, *, scheduler: str | None = None,
                  plugins: Iterable[str] = (), registry: FunctionRegistry | None = None,
                  workers: int | None = None, unit_timeout: float | None = None,
                  models: Path | None = None, resume: bool = False,
                  progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Run ``spec_file`` over ``source`` into the folder ``out`` (new or empty); returns the final status.

    ``models``: the folder ``func: model`` reads (``--models``). ``resume`` (or ``resume: true`` in the
    spec): ``out`` holds an interrupted run of the same spec, which continues (only its missing units
    run). A spec that cannot run raises :class:`SpecError` before anything is written.
    """
    registry = registry if registry is not None else default_registry()
    load_plugins(registry, plugins)
    if models is not None:
        from hcsfs.pipelines.models import use_models

        use_models(registry, models)
    data = spec_file.read_bytes()
    spec = parse_spec(spec_file.name, data, registry)
    if spec.scheduler is not None and spec.scheduler != "local" and scheduler is None:
        scheduler = spec.scheduler
    if spec.scheduler == "local":
        scheduler = None
    if spec.resources and scheduler is None:
        raise SpecError("resources", "worker resources need a Dask scheduler (--scheduler)")
    resuming = (resume or spec.resume) and (out / UNITS_FILE).exists()
    if resuming:
        previous = _previous_state(out, spec, data, spec_file.name, registry)
        if previous.get("state") == "done":
            return previous
        for stale in (out / "spec").glob("*"):
            stale.unlink()
    elif out.exists() and any(out.iterdir()):
        raise HcsfsError(f"{out} is not empty: give a new or empty folder (or --resume an interrupted run)")
    (out / "spec").mkdir(parents=True, exist_ok=True)
    (out / "spec" / spec_file.name).write_bytes(data)
    changed = threading.Event()
    status = RunStatus(spec.name, spec_file.name, lambda name: changed.set(), output=spec.output)
    count = workers or max(1, min(4, os.cpu_count() or 1))
    dask = None
    client: Any = None
    if scheduler is not None:
        from hcsfs.pipelines.distributed import DaskTarget, connect

        client = connect(scheduler)
        dask = DaskTarget(scheduler, lambda: client)
    finished = threading.Event()
    with ThreadPoolExecutor(count, thread_name_prefix="hcsfs-process") as pool:
        run = Run(spec, source, registry, out, status, executor=pool, limiter=threading.Semaphore(count),
                  on_finish=lambda run: finished.set(), dask=dask, unit_timeout=unit_timeout,
                  resume=resuming)
        status.update(started=now_iso())
        run.start()
        try:
            while not finished.wait(0.2):
                if progress is not None:
                    doc = status.to_dict()
                    progress(doc["done"], doc["total"], doc["state"])
        except KeyboardInterrupt:
            run.cancel()
            run.join()
            raise
        finally:
            write_atomic(out / "status.json", status.status_bytes())
            write_atomic(out / "run.log", status.log_bytes())
            if client is not None:
                client.close()
    doc = status.to_dict()
    if progress is not None:
        progress(doc["done"], doc["total"], doc["state"])
    return doc


def _previous_state(out: Path, spec: Any, data: bytes, filename: str, registry: FunctionRegistry
                    ) -> dict[str, Any]:
    """The interrupted run's last status; :class:`SpecError` (``resume``) if its spec is another one."""
    import json

    from hcsfs.pipelines.spec import load_document, spec_extension

    old_file = next((p for p in sorted((out / "spec").glob("*")) if p.is_file()), None)
    if old_file is None:
        raise SpecError("resume", f"{out} holds no spec of an earlier run")
    old_data = old_file.read_bytes()
    check_resumable(parse_spec(old_file.name, old_data, registry), spec,
                    load_document(old_data, spec_extension(old_file.name)),
                    load_document(data, spec_extension(filename)))
    try:
        doc: dict[str, Any] = json.loads((out / "status.json").read_bytes())
    except (OSError, ValueError):
        doc = {}
    return doc
