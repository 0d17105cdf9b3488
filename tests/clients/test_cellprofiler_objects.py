"""CellProfiler 4.2.8 as an oracle for object measurements and nucleus counts on a mounted plate.

Labels here come from independent code (scipy's Gaussian, scikit-image's Otsu and 8-connected
labelling, the recipe of hcsfs's analysis spec), not from hcsfs's engine, and are written as int32
TIFFs with the flat names of the DAPI planes. ``contrib/hcsfs_measure_objects.cppipe`` measures those
objects on the mounted intensity planes; every number is compared object for object, by number, with
numpy over the source arrays. ``contrib/hcsfs_identify_nuclei.cppipe`` segments on its own and must
find the same counts (within 2 %).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.measure import label

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from tests.clients.cellprofiler_runs import (
    IDENTIFY_PIPELINE,
    MEASURE_PIPELINE,
    Field,
    count_nuclei_with_cellprofiler,
    field_of,
    measure_objects_with_cellprofiler,
    measure_pipeline_for,
    read_table,
)
from tests.clients.synthetic import measured_nuclei_count, measured_nuclei_plate

CHANNELS = {"DAPI": 1, "GFP": 2}
SCALE = 65535  # CellProfiler divides 16-bit planes by this ("Set intensity range from: Image metadata")


def nuclei_labels(dapi: np.ndarray) -> np.ndarray:
    """int32 labels 1..n: Gaussian sigma 2, global Otsu, 8-connected components (holes kept)."""
    smooth = ndimage.gaussian_filter(dapi.astype(np.float64), sigma=2)
    return label(smooth > threshold_otsu(smooth), connectivity=2).astype(np.int32)


def shuffled(labels: np.ndarray, seed: int) -> np.ndarray:
    """The same objects under a random permutation of their numbers (not in raster order any more), so
    a reader that renumbers objects cannot pass the number-for-number comparison."""
    order = np.random.default_rng(seed).permutation(int(labels.max())) + 1
    return np.where(labels > 0, np.concatenate([[0], order])[labels], 0).astype(np.int32)


def field(key: PlaneKey) -> Field:
    return (key.well, key.site, int(key.z), int(key.t))


def dapi_keys(plate: MemoryPlate) -> list[PlaneKey]:
    return [key for key in plate.keys() if key.channel == CHANNELS["DAPI"]]


def test_pipelines_read_flat_names_and_name_the_labels_folder(tmp_path: Path) -> None:
    """No CellProfiler needed: the shipped regexes parse hcsfs names, and the measure pipeline's
    folder rules are rewritten for a labels folder of another name."""
    for pipeline in (MEASURE_PIPELINE, IDENTIFY_PIPELINE):
        line = next(line for line in pipeline.read_text().splitlines()
                    if "Regular expression to extract from file name:" in line)
        found = re.fullmatch(line.split(":", 1)[1], "AF48_s012_w2_z003_t007.tif")
        assert found is not None and found["Well"] == "AF48" and found["ChannelNumber"] == "2"
    assert measure_pipeline_for(tmp_path / "nuclei", tmp_path) == MEASURE_PIPELINE
    copy = measure_pipeline_for(tmp_path / "nuc_labels", tmp_path / "out")
    assert copy.read_text().count(r'"[\\\\/]nuc_labels$"') == 3
    assert "]nuclei$" not in copy.read_text()


@pytest.mark.clients
@pytest.mark.mount
def test_cellprofiler_measures_label_planes_object_for_object(cellprofiler: Path, mountpoint: Path,
                                                              tmp_path: Path) -> None:
    plate = measured_nuclei_plate()
    labels_dir = tmp_path / "nuclei"
    labels_dir.mkdir()
    expected: dict[Field, np.ndarray] = {}
    for index, key in enumerate(dapi_keys(plate)):
        labels = shuffled(nuclei_labels(plate.read_plane(key)), seed=index)
        assert labels.max() == measured_nuclei_count(key)
        tifffile.imwrite(labels_dir / key.name, labels)
        expected[field(key)] = labels
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        rows = measure_objects_with_cellprofiler(cellprofiler, mountpoint, labels_dir, tmp_path / "out")

    for image in read_table(tmp_path / "out" / "Image.csv"):
        assert float(image["Scaling_DAPI"]) == float(image["Scaling_GFP"]) == SCALE
        assert int(float(image["Count_Nuclei"])) == expected[field_of(image)].max()
    by_field: dict[Field, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_field[field_of(row)].append(row)
    assert by_field.keys() == expected.keys()
    yy, xx = np.mgrid[:256, :256]
    for where, labels in expected.items():
        numbers = sorted(int(row["ObjectNumber"]) for row in by_field[where])
        assert numbers == list(range(1, labels.max() + 1)), where
        well, site, z, t = where
        planes = {name: plate.read_plane(PlaneKey(well, site, channel, z, t)).astype(np.float64)
                  for name, channel in CHANNELS.items()}
        for row in by_field[where]:
            inside = labels == int(row["ObjectNumber"])
            assert float(row["AreaShape_Area"]) == inside.sum(), (where, row["ObjectNumber"])
            assert float(row["AreaShape_Center_X"]) == pytest.approx(xx[inside].mean(), rel=1e-9)
            assert float(row["AreaShape_Center_Y"]) == pytest.approx(yy[inside].mean(), rel=1e-9)
            for name, plane in planes.items():
                values = plane[inside]

                def raw(feature: str, row: dict[str, str] = row, name: str = name) -> float:
                    return float(row[f"Intensity_{feature}_{name}"]) * SCALE

                assert raw("IntegratedIntensity") == pytest.approx(values.sum(), rel=1e-6)
                assert raw("MeanIntensity") == pytest.approx(values.mean(), rel=1e-6)
                assert raw("MinIntensity") == pytest.approx(values.min(), rel=1e-6)
                assert raw("MaxIntensity") == pytest.approx(values.max(), rel=1e-6)
                assert raw("StdIntensity") == pytest.approx(values.std(), rel=1e-5)


@pytest.mark.clients
@pytest.mark.mount
def test_cellprofiler_counts_nuclei_as_the_spec_recipe(cellprofiler: Path, mountpoint: Path,
                                                       tmp_path: Path) -> None:
    plate = measured_nuclei_plate()
    expected = {field(key): int(nuclei_labels(plate.read_plane(key)).max()) for key in dapi_keys(plate)}
    assert expected == {field(key): measured_nuclei_count(key) for key in dapi_keys(plate)}
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        counts = count_nuclei_with_cellprofiler(cellprofiler, mountpoint, tmp_path / "out")
    assert counts.keys() == expected.keys()
    for where, count in expected.items():
        assert abs(counts[where] - count) <= 0.02 * count, (where, counts[where], count)


ANALYSIS = """\
channels: {DAPI: 1, GFP: 2}
steps:
  - {func: gaussian_filter, input: DAPI, args: {sigma: 2}, as: smooth}
  - {func: threshold_otsu, input: smooth, as: mask}
  - {func: label, input: mask, as: nuclei}
  - {measure: [shape, intensity], objects: nuclei, channels: [DAPI, GFP], table: nuclei}
