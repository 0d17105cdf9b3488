"""``func: model`` on Dask workers: they read the driver's --models folder by the same (shared) path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hcsfs
from hcsfs.pipelines import PipelineManager, default_registry
from hcsfs.pipelines.models import use_models
from tests.distributed.conftest import wait_state
from tests.model_files import conv_reference, need, onnx_conv, torchscript_conv

pytestmark = pytest.mark.timeout(120)

SPEC = b"""select: {channel: [1]}
output: zarr
steps:
  - {func: model, args: {file: conv.pt}}
"""


def test_dask_workers_run_models_of_the_shared_folder(store: Path, address: str, tmp_path: Path) -> None:
    need("torch")
    need("onnx")
    models = tmp_path / "models"
    models.mkdir()
    torchscript_conv(models / "conv.pt")
    onnx_conv(models / "conv.onnx")
    registry = default_registry()
    use_models(registry, models)
    source = hcsfs.open_plate(store)
    manager = PipelineManager(source, outputs_dir=tmp_path / "out", registry=registry, scheduler=address)
    try:
        manager.submit("seg.yaml", SPEC)
        manager.submit("seg2.yaml", SPEC.replace(b"conv.pt}", b"conv.onnx, batch: 1}"))
        for name, mode in (("seg", "mirror"), ("seg2", "constant")):
            doc = wait_state(manager, name, timeout=90)
            assert doc["state"] == "done" and doc["scheduler"] == address, json.dumps(doc)
            assert not doc["errors"], json.dumps(doc)
            output = manager.output(name)
            assert output is not None and len(output.source.keys()) == 12
            for key in output.source.keys():
                want = conv_reference(np.asarray(source.read_plane(key))[None], mode)[0]
                got = np.asarray(output.source.read_plane(key))
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.ptp(want)))
    finally:
        manager.close()
