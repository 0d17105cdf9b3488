"""Long runs survive a crash: `kill -9` of the mount daemon and of `hcsfs process` at random points,
then a resume that reruns only the missing units; every output plane, table and ROI set equals a clean
run's, the status tells the truth in between, and a changed spec refuses to resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.demo import cells_plane
from hcsfs.fs.mounttable import find_mount
from hcsfs.pipelines import default_registry, load_plugins
from hcsfs.pipelines.outputs import load_output
from hcsfs.pipelines.process import process_plate
from tests.daemons import daemon_pid, wait_gone
from tests.plates import tree_checksums, write_tiff_folder

pytestmark = pytest.mark.mount

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
HCSFS = [sys.executable, "-m", "hcsfs"]
PLUGIN = "tests.pipeline_plugin"
SPEC = """\
channels: {DAPI: 1, GFP: 2}
steps:
  - {func: slow_copy, input: DAPI, args: {seconds: 0.25}, as: slow}
  - {func: gaussian_filter, input: slow, args: {sigma: 2}, as: smooth}
  - {func: threshold_otsu, as: mask}
  - {func: label, as: nuclei}
  - {func: expand_labels, input: nuclei, args: {distance: 3}, as: cells}
  - {measure: [shape, intensity], objects: nuclei, channels: [DAPI, GFP]}
  - {measure: [intensity], objects: cells, channels: [GFP]}
save: [nuclei, cells]
rois: [nuclei]
heatmaps: [Count_nuclei]
"""
UNITS = 12
SEED = random.randrange(1 << 30)


def cli(*args: object, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*HCSFS, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)
    if check and done.returncode != 0:
        raise AssertionError(f"hcsfs {args} failed: {done.stdout}{done.stderr}")
    return done


@pytest.fixture(scope="module")
def plate_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    plate = MemoryPlate(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
    for w, well in enumerate(("A01", "A02", "B01", "B02", "C01", "C02")):
        for site in (1, 2):
            for channel in (1, 2):
                plate.add(PlaneKey(well, site, channel), cells_plane(w * 10 + site, (96, 96), channel))
    return write_tiff_folder(tmp_path_factory.mktemp("plate") / "plate", plate)


@pytest.fixture(scope="module")
def clean_run(plate_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same spec run once without interruption (the reference)."""
    spec = tmp_path_factory.mktemp("spec") / "screen.yaml"
    spec.write_text(SPEC)
    out = tmp_path_factory.mktemp("clean") / "run"
    registry = default_registry()
    load_plugins(registry, [PLUGIN])
    source = hcsfs.open_plate(plate_folder)
    try:
        status = process_plate(source, spec, out, registry=registry)
    finally:
        source.close()
    assert status["state"] == "done" and status["done"] == UNITS and not status["errors"], status
    return out


def outputs_of(folder: Path) -> dict[str, object]:
    """Everything a run folder serves: tables, ROI sets and heatmaps by content, planes by value."""
    output = load_output(folder, "screen", pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
    found: dict[str, object] = {f"tables/{n}": d for n, d in output.table_bytes().items()}
    for sub in ("rois", "heatmaps"):
        found.update({f"{sub}/{n}": p.read_bytes() for n, p in output.folder_files(sub).items()})
    for result, plate in output.results().items():
        found.update({f"{result}/{k.name}": plate.read_plane(k) for k in plate.keys()})
    return found


def assert_same(got: dict[str, object], want: dict[str, object], where: str) -> None:
    assert got.keys() == want.keys(), (where, sorted(set(got) ^ set(want)))
    for name, value in want.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got[name], value, err_msg=f"{where}: {name}")
        else:
            assert got[name] == value, f"{where}: {name} differs"


def committed(folder: Path) -> int:
    path = folder / "units.jsonl"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what} (seed {SEED})"
        time.sleep(0.02)