save: [nuclei]
"""


@pytest.mark.clients
@pytest.mark.mount
def test_cellprofiler_agrees_with_an_hcsfs_analysis_run(cellprofiler: Path, mountpoint: Path, tmp_path: Path
                                                         ) -> None:
    """The issue's oracle: CellProfiler measures hcsfs's own saved nuclei planes (served by the mount) on
    the mounted intensity planes, and its area, integrated and mean intensity (x 65535) equal hcsfs's
    nuclei.csv object for object to 1e-6 relative; its own IdentifyPrimaryObjects counts nuclei within
    2 % of hcsfs's image.csv."""
    import json
    import time

    plate = measured_nuclei_plate()
    with hcsfs.mounted(plate, mountpoint, outputs=tmp_path / "outputs"):
        (mountpoint / ".pipelines" / "screen.yaml").write_text(ANALYSIS)
        status = mountpoint / ".pipelines" / "screen.status"
        deadline = time.monotonic() + 300
        while json.loads(status.read_bytes())["state"] not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.1)
        assert json.loads(status.read_bytes())["state"] == "done", status.read_text()
        ours = read_table(mountpoint / "screen" / "nuclei.csv")
        image = read_table(mountpoint / "screen" / "image.csv")
        theirs = measure_objects_with_cellprofiler(cellprofiler, mountpoint, mountpoint / "screen" / "nuclei",
                                                   tmp_path / "cp-measure")
        counts = count_nuclei_with_cellprofiler(cellprofiler, mountpoint, tmp_path / "cp-count")
    mine = {(r["well"], int(r["site"]), int(r["z"]), int(r["t"]), int(r["ObjectNumber"])): r for r in ours}
    cp = {(*field_of(r), int(r["ObjectNumber"])): r for r in theirs}
    assert cp.keys() == mine.keys() and len(mine) > 20
    for key, row in mine.items():
        other = cp[key]
        assert float(other["AreaShape_Area"]) == float(row["AreaShape_Area"]), key
        for channel in ("DAPI", "GFP"):
            for feature in ("IntegratedIntensity", "MeanIntensity"):
                column = f"Intensity_{feature}_{channel}"
                expected = pytest.approx(float(row[column]), rel=1e-6)
                assert float(other[column]) * SCALE == expected, (key, column)
    for row in image:
        fov = (row["well"], int(row["site"]), int(row["z"]), int(row["t"]))
        assert abs(counts[fov] - int(row["Count_nuclei"])) <= 0.02 * int(row["Count_nuclei"]), fov
