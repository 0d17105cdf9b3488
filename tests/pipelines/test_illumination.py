"""Illumination (flat-field) correction: planes made as ground truth x a known vignetting profile
(+ a dark-field, + camera noise) come back flat, through the PipelineManager, for version-1 and
analysis specs, with the median method and with BaSiC (basicpy).

Tolerances (``unevenness``: the largest relative deviation of a plane's 8x8 block means from its ground
truth's; a raw plane here is 0.5-0.7):
- median: corrected planes within 2 %, the fitted flat-field within 2 % of the true profile;
- BaSiC, flat-field only: the same 2 %;
- BaSiC with a dark-field (camera offset 100-130 under backgrounds of 400-1200): within 5 % (its
  dark-field is within about 25 counts of the truth; estimating it is what BaSiC calls unstable).
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from hcsfs import MemoryPlate, PlaneKey
from hcsfs.errors import SpecError
from hcsfs.pipelines import PipelineManager, parse_spec
from hcsfs.pipelines.illumination import (
    MIN_FLAT,
    Profile,
    correct_stacks,
    fit_profile,
    parse_illumination,
    sample_keys,
    selected_planes,
    working_size,
)
from hcsfs.pipelines.units import plan_units
from tests.pipelines.conftest import wait_state
from tests.vignetting import unevenness, vignetted_plate

MEDIAN_TOLERANCE = 0.02
BASIC_TOLERANCE = 0.02
BASIC_DARK_TOLERANCE = 0.05
RAW_AT_LEAST = 0.4

V1 = b"""illumination: {method: METHOD, sample: 20}
output: OUTPUT
steps:
  - {func: clip}
"""
ANALYSIS = b"""channels: {DAPI: 1, GFP: 2}
illumination: {method: median}
steps:
  - {func: clip, input: DAPI, as: dapi}
  - {func: clip, input: GFP, as: gfp}
  - {func: threshold_otsu, input: dapi, as: mask}
  - {func: label, input: mask, as: nuclei}
  - {measure: [intensity], objects: nuclei, channels: [GFP], table: nuclei}
