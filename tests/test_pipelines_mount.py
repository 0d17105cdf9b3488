"""Pipelines end to end through real mounts: specs written with shell-like file operations, outputs,
tables, status and logs read back through the mount, compared with scipy/scikit-image."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.measure import label as sk_label

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.demo import cells_plane
from tests.plates import imagexpress_folder, write_tiff_folder, zarr_plate

pytestmark = pytest.mark.mount

NUCLEI = """\
select: {channel: [1]}
output: OUTPUT
steps:
  - {func: gaussian_filter, args: {sigma: 2}}
  - {func: threshold_otsu}
  - {func: label, tables: [objects, object_counts]}
"""


def cells(wells: tuple[str, ...] = ("A01", "A02", "B01"), sites: int = 2, shape=(96, 96)) -> MemoryPlate:
    plate = MemoryPlate(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
    for w, well in enumerate(wells):
        for site in range(1, sites + 1):
            for channel in (1, 2):
                plate.add(PlaneKey(well, site, channel), cells_plane(w * 10 + site, shape, channel))
    return plate


def wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status(mnt: Path, name: str) -> dict:
    return json.loads((mnt / ".pipelines" / f"{name}.status").read_bytes())


def wait_final(mnt: Path, name: str, timeout: float = 120) -> dict:
    def final() -> dict | None:
        try:
            current = status(mnt, name)
        except FileNotFoundError:
            return None
        return current if current["state"] in ("done", "failed", "cancelled") else None
    return wait_for(final, timeout, f"run {name} to end")  # type: ignore[return-value]


def write_spec(mnt: Path, name: str, text: str) -> None:
    """As `cat > spec` does: open (create/truncate), write, close."""
    with open(mnt / ".pipelines" / name, "w") as file:
        file.write(text)


def expected_labels(plane: np.ndarray, stack: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The independent computation: scipy gaussian, scikit-image Otsu over the unit, labelling."""
    smoothed = ndi.gaussian_filter(plane.astype(np.float32), 2.0)
    unit = np.stack([ndi.gaussian_filter(p.astype(np.float32), 2.0) for p in stack])
    mask = smoothed > threshold_otsu(unit, nbins=256)
    return mask, sk_label(mask, connectivity=2)


@pytest.fixture
def mounted_cells(mountpoint: Path, tmp_path: Path) -> Iterator[tuple[Path, MemoryPlate]]:
    plate = cells()
    with hcsfs.mounted(plate, mountpoint, outputs=tmp_path / "outputs",
                       plugins=("tests.pipeline_plugin",)) as mnt:
        yield mnt.path, plate


@pytest.mark.parametrize("output", ["zarr", "tiff", "memory"])
def test_nuclei_pipeline_outputs_equal_scipy(mountpoint: Path, tmp_path: Path, output: str) -> None:
    plate = cells()
    with hcsfs.mounted(plate, mountpoint, outputs=tmp_path / "out") as mnt:
        write_spec(mnt.path, "nuclei.yaml", NUCLEI.replace("OUTPUT", output))
        final = wait_final(mnt.path, "nuclei")
        assert final["state"] == "done" and final["errors"] == [], final
        assert final["done"] == final["total"] == 6 and final["output"] == "nuclei/"
        folder = mnt.path / "nuclei"
        names = sorted(p.name for p in folder.iterdir())
        planes = [k for k in plate.keys() if k.channel == 1]
        assert names == sorted([k.name for k in planes] + ["object_counts.csv", "objects.csv"])
        counts = {}
        exact_masks = 0
        for key in planes:
            labels = tifffile.imread(folder / key.name)
            assert labels.dtype == np.int32
            mask, want = expected_labels(plate.read_plane(key), [plate.read_plane(key)])
            assert np.mean((labels > 0) != mask) < 0.005
            # Whatever float32 rounding did to the mask, the labels are scikit-image's labelling of it,
            # and the objects are scikit-image's objects of the independent mask.
            np.testing.assert_array_equal(labels, sk_label(labels > 0, connectivity=2))
            assert abs(int(labels.max()) - int(want.max())) <= 1, (key.name, labels.max(), want.max())
            exact_masks += bool(np.array_equal(labels > 0, mask))
            if np.array_equal(labels > 0, mask):
                np.testing.assert_array_equal(labels, want)
            counts[key.name] = int(labels.max())
        # The exact comparison with scikit-image must really run: float32 rounding may flip a pixel of
        # one plane's mask, not of most (all 6 are exact today).
        assert exact_masks >= len(planes) - 1, (exact_masks, len(planes))
        rows = list(csv.DictReader(io.StringIO((folder / "object_counts.csv").read_text())))
        assert {(r["well"], int(r["site"]), int(r["channel"])) for r in rows} == \
            {(k.well, k.site, k.channel) for k in planes}
        for row in rows:
            assert int(row["count"]) == counts[PlaneKey(row["well"], int(row["site"]), 1).name]
        objects = list(csv.DictReader(io.StringIO((folder / "objects.csv").read_text())))
        assert len(objects) == sum(counts.values())
        assert {"well", "site", "channel", "z", "t", "label", "area", "centroid_y", "centroid_x",
                "mean_intensity"} <= set(objects[0])
        log = (mnt.path / ".pipelines" / "nuclei.log").read_text()
        assert "nuclei" in log


