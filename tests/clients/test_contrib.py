"""contrib/: the napari snippet's loader over a real mount (without napari; the plugin has its own
tests in tests/napari), and the systemd unit's command line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import hcsfs
from hcsfs import PlaneKey
from tests.plates import memory_plate, plate_keys

ROOT = Path(__file__).resolve().parents[2]


def _napari_module():
    spec = importlib.util.spec_from_file_location("napari_plate", ROOT / "contrib" / "napari_plate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.mount
def test_napari_loader_reads_one_site(mountpoint: Path) -> None:
    plate = memory_plate(plate_keys(("A01", "B02"), sites=2, channels=2, z=3, t=2), shape=(20, 30))
    napari_plate = _napari_module()
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        stack, names, pixel_size = napari_plate.load_site(mountpoint, "B02", 2)
        with pytest.raises(FileNotFoundError):
            napari_plate.load_site(mountpoint, "H12", 1)
    assert stack.shape == (2, 2, 3, 20, 30)
    assert names == ["DAPI", "GFP"] and pixel_size == 0.65
    for t in (1, 2):
        for c in (1, 2):
            for z in (1, 2, 3):
                np.testing.assert_array_equal(stack[t - 1, c - 1, z - 1],
                                              plate.read_plane(PlaneKey("B02", 2, c, z, t)))


def test_systemd_unit_runs_hcsfs_in_the_foreground() -> None:
    unit = (ROOT / "contrib" / "hcsfs-mount@.service").read_text()
    assert "ExecStart=/usr/local/bin/hcsfs mount --foreground ${SOURCE} /mnt/%i" in unit
    assert "ExecStop=/usr/local/bin/hcsfs unmount /mnt/%i" in unit
