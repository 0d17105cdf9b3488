"""Illumination correction on a Dask cluster: the driver fits the profiles, the job carrying them is
scattered to the workers once, and every worker corrects its units with them: the planes equal the
local run's, and come back flat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hcsfs
from hcsfs.pipelines import PipelineManager, default_registry
from tests.distributed.conftest import wait_state
from tests.plates import write_tiff_folder
from tests.vignetting import unevenness, vignetted_plate

pytestmark = pytest.mark.timeout(120)

SPEC = b"""illumination: {method: median, sample: 20}
output: zarr
steps:
  - {func: clip}
"""


def test_dask_workers_apply_the_drivers_profiles(address: str, tmp_path: Path) -> None:
    made = vignetted_plate(wells=("A01", "A02", "B01"), sites=4, seed=5)
    source = hcsfs.open_plate(write_tiff_folder(tmp_path / "plate", made.plate))
    managers = {where: PipelineManager(source, outputs_dir=tmp_path / where, registry=default_registry(),
                                       **options)
                for where, options in (("local", {}), ("dask", {"scheduler": address}))}
    try:
        planes = {}
        for where, manager in managers.items():
            manager.submit("flat.yaml", SPEC)
            doc = wait_state(manager, "flat", timeout=90)
            assert doc["state"] == "done" and not doc["errors"] and doc["done"] == 24, doc
            output = manager.output("flat")
            assert output is not None
            assert sorted(output.folder_files("illumination")) == ["w1_flatfield.tif", "w2_flatfield.tif"]
            planes[where] = {k: np.asarray(output.source.read_plane(k)) for k in output.source.keys()}
        assert "scheduler" in doc and doc["device"] == "cpu"
        assert planes["dask"].keys() == planes["local"].keys() == made.truth.keys()
        for key, plane in planes["dask"].items():
            np.testing.assert_array_equal(plane, planes["local"][key])
            assert unevenness(plane, made.truth[key]) < 0.02
    finally:
        for manager in managers.values():
            manager.close()
