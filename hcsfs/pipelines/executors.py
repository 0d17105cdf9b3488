"""Executors: strategies that run a run's units and hand each outcome to the driver.

Both take the planned units and a ``deliver(unit, index, outcome)`` callback, called once per unit that
ran (``outcome.error`` says when it failed) and never for units that a cancel kept from running.

- :class:`ThreadExecutor`: the mount's shared thread pool, at most as many units at once as the shared
  limiter allows (so reads keep their threads and cores), each unit limited in time.
- :class:`~hcsfs.pipelines.distributed.DaskExecutor`: one Dask task per unit.
"""

from __future__ import annotations

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


class ThreadExecutor:
    """Units on a shared thread pool, each in a thread of its own limited to ``unit_timeout`` seconds.

    A thread cannot be killed: a unit that overruns is abandoned (left to finish, or hang, as a daemon
    thread), reported as failed, and whatever it computes later is discarded. After
    :data:`MAX_ABANDONED` of them the run stops: a function that hangs every unit would pile up threads.
    """

    def __init__(self, work: Work, pool: Executor, limiter: threading.Semaphore, cancel: threading.Event,
                 unit_timeout: float | None, on_stop: Callable[[str], None]) -> None:
        self._work, self._pool, self._limiter, self._cancel = work, pool, limiter, cancel
        self._timeout = unit_timeout
        self._on_stop = on_stop
        self._abandoned = 0
        self._lock = threading.Lock()

    def run(self, units: list[tuple[int, Unit]], deliver: Deliver) -> None:
        futures: list[Future[None]] = []
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

        def work() -> None:
            try:
                box.append(self._work(unit, index, stop))
            except BaseException as exc:  # re-raised in the pool thread below
                failure.append(exc)

        thread = threading.Thread(target=work, name=f"hcsfs-unit-{unit.label}", daemon=True)
        thread.start()
        thread.join(self._timeout)
        if thread.is_alive():
            abandoned.set()
            with self._lock:
                self._abandoned += 1
                too_many = self._abandoned >= MAX_ABANDONED
            if too_many and not self._cancel.is_set():
                self._on_stop(f"stopped: {self._abandoned} units timed out")
                self._cancel.set()
            raise TimeoutError(f"took longer than {self._timeout:g} s: abandoned, its result is discarded")
        if failure:
            raise failure[0]
        return box[0] if box else None
