"""Fixtures for the instrument-format tests: the shared real samples, checked unchanged afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sources.generate_ixm import SAMPLES, tree_digest

_USED = (
    "imagexpress_plane_guid", "imagexpress_listing", "phenix_harmony5_a", "phenix_harmony5_b",
    "phenix_harmony7_index_only",
)


@pytest.fixture(scope="session")
def samples() -> Iterator[Path]:
    """``../shared/samples`` (read only); its checksums must be the same after every test used it."""
    if not all((SAMPLES / name).is_dir() for name in _USED):
        message = f"real instrument samples not found under {SAMPLES}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)  # CI has ../shared beside the clone: missing samples are a failure
        pytest.skip(reason=message)
    before = {name: tree_digest(SAMPLES / name) for name in _USED}
    yield SAMPLES
    after = {name: tree_digest(SAMPLES / name) for name in _USED}
    assert after == before, "a test changed the shared samples"
