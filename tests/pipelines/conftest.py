"""Fixtures for pipeline tests: one registry, small plates, frameworks imported once in a safe order."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable

import numpy as np
import pytest
from scipy import ndimage as ndi

from hcsfs import MemoryPlate, PlaneKey
from hcsfs import memory as hm
from hcsfs.pipelines import FunctionRegistry, PipelineManager, default_registry
from tests.conftest import IN_CI

# pyclesperanto must be initialised before tensorflow (docs/memory.md); torch and jax are reused. Outside
# CI only those installed: a GPU machine may lack pyclesperanto (make gpu-check runs the cupy cases there).
hm.load_frameworks(*(name for name in ("numpy", "torch", "jax", "pyclesperanto")
                     if IN_CI or importlib.util.find_spec(name) is not None))


@pytest.fixture(scope="session")
def registry() -> FunctionRegistry:
    return default_registry()


def blobs(rng: np.random.Generator, shape: tuple[int, int], dtype: str = "uint16") -> np.ndarray:
    """Smooth bright blobs on a noisy background: something to threshold and label."""
    field = ndi.gaussian_filter(rng.random(shape), 3)
    field = (field - field.min()) / (np.ptp(field) or 1)
    image = 200 + 3000 * (field > 0.6) * field + rng.normal(0, 20, shape)
    return np.clip(image, 0, 65535).astype(dtype)


def make_plate(wells: tuple[str, ...] = ("A01", "B02"), sites: int = 1, channels: int = 2, zs: int = 2,
               shape: tuple[int, int] = (40, 48), seed: int = 0) -> MemoryPlate:
    rng = np.random.default_rng(seed)
    planes = {}
    for well in wells:
        for site in range(1, sites + 1):
            for channel in range(1, channels + 1):
                for z in range(1, zs + 1):
                    planes[PlaneKey(well, site, channel, z, 1)] = blobs(rng, shape)
    return MemoryPlate(planes, pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})


def wait_state(manager: PipelineManager, name: str, states: tuple[str, ...] = ("done", "failed", "cancelled"),
               timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = json.loads(manager.status(name))
        if doc["state"] in states or time.monotonic() > deadline:
            return doc
        time.sleep(0.02)


@pytest.fixture
def plate() -> MemoryPlate:
    return make_plate()


@pytest.fixture
def manager_factory(tmp_path, registry) -> Callable[..., PipelineManager]:  # type: ignore[no-untyped-def]
    made: list[PipelineManager] = []

    def make(source, **kwargs) -> PipelineManager:  # type: ignore[no-untyped-def]
        kwargs.setdefault("outputs_dir", tmp_path / "outputs")
        kwargs.setdefault("registry", registry)
        manager = PipelineManager(source, **kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()
