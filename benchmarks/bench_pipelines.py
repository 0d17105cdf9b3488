"""Pipelines: gaussian + Otsu + label over a generated plate, through ``.pipelines`` vs in-process numpy.

The plate is a MemoryPlate of blob images (48 wells x 4 z of 512 x 512 uint16, one channel). The
baseline calls the same numpy functions (scipy's ``gaussian_filter``, an Otsu threshold over each
``[Z, Y, X]`` unit, scipy's ``label``) in-process, one unit after the other, on the same planes. The
hcsfs case writes the spec into ``<mount>/.pipelines/`` of a real mount and waits for the status to
say ``done``: it includes parsing, scheduling, memory conversion, and writing every output plane to
the OME-Zarr outputs and the tables. Where the mount has no ``.pipelines`` yet, it runs through the
:class:`~hcsfs.pipelines.PipelineManager` directly and says so in the detail. The same run with the
Gaussian on torch gives the torch-vs-numpy figure.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from hcsfs import MemoryPlate, PlaneKey

WELLS, ZS, SHAPE = 48, 4, (512, 512)
GOAL = 1.3
SPEC = """steps:
  - {{func: gaussian_filter, memory: {memory}, args: {{sigma: 2}}}}
  - {{func: threshold_otsu}}
  - {{func: label{tables}}}
"""


def make_plate(seed: int = 0) -> MemoryPlate:
    rng = np.random.default_rng(seed)
    planes = {}
    for i in range(WELLS):
        well = f"{'ABCDEFGH'[i // 12]}{i % 12 + 1:02d}"
        for z in range(1, ZS + 1):
            field = ndi.gaussian_filter(rng.random(SHAPE, dtype=np.float32), 4)
            field = (field - field.min()) / np.ptp(field)
            image = 200 + 3000 * (field > 0.6) * field + rng.normal(0, 20, SHAPE)
            planes[PlaneKey(well, 1, 1, z, 1)] = np.clip(image, 0, 65535).astype(np.uint16)
    return MemoryPlate(planes, pixel_size_um=0.65)


def baseline(plate: MemoryPlate) -> float:
    """The same numpy functions in-process, unit by unit; returns seconds."""
    from hcsfs.pipelines.impl_ndimage import otsu_threshold

    started = time.perf_counter()
    wells = sorted({k.well for k in plate.keys()})
    for well in wells:
        stack = np.stack([plate.read_plane(PlaneKey(well, 1, 1, z, 1)) for z in range(1, ZS + 1)])
        smooth = ndi.gaussian_filter(stack.astype(np.float32), (0, 2, 2))
        mask = smooth > otsu_threshold(np, smooth, 256)
        for plane in mask:
            ndi.label(plane, structure=np.ones((3, 3)))
    return time.perf_counter() - started


def _wait(read_status: Any, timeout: float = 600.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = json.loads(read_status())
        except (OSError, ValueError, KeyError):
            doc = {"state": "queued"}
        if doc["state"] in ("done", "failed", "cancelled"):
            return doc
        time.sleep(0.01)
    raise TimeoutError("the run did not finish")


@contextlib.contextmanager
def _through_mount(plate: MemoryPlate, workdir: Path) -> Iterator[Any]:
    """A function ``run(name, spec) -> seconds`` over a real mount, or over the manager."""
    import hcsfs

    mountpoint = workdir / "mnt"
    mountpoint.mkdir(parents=True, exist_ok=True)
    stack = contextlib.ExitStack()
    reason = ""
    try:
        mnt = stack.enter_context(hcsfs.mounted(plate, mountpoint, outputs=workdir / "outputs-mount"))
        control = Path(mnt.path) / ".pipelines"
        if not control.is_dir():
            stack.close()
            raise FileNotFoundError(".pipelines is not in this mount yet")
    except (TypeError, FileNotFoundError, ImportError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    if not reason:
        with stack:
            def run(name: str, spec: str) -> float:
                started = time.perf_counter()
                (control / f"{name}.yaml").write_text(spec)
                doc = _wait(lambda: (control / f"{name}.status").read_bytes())
                if doc["state"] != "done":
                    raise RuntimeError(f"run {name}: {doc}")
                return time.perf_counter() - started

            yield run, "through a real mount's .pipelines"
        return
    from hcsfs.pipelines import PipelineManager

    with tempfile.TemporaryDirectory(dir=workdir) as outputs:
        manager = PipelineManager(plate, outputs_dir=Path(outputs))
        try:
            def run(name: str, spec: str) -> float:
                started = time.perf_counter()
                manager.submit(f"{name}.yaml", spec.encode())
                doc = _wait(lambda: manager.status(name))
                if doc["state"] != "done":
                    raise RuntimeError(f"run {name}: {doc}")
                return time.perf_counter() - started

            yield run, f"through the PipelineManager directly (no mount: {reason[:80]})"
        finally:
            manager.close()


def run(workdir: Path) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    plate = make_plate()
    from hcsfs import memory as hm

    hm.load_frameworks("numpy", "torch")
    baseline(plate)  # warm up scipy and the page cache of the code
    base = min(baseline(plate) for _ in range(3))
    with _through_mount(plate, workdir) as (through, how):
        through("warmup", SPEC.format(memory="torch", tables=""))  # imports, thread pool, zarr
        numpy_s = min(through(f"bench{i}", SPEC.format(memory="numpy", tables="")) for i in range(3))
        torch_s = min(through(f"torch{i}", SPEC.format(memory="torch", tables="")) for i in range(2))
        table_s = min(through(f"table{i}", SPEC.format(memory="numpy", tables=", tables: [objects]"))
                      for i in range(2))
    planes = WELLS * ZS
    size = f"{planes} planes of {SHAPE[0]}x{SHAPE[1]} uint16, {WELLS} units"
    return [
        {"case": "pipelines: gaussian+otsu+label (numpy)", "baseline": "same numpy functions in-process",
         "ratio": numpy_s / base, "goal": f"<= {GOAL}",
         "detail": f"{numpy_s:.2f} s vs {base:.2f} s; {size}; {how}; includes writing the OME-Zarr "
                   f"outputs; goal {'met' if numpy_s / base <= GOAL else 'NOT met'}"},
        {"case": "pipelines: gaussian on torch vs numpy", "baseline": "the same run with numpy",
         "ratio": torch_s / numpy_s, "goal": "report (CPU torch)",
         "detail": f"{torch_s:.2f} s vs {numpy_s:.2f} s; {how}"},
        {"case": "pipelines: the same run adding objects.csv", "baseline": "the run without tables",
         "ratio": table_s / numpy_s, "goal": "report",
         "detail": f"{table_s:.2f} s vs {numpy_s:.2f} s: per-object area, centroid, mean intensity"},
    ]


if __name__ == "__main__":
    for row in run(Path(tempfile.mkdtemp(prefix="bench-pipelines-"))):
        print(row)
