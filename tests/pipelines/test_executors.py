"""The thread executor: units under a time limit run on reused unit threads; an overrun fails alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hcsfs.pipelines.executors import ThreadExecutor
from hcsfs.pipelines.units import Unit
from hcsfs.pipelines.worker import UnitOutcome

WORKERS = 2


def _units(count: int) -> list[tuple[int, Unit]]:
    return [(i, Unit(f"U{i:02d}", ())) for i in range(count)]


def _run(work, units: list[tuple[int, Unit]],  # type: ignore[no-untyped-def]
         timeout: float | None) -> dict[str, UnitOutcome]:
    delivered: dict[str, UnitOutcome] = {}
    lock = threading.Lock()

    def deliver(unit: Unit, index: int, outcome: UnitOutcome) -> None:
        with lock:
            delivered[unit.label] = outcome

    with ThreadPoolExecutor(WORKERS) as pool:
        executor = ThreadExecutor(work, pool, threading.Semaphore(WORKERS), threading.Event(), timeout,
                                  on_stop=lambda message: None)
        executor.run(units, deliver)
    return delivered


def _unit_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("hcsfs-unit")}


def test_units_run_on_at_most_as_many_threads_as_run_at_once_and_none_outlive_the_run() -> None:
    before = _unit_threads()
    ran_on: dict[str, threading.Thread] = {}  # the objects, kept: idents of ended threads recur

    def work(unit: Unit, index: int, stop) -> UnitOutcome:  # type: ignore[no-untyped-def]
        ran_on[unit.label] = threading.current_thread()
        assert threading.current_thread().name == f"hcsfs-unit-{unit.label}"
        time.sleep(0.005)
        return UnitOutcome(unit.label, index)

    delivered = _run(work, _units(24), timeout=30.0)
    assert sorted(delivered) == [f"U{i:02d}" for i in range(24)]
    assert not any(o.error for o in delivered.values())
    assert len(set(ran_on.values())) <= WORKERS  # reused, not one thread per unit
    deadline = time.monotonic() + 5
    while _unit_threads() - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _unit_threads() - before


def test_an_overrunning_unit_fails_alone_and_its_thread_is_not_reused() -> None:
    release = threading.Event()
    ran_on: dict[str, threading.Thread] = {}

    def work(unit: Unit, index: int, stop) -> UnitOutcome:  # type: ignore[no-untyped-def]
        ran_on[unit.label] = threading.current_thread()
        if unit.label == "U01":
            release.wait(30)  # far beyond the limit
        return UnitOutcome(unit.label, index)

    try:
        delivered = _run(work, _units(8), timeout=0.3)
    finally:
        release.set()
    errors = {label: o.error for label, o in delivered.items() if o.error}
    assert list(errors) == ["U01"] and "took longer than 0.3 s" in str(errors["U01"])
    assert len(delivered) == 8
    later = [thread for label, thread in ran_on.items() if label > "U01"]  # started after U01 hung
    assert later and all(thread is not ran_on["U01"] for thread in later), ran_on
