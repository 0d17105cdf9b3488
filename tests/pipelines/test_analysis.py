"""Analysis specs through the PipelineManager: several channels per unit, named results, measurements,
image/wells tables, ROI sets and heatmaps; every number checked against scikit-image and numpy called
independently on the source planes."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import roifile
from PIL import Image
from scipy import ndimage as ndi
from skimage import filters, measure, segmentation

from hcsfs import MemoryPlate, PlaneKey
from hcsfs.errors import SpecError
from hcsfs.pipelines import parse_spec
from tests.specs import screen_spec

from .conftest import blobs, wait_state

SCREEN = screen_spec().encode()
WELLS = ("A01", "A02", "B01")


def screen_plate(wells: tuple[str, ...] = WELLS, sites: int = 2, zs: int = 1,
                 shape: tuple[int, int] = (64, 72), seed: int = 3) -> MemoryPlate:
    rng = np.random.default_rng(seed)
    planes = {}
    for well in wells:
        for site in range(1, sites + 1):
            for z in range(1, zs + 1):
                planes[PlaneKey(well, site, 1, z, 1)] = blobs(rng, shape)
                planes[PlaneKey(well, site, 2, z, 1)] = (rng.random(shape) * 4000).astype(np.uint16)
    return MemoryPlate(planes, pixel_size_um=0.5, channel_names={1: "DAPI", 2: "GFP"})


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def _expected(dapi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    smooth = filters.gaussian(dapi.astype(np.float64), 2, mode="reflect", preserve_range=True)
    nuclei = measure.label(smooth > filters.threshold_otsu(smooth), connectivity=2)
    return nuclei, segmentation.expand_labels(nuclei, 5)


@pytest.mark.parametrize("output", ["zarr", "tiff", "memory"])
def test_screen_spec_equals_scikit_image(manager_factory, output: str) -> None:
    plate = screen_plate()
    before = {k: plate.read_plane(k).copy() for k in plate.keys()}
    manager = manager_factory(plate)
    manager.submit("screen.yaml", SCREEN.replace(b"steps:", f"output: {output}\nsteps:".encode()))
    doc = wait_state(manager, "screen", timeout=60)
    assert doc["state"] == "done" and doc["done"] == doc["total"] == 6 and not doc["errors"], doc
    result = manager.output("screen")
    assert result.source is None and set(result.results()) == {"nuclei", "cells"}
    tables = result.table_bytes()
    assert set(tables) == {"nuclei.csv", "cells.csv", "image.csv", "wells.csv"}
    nuclei_rows, cell_rows = _rows(tables["nuclei.csv"]), _rows(tables["cells.csv"])
    image_rows, well_rows = _rows(tables["image.csv"]), _rows(tables["wells.csv"])
    assert list(nuclei_rows[0])[:5] == ["well", "site", "z", "t", "ObjectNumber"]
    counts: dict[str, list[int]] = {}
    for well in WELLS:
        for site in (1, 2):
            dapi = plate.read_plane(PlaneKey(well, site, 1, 1, 1))
            gfp = plate.read_plane(PlaneKey(well, site, 2, 1, 1)).astype(np.float64)
            nuclei, cells = _expected(dapi)
            name = PlaneKey(well, site, 1, 1, 1)  # results carry DAPI's channel: w1
            np.testing.assert_array_equal(result.results()["nuclei"].read_plane(name), nuclei)
            np.testing.assert_array_equal(result.results()["cells"].read_plane(name), cells)
            assert result.results()["nuclei"].read_plane(name).dtype == np.int32
            mine = [r for r in nuclei_rows if r["well"] == well and r["site"] == str(site)]
            props = measure.regionprops(nuclei)
            assert [int(r["ObjectNumber"]) for r in mine] == [p.label for p in props]
            for row, prop in zip(mine, props, strict=True):
                pixels = nuclei == prop.label
                assert int(row["AreaShape_Area"]) == prop.area
                assert float(row["AreaShape_Center_X"]) == pytest.approx(prop.centroid[1], rel=1e-9)
                assert float(row["AreaShape_Eccentricity"]) == pytest.approx(prop.eccentricity, abs=1e-9)
                assert float(row["Intensity_IntegratedIntensity_GFP"]) == pytest.approx(gfp[pixels].sum(),
                                                                                       rel=1e-9)
                assert float(row["Intensity_MeanIntensity_DAPI"]) == pytest.approx(dapi[pixels].mean(),
                                                                                  rel=1e-9)
            cells_mine = [r for r in cell_rows if r["well"] == well and r["site"] == str(site)]
            cell_numbers = [p.label for p in measure.regionprops(cells)]
            assert [int(r["ObjectNumber"]) for r in cells_mine] == cell_numbers
            assert "AreaShape_Area" not in cells_mine[0]
            image = next(r for r in image_rows if r["well"] == well and r["site"] == str(site))
            assert int(image["Count_nuclei"]) == nuclei.max() == len(props)
            assert float(image["AreaShape_Area_nuclei"]) == pytest.approx(np.mean([p.area for p in props]))
            counts.setdefault(well, []).append(len(props))
            rois = roifile.roiread(_roi_file(result, f"{well}_s{site:03d}_w1_z001_t001"))
            assert [int(r.name) for r in rois] == [p.label for p in props]
    assert [r["well"] for r in well_rows] == list(WELLS)
    for row in well_rows:
        values = [float(r["Intensity_MeanIntensity_GFP"]) for r in nuclei_rows if r["well"] == row["well"]]
        assert float(row["Count_nuclei"]) == sum(counts[row["well"]])
        assert float(row["Intensity_MeanIntensity_GFP_nuclei"]) == pytest.approx(np.mean(values), rel=1e-9)
        assert float(row["Median_Intensity_MeanIntensity_GFP_nuclei"]) == pytest.approx(np.median(values),
                                                                                       rel=1e-9)
    heatmaps = result.folder_files("heatmaps")
    assert set(heatmaps) == {"Count_nuclei.png", "Intensity_MeanIntensity_GFP_nuclei.png"}
    assert Image.open(heatmaps["Count_nuclei.png"]).format == "PNG"
    assert {k: plate.read_plane(k) for k in plate.keys()}.keys() == before.keys()
    for key, plane in before.items():
        np.testing.assert_array_equal(plate.read_plane(key), plane)


def _roi_file(result, stem: str) -> str:  # type: ignore[no-untyped-def]
    return str(result.folder_files("rois")[f"{stem}_nuclei.roi.zip"])


def test_results_survive_a_new_manager(manager_factory) -> None:
    plate = screen_plate(wells=("A01",), sites=1)
    first = manager_factory(plate)
    first.submit("screen.yaml", SCREEN)
    assert wait_state(first, "screen", timeout=60)["state"] == "done"
    tables = first.output("screen").table_bytes()
    planes = {k: first.output("screen").results()["cells"].read_plane(k)
              for k in first.output("screen").results()["cells"].keys()}
    rois = set(first.output("screen").folder_files("rois"))
    first.close()
    second = manager_factory(plate)
    output = second.output("screen")
    assert output.table_bytes() == tables and set(output.folder_files("rois")) == rois
    assert set(output.folder_files("heatmaps")) == {"Count_nuclei.png",
                                                     "Intensity_MeanIntensity_GFP_nuclei.png"}
    for key, plane in planes.items():
        np.testing.assert_array_equal(output.results()["cells"].read_plane(key), plane)


def test_z_stacks_max_projection_and_watershed(manager_factory) -> None:
    """A unit is a z stack per channel; a reduction names the planes zmax; watershed takes markers."""
    plate = screen_plate(wells=("A01",), sites=1, zs=3)
    spec = b"""channels: {nuc: DAPI, marker: GFP}
