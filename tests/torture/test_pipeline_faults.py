"""Pipeline functions that crash, hang or return the wrong shape: each unit fails alone, in bounded
time, with a message; the run goes on and only complete planes are published."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hcsfs.pipelines import FunctionDef, FunctionRegistry, PipelineManager, default_registry
from hcsfs.pipelines.registry import Param
from tests.torture.helpers import small_plate

RELEASE = threading.Event()  # set at the end so abandoned units finish


def crash_on_site_2(stack: np.ndarray, site: int = 0) -> np.ndarray:
    if stack.mean() < 0:  # never: the crash is chosen by the data's first value below
        return stack
    if int(stack.flat[0]) % 2:
        raise RuntimeError("boom: the function crashed")
    return stack.copy()


def hang_on_odd(stack: np.ndarray) -> np.ndarray:
    if int(stack.flat[0]) % 2:
        RELEASE.wait(60)  # hangs far longer than the unit timeout
    return stack.copy()


def wrong_shape(stack: np.ndarray, kind: int = 0) -> np.ndarray:
    return [stack[0], stack[:, :3], np.concatenate([stack, stack]), stack.astype(np.complex64)][kind]


def _registry() -> FunctionRegistry:
    registry = default_registry()
    registry.register(FunctionDef(name="crashy", doc="raises on odd first pixels",
                                  params=(Param("site", int, 0, low=0, high=10, doc="unused"),)))
    registry.implement("crashy", "numpy", crash_on_site_2)
    registry.register(FunctionDef(name="hangs", doc="blocks on odd first pixels"))
    registry.implement("hangs", "numpy", hang_on_odd)
    registry.register(FunctionDef(name="misshapen", doc="returns a wrong shape",
                                  params=(Param("kind", int, 0, low=0, high=3, doc="which wrong shape"),)))
    registry.implement("misshapen", "numpy", wrong_shape)
    return registry


def _wait(manager: PipelineManager, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = json.loads(manager.status(name))
        if doc["state"] in ("done", "failed", "cancelled"):
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.02)


@pytest.fixture
def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    plate = small_plate(shape=(32, 40))
    made = PipelineManager(plate, outputs_dir=tmp_path / "out", registry=_registry(), unit_timeout=1.0)
    yield plate, made
    RELEASE.set()
    made.close()
    RELEASE.clear()


def _label(key) -> str:  # type: ignore[no-untyped-def]
    return key.name.removesuffix(".tif").replace("_z001_", "_z*_")


def _odd(plate, key) -> bool:  # type: ignore[no-untyped-def]
    return bool(int(plate.read_plane(key).flat[0]) % 2)


def test_a_crashing_function_fails_its_units_only(manager) -> None:  # type: ignore[no-untyped-def]
    plate, pm = manager
    pm.submit("c.yaml", b"output: memory\nsteps: [{func: crashy}]\n")
    doc = _wait(pm, "c")
    bad = {_label(k) for k in plate.keys() if _odd(plate, k)}
    assert 0 < len(bad) < len(plate.keys())
    assert doc["state"] == "done" and doc["done"] == doc["total"] == len(plate.keys()), doc
    assert {e["unit"] for e in doc["errors"]} == bad
    assert all("RuntimeError: boom" in e["message"] for e in doc["errors"])
    shown = {k.name for k in pm.output("c").source.keys()}
    assert shown == {k.name for k in plate.keys() if not _odd(plate, k)}


def test_a_hanging_function_is_abandoned_after_the_unit_timeout(manager) -> None:  # type: ignore[no-untyped-def]
    plate, pm = manager
    started = time.monotonic()
    pm.submit("h.yaml", b"output: memory\nsteps: [{func: hangs}]\n")
    doc = _wait(pm, "h", timeout=30)
    hung = {k.name for k in plate.keys() if _odd(plate, k)}
    assert doc["state"] in ("done", "cancelled"), doc
    assert doc["errors"] and {e["unit"] for e in doc["errors"]} <= {_label(k) for k in plate.keys()
                                                                     if k.name in hung}
    assert all("took longer than 1 s" in e["message"] for e in doc["errors"]), doc["errors"]
    assert time.monotonic() - started < 25
    RELEASE.set()  # the abandoned units now finish: their results must stay discarded
    time.sleep(0.3)
    shown = {k.name for k in pm.output("h").source.keys()}
    assert not shown & hung


@pytest.mark.parametrize("kind", [0, 2, 3], ids=["2-D", "doubled depth", "complex"])
def test_a_wrong_shape_or_dtype_is_a_unit_error(manager, kind: int) -> None:  # type: ignore[no-untyped-def]
    plate, pm = manager
    pm.submit("w.yaml", f"output: memory\nsteps: [{{func: misshapen, args: {{kind: {kind}}}}}]\n".encode())
    doc = _wait(pm, "w")
    assert doc["state"] == "failed" and len(doc["errors"]) == len(plate.keys()), doc
    assert doc["message"] == "every unit failed"
    assert list(pm.output("w").source.keys()) == []


def test_a_cropped_plane_is_a_plane_of_another_size(manager) -> None:  # type: ignore[no-untyped-def]
    plate, pm = manager
    pm.submit("w.yaml", b"output: memory\nsteps: [{func: misshapen, args: {kind: 1}}]\n")
    doc = _wait(pm, "w")
    assert doc["state"] == "done" and not doc["errors"], doc
    key = plate.keys()[0]
    assert pm.output("w").source.read_plane(key).shape == (3, 40)