save: [dapi, gfp]
"""


def _served(manager: PipelineManager, name: str, result: str | None = None) -> dict[PlaneKey, np.ndarray]:
    output = manager.output(name)
    assert output is not None
    source = output.source if result is None else output.results()[result]
    return {key: np.asarray(source.read_plane(key)) for key in source.keys()}


def _profiles(manager: PipelineManager, name: str) -> dict[str, np.ndarray]:
    output = manager.output(name)
    assert output is not None
    return {file: tifffile.imread(path) for file, path in output.folder_files("illumination").items()}


def _check_flat(made, served: dict[PlaneKey, np.ndarray], tolerance: float) -> float:  # type: ignore[no-untyped-def]
    assert served.keys() == made.truth.keys()
    worst = 0.0
    for key, plane in served.items():
        assert plane.dtype == np.float32
        raw = made.plate.read_plane(key)
        assert unevenness(raw, made.truth[key]) > RAW_AT_LEAST  # the vignetting is there to remove
        worst = max(worst, unevenness(plane, made.truth[key]))
    assert worst <= tolerance, worst
    return worst


# --- the spec ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "field", "words"), [
    ("median", "illumination", "must be a mapping"),
    ({"method": "flat"}, "illumination.method", "not one of median, basic"),
    ({"sample": 5}, "illumination.sample", "not in [10, 5000]"),
    ({"sample": 6000}, "illumination.sample", "not in [10, 5000]"),
    ({"sample": True}, "illumination.sample", "integer"),
    ({"sample": 20.5}, "illumination.sample", "integer"),
    ({"method": "median", "darkfield": True}, "illumination.darkfield", "only method: basic"),
    ({"method": "basic", "darkfield": "yes"}, "illumination.darkfield", "true or false"),
    ({"smooth": 3}, "illumination.smooth", "unknown field"),
])
def test_bad_illumination_fields_name_themselves(value, field, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError) as caught:
        parse_illumination(value)
    assert caught.value.field == field and words in str(caught.value)


_ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_ANY, st.dictionaries(st.sampled_from(["method", "sample", "darkfield", "x"]),
                                       st.one_of(_ANY, st.sampled_from(["median", "basic"]),
                                                 st.integers(0, 6000)), max_size=4)))
def test_any_illumination_value_is_accepted_or_a_spec_error(value) -> None:  # type: ignore[no-untyped-def]
    try:
        config = parse_illumination(value)
    except SpecError as exc:
        assert exc.field.startswith("illumination")
    else:
        assert config.method in ("median", "basic") and 10 <= config.sample <= 5000


def test_the_spec_field(registry) -> None:  # type: ignore[no-untyped-def]
    spec = parse_spec("a.yaml", b"illumination: {}\nsteps: [{func: clip}]", registry)
    assert spec.illumination is not None
    config = spec.illumination
    assert (config.method, config.sample, config.darkfield) == ("median", 200, False)
    basic = parse_spec("b.yaml", b"illumination: {method: basic, sample: 50}\nsteps: [{func: clip}]",
                       registry)
    assert basic.illumination is not None and basic.illumination.darkfield  # BaSiC's default
    assert parse_spec("c.yaml", b"steps: [{func: clip}]", registry).illumination is None
    with pytest.raises(SpecError) as caught:
        parse_spec("d.yaml", b"illumination: {sample: 1}\nsteps: [{func: clip}]", registry)
    assert caught.value.field == "illumination.sample"
    with pytest.raises(SpecError) as caught:  # a result cannot hide the profiles' folder
        parse_spec("e.yaml", b"channels: {A: 1}\nsteps: [{func: clip, input: A, as: illumination}]", registry)
    assert caught.value.field == "steps[0].as"


# --- the pieces --------------------------------------------------------------------------------------

def test_sampling_is_spread_and_deterministic() -> None:
    keys = [PlaneKey(f"A{w:02d}", s, 1, z) for w in range(1, 13) for s in (1, 2) for z in (1, 2, 3)]
    chosen = sample_keys(keys, 10)
    assert chosen == sample_keys(keys, 10) and len(set(chosen)) == 10
    assert [keys.index(k) for k in chosen] == [0, 7, 14, 21, 28, 36, 43, 50, 57, 64]
    assert len({k.well for k in chosen}) == 10  # over the whole plate, not its first wells
    assert sample_keys(keys, 200) == keys


def test_selected_planes_per_channel_for_both_kinds_of_spec(registry) -> None:  # type: ignore[no-untyped-def]
    plate = vignetted_plate(wells=("A01", "B02"), sites=2, shape=(16, 16)).plate
    v1 = parse_spec("a.yaml", b"select: {channel: [2]}\nsteps: [{func: clip}]", registry)
    assert {c: len(k) for c, k in selected_planes(plan_units(plate.keys(), v1)).items()} == {2: 4}
    stacked = parse_spec("b.yaml", b"group_by: [well, site, z, t]\nsteps: [{func: clip}]", registry)
    units = plan_units(plate.keys(), stacked)  # version 1 stacking channels: two channels per unit
    assert len(units) == 4 and {c: len(k) for c, k in selected_planes(units).items()} == {1: 4, 2: 4}
    analysis = parse_spec("c.yaml", b"channels: {A: 1, B: 2, C: 1}\nsteps: [{func: clip, input: A}]",
                          registry)
    got = selected_planes(plan_units(plate.keys(), analysis, plate.describe().channel_names))
    assert {c: len(k) for c, k in got.items()} == {1: 4, 2: 4}  # a channel named twice is fitted once


def test_correction_is_raw_minus_dark_over_flat_in_float32() -> None:
    rng = np.random.default_rng(1)
    flat = rng.uniform(0.5, 1.5, (6, 7)).astype(np.float32)
    dark = rng.uniform(90, 110, (6, 7)).astype(np.float32)
    keys = (PlaneKey("A01", 1, 1, 1), PlaneKey("A01", 1, 2, 1))
    raw = rng.integers(100, 4000, (2, 6, 7)).astype(np.uint16)

    class OneUnit:
        @staticmethod
        def stack_keys(name: str) -> tuple[PlaneKey, ...]:
            return keys

    profiles = {1: Profile(1, flat, dark), 2: Profile(2, flat[::-1].copy())}
    out = correct_stacks({"x": raw}, OneUnit(), profiles)["x"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], (raw[0].astype(np.float32) - dark) / flat)
    np.testing.assert_array_equal(out[1], raw[1].astype(np.float32) / flat[::-1])
    with pytest.raises(ValueError, match="no illumination profile for channel w2"):
        correct_stacks({"x": raw}, OneUnit(), {1: profiles[1]})
    with pytest.raises(ValueError, match="profile of w1 is 3x7"):
        correct_stacks({"x": raw}, OneUnit(), {1: Profile(1, flat[:3]), 2: profiles[2]})


def test_median_fit_at_working_resolution_recovers_a_large_profile() -> None:
    """600x800 planes are fitted on 192x256 block means and interpolated back."""
    made = vignetted_plate(wells=("A01", "A02"), sites=6, channels=1, shape=(600, 800))
    keys = list(made.truth)
    profile = fit_profile((made.plate.read_plane(k) for k in keys), "median")
    assert profile is not None and profile.flat.shape == (600, 800) and profile.flat.dtype == np.float32
    assert abs(float(profile.flat.mean()) - 1) < 1e-5 and profile.planes == 12
    assert np.max(np.abs(profile.flat / made.flat[1] - 1)) < MEDIAN_TOLERANCE


def test_the_working_grid_is_bounded() -> None:
    assert (working_size("median", 200), working_size("basic", 200)) == (256, 128)
    assert working_size("median", 5000) == working_size("basic", 5000) == 81  # 5000 x 81 x 81 <= 32 M
    made = vignetted_plate(wells=("A01",), sites=12, channels=1, shape=(300, 400))
    planes = [made.plate.read_plane(k) for k in made.truth]
    small = fit_profile(planes, "median", count=4000)  # a 100x100 grid (factor 4) instead of 300x400
    assert small is not None and small.flat.shape == (300, 400)
    assert np.max(np.abs(small.flat / made.flat[1] - 1)) < MEDIAN_TOLERANCE


def test_a_black_corner_does_not_divide_by_zero() -> None:
    planes = [np.full((20, 30), 1000, np.uint16) for _ in range(10)]
    for plane in planes:
        plane[:6, :6] = 0
    profile = fit_profile(planes, "median")
    assert profile is not None and float(profile.flat.min()) >= MIN_FLAT * 0.99
    assert np.all(np.isfinite(profile.flat))


# --- through the manager ------------------------------------------------------------------------------

@pytest.mark.parametrize("output", ["memory", "zarr"])
def test_median_correction_of_a_v1_run(manager_factory, output: str) -> None:  # type: ignore[no-untyped-def]
    made = vignetted_plate()
    manager = manager_factory(made.plate)
    manager.submit("flat.yaml", V1.replace(b"METHOD", b"median").replace(b"OUTPUT", output.encode()))
    doc = wait_state(manager, "flat")
    assert doc["state"] == "done" and not doc["errors"], doc
    _check_flat(made, _served(manager, "flat"), MEDIAN_TOLERANCE)
    profiles = _profiles(manager, "flat")
    assert sorted(profiles) == ["w1_flatfield.tif", "w2_flatfield.tif"]
    for channel in (1, 2):
        flat = profiles[f"w{channel}_flatfield.tif"]
        assert flat.dtype == np.float32 and flat.shape == (96, 128) and abs(float(flat.mean()) - 1) < 1e-5
        assert unevenness(flat, made.flat[channel]) < MEDIAN_TOLERANCE
    log = manager.log("flat").decode()
    assert "illumination: median flat-field of w1 from 20 of 24 planes" in log, log


def test_the_profiles_are_what_the_units_applied(manager_factory) -> None:  # type: ignore[no-untyped-def]
    made = vignetted_plate(wells=("A01", "A02", "B01"))
    manager = manager_factory(made.plate)
    manager.submit("flat.yaml", V1.replace(b"METHOD", b"median").replace(b"OUTPUT", b"memory"))
    assert wait_state(manager, "flat")["state"] == "done"
    profiles = _profiles(manager, "flat")
    for key, plane in _served(manager, "flat").items():
        raw = made.plate.read_plane(key).astype(np.float32)
        np.testing.assert_array_equal(plane, raw / profiles[f"w{key.channel}_flatfield.tif"])


def test_analysis_spec_corrects_each_channel_with_its_own_profile(manager_factory, registry, tmp_path
                                                                  ) -> None:  # type: ignore[no-untyped-def]
    made = vignetted_plate()
    manager = manager_factory(made.plate)
    manager.submit("screen.yaml", ANALYSIS)
    doc = wait_state(manager, "screen")
    assert doc["state"] == "done" and not doc["errors"], doc
    for result, channel in (("dapi", 1), ("gfp", 2)):
        served = _served(manager, "screen", result)
        assert {k.channel for k in served} == {channel}
        truth = {k: v for k, v in made.truth.items() if k.channel == channel}
        worst = max(unevenness(plane, truth[key]) for key, plane in served.items())
        assert worst <= MEDIAN_TOLERANCE, (result, worst)
    assert sorted(_profiles(manager, "screen")) == ["w1_flatfield.tif", "w2_flatfield.tif"]
    manager.close()
    again = PipelineManager(made.plate, outputs_dir=tmp_path / "outputs", registry=registry)
    try:  # a later mount over the same outputs shows the profiles again
        assert sorted(_profiles(again, "screen")) == ["w1_flatfield.tif", "w2_flatfield.tif"]
    finally:
        again.close()


@pytest.mark.parametrize(("darkfield", "tolerance"), [(False, BASIC_TOLERANCE), (True, BASIC_DARK_TOLERANCE)])
def test_basic_correction(manager_factory, darkfield: bool, tolerance: float) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("basicpy")  # installed by the illumination extra (make install)
    made = vignetted_plate(dark=darkfield)
    manager = manager_factory(made.plate)
    spec = V1.replace(b"METHOD", b"basic").replace(b"OUTPUT", b"memory")
    if not darkfield:
        spec = spec.replace(b"sample: 20}", b"sample: 20, darkfield: false}")
    manager.submit("basic.yaml", spec)
    doc = wait_state(manager, "basic", timeout=240)
    assert doc["state"] == "done" and not doc["errors"], doc
    _check_flat(made, _served(manager, "basic"), tolerance)
    profiles = _profiles(manager, "basic")
    names = ["w1_flatfield.tif", "w2_flatfield.tif"] + (["w1_darkfield.tif", "w2_darkfield.tif"] if darkfield
                                                        else [])
    assert sorted(profiles) == sorted(names)
    if darkfield:
        for channel in (1, 2):
            assert np.max(np.abs(profiles[f"w{channel}_darkfield.tif"] - made.dark[channel])) < 40


class _Broken(MemoryPlate):
    """A plate whose planes of channel 2 cannot be read."""

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        if key.channel == 2:
            raise OSError("the disk went away")
        return super().read_plane(key)


def test_a_failed_fit_fails_the_run_before_any_unit(manager_factory) -> None:  # type: ignore[no-untyped-def]
    made = vignetted_plate(wells=("A01", "A02", "B01"))
    broken = _Broken(pixel_size_um=0.65)
    for key in made.plate.keys():
        broken.add(key, made.plate.read_plane(key))
    manager = manager_factory(broken)
    manager.submit("flat.yaml", V1.replace(b"METHOD", b"median").replace(b"OUTPUT", b"memory"))
    doc = wait_state(manager, "flat")
    assert doc["state"] == "failed" and doc["field"] == "illumination" and doc["done"] == 0, doc
    assert "12 of 12 sampled planes could not be read" in doc["message"]
    assert "disk went away" in doc["message"]
    shapes = MemoryPlate()
    for i, key in enumerate(made.plate.keys()):
        shapes.add(key, np.ones((16, 16 if i else 20), np.uint16))
    other = manager_factory(shapes)
    other.submit("flat.yaml", V1.replace(b"METHOD", b"median").replace(b"OUTPUT", b"memory"))
    doc = wait_state(other, "flat")
    assert doc["state"] == "failed" and doc["field"] == "illumination" and "differ in shape" in doc["message"]


class _Slow(MemoryPlate):
    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.reads = 0

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        self.reads += 1
        self.gate.wait(10)
        return super().read_plane(key)


def test_cancelling_while_fitting_runs_no_unit(manager_factory) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    slow = _Slow(gate)
    made = vignetted_plate(wells=("A01", "A02"), sites=6, channels=1)
    for key in made.plate.keys():
        slow.add(key, made.plate.read_plane(key))
    manager = manager_factory(slow)
    manager.submit("flat.yaml", V1.replace(b"METHOD", b"median").replace(b"OUTPUT", b"memory"))
    deadline = time.monotonic() + 10
    while slow.reads == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(manager.status("flat"))["state"] == "running"
    manager.remove("flat.yaml")
    gate.set()
    doc = wait_state(manager, "flat")
    assert doc["state"] == "cancelled" and doc["done"] == 0, doc
    assert slow.reads < 12  # it stopped reading: no unit ran (a unit reads its planes again)


def test_a_resumed_run_reads_its_saved_profiles_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hcsfs.pipelines.process import process_plate

    made = vignetted_plate(wells=("A01", "A02", "B01"), sites=4)
    spec = tmp_path / "flat.yaml"
    spec.write_text("illumination: {method: median, sample: 20}\n"
                    "steps: [{func: slow_copy, args: {seconds: 0.1}}]")
    out = tmp_path / "out"

    def interrupt(done: int, total: int, state: str) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_plate(made.plate, spec, out, plugins=["tests.pipeline_plugin"], workers=2, progress=interrupt)
    saved = {p.name: tifffile.imread(p) for p in (out / "illumination").iterdir()}
    assert sorted(saved) == ["w1_flatfield.tif", "w2_flatfield.tif"]
    doc = process_plate(made.plate, spec, out, plugins=["tests.pipeline_plugin"], workers=2, resume=True)
    assert doc["state"] == "done" and not doc["errors"], doc
    log = (out / "run.log").read_text()
    assert "illumination: the saved profiles of 2 channel(s) read back" in log, log
    assert "flat-field of" not in log  # not fitted again
    from hcsfs.pipelines.outputs import load_output

    output = load_output(out, "flat", pixel_size_um=None, channel_names={})
    assert output.source is not None and sorted(output.folder_files("illumination")) == sorted(saved)
    keys = output.source.keys()
    assert len(keys) == 24
    for key in keys:
        raw = made.plate.read_plane(key).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(output.source.read_plane(key)),
                                      raw / saved[f"w{key.channel}_flatfield.tif"])
