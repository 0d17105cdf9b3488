"""A Dask ``LocalCluster`` of 2 worker processes (1 thread each) for the whole module, and plates."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hcsfs import MemoryPlate
from hcsfs.convert import convert_plate
from tests.conftest import require
from tests.pipelines.conftest import make_plate, wait_state  # noqa: F401 - re-exported for the tests
from tests.s3.server import MotoServer, s3_env

distributed = require("distributed", "the distributed extra (make install)")

REPO = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """Started before the cluster, so the workers inherit its fake credentials."""
    require("moto", "the s3-test extra (make install)")
    require("obstore", "the s3 extra (make install)")
    home = tmp_path_factory.mktemp("aws")
    saved = dict(os.environ)
    os.environ.update(s3_env(home))
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # never a public endpoint, even by mistake
    try:
        with MotoServer() as server:
            yield server
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def cluster(s3_server: MotoServer) -> Iterator[object]:
    # Workers are spawned processes of this venv; the repository on PYTHONPATH lets them import the
    # tests' plugin module (tests.pipeline_plugin) as --plugins modules are imported on real workers.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  resources={"GPU": 1}, silence_logs=40) as running:
        yield running


@pytest.fixture
def address(cluster: object) -> str:
    return str(cluster.scheduler_address)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def plate() -> MemoryPlate:
    return make_plate(wells=("A01", "B02", "C03"), sites=2, channels=2, zs=2, shape=(48, 56))


@pytest.fixture(scope="module")
def store(plate: MemoryPlate, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plate as OME-Zarr on local disk: the workers (same machine) read it directly."""
    path = tmp_path_factory.mktemp("plates") / "p.ome.zarr"
    convert_plate(plate, path)
    return path
