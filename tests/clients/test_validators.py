"""Strict readers on mounted planes: libtiff (tiffinfo -D), ImageMagick (identify -regard-warnings),
GDAL (gdalinfo -stats -checksum), Pillow and imageio. Any warning fails; every reader's numbers are
compared with the source arrays.

All of these exit 0 on many errors, so stderr must be empty and values must match. GDAL runs with
``GDAL_PAM_ENABLED=NO`` so it never tries to write a ``.aux.xml`` sidecar into the mount.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from tests.clients.conftest import need_tool
from tests.plates import memory_plate, plate_keys, write_tiff_folder

pytestmark = [pytest.mark.clients, pytest.mark.mount]
GDAL_ENV = {**os.environ, "GDAL_PAM_ENABLED": "NO", "CPL_DEBUG": "OFF"}


def typed_plate() -> MemoryPlate:
    """One channel per pixel type hcsfs encodes; odd sizes so rows are not word-aligned."""
    rng = np.random.default_rng(3)
    plate = MemoryPlate(pixel_size_um=0.325)
    shape = (37, 53)
    plate.add(PlaneKey("A01", 1, 1), rng.integers(0, 65535, shape, endpoint=True).astype(np.uint16))
    plate.add(PlaneKey("A01", 1, 2), rng.integers(0, 255, shape, endpoint=True).astype(np.uint8))
    plate.add(PlaneKey("A01", 1, 3), rng.normal(0, 50, shape).astype(np.float32))
    plate.add(PlaneKey("A01", 1, 4), rng.integers(-30000, 30000, shape).astype(np.int16))
    return plate


def gdal_checksum(plane: np.ndarray) -> int:
    """GDALChecksumImage for integer bands: sum of value % a cycling prime, 16 bits kept per line."""
    primes = np.array([7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43])
    height, width = plane.shape
    cycle = primes[np.arange(height * width) % 11].reshape(height, width)
    mods = np.fmod(plane.astype(np.int64), cycle)  # C's %: negative values give negative remainders
    checksum = 0
    for row in mods:
        checksum = (checksum + int(row.sum())) & 0xFFFF
    return checksum


def run_clean(args: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, f"{args[0]} exited {done.returncode}: {done.stderr}"
    assert done.stderr == "", f"{' '.join(args)} warned: {done.stderr}"
    return done.stdout


def check_with_every_reader(path: Path, plane: np.ndarray) -> None:
    run_clean([need_tool("tiffinfo"), "-D", str(path)])  # decodes every strip

    fmt = "%w %h %z %[min] %[max] %[mean]"
    width, height, depth, low, high, mean = run_clean(
        [need_tool("identify"), "-regard-warnings", "-format", fmt, str(path)]).split()
    assert (int(width), int(height)) == (plane.shape[1], plane.shape[0])
    assert int(depth) == 8 * plane.dtype.itemsize
    if plane.dtype.kind == "u":  # ImageMagick (Q16) scales 8-bit values by 257; floats by its own range
        scale = 65535 // np.iinfo(plane.dtype).max
        assert (float(low), float(high)) == (float(plane.min()) * scale, float(plane.max()) * scale)
        assert float(mean) == pytest.approx(plane.mean(dtype=np.float64) * scale, rel=1e-5)

    info = json.loads(run_clean([need_tool("gdalinfo"), "-json", "-stats", "-checksum", str(path)],
                                env=GDAL_ENV))
    band = info["bands"][0]
    assert info["size"] == [plane.shape[1], plane.shape[0]]
    # gdalinfo -json prints statistics with 3 decimals
    assert band["minimum"] == pytest.approx(float(plane.min()), abs=1e-3)
    assert band["maximum"] == pytest.approx(float(plane.max()), abs=1e-3)
    assert band["mean"] == pytest.approx(plane.mean(dtype=np.float64), abs=1e-3)
    if plane.dtype.kind in "ui":
        assert band["checksum"] == gdal_checksum(plane)

    with Image.open(path) as image:
        np.testing.assert_array_equal(np.asarray(image), plane)
    np.testing.assert_array_equal(iio.imread(path), plane)


def test_strict_readers_accept_encoded_planes(mountpoint: Path) -> None:
    plate = typed_plate()
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        before = sorted(os.listdir(mountpoint))
        for key in plate.keys():
            check_with_every_reader(mountpoint / key.name, plate.read_plane(key))
        assert sorted(os.listdir(mountpoint)) == before  # no sidecar, no lock file


def test_strict_readers_accept_passthrough_planes(tmp_path: Path, mountpoint: Path, unchanged) -> None:
    plate = memory_plate(plate_keys(("A01", "C07"), sites=1, channels=2), shape=(41, 29))
    folder = unchanged(write_tiff_folder(tmp_path / "plate", plate))
    with hcsfs.mounted(folder, mountpoint, pipelines=False):
        for key in plate.keys():
            check_with_every_reader(mountpoint / key.name, plate.read_plane(key))
