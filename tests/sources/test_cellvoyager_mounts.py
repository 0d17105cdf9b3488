"""CellVoyager plates through real FUSE mounts: names, passthrough bytes, PNG planes as TIFF, errors,
``hcsfs info``/``convert`` and ``.pipelines/``; the source folder is unchanged afterwards."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

import hcsfs
from hcsfs.naming import PlaneKey, sort_key
from hcsfs.sources import open_plate
from hcsfs.tiff import encode_tiff
from tests.sources.generate_cellvoyager import Channel, Rec, checked_samples, copy_sample, write_measurement
from tests.sources.generate_ixm import tree_digest
from tests.sources.test_cellvoyager import SAMPLE_PAIRS, _expected, _key, _png_plate
from tests.test_pipelines_mount import wait_final, write_spec

HCSFS = [sys.executable, "-m", "hcsfs"]


@pytest.fixture(scope="module")
def cv_samples() -> Iterator[Path]:
    yield from checked_samples()


@pytest.mark.mount
def test_real_sample_mounts_flat_byte_for_byte(tmp_path: Path, mountpoint: Path, cv_samples: Path) -> None:
    plate = tmp_path / "20200812-Cycle1"
    expected = _expected(copy_sample(plate, *SAMPLE_PAIRS[0]))
    before = tree_digest(plate)
    with hcsfs.mounted(plate, mountpoint, xattrs=True) as mounted:
        names = os.listdir(mounted.path)
        assert names == [".hcsfs", ".pipelines"] + [k.name for k in sorted(expected, key=sort_key)]
        for key, filename in expected.items():
            path = mounted.path / key.name
            assert path.read_bytes() == (plate / filename).read_bytes()
        path = mounted.path / "B03_s004_w3_z010_t002.tif"
        assert float(os.getxattr(path, "user.hcs.pixel_size_um")) == pytest.approx(0.1625)
        assert os.getxattr(path, "user.hcs.source_path").decode().endswith("F010L01A02Z10C03.tif")
        summary = json.loads((mounted.path / ".hcsfs" / "plate.json").read_text())
    assert summary["format"] == "cellvoyager" and summary["planes"] == len(expected)
    assert summary["channel_map"][2]["action"] == 2
    assert tree_digest(plate) == before


@pytest.mark.mount
def test_png_plate_is_served_as_tiff_and_a_lost_plane_is_eio(tmp_path: Path, mountpoint: Path) -> None:
    plate = tmp_path / "cq1"
    records, pixels = _png_plate(plate)
    with hcsfs.mounted(plate, mountpoint) as mounted:
        for rec in records:  # sizes known from metadata alone
            assert (mounted.path / _key(rec).name).stat().st_size == len(encode_tiff(pixels[rec], 0.65))
        for rec in records[:4]:
            np.testing.assert_array_equal(tifffile.imread(mounted.path / _key(rec).name), pixels[rec])
        # Damage two planes of another well while mounted: not read (nor decoded ahead) yet.
        damaged = [records[8], records[12]]
        (plate / damaged[0].file).unlink()
        (plate / damaged[1].file).write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
        for rec in damaged:
            with pytest.raises(OSError) as caught:
                (mounted.path / _key(rec).name).read_bytes()
            assert caught.value.errno == errno.EIO
        for rec in (r for r in records[4:] if r not in damaged):  # only those two planes fail
            assert (mounted.path / _key(rec).name).read_bytes() == encode_tiff(pixels[rec], 0.65)
        summary = json.loads((mounted.path / ".hcsfs" / "plate.json").read_text())
    assert (summary["dtype"], summary["shape"], summary["pixel_size_um"]) == ("u2", [48, 64], 0.65)


@pytest.mark.mount
def test_errors_and_missing_files_in_plate_json(tmp_path: Path, mountpoint: Path) -> None:
    from tests.sources.generate_cellvoyager import err_record

    records = [Rec(1, 1, f, 1) for f in (1, 2, 3)]
    written = write_measurement(tmp_path / "p", records, errors=[err_record(1, 1, "AF Error at A01 No. 3")])
    written.files[records[1]].unlink()
    with hcsfs.mounted(tmp_path / "p", mountpoint) as mounted:
        assert os.listdir(mounted.path)[2:] == ["A01_s001_w1_z001_t001.tif", "A01_s003_w1_z001_t001.tif"]
        summary = json.loads((mounted.path / ".hcsfs" / "plate.json").read_text())
    assert summary["missing"] == [{"name": "A01_s002_w1_z001_t001.tif", "path": records[1].file}]
    assert [e["message"] for e in summary["acquisition_errors"]] == ["AF Error at A01 No. 3"]
    with pytest.raises(Exception, match="missing"):
        with hcsfs.mounted(tmp_path / "p", mountpoint, strict=True):
            pass


def test_hcsfs_info(tmp_path: Path) -> None:
    write_measurement(tmp_path, [Rec(2, 3, f, ch, z=z) for f in (1, 2) for ch in (1, 2) for z in (1, 2)],
                      targets={1: "DAPI", 2: "Phalloidin"})
    out = subprocess.run([*HCSFS, "info", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    for line in ("format: cellvoyager", "wells: 1 (B03 .. B03)", "channels: w1 (DAPI), w2 (Phalloidin)",
                 "pixel size: 0.65 um", "planes: 8"):
        assert line in out, out


def test_hcsfs_convert_to_ome_zarr(tmp_path: Path) -> None:
    plate = tmp_path / "cv"
    records = [Rec(r, 2, f, ch, z=z) for r in (1, 2) for f in (1, 2) for ch in (1, 2) for z in (1, 2)]
    records += [Rec(1, 2, 1, 3, ext=".png", z=z) for z in (1, 2)]  # a PNG channel in the same plate
    written = write_measurement(plate, records, arrays=True)
    before = tree_digest(plate)
    destination = tmp_path / "cv.zarr"
    done = subprocess.run([*HCSFS, "convert", str(plate), str(destination)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    converted = open_plate(destination)
    assert converted.format_name == "ome-zarr"
    for rec in records:
        key = PlaneKey(f"{chr(64 + rec.row)}{rec.column:02d}", rec.field, rec.ch, rec.z)
        np.testing.assert_array_equal(converted.read_plane(key), written.pixels[rec])
    assert tree_digest(plate) == before


@pytest.mark.mount
def test_pipelines_on_a_cellvoyager_mount(tmp_path: Path, mountpoint: Path) -> None:
    plate = tmp_path / "cv"
    records = [Rec(r, 3, f, ch) for r in (1, 2) for f in (1, 2) for ch in (1, 2)]
    written = write_measurement(plate, records, channels=[Channel(1), Channel(2)], arrays=True)
    before = tree_digest(plate)
    with hcsfs.mounted(plate, mountpoint, outputs=tmp_path / "outputs") as mnt:
        write_spec(mnt.path, "smooth.yaml",
                   "select: {channel: [2]}\nsteps:\n  - {func: gaussian_filter, args: {sigma: 1.5}}\n")
        final = wait_final(mnt.path, "smooth")
        assert final["state"] == "done" and final["done"] == 4, final
        for rec in (r for r in records if r.ch == 2):
            got = tifffile.imread(mnt.path / "smooth" / _key(rec).name)
            want = ndi.gaussian_filter(written.pixels[rec].astype(np.float32), 1.5)
            np.testing.assert_allclose(got.astype(np.float32), want.astype(got.dtype).astype(np.float32),
                                       atol=1.0)
    assert tree_digest(plate) == before and not list(plate.glob("smooth*"))
