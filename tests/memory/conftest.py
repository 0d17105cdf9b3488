"""Fixtures for hcsfs.memory tests: frameworks are imported once per session, in a safe order.

No ``pytest.importorskip`` for frameworks that requirements/frameworks.txt installs: a missing
framework in CI must fail the run, not skip it.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from hcsfs import memory as hm

CPU_TYPES = ("numpy", "torch", "jax", "tensorflow", "pyclesperanto")

# Loaded at collection, before any test of the session can import tensorflow on its own:
# pyclesperanto (PoCL) must be initialised before tensorflow (see docs/memory.md).
_FRAMEWORKS = {m.value: mod for m, mod in hm.load_frameworks(*CPU_TYPES).items()}


@pytest.fixture(scope="session")
def fw() -> dict[str, ModuleType]:
    """numpy, torch, jax, tensorflow and pyclesperanto modules."""
    return _FRAMEWORKS


@pytest.fixture(autouse=True)
def _fresh_stats() -> None:
    hm.reset_stats()