@pytest.fixture
def mnt(mountpoint: Path) -> Iterator[Path]:
    yield mountpoint
    if find_mount(mountpoint) is not None:
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


@pytest.mark.parametrize("trial", range(3))
def test_kill_9_of_the_daemon_then_resume(trial: int, plate_folder: Path, clean_run: Path, mnt: Path,
                                          tmp_path: Path) -> None:
    kill_after = random.Random(SEED + trial).randrange(1, UNITS - 1)
    before = tree_checksums(plate_folder)
    outputs = tmp_path / "outputs"
    cli("mount", plate_folder, mnt, "--outputs", outputs, "--plugins", PLUGIN)
    pid = daemon_pid(mnt)
    (mnt / ".pipelines" / "screen.yaml").write_text(SPEC)
    wait_for(lambda: (outputs / "runs").exists() and any(committed(f) >= kill_after
                                                          for f in (outputs / "runs").iterdir()),
             60, f"{kill_after} committed units")
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    cli("unmount", mnt)
    [folder] = (outputs / "runs").iterdir()
    kept = committed(folder)
    assert kill_after <= kept < UNITS, (kept, SEED)
    cli("mount", plate_folder, mnt, "--outputs", outputs, "--plugins", PLUGIN)
    status = json.loads((mnt / ".pipelines" / "screen.status").read_bytes())
    assert status["state"] == "interrupted" and status["done"] == kept and status["interrupted"], status
    assert len(os.listdir(mnt / "screen" / "rois")) == kept  # one plane per unit: committed units only
    (mnt / ".pipelines" / "screen.yaml").write_text(SPEC.replace("sigma: 2", "sigma: 3") + "resume: true\n")
    refused = json.loads((mnt / ".pipelines" / "screen.status").read_bytes())
    assert refused["state"] == "interrupted" and refused["field"] == "resume", refused
    assert "steps[1].args.sigma" in refused["message"], refused
    spec = tmp_path / "screen.yaml"
    spec.write_text(SPEC)
    done = cli("run", mnt, spec, "--resume", "--wait", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    final = json.loads((mnt / ".pipelines" / "screen.status").read_bytes())
    assert final["state"] == "done" and final["done"] == final["total"] == UNITS, final
    log = (mnt / ".pipelines" / "screen.log").read_text()
    assert f"resuming: {kept} of {UNITS} units were complete; running {UNITS - kept}" in log
    cli("unmount", mnt)
    assert_same(outputs_of(folder), outputs_of(clean_run), f"daemon trial {trial} (seed {SEED})")
    assert tree_checksums(plate_folder) == before


@pytest.mark.parametrize("trial", range(2))
def test_kill_9_of_hcsfs_process_then_resume(trial: int, plate_folder: Path, clean_run: Path,
                                             tmp_path: Path) -> None:
    kill_after = random.Random(SEED + 100 + trial).randrange(1, UNITS - 1)
    spec = tmp_path / "screen.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "run"
    process = subprocess.Popen([*HCSFS, "process", str(plate_folder), str(spec), "--out", str(out),
                                "--plugins", PLUGIN], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: committed(out) >= kill_after, 60, f"{kill_after} committed units")
    finally:
        process.kill()
        process.wait(30)
    kept = committed(out)
    assert kill_after <= kept < UNITS, (kept, SEED)
    assert not (out / "tables" / "wells.csv").exists()
    again = cli("process", plate_folder, spec, "--out", out, "--plugins", PLUGIN, check=False)
    assert again.returncode != 0 and "not empty" in again.stderr  # without --resume: refused
    resumed = cli("process", plate_folder, spec, "--out", out, "--plugins", PLUGIN, "--resume")
    assert f"done: {UNITS}/{UNITS} units" in resumed.stdout, resumed.stdout
    log = (out / "run.log").read_text()
    assert f"resuming: {kept} of {UNITS} units were complete" in log
    assert_same(outputs_of(out), outputs_of(clean_run), f"process trial {trial} (seed {SEED})")
