"""Pipelines on a Dask distributed cluster (``LocalCluster``, 2 worker processes): the same outputs as
the local runner, per-unit errors in the status, cancel, a worker killed mid-run, S3 in and out, and
what a spec may not ask for."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hcsfs
from hcsfs.pipelines import PipelineManager, default_registry, load_plugins
from hcsfs.pipelines.registry import FunctionDef
from tests.distributed.conftest import wait_state
from tests.s3.server import MotoServer

pytestmark = pytest.mark.timeout(90)

NUCLEI = b"""select: {channel: [1]}
output: OUTPUT
steps:
  - {func: gaussian_filter, args: {sigma: 2}}
  - {func: threshold_otsu}
  - {func: label, tables: [objects, object_counts]}
"""
SLOW = b"""steps:
  - {func: slow_copy, args: {seconds: SECONDS}}
"""


def _manager(source: Any, tmp_path: Path, name: str, **options: Any) -> PipelineManager:
    registry = default_registry()
    load_plugins(registry, ["tests.pipeline_plugin"])
    return PipelineManager(source, outputs_dir=tmp_path / name, registry=registry, **options)


def _planes(manager: PipelineManager, name: str) -> dict[str, np.ndarray]:
    output = manager.output(name)
    assert output is not None
    return {k.name: np.asarray(output.source.read_plane(k)) for k in output.source.keys()}


@pytest.mark.parametrize("output", ["zarr", "tiff", "memory"])
def test_dask_run_equals_the_local_run(store: Path, address: str, tmp_path: Path, output: str) -> None:
    spec = NUCLEI.replace(b"OUTPUT", output.encode())
    source = hcsfs.open_plate(store)
    local = _manager(source, tmp_path, "local")
    dask = _manager(source, tmp_path, "dask", scheduler=address)
    try:
        local.submit("nuclei.yaml", spec)
        dask.submit("nuclei.yaml", spec)
        expected, doc = wait_state(local, "nuclei"), wait_state(dask, "nuclei", timeout=60)
        assert expected["state"] == "done", expected
        assert doc["state"] == "done" and doc["done"] == doc["total"] == 6, json.dumps(doc)
        assert not doc["errors"]
        assert doc["scheduler"] == address and doc["device"] == "cpu" and doc["planes"] == 12
        want, got = _planes(local, "nuclei"), _planes(dask, "nuclei")
        assert got.keys() == want.keys() and len(got) == 12
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
        assert dask.output("nuclei").table_bytes() == local.output("nuclei").table_bytes()  # type: ignore[union-attr]
        if output == "zarr":  # a complete OME-Zarr plate, readable as a plate of its own
            run_dir = next((tmp_path / "dask" / "runs").iterdir())
            written = hcsfs.open_plate(run_dir / "data" / "plate.ome.zarr")
            assert len(written.keys()) == 12
    finally:
        local.close()
        dask.close()
    restored = _manager(source, tmp_path, "dask")  # a later mount shows the same outputs
    try:
        if output != "memory":
            assert _planes(restored, "nuclei").keys() == want.keys()
    finally:
        restored.close()


def test_unit_errors_flow_back_into_the_status(plate: Any, address: str, tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    hcsfs.convert.convert_plate(plate, path)
    chunks = sorted((path / "B" / "2" / "0" / "0" / "c").rglob("*"))
    next(c for c in chunks if c.is_file()).write_bytes(b"not zstd" * 20)  # one chunk of B02 site 1
    manager = _manager(hcsfs.open_plate(path), tmp_path, "m", scheduler=address)
    try:
        manager.submit("nuclei.yaml", NUCLEI.replace(b"OUTPUT", b"zarr"))
        doc = wait_state(manager, "nuclei", timeout=60)
        assert doc["state"] == "done" and doc["done"] == 6, doc
        assert [e["unit"] for e in doc["errors"]] == ["B02_s001_w1_z*_t001"], doc["errors"]
        assert "could not be read" in doc["errors"][0]["message"]
        assert len(manager.output("nuclei").source.keys()) == 10  # type: ignore[union-attr]
    finally:
        manager.close()


def test_cancel_cancels_the_futures(store: Path, address: str, tmp_path: Path, cluster: Any) -> None:
    manager = _manager(hcsfs.open_plate(store), tmp_path, "m", scheduler=address)
    try:
        manager.submit("slow.yaml", SLOW.replace(b"SECONDS", b"0.6"))  # 12 units: 3.6 s on 2 workers
        wait_state(manager, "slow", states=("running",))
        deadline = time.monotonic() + 20
        while json.loads(manager.status("slow"))["done"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        manager.remove("slow.yaml")
        doc = wait_state(manager, "slow", timeout=20)
        assert doc["state"] == "cancelled" and doc["done"] < doc["total"] == 12, doc
        assert time.monotonic() - started < 3
        client = manager._client(address)
        deadline = time.monotonic() + 10
        while any(k.startswith("hcsfs-") for k in client.who_has()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [k for k in client.who_has() if str(k).startswith("hcsfs-")]  # nothing left
    finally:
        manager.close()


def test_a_worker_killed_mid_run_has_its_units_rerun(store: Path, address: str, tmp_path: Path) -> None:
    source = hcsfs.open_plate(store)
    manager = _manager(source, tmp_path, "m", scheduler=address)
    try:
        manager.submit("slow.yaml", SLOW.replace(b"SECONDS", b"0.4"))  # 12 units (z stacks) of 0.4 s
        deadline = time.monotonic() + 30
        while json.loads(manager.status("slow"))["done"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        client = manager._client(address)
        victim = max(client.run(os.getpid).items())[1]
        os.kill(victim, signal.SIGKILL)  # its running unit and any queued there go elsewhere
        doc = wait_state(manager, "slow", timeout=60)
        assert doc["state"] == "done" and doc["done"] == 12 and not doc["errors"], doc
        planes = _planes(manager, "slow")
        assert len(planes) == 24
        for key in source.keys():
            np.testing.assert_array_equal(planes[key.name], source.read_plane(key))
        client.wait_for_workers(2, timeout=30)  # the nanny restarted it for the next tests
    finally:
        manager.close()


def test_s3_source_and_s3_outputs(plate: Any, address: str, tmp_path: Path, s3_server: MotoServer) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_server.endpoint_url).create_bucket(Bucket="dask-plates")
    options = {"endpoint_url": s3_server.endpoint_url}
    hcsfs.convert.convert_plate(plate, "s3://dask-plates/p.zarr", **options)
    source = hcsfs.open_plate("s3://dask-plates/p.zarr", **options)
    manager = _manager(source, tmp_path, "m", scheduler=address, shared_outputs="s3://dask-plates/runs",
                       s3_options=options)
    try:
        manager.submit("gpu.yaml", NUCLEI.replace(b"OUTPUT", b"zarr") + b"resources: {GPU: 1}\n")
        doc = wait_state(manager, "gpu", timeout=60)
        assert doc["state"] == "done" and doc["done"] == 6 and not doc["errors"], doc
        planes = _planes(manager, "gpu")
        assert len(planes) == 12
        run = next((tmp_path / "m" / "runs").iterdir()).name
        written = hcsfs.open_plate(f"s3://dask-plates/runs/{run}/plate.ome.zarr", **options)
        assert {k.name for k in written.keys()} == set(planes)
        for key in written.keys():
            np.testing.assert_array_equal(written.read_plane(key), planes[key.name])
    finally:
        manager.close()


def test_what_a_spec_may_not_ask(store: Path, address: str, tmp_path: Path) -> None:
    registry = default_registry()
    registry.register(FunctionDef("invert", "invert a mask", output="uint8 mask"))
    registry.implement("invert", "numpy", lambda stack: (stack == 0).astype("uint8"))
    manager = PipelineManager(hcsfs.open_plate(store), outputs_dir=tmp_path / "m", registry=registry,
                              scheduler=address)
    local = PipelineManager(hcsfs.open_plate(store), outputs_dir=tmp_path / "l", registry=registry)
    try:
        manager.submit("elsewhere.yaml", b"scheduler: tcp://10.0.0.1:8786\nsteps: [{func: clip}]\n")
        doc = wait_state(manager, "elsewhere")
        assert doc["state"] == "failed" and doc["field"] == "scheduler", doc
        manager.submit("inproc.yaml", b"steps: [{func: invert}]\n")
        doc = wait_state(manager, "inproc")
        assert doc["state"] == "failed" and doc["field"] == "steps[0].func", doc
        manager.submit("here.yaml", b"scheduler: local\nsteps: [{func: invert}]\n")
        assert wait_state(manager, "here")["state"] == "done"
        local.submit("gpu.yaml", b"resources: {GPU: 1}\nsteps: [{func: clip}]\n")
        doc = wait_state(local, "gpu")
        assert doc["state"] == "failed" and doc["field"] == "resources", doc
    finally:
        manager.close()
        local.close()


ANALYSIS = b"""channels: {DAPI: 1, GFP: 2}
output: OUTPUT
steps:
  - {func: gaussian_filter, input: DAPI, args: {sigma: 2}, as: smooth}
  - {func: threshold_otsu, input: smooth, as: mask}
  - {func: label, input: mask, as: nuclei}
  - {func: expand_labels, input: nuclei, args: {distance: 3}, as: cells}
  - {measure: [shape, intensity], objects: nuclei, channels: [DAPI, GFP]}
  - {measure: [intensity], objects: cells, channels: [GFP]}
