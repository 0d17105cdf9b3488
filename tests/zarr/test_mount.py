"""Real FUSE mounts of converted OME-Zarr plates: bytes equal a mount of the original, EIO per chunk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import hcsfs
from hcsfs import MemoryPlate
from hcsfs.convert import convert_plate
from tests.zarr.stores import chunk_files

pytestmark = pytest.mark.mount


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.name.endswith(".tif")}


@pytest.mark.parametrize("ngff,chunks", [("0.5", "plane"), ("0.4", "well")])
def test_mounted_zarr_equals_mounted_original(
    tmp_path: Path, plate: MemoryPlate, ngff: str, chunks: str, zarr_impl: str, unchanged: object,
) -> None:
    store = tmp_path / "p.zarr"
    convert_plate(plate, store, ngff=ngff, chunks=chunks)
    unchanged(store)  # type: ignore[operator]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with hcsfs.mounted(plate, tmp_path / "a") as original:  # pyfuse3: one mount per process
        expected = _files(original.path)
    with hcsfs.mounted(store, tmp_path / "b", zarr_impl=zarr_impl) as converted:
        got = _files(converted.path)
    assert len(expected) == len(plate.keys())
    assert got.keys() == expected.keys()
    assert all(got[name] == expected[name] for name in expected)


def test_corrupt_chunk_is_eio_for_its_plane_only(tmp_path: Path, plate: MemoryPlate) -> None:
    store = tmp_path / "p.zarr"
    convert_plate(plate, store)
    chunk_files(store / "A" / "1" / "0" / "0")[0].write_bytes(b"\x00not zstd" * 30)
    (tmp_path / "m").mkdir()
    with hcsfs.mounted(store, tmp_path / "m") as mnt:
        bad = mnt.path / "A01_s001_w1_z001_t001.tif"
        assert bad.stat().st_size > 0  # stat needs no chunk
        with pytest.raises(OSError) as raised:
            bad.read_bytes()
        assert raised.value.errno == errno.EIO
        others = [p for p in mnt.path.iterdir() if p.name.endswith(".tif") and p != bad]
        assert len(others) == len(plate.keys()) - 1
        for path in others:
            assert len(path.read_bytes()) == os.stat(path).st_size