steps:
  - {func: max_projection, input: nuc, as: nuc_max}
  - {func: max_projection, input: marker, as: marker_max}
  - {func: gaussian_filter, args: {sigma: 2}, input: nuc_max, as: smooth}
  - {func: threshold_otsu, as: mask}
  - {func: label, as: seeds}
  - {func: watershed, input: smooth, inputs: {markers: seeds, mask: mask}, args: {invert: true}, as: nuclei}
  - {measure: [intensity], objects: nuclei, channels: [marker_max]}
save: [nuclei]
output: memory
"""
    manager = manager_factory(plate)
    manager.submit("z.yaml", spec)
    doc = wait_state(manager, "z", timeout=60)
    assert doc["state"] == "done" and doc["done"] == doc["total"] == 1, doc
    out = manager.output("z")
    assert [k.name for k in out.results()["nuclei"].keys()] == ["A01_s001_w1_zmax_t001.tif"]
    dapi = np.stack([plate.read_plane(PlaneKey("A01", 1, 1, z, 1)) for z in (1, 2, 3)]).max(axis=0)
    smooth = filters.gaussian(dapi.astype(np.float64), 2, mode="reflect", preserve_range=True)
    mask = smooth > filters.threshold_otsu(smooth)
    expected = segmentation.watershed(-smooth, measure.label(mask, connectivity=2), mask=mask)
    got = out.results()["nuclei"].read_plane(PlaneKey("A01", 1, 1, "max", 1))
    assert (got == expected).mean() > 0.999  # float32 smoothing may move a ridge pixel
    rows = _rows(out.table_bytes()["nuclei.csv"])
    assert {r["z"] for r in rows} == {"max"} and "Intensity_MeanIntensity_marker_max" in rows[0]


def test_empty_labels_write_no_rows_and_a_count_of_zero(manager_factory) -> None:
    planes = {PlaneKey("A01", 1, 1, 1, 1): np.full((32, 32), 7, np.uint16),
              PlaneKey("A01", 1, 2, 1, 1): np.full((32, 32), 9, np.uint16)}
    manager = manager_factory(MemoryPlate(planes))
    manager.submit("e.yaml", b"""channels: {DAPI: 1, GFP: 2}
