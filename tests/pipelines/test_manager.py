"""PipelineManager and runner over a MemoryPlate: outputs, tables, progress, cancel, restart, persistence."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import filters, measure

from hcsfs.errors import RunNotFoundError, SpecError
from hcsfs.pipelines import FunctionDef, default_registry

from .conftest import make_plate, wait_state

NUCLEI = b"""select: {channel: [1]}
steps:
  - {func: gaussian_filter, memory: torch, args: {sigma: 2}}
  - {func: threshold_otsu}
  - {func: label, tables: [objects, object_counts]}
"""


def _expected_labels(stack: np.ndarray) -> np.ndarray:
    smooth = np.stack([filters.gaussian(p.astype(np.float64), 2, mode="reflect", preserve_range=True)
                       for p in stack])
    mask = smooth > filters.threshold_otsu(smooth)
    return np.stack([measure.label(m, connectivity=2) for m in mask])


def _unit_stack(plate, well, channel=1):  # type: ignore[no-untyped-def]
    keys = sorted((k for k in plate.keys() if k.well == well and k.channel == channel), key=lambda k: k.z)
    return keys, np.stack([plate.read_plane(k) for k in keys])


def _csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


@pytest.mark.parametrize("output", ["zarr", "tiff", "memory"])
def test_outputs_and_tables_equal_an_independent_computation(manager_factory, output) -> None:
    plate = make_plate()
    before = {k: plate.read_plane(k).copy() for k in plate.keys()}
    manager = manager_factory(plate)
    manager.submit("nuclei.yaml", NUCLEI.replace(b"steps:", f"output: {output}\nsteps:".encode()))
    doc = wait_state(manager, "nuclei")
    assert doc["state"] == "done" and doc["done"] == doc["total"] == 2 and not doc["errors"], doc
    assert doc["output"] == "nuclei/" and doc["device"] == "cpu" and doc["started"] and doc["finished"]
    result = manager.output("nuclei")
    assert [k.name for k in result.source.keys()] == [
        "A01_s001_w1_z001_t001.tif", "A01_s001_w1_z002_t001.tif",
        "B02_s001_w1_z001_t001.tif", "B02_s001_w1_z002_t001.tif"]
    objects = _csv(result.table_bytes()["objects.csv"])
    counts = _csv(result.table_bytes()["object_counts.csv"])
    assert list(objects[0])[:5] == ["well", "site", "channel", "z", "t"]
    for well in ("A01", "B02"):
        keys, stack = _unit_stack(plate, well)
        expected = _expected_labels(stack)
        for z, key in enumerate(keys):
            got = result.source.read_plane(key)
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, expected[z])
            info = result.source.info(key)
            assert info.size > got.nbytes
            props = measure.regionprops(expected[z], intensity_image=stack[z])
            rows = [r for r in objects if r["well"] == well and r["z"] == str(key.z)]
            assert [int(r["label"]) for r in rows] == [p.label for p in props]
            for row, prop in zip(rows, props, strict=True):
                assert int(row["area"]) == prop.area
                assert float(row["centroid_y"]) == pytest.approx(prop.centroid[0])
                assert float(row["centroid_x"]) == pytest.approx(prop.centroid[1])
                assert float(row["mean_intensity"]) == pytest.approx(prop.intensity_mean)
            count = [r for r in counts if r["well"] == well and r["z"] == str(key.z)]
            assert len(count) == 1 and int(count[0]["count"]) == len(props)
    assert all(np.array_equal(plate.read_plane(k), v) for k, v in before.items())  # source unchanged


def test_projection_names_and_dtypes(manager_factory) -> None:
    plate = make_plate(channels=1, zs=3)
    manager = manager_factory(plate)
    manager.submit("proj.yaml", b"steps: [{func: max_projection}]")
    manager.submit("mean.json", b'{"output": "tiff", "steps": [{"func": "mean_projection"}]}')
    assert wait_state(manager, "proj")["state"] == "done"
    assert wait_state(manager, "mean")["state"] == "done"
    keys = manager.output("proj").source.keys()
    assert [k.name for k in keys] == ["A01_s001_w1_zmax_t001.tif", "B02_s001_w1_zmax_t001.tif"]
    _, stack = _unit_stack(plate, "A01")
    np.testing.assert_array_equal(manager.output("proj").source.read_plane(keys[0]), stack.max(axis=0))
    mean = manager.output("mean").source
    key = mean.keys()[0]
    assert key.z == "mean" and mean.info(key).passthrough is not None
    np.testing.assert_allclose(mean.read_plane(key), stack.mean(axis=0), rtol=1e-6)


class Gate:
    """A registry with ``gate``: the first ``free`` units pass, the rest wait for ``release``."""

    def __init__(self, free: int = 1) -> None:
        self.registry = default_registry()
        self.release = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()
        self.free = free
        self.registry.register(FunctionDef("gate", "passes the first units, holds the others"))
        self.registry.implement("gate", "numpy", self._gate)

    def _gate(self, stack: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls += 1
            mine = self.calls
        if mine > self.free:
            self.release.wait(20)
        return stack


def test_partial_output_is_visible_before_done(manager_factory) -> None:
    gate = Gate(free=1)
    manager = manager_factory(make_plate(wells=("A01", "A02", "A03"), channels=1), registry=gate.registry,
                              max_workers=1)
    manager.submit("g.yaml", b"steps: [{func: gaussian_filter}, {func: gate}]")
    deadline = time.monotonic() + 20
    while (len(manager.output("g").source.keys()) < 2 or json.loads(manager.status("g"))["done"] < 1) \
            and time.monotonic() < deadline:  # planes are published, then the unit commits and counts
        time.sleep(0.01)
    doc = json.loads(manager.status("g"))
    assert doc["state"] == "running" and doc["done"] == 1 and doc["total"] == 3
    assert len(manager.output("g").source.keys()) == 2  # one unit's two planes, no more
    assert manager.output("g").tables() == {}
    gate.release.set()
    assert wait_state(manager, "g")["state"] == "done"
    assert len(manager.output("g").source.keys()) == 6


def test_cancel_leaves_only_complete_planes(manager_factory) -> None:
    gate = Gate(free=1)
    plate = make_plate(wells=("A01", "A02", "A03", "A04"), channels=1)
    manager = manager_factory(plate, registry=gate.registry, max_workers=1)
    manager.submit("c.yaml", b"steps: [{func: gate}, {func: label, tables: [objects]}]")
    while json.loads(manager.status("c"))["done"] < 1:
        time.sleep(0.01)
    manager.remove("c.yaml")
    gate.release.set()
    doc = wait_state(manager, "c")
    assert doc["state"] == "cancelled" and doc["done"] < doc["total"]
    assert "c.yaml" not in manager.spec_files() and "c" in manager.run_names()
    output = manager.output("c")
    keys = output.source.keys()
    assert 2 <= len(keys) < 8 and output.tables() == {}
    for key in keys:  # every visible plane is complete and right
        expected = np.stack([measure.label(p != 0) for p in _unit_stack(plate, key.well)[1]])
        np.testing.assert_array_equal(output.source.read_plane(key), expected[key.z - 1])


def test_one_failing_unit_is_an_error_and_the_run_goes_on(manager_factory) -> None:
    registry = default_registry()
    registry.register(FunctionDef("picky", "fails on bright stacks"))

    def picky(stack: np.ndarray) -> np.ndarray:
        if stack.shape[1] == 40 and stack[0, 0, 0] == FAIL_VALUE:
            raise RuntimeError("this unit is broken")
        return stack

    plate = make_plate(wells=("A01", "A02", "A03"), channels=1)
    FAIL_VALUE = int(plate.read_plane(_unit_stack(plate, "A02")[0][0])[0, 0])
    registry.implement("picky", "numpy", picky)
    manager = manager_factory(plate, registry=registry)
    manager.submit("p.yaml", b"steps: [{func: picky}]")
    doc = wait_state(manager, "p")
    assert doc["state"] == "done" and doc["done"] == 3
    assert doc["errors"] == [{"unit": "A02_s001_w1_z*_t001", "message": "RuntimeError: this unit is broken"}]
    assert {k.well for k in manager.output("p").source.keys()} == {"A01", "A03"}
    assert "this unit is broken" in manager.log("p").decode()


def test_resubmission_restarts_and_replaces(manager_factory, tmp_path) -> None:
    plate = make_plate(channels=1)
    manager = manager_factory(plate)
    manager.submit("r.yaml", b"steps: [{func: gaussian_filter, args: {sigma: 1}}]")
    assert wait_state(manager, "r")["state"] == "done"
    first = manager.output("r")
    manager.submit("r.yaml", b"steps: [{func: gaussian_filter, args: {sigma: 3}}]")
    assert wait_state(manager, "r")["state"] == "done"
    second = manager.output("r")
    assert second is not first
    key = second.source.keys()[0]
    expected = ndi.gaussian_filter(plate.read_plane(key).astype(np.float32), 3, mode="reflect")
    np.testing.assert_allclose(second.source.read_plane(key), expected, rtol=1e-5, atol=1e-3)
    deadline = time.monotonic() + 5
    while len(list((tmp_path / "outputs" / "runs").iterdir())) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(list((tmp_path / "outputs" / "runs").iterdir())) == 1


def test_resubmitting_a_running_spec_cancels_it_first(manager_factory, tmp_path) -> None:
    gate = Gate(free=0)
    manager = manager_factory(make_plate(channels=1), registry=gate.registry, max_workers=1)
    manager.submit("s.yaml", b"steps: [{func: gate}]")
    wait_state(manager, "s", ("running",))
    manager.submit("s.yaml", b"steps: [{func: clip, args: {low: 0}}]")
    gate.release.set()
    assert wait_state(manager, "s")["state"] == "done"
    assert json.loads(manager.status("s"))["errors"] == []
    deadline = time.monotonic() + 10
    while len(list((tmp_path / "outputs" / "runs").iterdir())) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(list((tmp_path / "outputs" / "runs").iterdir())) == 1


def test_outputs_persist_across_managers(manager_factory, registry, tmp_path) -> None:
    plate = make_plate(channels=1)
    first = manager_factory(plate)
    first.submit("nuclei.yaml", NUCLEI)
    first.submit("t.yaml", b"output: tiff\nsteps: [{func: threshold_otsu}]")
    first.submit("gone.yaml", b"steps: [{func: clip}]")
    first.submit("bad.yaml", b"steps: [{func: nope}]")
    for name in ("nuclei", "t", "gone"):
        assert wait_state(first, name)["state"] == "done"
    first.remove("gone.yaml")
    planes = {n: {k: first.output(n).source.read_plane(k) for k in first.output(n).source.keys()}
              for n in ("nuclei", "t")}
    tables = first.output("nuclei").table_bytes()
    first.close()
    second = manager_factory(plate)
    assert second.run_names() == ["bad", "gone", "nuclei", "t"]
    assert set(second.spec_files()) == {"nuclei.yaml", "t.yaml", "bad.yaml"}
    assert second.spec_files()["nuclei.yaml"] == NUCLEI
    assert json.loads(second.status("bad"))["field"] == "steps[0].func"
    for name, expected in planes.items():
        source = second.output(name).source
        assert source.keys() == list(expected)
        for key, plane in expected.items():
            np.testing.assert_array_equal(source.read_plane(key), plane)
    assert second.output("nuclei").table_bytes() == tables
    assert "done" in second.log("nuclei").decode()


def test_close_cancels_running_runs(manager_factory, tmp_path) -> None:
    gate = Gate(free=0)
    plate = make_plate(channels=1)
    manager = manager_factory(plate, registry=gate.registry, max_workers=1)
    manager.submit("h.yaml", b"steps: [{func: gate}]")
    wait_state(manager, "h", ("running",))
    threading.Timer(0.3, gate.release.set).start()
    manager.close()
    assert json.loads(manager.status("h"))["state"] == "cancelled"
    again = manager_factory(plate, registry=gate.registry)
    assert json.loads(again.status("h"))["state"] == "cancelled"


def test_invalid_specs_fail_in_the_status(manager_factory) -> None:
    manager = manager_factory(make_plate())
    manager.submit("x.yaml", b"name: nuc\nsteps: [{func: gaussian_filter, args: {sigma: 1e12}}]")
    doc = json.loads(manager.status("nuc"))
    assert doc["state"] == "failed" and doc["field"] == "steps[0].args.sigma" and doc["done"] == 0
    assert doc["errors"][0]["message"].startswith("steps[0].args.sigma: ")
    assert manager.output("nuc") is None and "x.yaml" in manager.spec_files()
    manager.submit("y.yaml", b"name: ../../etc\nsteps: [{func: clip}]")
    assert json.loads(manager.status("y"))["field"] == "name"
    manager.submit("sel.yaml", b"select: {well: [P24]}\nsteps: [{func: clip}]")
    doc = wait_state(manager, "sel")
    assert doc["state"] == "failed" and doc["field"] == "select"
    for bad in ("../a.yaml", ".hidden.yaml", "notes.txt", "a.yaml/b.yaml"):
        with pytest.raises(SpecError):
            manager.submit(bad, b"steps: [{func: clip}]")
    with pytest.raises(RunNotFoundError):
        manager.status("nope")


def test_two_files_cannot_claim_one_name(manager_factory) -> None:
    manager = manager_factory(make_plate())
    manager.submit("a.yaml", b"name: same\nsteps: [{func: clip}]")
    manager.submit("b.yaml", b"name: same\nsteps: [{func: clip}]")
    doc = json.loads(manager.status("b"))
    assert doc["state"] == "failed" and doc["field"] == "name" and "a.yaml" in doc["message"]
    assert wait_state(manager, "same")["state"] == "done"


def test_device_fallback_is_reported(manager_factory) -> None:
    manager = manager_factory(make_plate(channels=1))
    manager.submit("d.yaml", b"device: 'cuda:7'\nsteps: [{func: gaussian_filter, memory: torch}]")
    doc = wait_state(manager, "d")
    assert doc["state"] == "done" and doc["device"] == "cpu" and "cuda:7" in doc["fallback"]


def test_on_change_is_called_and_rate_limited(manager_factory) -> None:
    calls: list[tuple[float, str]] = []
    plate = make_plate(wells=tuple(f"A{c:02d}" for c in range(1, 13)), channels=1)
    manager = manager_factory(plate, on_change=lambda name: calls.append((time.monotonic(), name)))
    manager.submit("n.yaml", b"steps: [{func: gaussian_filter}]")
    assert wait_state(manager, "n")["state"] == "done"
    time.sleep(0.35)
    times = [t for t, name in calls if name == "n"]
    assert times
    span = max(times[-1] - times[0], 0.25)
    assert len(times) <= span * 4 + 2
