"""Torture-suite fixtures: the hang watchdog, fuzz budgets and source-safety helpers.

``make fuzz`` runs this folder with ``HYPOTHESIS_PROFILE=fuzz``: every property test here takes its
example count from :func:`examples`, and the ``fuzz`` profile also lengthens the suite's other
property tests that do not fix their own count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.torture.watchdog import Watchdog

FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"

settings.register_profile("fuzz", max_examples=2_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
if FUZZ:
    settings.load_profile("fuzz")


def examples(bounded: int, fuzz: int) -> int:
    """Examples per property: ``bounded`` in ``make test``, ``fuzz`` in ``make fuzz``."""
    return fuzz if FUZZ else bounded


@pytest.fixture
def watchdog(request: pytest.FixtureRequest) -> Iterator[Watchdog]:
    """``with watchdog.bound("what", seconds, mountpoint, pid=...)``: a mount operation that takes
    longer dumps the daemon's thread stacks into the test log, unblocks the mount and fails the test."""
    dog = Watchdog(request.node.nodeid)
    yield dog
    dog.close()