steps:
  - {func: threshold_otsu, input: DAPI}
  - {func: label, as: nuclei}
  - {measure: [shape, intensity], objects: nuclei, channels: [GFP]}
heatmaps: [Count_nuclei]
""")
    doc = wait_state(manager, "e")
    assert doc["state"] == "done" and not doc["errors"], doc
    tables = manager.output("e").table_bytes()
    assert _rows(tables["nuclei.csv"]) == []
    assert [r["Count_nuclei"] for r in _rows(tables["image.csv"])] == ["0"]
    wells = _rows(tables["wells.csv"])
    assert wells[0]["Count_nuclei"] == "0" and wells[0]["AreaShape_Area_nuclei"] == ""
    assert math.isnan(float(wells[0]["AreaShape_Area_nuclei"] or "nan"))


def test_a_missing_channel_fails_that_unit_only(manager_factory) -> None:
    plate = screen_plate(wells=("A01", "A02"), sites=1)
    planes = {k: plate.read_plane(k) for k in plate.keys() if not (k.well == "A02" and k.channel == 2)}
    manager = manager_factory(MemoryPlate(planes))
    manager.submit("screen.yaml", SCREEN)
    doc = wait_state(manager, "screen", timeout=60)
    assert doc["state"] == "done" and doc["done"] == doc["total"] == 2, doc
    assert len(doc["errors"]) == 1 and "GFP" in doc["errors"][0]["message"]
    wells = _rows(manager.output("screen").table_bytes()["wells.csv"])
    assert [w["well"] for w in wells] == ["A01", "A02"] and wells[1]["Count_nuclei"] == "0"


def test_a_channel_the_plate_lacks_fails_before_anything_runs(manager_factory) -> None:
    manager = manager_factory(screen_plate(wells=("A01",), sites=1))
    manager.submit("x.yaml", SCREEN.replace(b"GFP: 2}", b"GFP: 5}"))
    doc = wait_state(manager, "x")
    assert doc["state"] == "failed" and doc["field"] == "channels.GFP" and doc["done"] == 0, doc
    manager.submit("y.yaml", SCREEN.replace(b"GFP: 2}", b"GFP: mCherry}"))
    doc = wait_state(manager, "y")
    assert doc["state"] == "failed" and doc["field"] == "channels.GFP" and "mCherry" in doc["message"]


def _spec(text: str) -> bytes:
    return text.encode()


BASE = "channels: {DAPI: 1, GFP: 2}\nsteps:\n  - {func: threshold_otsu, input: DAPI, as: mask}\n"
BAD: list[tuple[str, str, str]] = [
    ("measure on an image result", BASE + "  - {measure: [shape], objects: mask}\n", "steps[1].objects"),
    ("rois of a mask", BASE + "rois: [mask]\n", "rois[0]"),
    ("heatmap column no table has", BASE + "  - {func: label, as: n}\n  - {measure: [shape], objects: n}\n"
     "heatmaps: [Intensity_MeanIntensity_GFP_n]\n", "heatmaps[0]"),
    ("inputs parameter the function lacks",
     BASE + "  - {func: watershed, input: DAPI, inputs: {seeds: mask}}\n",
     "steps[1].inputs.seeds"),
    ("required array input missing", BASE + "  - {func: watershed, input: DAPI}\n",
     "steps[1].inputs.markers"),
    ("unknown name", BASE + "  - {func: label, input: masks}\n", "steps[1].input"),
    ("use before definition", "channels: {DAPI: 1}\nsteps:\n  - {func: label, input: m}\n"
     "  - {func: threshold_otsu, input: DAPI, as: m}\n", "steps[0].input"),
    ("name defined twice", BASE + "  - {func: label, as: mask}\n", "steps[1].as"),
    ("alias redefined", BASE + "  - {func: label, as: DAPI}\n", "steps[1].as"),
    ("save a channel", BASE + "save: [DAPI]\n", "save[0]"),
    ("measure labels with intensity of labels", BASE + "  - {func: label, as: n}\n"
     "  - {measure: [intensity], objects: n, channels: [n]}\n", "steps[2].channels[0]"),
    ("intensity without channels",
     BASE + "  - {func: label, as: n}\n  - {measure: [intensity], objects: n}\n",
     "steps[2].channels"),
    ("unknown measurement", BASE + "  - {func: label, as: n}\n  - {measure: [texture], objects: n}\n",
     "steps[2].measure[0]"),
    ("labels function on an image", BASE + "  - {func: expand_labels, input: DAPI}\n", "steps[1].input"),
    ("two inputs ambiguous", "channels: {DAPI: 1, GFP: 2}\nsteps:\n  - {func: label}\n", "steps[0].input"),
    ("channel in group_by", BASE.replace("steps:", "group_by: [well, site, channel, t]\nsteps:"), "group_by"),
    ("select channel", BASE.replace("steps:", "select: {channel: [1]}\nsteps:"), "select.channel"),
    ("bad alias", "channels: {'1x': 1}\nsteps: [{func: label}]\n", "channels.1x"),
    ("reserved result name", BASE + "  - {func: label, as: rois}\n", "steps[1].as"),
    ("as without channels", "steps: [{func: label, as: n}]\n", "steps[0].as"),
    ("measure without channels", "steps: [{func: label}, {measure: [shape], objects: n}]\n",
     "steps[1].measure"),
    ("save without channels", "steps: [{func: label}]\nsave: [x]\n", "save"),
    ("table format", BASE + "table_format: xlsx\n", "table_format"),
    ("measured twice", BASE + "  - {func: label, as: n}\n  - {measure: [shape], objects: n}\n"
     "  - {measure: [shape], objects: n, table: again}\n", "steps[3].objects"),
    ("reduction mismatch", BASE + "  - {func: label, as: n}\n  - {func: max_projection, input: GFP, as: g}\n"
     "  - {measure: [intensity], objects: n, channels: [g]}\n", "steps[3].channels[0]"),
]


@pytest.mark.parametrize(("kind", "text", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_analysis_specs_name_their_field(registry, kind: str, text: str, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec("a.yaml", _spec(text), registry)
    assert caught.value.field == field, (kind, str(caught.value))


def test_version_one_specs_are_unchanged(registry) -> None:
    text = b"steps: [{func: gaussian_filter}, {func: label, tables: [objects]}]"
    spec = parse_spec("n.yaml", text, registry)
    assert not spec.is_analysis and spec.group_by == ("well", "site", "channel", "t")
    assert spec.stacked_axis == "z" and spec.save == () and spec.measures == ()


def test_status_file_is_json_with_the_design_fields(manager_factory) -> None:
    manager = manager_factory(screen_plate(wells=("A01",), sites=1))
    manager.submit("screen.yaml", SCREEN)
    doc = json.loads(manager.status("screen"))
    assert {"name", "state", "done", "total", "errors", "device", "started", "finished", "output"} <= set(doc)


def test_a_result_read_by_two_steps_is_computed_once_and_converted_at_each_edge(manager_factory) -> None:
    """One call per unit of a function whose result two later steps read, one of them as torch."""
    import threading

    from hcsfs.pipelines import FunctionDef, default_registry

    calls: list[str] = []
    lock = threading.Lock()
    registry = default_registry()
    registry.register(FunctionDef("counted_copy", "copy, counting calls"))

    def counted(stack: np.ndarray) -> np.ndarray:
        with lock:
            calls.append("x")
        return stack.astype(np.float32)

    registry.implement("counted_copy", "numpy", counted)
    manager = manager_factory(screen_plate(wells=("A01", "A02"), sites=1), registry=registry)
    manager.submit("c.yaml", b"""channels: {DAPI: 1}
