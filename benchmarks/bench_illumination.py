"""Illumination correction: fitting the profiles of 200 planes of 1024x1024 from a TIFF folder (median
and BaSiC), against reading the same planes; and the correction of a plane against a Gaussian of it.

``python -m benchmarks illumination``. The fit runs before any unit, so its time is added once to a run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

PLANES = 200
SHAPE = (1024, 1024)


def _plate(folder: Path) -> Path:
    import tifffile

    from tests.vignetting import vignette

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    flat = vignette(SHAPE)
    dark = 100 + 30 * np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]][0] / SHAPE[0]
    wells = [f"{row}{col:02d}" for row in "ABCDEFGH" for col in range(1, 13)]
    for i in range(PLANES):
        name = f"{wells[i // 4 % len(wells)]}_s{i % 4 + 1:03d}_w1_z001_t001.tif"
        if (folder / name).exists():
            continue
        level = rng.uniform(400, 1200)
        objects = (rng.random((SHAPE[0] // 16, SHAPE[1] // 16)) > 0.9).repeat(16, 0).repeat(16, 1)
        raw = level * (1 + 2 * objects) * flat + dark + rng.normal(0, 10, SHAPE)
        tifffile.imwrite(folder / name, np.clip(raw, 0, 65535).astype(np.uint16))
    return folder


def run(workdir: Path) -> list[dict[str, object]]:
    import hcsfs
    from hcsfs.pipelines import default_registry, parse_spec
    from hcsfs.pipelines.illumination import basicpy_installed, fit_run_profiles
    from hcsfs.pipelines.units import plan_units

    source = hcsfs.open_plate(_plate(Path(workdir) / "illumination-plate"))
    registry = default_registry()
    keys = source.keys()
    started = time.perf_counter()
    for key in keys:
        np.asarray(source.read_plane(key))
    read_s = time.perf_counter() - started
    rows: list[dict[str, object]] = []
    methods = ["median"] + (["basic"] if basicpy_installed() else [])
    for method in methods:
        spec = parse_spec("f.yaml", f"illumination: {{method: {method}, sample: {PLANES}}}\n"
                                    "steps: [{func: clip}]".encode(), registry)
        assert spec.illumination is not None
        units = plan_units(keys, spec)
        started = time.perf_counter()
        fit_run_profiles(spec.illumination, source, units, device="cpu")
        fit_s = time.perf_counter() - started
        rows.append({"case": f"illumination fit, {method}: {PLANES} planes of {SHAPE[0]}x{SHAPE[1]}",
                     "baseline": "reading the planes", "ratio": fit_s / read_s,
                     "goal": "once per run", "detail": f"fit {fit_s:.1f} s, reading {read_s:.1f} s"})
    # the correction in a unit, (raw - dark) / flat per plane, against one cheap step on the same planes
    from scipy import ndimage

    from benchmarks.common import best_of
    from hcsfs.pipelines.illumination import correct_stacks

    spec = parse_spec("f.yaml", b"illumination: {sample: 20}\nsteps: [{func: clip}]", registry)
    assert spec.illumination is not None
    units = plan_units(keys, spec)
    profiles = fit_run_profiles(spec.illumination, source, units[:20])
    assert profiles is not None
    unit = units[0]
    stacks = {name: np.stack([np.asarray(source.read_plane(k)) for k in ks]) for name, ks in unit.stacks}
    correct = best_of(5, lambda: correct_stacks(stacks, unit, profiles))
    smooth = best_of(5, lambda: [ndimage.gaussian_filter(s.astype(np.float32), (0, 2, 2))
                                 for s in stacks.values()])
    per_plane = 1e3 / len(unit.keys)
    rows.append({"case": f"correcting a {SHAPE[0]}x{SHAPE[1]} plane (uint16 -> float32)",
                 "baseline": "gaussian_filter (sigma 2) of it", "ratio": correct / smooth, "goal": "< 0.2",
                 "detail": f"{correct * per_plane:.1f} ms vs {smooth * per_plane:.1f} ms"})
    return rows


if __name__ == "__main__":
    import sys

    for row in run(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-out")):
        print(row)
