"""Identical field images share one parse and one serving record; a field that differs keeps its own.

Expectations come from the files as written (their bytes) and from zarr-python opening each array,
not from the source's own parsing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from hcsfs import PlaneKey
from hcsfs.sources.omezarr import OmeZarrPlateSource, meta
from tests.zarr.stores import write_plate

WELLS = ("A/1", "A/2", "B/1", "B/2")
SHAPE = (2, 3, 12, 10)  # c, z, y, x
ODD = (1, 2, 7, 9)  # the one field that differs: another shape and channel count


def _plate(root: Path, zarr_format: int) -> None:
    data = np.arange(np.prod(SHAPE), dtype="u2").reshape(SHAPE)
    odd = np.arange(np.prod(ODD), dtype="u2").reshape(ODD)
    field = {"data": data, "axes": "czyx", "channels": ["DAPI", "GFP"], "scale": 0.5}
    wells = {w: [dict(field), dict(field)] for w in WELLS}
    wells["B/2"][1] = {"data": odd, "axes": "czyx", "channels": ["Hoechst"], "scale": 0.25}
    write_plate(root, wells, zarr_format=zarr_format)


def _documents(root: Path, zarr_format: int) -> tuple[set[bytes], set[bytes]]:
    """The distinct field image and level-0 array documents on disk, by their bytes."""
    image_name, array_name = ("zarr.json", "zarr.json") if zarr_format == 3 else (".zattrs", ".zarray")
    images = {(root / w / str(f) / image_name).read_bytes() for w in WELLS for f in (0, 1)}
    arrays = {(root / w / str(f) / "0" / array_name).read_bytes() for w in WELLS for f in (0, 1)}
    return images, arrays


def _flat(well: str) -> str:
    row, column = well.split("/")
    return f"{row}{int(column):02d}"


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_identical_fields_parsed_once_odd_field_keeps_its_own_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zarr_format: int
) -> None:
    _plate(tmp_path, zarr_format)
    images, arrays = _documents(tmp_path, zarr_format)
    assert (len(images), len(arrays)) == (2, 2)  # the writer did write 7 identical fields and 1 odd
    parsed: list[str] = []

    def counted(name: str) -> Callable[..., Any]:
        original = getattr(meta, name)

        def parse(*args: Any) -> Any:
            parsed.append(name)
            return original(*args)

        return parse

    for name in ("_image_meta", "_array_meta"):
        monkeypatch.setattr(meta, name, counted(name))
    monkeypatch.setattr(meta, "_PARSED", {})  # nothing left from other tests' plates

    source = OmeZarrPlateSource(tmp_path)
    keys = source.keys()
    assert parsed.count("_image_meta") == len(images) and parsed.count("_array_meta") == len(arrays)

    for well in WELLS:
        for field in (0, 1):
            array = zarr.open_array(str(tmp_path / well / str(field) / "0"), mode="r")
            c_n, z_n = array.shape[:2]
            site_keys = [k for k in keys if k.well == _flat(well) and k.site == field + 1]
            assert len(site_keys) == c_n * z_n
            info = source.info(site_keys[-1])
            assert info.layout is not None and info.layout.shape == array.shape[-2:]
            expected_plane = np.asarray(array[c_n - 1, z_n - 1])
            np.testing.assert_array_equal(source.read_plane(site_keys[-1]), expected_plane)
    odd = PlaneKey("B02", 2)
    assert source.info(odd).channel_name == "Hoechst" and source.info(odd).pixel_size_um == 0.25
    assert source.info(PlaneKey("B02", 1)).channel_name == "DAPI"
    assert source.info(PlaneKey("B02", 1)).pixel_size_um == 0.5

    # One serving record per distinct field, however many wells hold it.
    records = {id(s) for w in WELLS for s in source._done[_flat(w)].sites}
    assert len(records) == 2


def test_a_corrupt_field_among_identical_ones_is_its_wells_error_only(tmp_path: Path) -> None:
    """Cached records never hide a broken document: the well holding it is left out with the file
    and reason, and identical fields elsewhere keep serving."""
    _plate(tmp_path, 3)
    broken = tmp_path / "A" / "2" / "1" / "0" / "zarr.json"
    doc = json.loads(broken.read_bytes())
    doc["shape"] = doc["shape"][:-1]  # 3-D array under 4 axes
    doc["chunk_grid"]["configuration"]["chunk_shape"] = doc["chunk_grid"]["configuration"]["chunk_shape"][:-1]
    broken.write_text(json.dumps(doc))
    source = OmeZarrPlateSource(tmp_path)
    assert {k.well for k in source.keys()} == {"A01", "B01", "B02"}
    (skipped,) = source.describe().skipped
    assert skipped["path"] == "A/2" and "4 axes" in skipped["reason"]
    assert str(broken.parent) in skipped["reason"]
    good = zarr.open_array(str(tmp_path / "B" / "1" / "1" / "0"), mode="r")
    np.testing.assert_array_equal(source.read_plane(PlaneKey("B01", 2, 2, 3)), np.asarray(good[1, 2]))
