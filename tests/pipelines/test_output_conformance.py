"""A run's outputs are a PlateSource like any plate: the conformance suite over them, with planes
expected from scikit-image's Otsu threshold of the same input planes (not from hcsfs)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from skimage.filters import threshold_otsu

from hcsfs.naming import PlaneKey
from hcsfs.pipelines import PipelineManager
from hcsfs.sources.base import PlateSource
from tests.conformance import SourceConformance
from tests.plates import memory_plate, plate_keys

SPEC = b"select: {channel: [1]}\nsteps:\n  - {func: threshold_otsu}\n"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    plate = memory_plate(plate_keys(("A01", "B02"), sites=2, channels=2), shape=(40, 48))
    manager = PipelineManager(plate, outputs_dir=tmp_path_factory.mktemp("outputs"))
    manager.submit("masks.yaml", SPEC)
    deadline = time.monotonic() + 120
    while json.loads(manager.status("masks"))["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert json.loads(manager.status("masks"))["state"] == "done"
    yield plate, manager
    manager.close()


class TestRunOutputConformance(SourceConformance):
    @pytest.fixture
    def source(self, finished) -> PlateSource:  # type: ignore[no-untyped-def]
        output = finished[1].output("masks")
        assert output is not None and output.source.frozen is False  # written while mounted
        return output.source  # type: ignore[no-any-return]

    @pytest.fixture
    def expected(self, finished) -> dict[PlaneKey, np.ndarray]:  # type: ignore[no-untyped-def]
        plate = finished[0]
        masks = {}
        for key in plate.keys():
            if key.channel == 1:
                plane = plate.read_plane(key).astype(np.float32)  # the engine thresholds float32 units
                masks[key] = (plane > threshold_otsu(plane, nbins=256)).astype(np.uint8)
        return masks
