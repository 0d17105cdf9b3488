"""Executors: strategies that run a run's units and hand each outcome to the driver.

Both take the planned units and a ``deliver(unit, index, outcome)`` callback, called once per unit that
ran (``outcome.error`` says when it failed) and never for units that a cancel kept from running.

- :class:`ThreadExecutor`: the mount's shared thread pool, at most as many units at once as the shared
  limiter allows (so reads keep their threads and cores), each unit limited in time (run in a unit
  thread the pool thread waits for; unit threads are reused within the run).
- :class:`~hcsfs.pipelines.distributed.DaskExecutor`: one Dask task per unit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Protocol

from hcsfs.pipelines.units import Unit
from hcsfs.pipelines.worker import UnitOutcome

__all__ = ["Deliver", "ThreadExecutor", "UnitExecutor", "MAX_ABANDONED"]

MAX_ABANDONED = 8
"""Units abandoned for overrunning the time limit after which the run stops."""

Deliver = Callable[[Unit, int, UnitOutcome], None]
Work = Callable[[Unit, int, Callable[[], bool]], "UnitOutcome | None"]
"""``work(unit, index, stop) -> outcome`` (``None``: stopped); raising is the unit's error."""


class UnitExecutor(Protocol):
    def run(self, units: list[tuple[int, Unit]], deliver: Deliver) -> None:
        """Run every ``(plan index, unit)`` (until cancelled); return when none is running any more."""


class _UnitThread:
    """A daemon thread that runs the jobs handed to it, one at a time, until it is stopped."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="hcsfs-unit", daemon=True).start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        """End the thread once its current job (if any) returns."""
        self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


class ThreadExecutor:
    """Units on a shared thread pool, each run in a unit thread and limited to ``unit_timeout`` seconds.

    A thread cannot be killed: a unit that overruns is abandoned (its thread is left to finish, or hang,
    and is never reused), reported as failed, and whatever it computes later is discarded. After
    :data:`MAX_ABANDONED` of them the run stops: a function that hangs every unit would pile up threads.
    Unit threads are reused from unit to unit and end with the run: a new thread per unit cost the
    version-1 benchmark about 10% of its time (thread start-up, and fresh threads compute slower).
    """

    def __init__(self, work: Work, pool: Executor, limiter: threading.Semaphore, cancel: threading.Event,
                 unit_timeout: float | None, on_stop: Callable[[str], None]) -> None:
        self._work, self._pool, self._limiter, self._cancel = work, pool, limiter, cancel
        self._timeout = unit_timeout
        self._on_stop = on_stop
        self._abandoned = 0
        self._idle: list[_UnitThread] = []
        self._closed = False
        self._lock = threading.Lock()

    def run(self, units: list[tuple[int, Unit]], deliver: Deliver) -> None:
        futures: list[Future[None]] = []
        try:
            for index, unit in units:
                if not self._acquire():
                    break
                try:
                    futures.append(self._pool.submit(self._one, unit, index, deliver))
                except RuntimeError:  # the pool is shut down: the mount is closing
                    self._limiter.release()
                    self._cancel.set()
                    break
            for future in futures:
                future.result()
        finally:
            with self._lock:
                idle, self._idle, self._closed = self._idle, [], True
            for thread in idle:
                thread.stop()

    def _acquire(self) -> bool:
        """A slot of the shared limiter, or ``False`` once cancelled."""
        while not self._limiter.acquire(timeout=0.1):
            if self._cancel.is_set():
                return False
        if self._cancel.is_set():
            self._limiter.release()
            return False
        return True

    def _one(self, unit: Unit, index: int, deliver: Deliver) -> None:
        try:
            if self._cancel.is_set():
                return
            try:
                outcome = self._in_time(unit, index)
            except Exception as exc:
                outcome = UnitOutcome(unit.label, index, error=f"{type(exc).__name__}: {exc}")
            if outcome is not None:
                deliver(unit, index, outcome)
        finally:
            self._limiter.release()

    def _in_time(self, unit: Unit, index: int) -> UnitOutcome | None:
        abandoned = threading.Event()

        def stop() -> bool:
            return self._cancel.is_set() or abandoned.is_set()

        if self._timeout is None:
            return self._work(unit, index, stop)
        box: list[UnitOutcome | None] = []
        failure: list[BaseException] = []
        finished = threading.Event()

        def work() -> None:
            threading.current_thread().name = f"hcsfs-unit-{unit.label}"
            try:
                box.append(self._work(unit, index, stop))
            except BaseException as exc:  # re-raised in the pool thread below
                failure.append(exc)
            finally:
                finished.set()

        thread = self._unit_thread()
        thread.submit(work)
        if not finished.wait(self._timeout):
            abandoned.set()
            thread.stop()  # never reused: it ends if the unit ever returns
            with self._lock:
                self._abandoned += 1
                too_many = self._abandoned >= MAX_ABANDONED
            if too_many and not self._cancel.is_set():
                self._on_stop(f"stopped: {self._abandoned} units timed out")
                self._cancel.set()
            raise TimeoutError(f"took longer than {self._timeout:g} s: abandoned, its result is discarded")
        with self._lock:
            closed = self._closed
            if not closed:
                self._idle.append(thread)
        if closed:
            thread.stop()
        if failure:
            raise failure[0]
        return box[0] if box else None

    def _unit_thread(self) -> _UnitThread:
        """An idle unit thread of this run, or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _UnitThread()
