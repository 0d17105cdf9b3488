"""Real FUSE mounts of ImageXpress and Phenix plates: names, passthrough bytes, plate.json, xattrs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import hcsfs
from hcsfs.naming import sort_key
from tests.sources.generate_ixm import listing_names, tree_digest, write_files
from tests.sources.test_imagexpress import GUID, _expected_from_listing, _nested_plate
from tests.sources.test_phenix import HARMONY5, _loaddata_planes

pytestmark = pytest.mark.mount


def test_real_listing_plate_mounts_flat(tmp_path: Path, mountpoint: Path, samples: Path) -> None:
    plate = tmp_path / "plate"
    write_files(plate, listing_names())
    before = tree_digest(plate)
    expected, _ = _expected_from_listing()
    with hcsfs.mounted(plate, mountpoint) as mounted:
        names = os.listdir(mounted.path)
        assert names == [".hcsfs", ".pipelines"] + [k.name for k in sorted(expected, key=sort_key)]
        for key in list(expected)[::97]:
            assert (mounted.path / key.name).read_bytes() == (plate / expected[key]).read_bytes()
        summary = json.loads((mounted.path / ".hcsfs" / "plate.json").read_text())
    assert summary["format"] == "imagexpress" and summary["planes"] == 1800
    assert sum(s["reason"] == "thumbnail" for s in summary["skipped"]) == 1800
    assert tree_digest(plate) == before


def test_guid_plane_bytes_and_xattrs(mountpoint: Path, samples: Path) -> None:
    folder = samples / "imagexpress_plane_guid"
    real = folder / f"IXMtest_A01_s1_w1{GUID}.tif"
    with hcsfs.mounted(folder, mountpoint, xattrs=True) as mounted:
        path = mounted.path / "A01_s001_w1_z001_t001.tif"
        assert os.listdir(mounted.path) == [".hcsfs", ".pipelines", path.name]
        assert path.stat().st_size == real.stat().st_size
        assert path.read_bytes() == real.read_bytes()
        assert float(os.getxattr(path, "user.hcs.pixel_size_um")) == pytest.approx(0.645)
        assert os.getxattr(path, "user.hcs.channel_name") == b"DAPI"
        assert os.getxattr(path, "user.hcs.source_path") == str(real).encode()
        summary = json.loads((mounted.path / ".hcsfs" / "plate.json").read_text())
    assert summary["pixel_size_um"] == pytest.approx(0.645)
    assert summary["shape"] == [520, 696]


def test_nested_plate_names_and_channel_names(tmp_path: Path, mountpoint: Path) -> None:
    paths = _nested_plate(tmp_path)
    before = tree_digest(tmp_path)
    with hcsfs.mounted(tmp_path, mountpoint, xattrs=True) as mounted:
        names = set(os.listdir(mounted.path))
        for well, site, wave, z, t in paths:
            if t < 0:
                continue
            name = f"{well}_s{site:03d}_w{wave}_z{z:03d}_t{t:03d}.tif"
            assert name in names
        path = mounted.path / "B02_s002_w2_z003_t002.tif"
        assert path.read_bytes() == (tmp_path / paths[("B02", 2, 2, 3, 2)]).read_bytes()
        assert os.getxattr(path, "user.hcs.channel_name").decode() == "Zellkörper"
        assert os.getxattr(path, "user.hcs.z") == b"3" and os.getxattr(path, "user.hcs.t") == b"2"
        assert "A01_s001_w1_zproj_t001.tif" in names
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize(("folder", "loaddata"), HARMONY5)
def test_phenix_mount_agrees_with_pe2loaddata(mountpoint: Path, samples: Path, folder: str,
                                              loaddata: str) -> None:
    plate = samples / folder
    expected = _loaddata_planes(plate / loaddata)
    with hcsfs.mounted(plate, mountpoint, xattrs=True) as mounted:
        assert sorted(os.listdir(mounted.path)) == sorted([".hcsfs", ".pipelines"] + [k.name for k, *_ in expected])
        for key, filename, channel_name, pixel_size in expected:
            path = mounted.path / key.name
            assert path.read_bytes() == (plate / "images" / filename).read_bytes()  # LZW, untouched
            assert os.getxattr(path, "user.hcs.channel_name").decode() == channel_name
            assert float(os.getxattr(path, "user.hcs.pixel_size_um")) == pytest.approx(pixel_size)
        summary = json.loads((mounted.path / ".hcsfs" / "plate.json").read_text())
    assert summary["format"] == "phenix" and summary["planes"] == 6
    assert {c["name"] for c in summary["channels"]} == {name for _, _, name, _ in expected}
    assert summary["pixel_size_um"] == pytest.approx(expected[0][3])
    assert summary["shape"] == [1080, 1080]


def test_phenix_harmony7_mounts_empty_with_missing(mountpoint: Path, samples: Path) -> None:
    with hcsfs.mounted(samples / "phenix_harmony7_index_only", mountpoint) as mounted:
        assert os.listdir(mounted.path) == [".hcsfs", ".pipelines"]
        summary = json.loads((mounted.path / ".hcsfs" / "plate.json").read_text())
    assert summary["planes"] == 0 and len(summary["missing"]) == 7