def test_partial_output_visible_while_running_and_reads_keep_working(
    mounted_cells: tuple[Path, MemoryPlate]
) -> None:
    mnt, plate = mounted_cells
    write_spec(mnt, "slow.yaml", "output: memory\nsteps:\n  - {func: slow_copy, args: {seconds: 0.25}}\n")
    seen = wait_for(lambda: [p for p in (mnt / "slow").glob("*.tif")] if (mnt / "slow").exists() else [],
                    what="first output plane")
    current = status(mnt, "slow")
    assert current["state"] == "running" and 0 < current["done"] < current["total"] == 12
    for plane in seen:  # every visible output is complete
        key = hcsfs.parse_name(plane.name)
        np.testing.assert_array_equal(tifffile.imread(plane), plate.read_plane(key))
    for key in plate.keys():  # the plate keeps being served during the run
        np.testing.assert_array_equal(tifffile.imread(mnt / key.name), plate.read_plane(key))
    assert wait_final(mnt, "slow")["state"] == "done"
    assert len(list((mnt / "slow").glob("*.tif"))) == 12


def test_rm_cancels_and_leaves_only_complete_outputs(mounted_cells: tuple[Path, MemoryPlate]) -> None:
    mnt, plate = mounted_cells
    write_spec(mnt, "cancelme.yaml",
               "output: tiff\nsteps:\n  - {func: slow_copy, args: {seconds: 0.3}}\n  - {func: label, tables: [object_counts]}\n")
    wait_for(lambda: status(mnt, "cancelme")["state"] == "running", what="running")
    os.unlink(mnt / ".pipelines" / "cancelme.yaml")
    final = wait_final(mnt, "cancelme")
    assert final["state"] == "cancelled" and final["done"] < final["total"]
    assert not (mnt / ".pipelines" / "cancelme.yaml").exists()
    folder = mnt / "cancelme"
    visible = sorted(folder.glob("*.tif")) if folder.exists() else []
    for plane in visible:
        assert tifffile.imread(plane).shape == (96, 96)
    assert not (folder / "object_counts.csv").exists()


def test_rewriting_a_spec_restarts_it(mounted_cells: tuple[Path, MemoryPlate]) -> None:
    mnt, plate = mounted_cells
    write_spec(mnt, "clip.yaml", "select: {well: [A01]}\nsteps:\n  - {func: clip, args: {low: 0, high: 500}}\n")
    first = wait_final(mnt, "clip")
    assert first["state"] == "done"
    key = PlaneKey("A01", 1, 1)
    assert tifffile.imread(mnt / "clip" / key.name).max() <= 500
    subprocess.run(["sh", "-c", f"echo 'select: {{well: [A01]}}\nsteps:\n  - {{func: clip, args: "
                                f"{{low: 0, high: 100}}}}' > {mnt}/.pipelines/clip.yaml"], check=True)
    second = wait_for(lambda: (s := status(mnt, "clip"))["state"] == "done"
                      and s["started"] != first["started"] and s, what="second run")
    assert second["done"] == 4
    np.testing.assert_array_equal(tifffile.imread(mnt / "clip" / key.name),
                                  np.clip(plate.read_plane(key), 0, 100))


