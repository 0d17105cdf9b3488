"""Fixtures for hcsfs.memory tests: frameworks are imported once per session, in a safe order.

No ``pytest.importorskip`` for frameworks that requirements/frameworks.txt installs: a missing
framework in CI must fail the run, not skip it.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from hcsfs import memory as hm
from tests.conftest import IN_CI

CPU_TYPES = ("numpy", "torch", "jax", "tensorflow", "pyclesperanto", "pyclesperanto_prototype")


def _installed(names: tuple[str, ...]) -> tuple[str, ...]:
    """All of them in CI (a missing one fails the run); elsewhere those installed: a GPU machine may
    lack tensorflow or pyclesperanto (make gpu-check runs tests/memory/test_cuda.py there)."""
    return names if IN_CI else tuple(n for n in names if importlib.util.find_spec(n) is not None)


# Loaded at collection, before any test of the session can import tensorflow on its own:
# pyclesperanto (PoCL) must be initialised before tensorflow (see docs/memory.md).
_FRAMEWORKS = {m.value: mod for m, mod in hm.load_frameworks(*_installed(CPU_TYPES)).items()}


@pytest.fixture(scope="session")
def fw() -> dict[str, ModuleType]:
    """numpy, torch, jax, tensorflow, pyclesperanto and pyclesperanto_prototype modules."""
    return _FRAMEWORKS


@pytest.fixture(autouse=True)
def _fresh_stats() -> None:
    hm.reset_stats()
