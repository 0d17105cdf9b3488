"""Illumination correction through a real mount: a TIFF plate on disk made as ground truth x a known
vignetting profile (+ dark-field, + noise), specs written into ``.pipelines/``, the saved profiles read
from ``/<name>/illumination/`` with tifffile, and the served planes checked against them (exactly) and
against the ground truth (tolerances as in tests/pipelines/test_illumination.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import hcsfs
from tests.plates import tree_checksums, write_tiff_folder
from tests.vignetting import unevenness, vignetted_plate

pytestmark = pytest.mark.mount

MEDIAN = """\
illumination: {method: median, sample: 20}
steps:
  - {func: clip}
"""
BASIC = """\
channels: {DAPI: 1, GFP: 2}
illumination: {method: basic, sample: 30}
output: tiff
steps:
  - {func: clip, input: DAPI, as: dapi}
  - {func: clip, input: GFP, as: gfp}
save: [dapi, gfp]
"""


def _final(mnt: Path, name: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = json.loads((mnt / ".pipelines" / f"{name}.status").read_bytes())
        except FileNotFoundError:
            doc = {"state": None}
        if doc["state"] in ("done", "failed", "cancelled"):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"run {name} did not end")


def _write(mnt: Path, name: str, text: str) -> None:
    with open(mnt / ".pipelines" / name, "w") as file:  # as `cat > name` does
        file.write(text)


def test_corrected_planes_and_profiles_through_a_mount(mountpoint: Path, tmp_path: Path) -> None:
    median = vignetted_plate(wells=("A01", "A02", "B01", "B02"), sites=3, seed=3)
    folder = write_tiff_folder(tmp_path / "plate", median.plate)
    before = tree_checksums(folder)
    with hcsfs.mounted(folder, mountpoint, outputs=tmp_path / "outputs") as mounted:
        mnt = mounted.path
        _write(mnt, "flat.yaml", MEDIAN)
        doc = _final(mnt, "flat")
        assert doc["state"] == "done" and not doc["errors"], doc
        assert sorted(os.listdir(mnt / "flat" / "illumination")) == ["w1_flatfield.tif", "w2_flatfield.tif"]
        flats = {c: tifffile.imread(mnt / "flat" / "illumination" / f"w{c}_flatfield.tif") for c in (1, 2)}
        for channel, flat in flats.items():
            assert flat.dtype == np.float32 and flat.shape == (96, 128)
            assert unevenness(flat, median.flat[channel]) < 0.02
        worst = 0.0
        for key, truth in median.truth.items():
            served = tifffile.imread(mnt / "flat" / key.name)
            raw = tifffile.imread(folder / key.name)
            assert served.dtype == np.float32
            np.testing.assert_array_equal(served, raw.astype(np.float32) / flats[key.channel])
            worst = max(worst, unevenness(served, truth))
        assert worst < 0.02, worst
        assert "illumination: median flat-field of w2 from 12 of 12 planes" in (
            mnt / ".pipelines" / "flat.log").read_text()
    assert tree_checksums(folder) == before


def test_basic_dark_and_flat_field_through_a_mount(mountpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("basicpy")  # installed by the illumination extra (make install)
    made = vignetted_plate(wells=("A01", "A02", "B01", "B02"), sites=6, seed=4, dark=True)
    folder = write_tiff_folder(tmp_path / "plate", made.plate)
    with hcsfs.mounted(folder, mountpoint, outputs=tmp_path / "outputs") as mounted:
        mnt = mounted.path
        _write(mnt, "basic.yaml", BASIC)
        doc = _final(mnt, "basic")
        assert doc["state"] == "done" and not doc["errors"], doc
        profiles = mnt / "basic" / "illumination"
        assert sorted(os.listdir(profiles)) == ["w1_darkfield.tif", "w1_flatfield.tif", "w2_darkfield.tif",
                                                "w2_flatfield.tif"]
        flat = {c: tifffile.imread(profiles / f"w{c}_flatfield.tif") for c in (1, 2)}
        dark = {c: tifffile.imread(profiles / f"w{c}_darkfield.tif") for c in (1, 2)}
        worst = 0.0
        for key, truth in made.truth.items():
            served = tifffile.imread(mnt / "basic" / ("dapi" if key.channel == 1 else "gfp") / key.name)
            raw = tifffile.imread(folder / key.name).astype(np.float32)
            np.testing.assert_array_equal(served, (raw - dark[key.channel]) / flat[key.channel])
            worst = max(worst, unevenness(served, truth))
        assert worst < 0.05, worst