def test_editor_style_rename_into_place_starts_a_run(mounted_cells: tuple[Path, MemoryPlate]) -> None:
    mnt, _ = mounted_cells
    pipelines = mnt / ".pipelines"
    (pipelines / ".max.yaml.swp").write_text("scratch")  # an editor's swap file is only a draft
    (pipelines / ".max.yaml.tmp").write_text("group_by: [well, site, z, t]\nsteps:\n  - {func: max_projection}\n")
    assert not (pipelines / "max.status").exists()
    os.rename(pipelines / ".max.yaml.tmp", pipelines / "max.yaml")
    final = wait_final(mnt, "max")
    assert final["state"] == "done", final
    assert "A01_s001_wmax_z001_t001.tif" in os.listdir(mnt / "max")
    assert sorted(os.listdir(pipelines)) == sorted(
        [".max.yaml.swp", "README", "max.log", "max.status", "max.yaml"])
    os.unlink(pipelines / ".max.yaml.swp")


@pytest.mark.parametrize("spec, field", [
    ("steps:\n  - {func: no_such_function}\n", "steps[0].func"),
    ("steps:\n  - {func: gaussian_filter, args: {sigmaa: 2}}\n", "steps[0].args"),
    ("steps:\n  - {func: gaussian_filter, args: {sigma: 1e12}}\n", "steps[0].args.sigma"),
    ("select: {colour: [1]}\nsteps:\n  - {func: clip}\n", "select"),
    ("name: ../escape\nsteps:\n  - {func: clip}\n", "name"),
    ("steps: !!python/object/apply:os.system ['touch /tmp/hcsfs-pwned']\n", "steps"),
    ("device: tpu:0\nsteps:\n  - {func: clip}\n", "device"),
    ("output: s3\nsteps:\n  - {func: clip}\n", "output"),
    ("steps: [\n", "spec"),
])
def test_malformed_specs_fail_cleanly(mounted_cells: tuple[Path, MemoryPlate], spec: str, field: str) -> None:
    mnt, _ = mounted_cells
    write_spec(mnt, "bad.yaml", spec)
    final = wait_final(mnt, "bad")
    assert final["state"] == "failed" and final["done"] == 0
    assert field in json.dumps(final), final
    assert not (mnt / "bad").exists() and not Path("/tmp/hcsfs-pwned").exists()
    assert (mnt / "A01_s001_w1_z001_t001.tif").stat().st_size > 0  # the mount keeps serving


def test_control_files_and_the_rest_of_the_mount_stay_read_only(
    mounted_cells: tuple[Path, MemoryPlate]
) -> None:
    mnt, _ = mounted_cells
    readme = (mnt / ".pipelines" / "README").read_text()
    assert "gaussian_filter" in readme and "slow_copy" in readme
    for path in (mnt / ".pipelines" / "README",):
        with pytest.raises(OSError) as caught:
            open(path, "w")
        assert caught.value.errno in (errno.EPERM, errno.EACCES, errno.EROFS)
    with pytest.raises(OSError) as caught:
        open(mnt / "new.yaml", "w")
    assert caught.value.errno == errno.EROFS
    with pytest.raises(OSError) as caught:
        os.mkdir(mnt / ".pipelines" / "sub")
    assert caught.value.errno == errno.EROFS
    with pytest.raises(OSError) as caught:
        (mnt / ".pipelines" / "notes.txt").write_bytes(b"x" * (2 << 20))
    assert caught.value.errno == errno.EFBIG


