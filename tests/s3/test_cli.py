"""The CLI on object storage: convert a plate into a bucket, describe it, mount it with the daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcsfs import MemoryPlate
from tests.plates import write_tiff_folder
from tests.s3.conftest import S3

HCSFS = [sys.executable, "-m", "hcsfs"]


@pytest.mark.mount
def test_convert_info_and_mount_an_s3_plate(s3: S3, plate: MemoryPlate, tmp_path: Path,
                                            mountpoint: Path) -> None:
    local = write_tiff_folder(tmp_path / "plate", plate)
    url = s3.url("screens/plate.zarr")
    endpoint = ["--endpoint-url", s3.endpoint_url]
    done = subprocess.run([*HCSFS, "convert", str(local), url, *endpoint], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(subprocess.run([*HCSFS, "info", "--json", url, *endpoint], check=True,
                                        capture_output=True, text=True).stdout)
    assert summary["format"] == "ome-zarr" and summary["planes"] == len(plate)
    outputs = tmp_path / "outputs"
    subprocess.run([*HCSFS, "mount", url, str(mountpoint), *endpoint, "--outputs", str(outputs)],
                   check=True, capture_output=True)
    try:
        names = sorted(n for n in os.listdir(mountpoint) if n.endswith(".tif"))
        assert names == sorted(k.name for k in plate.keys())
        for key in plate.keys():
            np.testing.assert_array_equal(tifffile.imread(mountpoint / key.name), plate.read_plane(key))
    finally:
        subprocess.run([*HCSFS, "unmount", str(mountpoint)], check=True)
    assert not any(k.startswith("screens/plate.zarr/.") for k in s3.keys())  # nothing written to the plate


def test_a_missing_local_source_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([*HCSFS, "info", str(tmp_path / "absent")], capture_output=True, text=True)
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr
