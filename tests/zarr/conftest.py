"""Fixtures for the OME-Zarr tests: both zarr implementations, synthetic plates and converted stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hcsfs import MemoryPlate
from tests.conftest import require
from tests.plates import SAMPLES, memory_plate, plate_keys

IMPLS = ("zarr-python", "tensorstore")


@pytest.fixture(params=IMPLS)
def zarr_impl(request: pytest.FixtureRequest) -> str:
    """Every test taking this runs against both implementations."""
    require("tensorstore" if request.param == "tensorstore" else "zarr", "the zarr extra (make install)")
    return str(request.param)


@pytest.fixture(scope="session")
def plate() -> MemoryPlate:
    """3 wells (one on row AF), 2 sites, 2 channels, 3 z: 36 planes of 40x56 uint16."""
    return memory_plate(plate_keys(("A01", "B03", "AF48"), sites=2, channels=2, z=3), shape=(40, 56))


@pytest.fixture(scope="session")
def samples() -> Path:
    if not (SAMPLES / "omezarr_v04_plate_meta").is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"OME-Zarr samples not found under {SAMPLES}")
        pytest.skip(reason=f"OME-Zarr samples not found under {SAMPLES}")
    return SAMPLES
