"""Trained models through real mounts: a TorchScript and an ONNX model of the owner's --models folder run
by specs written with `cat >`, their maps, masks and labels read back through the mount and compared with
scipy; names outside the folder refused; `hcsfs mount --models` (the daemon) and `hcsfs process --models`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.demo import cells_plane
from tests.model_files import (
    classes_reference,
    conv_reference,
    need,
    onnx_classes,
    onnx_conv,
    torchscript_conv,
)
from tests.plates import write_tiff_folder

pytestmark = pytest.mark.mount

SEG = """\
channels: {DAPI: 1}
output: OUTPUT
steps:
  - {func: model, input: DAPI, args: {file: conv.pt}, as: prob}
  - {func: threshold, input: prob, args: {value: 2500.01}, as: mask}
  - {func: label, input: mask, as: nuclei}
  - {func: model, input: DAPI, args: {file: classes.onnx, output: argmax, batch: 1}, as: classes}
  - {measure: [shape], objects: nuclei}
save: [prob, mask, classes]
"""
WELLS = ("A01", "B02")
NAMES = [f"{well}_s001_w1_z001_t001.tif" for well in WELLS]
REPO = str(Path(__file__).resolve().parents[1])


def plate_folder(folder: Path) -> Path:
    plate = MemoryPlate(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
    for w, well in enumerate(WELLS):
        for channel in (1, 2):
            plate.add(PlaneKey(well, 1, channel), cells_plane(w + 3, (96, 112), channel))
    return write_tiff_folder(folder, plate)


def models_folder(folder: Path) -> Path:
    need("torch")
    need("onnx")
    need("onnxruntime")
    folder.mkdir()
    torchscript_conv(folder / "conv.pt")
    onnx_classes(folder / "classes.onnx")
    onnx_conv(folder / "conv.onnx")
    return folder


def wait_final(mnt: Path, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = mnt / ".pipelines" / f"{name}.status"
        if path.exists():
            doc = json.loads(path.read_text())
            if doc["state"] in ("done", "failed", "cancelled"):
                return doc
        time.sleep(0.1)
    raise AssertionError(f"{name} did not finish")


def cat_spec(mnt: Path, name: str, text: str) -> None:
    subprocess.run(["sh", "-c", f"cat > '{mnt}/.pipelines/{name}'"], input=text, text=True, check=True)


def check_run(plate: Path, run: Path) -> None:
    """The served results of SEG equal scipy on the source TIFFs."""
    for name in NAMES:
        dapi = tifffile.imread(plate / name)[None]
        prob = tifffile.imread(run / "prob" / name)
        want = conv_reference(dapi, "mirror")[0]
        assert prob.dtype == np.float32
        np.testing.assert_allclose(prob, want, rtol=0, atol=1e-5 * float(np.ptp(want)))
        mask = tifffile.imread(run / "mask" / name)
        assert mask.dtype == np.uint8 and 0 < mask.sum() < mask.size
        np.testing.assert_array_equal(mask, (prob > 2500.01).astype(np.uint8))
        classes = tifffile.imread(run / "classes" / name)
        assert classes.dtype == np.int32
        np.testing.assert_array_equal(classes, classes_reference(dapi)[0])


def test_torchscript_and_onnx_models_through_a_mount(tmp_path: Path, mountpoint: Path) -> None:
    plate = plate_folder(tmp_path / "plate")
    models = models_folder(tmp_path / "models")
    with hcsfs.mounted(plate, mountpoint, outputs=tmp_path / "outputs", models=models) as mnt:
        cat_spec(mnt.path, "seg.yaml", SEG.replace("OUTPUT", "tiff"))
        doc = wait_final(mnt.path, "seg")
        assert doc["state"] == "done" and doc["done"] == 2 and not doc["errors"], doc
        check_run(plate, mnt.path / "seg")
        assert sorted(os.listdir(mnt.path / "seg")) == ["classes", "image.csv", "mask", "nuclei.csv", "prob",
                                                        "wells.csv"]
        readme = (mnt.path / ".pipelines" / "README").read_text()
        assert "model: run a trained model" in readme and "threshold: mask of the pixels" in readme
        refused = [("../models/conv.pt", "not a model file name"),
                   ("unet.pt", "models there: classes.onnx, conv.onnx, conv.pt")]
        for i, (bad, reason) in enumerate(refused):
            cat_spec(mnt.path, f"bad{i}.yaml", f"steps:\n  - {{func: model, args: {{file: '{bad}'}}}}\n")
            doc = wait_final(mnt.path, f"bad{i}")
            assert doc["state"] == "failed" and doc["field"] == "steps[0].args.file", doc
            assert reason in doc["message"], doc


def test_a_mount_without_models_refuses_model_steps(tmp_path: Path, mountpoint: Path) -> None:
    plate = plate_folder(tmp_path / "plate")
    with hcsfs.mounted(plate, mountpoint, outputs=tmp_path / "outputs") as mnt:
        cat_spec(mnt.path, "seg.yaml", SEG.replace("OUTPUT", "zarr"))
        doc = wait_final(mnt.path, "seg")
        assert doc["state"] == "failed" and "--models DIR" in doc["message"], doc


def test_cli_mount_and_process_take_models(tmp_path: Path, mountpoint: Path) -> None:
    plate = plate_folder(tmp_path / "plate")
    models = models_folder(tmp_path / "models")
    spec = tmp_path / "seg.yaml"
    spec.write_text(SEG.replace("OUTPUT", "zarr"))
    env = {**os.environ, "PYTHONPATH": REPO}
    cli = [sys.executable, "-m", "hcsfs"]
    subprocess.run([*cli, "mount", str(plate), str(mountpoint), "--outputs", str(tmp_path / "outputs"),
                    "--models", str(models)], check=True, env=env, timeout=120)
    try:
        done = subprocess.run([*cli, "run", str(mountpoint), str(spec), "--wait", "--timeout", "120"],
                              capture_output=True, text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        check_run(plate, mountpoint / "seg")
        mounted_nuclei = (mountpoint / "seg" / "nuclei.csv").read_bytes()
    finally:
        subprocess.run([*cli, "unmount", str(mountpoint)], check=True, env=env, timeout=60)
    out = tmp_path / "processed"
    command = [*cli, "process", str(plate), str(spec), "--out", str(out), "--models", str(models)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "tables" / "nuclei.csv").read_bytes() == mounted_nuclei
    refused = subprocess.run([*cli, "process", str(plate), str(spec), "--out", str(tmp_path / "none")],
                             capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode != 0 and "--models DIR" in refused.stderr, refused.stderr
