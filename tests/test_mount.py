"""Real FUSE mounts of memory and TIFF-folder plates, read with real readers."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.tiff import encode_tiff
from tests.plates import memory_plate, plate_keys, write_tiff_folder

pytestmark = pytest.mark.mount

PIXEL_SIZE = 0.65


@pytest.fixture
def plate() -> MemoryPlate:
    return memory_plate(plate_keys(("A01", "B02", "AF48"), sites=2, channels=2, z=2), shape=(96, 130))


@pytest.fixture
def mnt(plate: MemoryPlate, mountpoint: Path) -> Iterator[Path]:
    with hcsfs.mounted(plate, mountpoint, cache_size="8M", xattrs=True) as mounted:
        yield mounted.path


def _expected_bytes(plate: MemoryPlate, key: PlaneKey) -> bytes:
    return encode_tiff(plate.read_plane(key), plate.pixel_size_um)


def test_listing_is_exactly_the_planes_in_natural_order(plate: MemoryPlate, mnt: Path) -> None:
    names = os.listdir(mnt)
    assert names == [".hcsfs", ".pipelines"] + [k.name for k in plate.keys()]
    assert "AF48_s001_w1_z001_t001.tif" in names


def test_every_plane_reads_back_with_tifffile(plate: MemoryPlate, mnt: Path) -> None:
    for key in plate.keys():
        path = mnt / key.name
        np.testing.assert_array_equal(tifffile.imread(path), plate.read_plane(key))
        assert path.stat().st_size == len(path.read_bytes()) == len(_expected_bytes(plate, key))


def test_libtiff_pillow_and_memmap(plate: MemoryPlate, mnt: Path) -> None:
    for key in plate.keys()[:4]:
        path = mnt / key.name
        done = subprocess.run(["tiffinfo", "-D", str(path)], capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        with Image.open(path) as image:
            np.testing.assert_array_equal(np.asarray(image), plate.read_plane(key))
        mapped = tifffile.memmap(path, mode="r")
        np.testing.assert_array_equal(mapped, plate.read_plane(key))
        with tifffile.TiffFile(path) as tif:
            offset = tif.pages.first.dataoffsets[0]
        raw = np.memmap(path, dtype="<u2", mode="r", offset=offset, shape=(96, 130))
        np.testing.assert_array_equal(raw, plate.read_plane(key))
        del mapped, raw


def test_random_ranges_equal_the_encoder(plate: MemoryPlate, mnt: Path) -> None:
    rng = random.Random(7)
    for key in plate.keys():
        expected = _expected_bytes(plate, key)
        size = len(expected)
        edges = [(0, 8), (size - 1, 1), (size - 10, 100), (size, 10), (size + 5, 3), (0, size + 99)]
        randoms = [(rng.randrange(size), rng.randrange(1, 70_000)) for _ in range(64 - len(edges))]
        fd = os.open(mnt / key.name, os.O_RDONLY)
        try:
            for offset, length in edges + randoms:
                assert os.pread(fd, length, offset) == expected[offset : offset + length]
        finally:
            os.close(fd)


def test_cp_rsync_and_find(plate: MemoryPlate, mnt: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(mnt), str(copy)], check=True)
    for key in plate.keys():
        assert (copy / key.name).read_bytes() == _expected_bytes(plate, key)
    rsynced = tmp_path / "rsynced"
    first = subprocess.run(["rsync", "-a", "--stats", f"{mnt}/", f"{rsynced}/"],
                           capture_output=True, text=True, check=True)
    # the planes, .hcsfs/plate.json, planes.csv, loaddata.csv, 4 overview pictures and .pipelines/README
    assert f"Number of regular files transferred: {len(plate) + 8}" in first.stdout
    second = subprocess.run(["rsync", "-a", "--stats", f"{mnt}/", f"{rsynced}/"],
                            capture_output=True, text=True, check=True)
    assert "Number of regular files transferred: 0" in second.stdout
    for key in plate.keys():
        assert (rsynced / key.name).read_bytes() == _expected_bytes(plate, key)
    found = subprocess.run(["find", str(mnt), "-type", "f"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert sorted(found) == sorted([str(mnt / k.name) for k in plate.keys()]
                                   + [str(mnt / ".hcsfs" / "plate.json"),
                                      str(mnt / ".hcsfs" / "planes.csv"),
                                      str(mnt / ".hcsfs" / "loaddata.csv"),
                                      str(mnt / ".pipelines" / "README")]
                                   + [str(mnt / ".hcsfs" / "overview" / f"w{c}.{e}")
                                      for c in (1, 2) for e in ("tif", "png")])


_READER = """
import hashlib, os, random, sys
root, seed, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rng = random.Random(seed)
for _ in range(150):
    name = rng.choice(names)
    path = os.path.join(root, name)
    size = os.stat(path).st_size
    offset, length = rng.randrange(size + 10), rng.randrange(1, 200_000)
    fd = os.open(path, os.O_RDONLY)
    data = os.pread(fd, length, offset)
    os.close(fd)
    print(name, offset, length, hashlib.sha256(data).hexdigest())