save: [nuclei, cells]
rois: [nuclei]
heatmaps: [Count_nuclei]
"""


@pytest.mark.parametrize("output", ["zarr", "memory"])
def test_dask_analysis_run_equals_the_local_run(store: Path, address: str, tmp_path: Path,
                                                output: str) -> None:
    """An analysis spec on Dask workers: the same saved results, tables, ROI sets and heatmaps."""
    spec = ANALYSIS.replace(b"OUTPUT", output.encode())
    source = hcsfs.open_plate(store)
    local = _manager(source, tmp_path, "local")
    dask = _manager(source, tmp_path, "dask", scheduler=address)
    try:
        local.submit("screen.yaml", spec)
        dask.submit("screen.yaml", spec)
        expected, doc = wait_state(local, "screen"), wait_state(dask, "screen", timeout=60)
        assert expected["state"] == "done" and not expected["errors"], expected
        assert doc["state"] == "done" and doc["done"] == doc["total"] and not doc["errors"], json.dumps(doc)
        want, got = local.output("screen"), dask.output("screen")
        assert want is not None and got is not None
        assert got.table_bytes() == want.table_bytes() and "wells.csv" in got.table_bytes()
        assert set(got.results()) == {"nuclei", "cells"}
        for result, plate in want.results().items():
            assert got.results()[result].keys() == plate.keys()
            for key in plate.keys():
                np.testing.assert_array_equal(got.results()[result].read_plane(key), plate.read_plane(key))
        rois = got.folder_files("rois")
        assert rois.keys() == want.folder_files("rois").keys() and rois
        for name, path in rois.items():
            assert path.read_bytes() == want.folder_files("rois")[name].read_bytes()
        assert got.folder_files("heatmaps").keys() == {"Count_nuclei.png"}
    finally:
        local.close()
        dask.close()
