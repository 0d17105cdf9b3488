"""ImageJ opens a CellVoyager PNG plate through the mount: the PNGs served as TIFF, pixel size included."""

from __future__ import annotations

from pathlib import Path

import pytest

import hcsfs
from tests.clients.conftest import run_imagej
from tests.clients.test_imagej import OPEN_PLANES, _check_plane, _results, _write_macro
from tests.sources.test_cellvoyager import _key, _png_plate

pytestmark = [pytest.mark.clients, pytest.mark.mount]


@pytest.mark.parametrize("bit_depth", [16, 8])
def test_imagej_reads_png_planes_served_as_tiff(tmp_path: Path, mountpoint: Path, unchanged,  # type: ignore[no-untyped-def]
                                                bit_depth: int) -> None:
    plate = tmp_path / "cq1"
    records, pixels = _png_plate(plate, bit_depth)
    unchanged(plate)
    macro = _write_macro(tmp_path, OPEN_PLANES)
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        lines = run_imagej(macro, "|".join(str(mountpoint / _key(rec).name) for rec in records))
    results = {r["name"]: r for r in _results(lines, "RESULT")}
    assert set(results) == {_key(rec).name for rec in records}
    for rec in records:
        result = results[_key(rec).name]
        _check_plane(result, pixels[rec])
        assert result["unit"] in ("micron", "microns")
        assert float(result["pw"]) == pytest.approx(0.65, rel=1e-6)