steps:
  - {func: counted_copy, as: copy}
  - {func: gaussian_filter, input: copy, memory: torch, args: {sigma: 1}, as: a}
  - {func: threshold_otsu, input: copy, as: b}
  - {func: label, input: b, as: n}
  - {measure: [intensity], objects: n, channels: [a, copy]}
save: [a]
output: memory
""")
    doc = wait_state(manager, "c", timeout=60)
    assert doc["state"] == "done" and not doc["errors"], doc
    assert len(calls) == 2  # two units, one call each
    plane = manager.output("c").results()["a"].read_plane(PlaneKey("A01", 1, 1, 1, 1))
    dapi = screen_plate(wells=("A01", "A02"), sites=1).read_plane(PlaneKey("A01", 1, 1, 1, 1))
    expected = ndi.gaussian_filter(dapi.astype(np.float32), 1, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(plane, expected, atol=1e-4 * float(np.ptp(expected)))


def test_cupy_steps_without_a_cuda_device_fail_before_anything_runs(manager_factory, registry) -> None:
    from hcsfs.memory import MemoryType
    from hcsfs.memory.backends import cuda_device_count
    from hcsfs.pipelines.registry import framework_installed

    if not framework_installed(MemoryType.CUPY):
        pytest.fail("cupy is a test dependency (requirements/frameworks.txt)")
    try:
        if cuda_device_count():
            pytest.skip("a CUDA device exists here: cupy steps run")
    except Exception:  # noqa: BLE001 - no driver: no device
        pass
    manager = manager_factory(screen_plate(wells=("A01",), sites=1))
    cupy = SCREEN.replace(b"args: {sigma: 2}, as: smooth", b"args: {sigma: 2}, memory: cupy, as: smooth")
    manager.submit("c.yaml", cupy)
    doc = wait_state(manager, "c")
    assert doc["state"] == "failed" and doc["field"] == "steps[0].memory" and doc["done"] == 0, doc