def test_cli_run_status_and_outputs_that_survive_a_remount(tmp_path: Path, mountpoint: Path, unchanged) -> None:  # type: ignore[no-untyped-def]
    source = unchanged(write_tiff_folder(tmp_path / "plate", cells(("A01", "B02"), sites=1)))
    outputs = tmp_path / "outputs"
    spec = tmp_path / "nuclei.yaml"
    spec.write_text(NUCLEI.replace("OUTPUT", "zarr"))
    hcsfs_cli = [sys.executable, "-m", "hcsfs"]
    subprocess.run([*hcsfs_cli, "mount", str(source), str(mountpoint), "--outputs", str(outputs)], check=True)
    try:
        done = subprocess.run([*hcsfs_cli, "run", str(mountpoint), str(spec), "--wait", "--timeout", "120"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        shown = subprocess.run([*hcsfs_cli, "status", str(mountpoint)], capture_output=True, text=True,
                               check=True).stdout
        assert "nuclei" in shown and "done" in shown and "2/2" in shown
        before = {p.name: p.read_bytes() for p in (mountpoint / "nuclei").iterdir()}
        bad = tmp_path / "broken.yaml"
        bad.write_text("steps:\n  - {func: nope}\n")
        failed = subprocess.run([*hcsfs_cli, "run", str(mountpoint), str(bad), "--wait"],
                                capture_output=True, text=True)
        assert failed.returncode == 1 and "nope" in failed.stdout + failed.stderr
    finally:
        subprocess.run([*hcsfs_cli, "unmount", str(mountpoint)], check=True)
    # The run's files went to --outputs (none into the plate: `unchanged` checks its whole tree).
    runs = {p.name.rpartition("~")[0]: p for p in (outputs / "runs").iterdir()}
    assert "nuclei" in runs and any(p.is_file() for p in runs["nuclei"].rglob("*"))
    assert not list(source.glob("nuclei*"))
    subprocess.run([*hcsfs_cli, "mount", str(source), str(mountpoint), "--outputs", str(outputs)], check=True)
    try:
        assert status(mountpoint, "nuclei")["state"] == "done"
        after = {p.name: p.read_bytes() for p in (mountpoint / "nuclei").iterdir()}
        assert after == before
    finally:
        subprocess.run([*hcsfs_cli, "unmount", str(mountpoint)], check=True)


@pytest.mark.parametrize("make_source", [imagexpress_folder, zarr_plate], ids=["imagexpress", "ome-zarr"])
def test_pipelines_over_instrument_and_zarr_sources(
    tmp_path: Path, mountpoint: Path, make_source: Callable[[Path, MemoryPlate], Path], unchanged  # type: ignore[no-untyped-def]
) -> None:
    plate = cells(("A01", "B02"), sites=2)
    source = unchanged(make_source(tmp_path / "source", plate))
    with hcsfs.mounted(source, mountpoint, outputs=tmp_path / "outputs") as mnt:
        assert plate_format(mnt.path) in ("imagexpress", "ome-zarr")
        write_spec(mnt.path, "smooth.yaml",
                   "select: {channel: [2]}\nsteps:\n  - {func: gaussian_filter, args: {sigma: 1.5}}\n")
        final = wait_final(mnt.path, "smooth")
        assert final["state"] == "done" and final["done"] == 4, final
        for key in (k for k in plate.keys() if k.channel == 2):
            got = tifffile.imread(mnt.path / "smooth" / key.name)
            want = ndi.gaussian_filter(plate.read_plane(key).astype(np.float32), 1.5)
            np.testing.assert_allclose(got.astype(np.float32), want.astype(got.dtype).astype(np.float32),
                                       atol=1.0)


def plate_format(mnt: Path) -> str:
    return str(json.loads((mnt / ".hcsfs" / "plate.json").read_text())["format"])


def test_status_exists_as_soon_as_the_writer_closes(mounted_cells: tuple[Path, MemoryPlate]) -> None:
    """`cat > x.yaml && cat x.status` must see the run: the spec is taken at close(2), not later."""
    mnt, _ = mounted_cells
    for attempt in range(5):
        write_spec(mnt, f"quick{attempt}.yaml", "output: memory\nsteps:\n  - {func: clip}\n")
        assert status(mnt, f"quick{attempt}")["state"] in ("queued", "running", "done")