"""


def test_eight_concurrent_reader_processes(plate: MemoryPlate, mnt: Path) -> None:
    names = [k.name for k in plate.keys()]
    readers = [subprocess.Popen([sys.executable, "-c", _READER, str(mnt), str(seed), *names],
                                stdout=subprocess.PIPE, text=True) for seed in range(8)]
    expected = {k.name: _expected_bytes(plate, k) for k in plate.keys()}
    checked = 0
    for reader in readers:
        out, _ = reader.communicate(timeout=120)
        assert reader.returncode == 0
        for line in out.splitlines():
            name, offset, length, digest = line.split()
            want = expected[name][int(offset) : int(offset) + int(length)]
            assert hashlib.sha256(want).hexdigest() == digest, line
            checked += 1
    assert checked == 8 * 150


def _erofs(action) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as caught:
        action()
    assert caught.value.errno == errno.EROFS, caught.value


def test_every_kind_of_write_is_refused(mnt: Path, tmp_path: Path) -> None:
    plane = mnt / "A01_s001_w1_z001_t001.tif"
    before = plane.read_bytes()
    _erofs(lambda: open(plane, "r+b"))
    _erofs(lambda: open(plane, "wb"))
    _erofs(lambda: open(plane, "ab"))
    _erofs(lambda: os.truncate(plane, 0))
    _erofs(lambda: open(mnt / "new.tif", "wb"))
    _erofs(lambda: os.mkdir(mnt / "dir"))
    _erofs(lambda: os.unlink(plane))
    _erofs(lambda: os.rename(plane, mnt / "B01_s001_w1_z001_t001.tif"))
    _erofs(lambda: os.chmod(plane, 0o644))
    _erofs(lambda: os.utime(plane, (0, 0)))
    _erofs(lambda: os.setxattr(plane, "user.note", b"x"))
    _erofs(lambda: os.removexattr(plane, "user.hcs.well"))
    _erofs(lambda: os.symlink("x", mnt / "link"))
    _erofs(lambda: os.link(plane, mnt / "hard.tif"))
    _erofs(lambda: os.rmdir(mnt / ".hcsfs"))
    _erofs(lambda: open(mnt / ".hcsfs" / "plate.json", "w"))
    _erofs(lambda: os.mknod(mnt / "node"))
    assert plane.read_bytes() == before


def test_xattrs(mnt: Path) -> None:
    path = mnt / "AF48_s002_w1_z002_t001.tif"
    names = set(os.listxattr(path))
    assert {"user.hcs.well", "user.hcs.site", "user.hcs.channel", "user.hcs.z", "user.hcs.t",
            "user.hcs.channel_name", "user.hcs.pixel_size_um"} <= names
    assert os.getxattr(path, "user.hcs.well") == b"AF48"
    assert os.getxattr(path, "user.hcs.site") == b"2"
    assert os.getxattr(path, "user.hcs.z") == b"2"
    assert os.getxattr(path, "user.hcs.channel_name") == b"DAPI"
    assert float(os.getxattr(path, "user.hcs.pixel_size_um")) == PIXEL_SIZE
    with pytest.raises(OSError) as caught:
        os.getxattr(path, "user.hcs.nothing")
    assert caught.value.errno == errno.ENODATA


def test_xattrs_off_by_default(plate: MemoryPlate, mountpoint: Path) -> None:
    """Off unless asked for: ``ls -l`` then costs no uncached xattr requests (issue 14)."""
    with hcsfs.mounted(plate, mountpoint) as mounted:
        with pytest.raises(OSError):
            os.getxattr(mounted.path / plate.keys()[0].name, "user.hcs.well")



def test_plate_json(mnt: Path) -> None:
    summary = json.loads((mnt / ".hcsfs" / "plate.json").read_text())
    assert summary["format"] == "memory" and summary["planes"] == 24
    assert summary["wells"] == ["A01", "B02", "AF48"]
    assert summary["z"] == [1, 2] and summary["shape"] == [96, 130]
    assert summary["channels"][0] == {"index": 1, "name": "DAPI"}
    assert summary["pixel_size_um"] == PIXEL_SIZE


def test_attributes(plate: MemoryPlate, mnt: Path) -> None:
    st = (mnt / "A01_s001_w1_z001_t001.tif").stat()
    assert st.st_mode & 0o777 == 0o444 and st.st_blksize >= 1 << 20
    assert st.st_uid == os.getuid() and st.st_nlink == 1
    assert (mnt / "A01_s001_w1_z001_t001.tif").stat().st_ino == st.st_ino  # stable
    assert not (mnt / "A01_s001_w1_z001_t002.tif").exists()
    assert not (mnt / "not-a-plane.txt").exists()
    statvfs = os.statvfs(mnt)
    assert statvfs.f_namemax == 255


def test_planes_added_while_mounted_appear(plate: MemoryPlate, mnt: Path) -> None:
    key = PlaneKey("C03", 1, 1)
    assert not (mnt / key.name).exists()
    plate.add(key, np.full((96, 130), 5, "u2"))
    assert key.name in os.listdir(mnt)
    np.testing.assert_array_equal(tifffile.imread(mnt / key.name), np.full((96, 130), 5, "u2"))


def test_unmounts_on_exit_even_after_an_exception(mountpoint: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with hcsfs.mounted(memory_plate(), mountpoint):
            raise RuntimeError("boom")
    assert os.listdir(mountpoint) == []
    with hcsfs.mounted(memory_plate(), mountpoint) as again:  # and mounts again
        assert len(os.listdir(again.path)) == 14  # 12 planes, .hcsfs, .pipelines


# -- TIFF folder: passthrough ------------------------------------------------------------------


@pytest.fixture
def tiff_folder(tmp_path: Path, plate: MemoryPlate, unchanged) -> Path:  # type: ignore[no-untyped-def]
    folder = write_tiff_folder(tmp_path / "plate", plate)
    (folder / "README.txt").write_text("not a plane")
    (folder / "H01_s001_w1_z001_t001.tif").write_text("named like a plane, but not a TIFF")
    (folder / "H02_s001_w1_z001_t001.tif").symlink_to(tmp_path / "archived" / "gone.tif")
    return unchanged(folder)


def test_tiff_folder_passthrough(plate: MemoryPlate, tiff_folder: Path, mountpoint: Path,
                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with hcsfs.mounted(tiff_folder, mountpoint, xattrs=True) as mounted:
        names = os.listdir(mounted.path)
        assert "README.txt" not in names and "H01_s001_w1_z001_t001.tif" not in names
        assert "H02_s001_w1_z001_t001.tif" in names  # listed, but unreadable
        for key in plate.keys():
            assert (mounted.path / key.name).read_bytes() == (tiff_folder / key.name).read_bytes()
            assert os.getxattr(mounted.path / key.name, "user.hcs.source_path") == \
                str(tiff_folder / key.name).encode()
        with pytest.raises(OSError) as caught:
            (mounted.path / "H02_s001_w1_z001_t001.tif").read_bytes()
        assert caught.value.errno == errno.EIO
        assert not (mounted.path / "H01_s001_w1_z001_t001.tif").exists()
        subprocess.run(["cp", "-r", str(mounted.path / "A01_s001_w1_z001_t001.tif"),
                        str(tmp_path / "one.tif")], check=True)
        assert (tmp_path / "one.tif").read_bytes() == (tiff_folder / "A01_s001_w1_z001_t001.tif").read_bytes()
        summary = json.loads((mounted.path / ".hcsfs" / "plate.json").read_text())
    assert "not a TIFF" in caplog.text and "gone.tif" in caplog.text
    assert summary["format"] == "tiff-folder" and summary["dtype"] == "u2"
    assert any(s["path"] == "README.txt" for s in summary["skipped"])


def test_source_file_replaced_while_open_keeps_its_bytes(tmp_path: Path, mountpoint: Path) -> None:
    plate = memory_plate(plate_keys(("A01",), sites=1, channels=1), shape=(64, 64))
    folder = write_tiff_folder(tmp_path / "plate", plate)
    original = (folder / "A01_s001_w1_z001_t001.tif").read_bytes()
    with hcsfs.mounted(folder, mountpoint) as mounted:
        with open(mounted.path / "A01_s001_w1_z001_t001.tif", "rb") as handle:
            head = handle.read(100)
            replacement = folder / "replacement.tif"
            tifffile.imwrite(replacement, np.ones((64, 64), "u2"))
            os.replace(replacement, folder / "A01_s001_w1_z001_t001.tif")
            assert head + handle.read() == original


def test_no_xattrs_option(plate: MemoryPlate, mountpoint: Path) -> None:
    with hcsfs.mounted(plate, mountpoint, xattrs=False) as mounted:
        path = mounted.path / "A01_s001_w1_z001_t001.tif"
        with pytest.raises(OSError) as caught:
            os.getxattr(path, "user.hcs.well")
        assert caught.value.errno in (errno.EOPNOTSUPP, errno.ENOSYS)
        assert path.read_bytes() == _expected_bytes(plate, PlaneKey("A01"))


def test_overview_pictures(plate: MemoryPlate, mnt: Path) -> None:
    folder = mnt / ".hcsfs" / "overview"
    assert sorted(os.listdir(folder)) == ["w1.png", "w1.tif", "w2.png", "w2.tif"]
    announced = (folder / "w1.tif").stat().st_size  # known from the geometry, before rendering
    data = (folder / "w1.tif").read_bytes()
    assert len(data) == announced
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        montage = tif.asarray()
        assert montage.dtype == np.uint8 and montage.ndim == 2
        assert tif.imagej_metadata["unit"] == "micron"
    done = subprocess.run(["tiffinfo", "-D", str(folder / "w1.tif")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    with Image.open(folder / "w2.png") as png:
        assert png.size == (montage.shape[1], montage.shape[0])
    assert (folder / "w2.png").stat().st_size == len((folder / "w2.png").read_bytes())
