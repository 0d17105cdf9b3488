"""The pipeline manager: what ``.pipelines/`` in the mount talks to.

Every method returns quickly (processing runs on the manager's own threads) and is thread-safe. Each
run writes into its own folder ``<outputs_dir>/runs/<name>~<start time ns>/`` holding ``spec/<file>``,
``status.json``, ``run.log``, ``planes.jsonl``, ``data/`` and ``tables/``; a new manager over the same
outputs directory shows the newest folder of each name again. Re-submitting a spec starts a new
folder and deletes the previous one (after its run, if still going, has stopped).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcsfs.errors import RunNotFoundError, SpecError
from hcsfs.pipelines.journal import UNITS_FILE, check_resumable, committed_units
from hcsfs.pipelines.outputs import RunOutput, load_output, write_atomic
from hcsfs.pipelines.readme import readme_text
from hcsfs.pipelines.registry import FunctionRegistry, default_registry
from hcsfs.pipelines.runner import UNIT_TIMEOUT_S, Run
from hcsfs.pipelines.spec import (
    PipelineSpec,
    check_run_name,
    load_document,
    parse_spec,
    spec_extension,
)
from hcsfs.pipelines.status import FINAL, RESUMABLE, RunStatus, now_iso
from hcsfs.sources.base import PlateSource

if TYPE_CHECKING:
    from hcsfs.pipelines.distributed import DaskTarget

__all__ = ["PipelineManager", "RunOutput"]

NOTIFY_INTERVAL_S = 0.25  # on_change at most 4 times a second per run


@dataclass
class _Record:
    name: str
    folder: Path
    status: RunStatus
    output: RunOutput | None
    run: Run | None = None


class _Notifier:
    """Coalesces change notifications and calls ``on_change`` from one thread, rate-limited."""

    def __init__(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change
        self._dirty: set[str] = set()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="hcsfs-pipeline-notify", daemon=True)
        self._thread.start()

    def mark(self, name: str) -> None:
        with self._cond:
            self._dirty.add(name)
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._stopped:
                    self._cond.wait()
                names, self._dirty = self._dirty, set()
                stopped = self._stopped
            for name in sorted(names):
                try:
                    self._on_change(name)
                except Exception:  # the mount's problem; never stop notifying  # noqa: BLE001
                    pass
            if stopped:
                return
            time.sleep(NOTIFY_INTERVAL_S)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)


class PipelineManager:
    """Runs the specs written into ``.pipelines/`` of one mounted plate."""

    def __init__(
        self, source: PlateSource, *, outputs_dir: Path, registry: FunctionRegistry | None = None,
        on_change: Callable[[str], None] = lambda name: None, max_workers: int | None = None,
        scheduler: str | None = None, allowed_schedulers: Iterable[str] = (),
        shared_outputs: str | os.PathLike[str] | None = None, s3_options: Mapping[str, Any] | None = None,
        unit_timeout: float | None = UNIT_TIMEOUT_S,
    ) -> None:
        """``scheduler``: a Dask scheduler address (``tcp://host:8786``) that runs every spec not
        saying otherwise (docs/distributed.md); ``allowed_schedulers``: other addresses a spec's
        ``scheduler:`` may name (a spec can never make the mount connect anywhere else).
        ``shared_outputs``: a folder on a filesystem the workers share, or an ``s3://`` prefix
        (with ``s3_options``), for the data of Dask runs; default: the run folder under
        ``outputs_dir``, which the workers must then see at the same path.
        ``unit_timeout``: seconds one unit may take on this machine before it is abandoned and
        reported as failed (``None``: no limit)."""
        self._source = source
        self._unit_timeout = unit_timeout
        self._scheduler = scheduler
        self._allowed = {a for a in (scheduler, *allowed_schedulers) if a}
        self._shared_outputs = None if shared_outputs is None else str(shared_outputs)
        self._s3_options = tuple(sorted((s3_options or {}).items()))
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._registry = registry if registry is not None else default_registry()
        self._runs_dir = Path(outputs_dir) / "runs"
        self._runs_dir.mkdir(parents=True, exist_ok=True)
        workers = max_workers or max(1, min(4, os.cpu_count() or 1))
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="hcsfs-pipeline")
        self._limiter = threading.Semaphore(workers)
        self._notifier = _Notifier(on_change)
        self._lock = threading.RLock()
        self._specs: dict[str, bytes] = {}
        self._file_run: dict[str, str] = {}
        self._records: dict[str, _Record] = {}
        self._closed = False
        self._load()

    @property
    def registry(self) -> FunctionRegistry:
        return self._registry

    # --- the .pipelines/ interface --------------------------------------------------------------

    def submit(self, filename: str, data: bytes) -> None:
        """A spec file was written (closed) or renamed into ``.pipelines/``: (re)start its run."""
        stem = _check_filename(filename)
        name = _guess_name(filename, data, stem)
        with self._lock:
            if self._closed:
                raise SpecError("spec", "the mount is closing")
            owner = next((f for f, n in self._file_run.items() if n == name and f != filename), None)
            if owner is not None:
                if name == stem:
                    raise SpecError("name", f"run {name!r} is already defined by {owner}")
                error: SpecError | None = SpecError("name", f"{name!r} is already used by {owner}")
                name, spec = stem, None
            else:
                error, spec = None, None
                try:
                    spec = parse_spec(filename, data, self._registry)
                    self._scheduler_of(spec)
                except SpecError as exc:
                    error, spec = exc, None
            previous = self._file_run.get(filename)
            if spec is not None and spec.resume and self._resume(name, filename, data, spec):
                return
            if previous is not None and previous != name:
                self._stop(previous, remove_spec=filename)
            self._specs[filename] = data
            self._file_run[filename] = name
            self._start(name, filename, data, spec, error)

    def remove(self, filename: str) -> None:
        """The spec file was unlinked: cancel its run; a finished run's outputs stay."""
        with self._lock:
            self._specs.pop(filename, None)
            name = self._file_run.pop(filename, None)
            if name is not None:
                self._stop(name, remove_spec=filename)

    def spec_files(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._specs)

    def run_names(self) -> list[str]:
        with self._lock:
            return sorted(self._records)

    def status(self, name: str) -> bytes:
        return self._record(name).status.status_bytes()

    def log(self, name: str) -> bytes:
        return self._record(name).status.log_bytes()

    def readme(self) -> bytes:
        return readme_text(self._registry).encode()

    def output(self, name: str) -> RunOutput | None:
        with self._lock:
            record = self._records.get(name)
            return None if record is None else record.output

    def close(self, timeout: float = 60.0) -> None:
        """Cancel running runs (state ``cancelled``), wait for their workers, stop notifying."""
        with self._lock:
            self._closed = True
            runs = [r.run for r in self._records.values() if r.run is not None]
        for run in runs:
            run.cancel()
        deadline = time.monotonic() + timeout
        for run in runs:
            run.join(max(0.0, deadline - time.monotonic()))
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                client.close(timeout=5)
            except Exception:  # noqa: BLE001 - a scheduler already gone: nothing to close
                pass
        self._notifier.stop()

    # --- internals ------------------------------------------------------------------------------

    def _scheduler_of(self, spec: PipelineSpec) -> str | None:
        """The Dask scheduler a spec runs on (``None``: this machine's threads), or :class:`SpecError`."""
        address = self._scheduler
        if spec.scheduler == "local":
            address = None
        elif spec.scheduler is not None:
            if spec.scheduler not in self._allowed:
                allowed = ", ".join(sorted(self._allowed)) or "none"
                raise SpecError("scheduler", f"{spec.scheduler} is not a scheduler this mount may use "
                                             f"(allowed: {allowed}; the mount's owner sets --scheduler)")
            address = spec.scheduler
        if spec.resources and address is None:
            raise SpecError("resources", "worker resources need a Dask scheduler (scheduler: in the spec "
                                         "or the mount's --scheduler)")
        return address

    def _client(self, address: str) -> Any:
        """One Dask client per scheduler address, made on first use (in a run's driver thread)."""
        from hcsfs.pipelines.distributed import connect

        with self._clients_lock:
            client = self._clients.get(address)
            if client is None or client.status in ("closed", "closing"):
                client = self._clients[address] = connect(address)
            return client

    def _dask_target(self, spec: PipelineSpec) -> DaskTarget | None:
        address = self._scheduler_of(spec)
        if address is None:
            return None
        from hcsfs.pipelines.distributed import DaskTarget

        return DaskTarget(address, lambda: self._client(address), self._shared_outputs, self._s3_options)

    def _record(self, name: str) -> _Record:
        with self._lock:
            record = self._records.get(name)
        if record is None:
            raise RunNotFoundError(f"no pipeline run named {name!r}")
        return record

    def _start(self, name: str, filename: str, data: bytes, spec: PipelineSpec | None,
               error: SpecError | None) -> None:
        old = self._records.get(name)
        folder = self._runs_dir / f"{name}~{time.time_ns()}"
        (folder / "spec").mkdir(parents=True)
        (folder / "spec" / filename).write_bytes(data)
        status = RunStatus(name, filename, self._notifier.mark, output=spec.output if spec else "none")
        if old is not None:
            self._retire(old)
        if spec is None:
            assert error is not None
            status.update(state="failed", field=error.field, message=str(error), finished=now_iso())
            status.add_error(None, str(error))
            self._records[name] = _Record(name, folder, status, None)
            _persist(folder, status)
            return
        status.log(f"spec {filename} accepted: {len(spec.steps)} steps, output {spec.output}")
        run = Run(spec, self._source, self._registry, folder, status, executor=self._executor,
                  limiter=self._limiter, on_finish=self._finished, dask=self._dask_target(spec),
                  unit_timeout=self._unit_timeout)
        self._records[name] = _Record(name, folder, status, run.output, run)
        status.update(started=now_iso())
        _persist(folder, status)
        run.start()

    def _resume(self, name: str, filename: str, data: bytes, spec: PipelineSpec) -> bool:
        """``resume: true``: continue the interrupted (or cancelled) run of this name in its own folder.

        ``False`` when there is nothing to resume (the spec then starts a new run). A spec that is not
        the interrupted run's leaves that run as it is and says why in its status (field ``resume``).
        """
        record = self._records.get(name)
        if record is None or not (record.folder / UNITS_FILE).exists():
            return False
        state = record.status.state
        if state not in RESUMABLE:
            if state == "done":
                record.status.log(f"spec {filename} with resume: the run is already done")
                return True
            raise SpecError("resume", f"run {name!r} is {state}: only an interrupted or cancelled run "
                                      "resumes")
        old_file = next((p for p in sorted((record.folder / "spec").glob("*")) if p.is_file()), None)
        try:
            if old_file is None:
                raise SpecError("resume", "the interrupted run's spec is gone")
            old_data = old_file.read_bytes()
            old_spec = parse_spec(old_file.name, old_data, self._registry)
            check_resumable(old_spec, spec, load_document(old_data, spec_extension(old_file.name)),
                            load_document(data, spec_extension(filename)))
        except SpecError as exc:
            record.status.update(field="resume", message=f"resume refused: {exc}")
            record.status.log(f"spec {filename}: resume refused: {exc}")
            _persist(record.folder, record.status)
            return True
        for stale in (record.folder / "spec").glob("*"):
            stale.unlink()
        (record.folder / "spec" / filename).write_bytes(data)
        self._specs[filename] = data
        self._file_run[filename] = name
        status = RunStatus(name, filename, self._notifier.mark, output=spec.output)
        status.log(f"spec {filename}: resuming the {state} run in {record.folder.name}")
        run = Run(spec, self._source, self._registry, record.folder, status, executor=self._executor,
                  limiter=self._limiter, on_finish=self._finished, dask=self._dask_target(spec),
                  unit_timeout=self._unit_timeout, resume=True)
        self._records[name] = _Record(name, record.folder, status, run.output, run)
        status.update(started=now_iso())
        _persist(record.folder, status)
        run.start()
        return True

    def _retire(self, record: _Record) -> None:
        """A newer run of this name replaces ``record``: stop it and delete its folder."""
        if record.run is not None and record.status.state not in FINAL:
            record.run.superseded = True  # its driver deletes the folder when it has stopped
            record.run.cancel()
        else:
            threading.Thread(target=shutil.rmtree, args=(record.folder,), kwargs={"ignore_errors": True},
                             daemon=True).start()

    def _stop(self, name: str, *, remove_spec: str) -> None:
        record = self._records.get(name)
        if record is None:
            return
        (record.folder / "spec" / remove_spec).unlink(missing_ok=True)
        if record.run is not None and record.status.state not in FINAL:
            record.status.log(f"spec {remove_spec} removed: cancelling")
            record.run.cancel()

    def _finished(self, run: Run) -> None:
        if not run.superseded:
            _persist(run.folder, run.status)
        self._notifier.mark(run.spec.name)

    def _load(self) -> None:
        """Show the runs of a previous mount again (the newest folder of each name)."""
        newest: dict[str, Path] = {}
        for folder in sorted(self._runs_dir.iterdir(), key=lambda p: p.name):
            name, sep, stamp = folder.name.rpartition("~")
            if not sep or not stamp.isdigit() or not (folder / "status.json").is_file():
                continue
            if name in newest and int(newest[name].name.rpartition("~")[2]) > int(stamp):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if name in newest:
                shutil.rmtree(newest[name], ignore_errors=True)
            newest[name] = folder
        for name, folder in newest.items():
            try:
                self._restore(name, folder)
            except (OSError, ValueError, KeyError, SpecError):
                continue  # a damaged folder is skipped, never fatal to the mount

    def _restore(self, name: str, folder: Path) -> None:
        doc = json.loads((folder / "status.json").read_text())
        log_path = folder / "run.log"
        log = log_path.read_text() if log_path.exists() else ""
        status = RunStatus.restore(doc, log, self._notifier.mark)
        committed = committed_units(folder) if (folder / UNITS_FILE).exists() else None
        if status.state not in FINAL:  # the process died during the run (kill -9, OOM killer, power)
            when = _last_write(folder)
            status.update(state="interrupted", done=len(committed or {}), interrupted=when, finished=None,
                          message=f"interrupted at {when}: {len(committed or {})} units complete; write the "
                                  "spec again with resume: true to continue")
            status.log(f"interrupted at {when}")
        description = self._source.describe()
        output = None
        if doc.get("output_kind") not in (None, "none"):
            output = load_output(folder, name, pixel_size_um=description.pixel_size_um,
                                 channel_names=description.channel_names, s3_options=dict(self._s3_options),
                                 committed=committed)
        self._records[name] = _Record(name, folder, status, output)
        for spec_file in sorted((folder / "spec").glob("*")):
            if spec_file.is_file() and spec_file.name not in self._specs:
                self._specs[spec_file.name] = spec_file.read_bytes()
                self._file_run[spec_file.name] = name


def _persist(folder: Path, status: RunStatus) -> None:
    try:
        write_atomic(folder / "status.json", status.status_bytes())
        write_atomic(folder / "run.log", status.log_bytes())
    except OSError as exc:  # a failed save is an error in the status, not a log line
        status.add_error(None, f"could not save the status in {folder}: {exc}")


def _last_write(folder: Path) -> str:
    """When the run folder was last written (the time of an interruption), as an ISO time."""
    import datetime

    times = [p.stat().st_mtime for p in (folder / n for n in ("status.json", UNITS_FILE, "planes.jsonl"))
             if p.exists()]
    stamp = max(times) if times else time.time()
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _check_filename(filename: str) -> str:
    """The stem of an acceptable spec file name; :class:`SpecError` (``EINVAL``) otherwise."""
    if "/" in filename or "\0" in filename or filename.startswith(".") or len(filename) > 255:
        raise SpecError("filename", f"{filename!r} is not a spec file name")
    extension = spec_extension(filename)
    stem = filename[: -len(extension)]
    check_run_name(stem, "filename")
    return stem


def _guess_name(filename: str, data: bytes, stem: str) -> str:
    """The run name an (even invalid) spec asks for, so its failure shows under that name."""
    try:
        document = load_document(data, spec_extension(filename))
        if isinstance(document, dict) and "name" in document:
            return check_run_name(document["name"])
    except SpecError:
        pass
    return stem

