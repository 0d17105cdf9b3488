"""convert_plate: every source type round-trips; NGFF schemas; ome-zarr-py and iohub read it back."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import pytest

from hcsfs import MemoryPlate, open_plate
from hcsfs.convert import convert_plate
from hcsfs.errors import OutputExistsError
from hcsfs.sources.base import PlateSource
from tests.conftest import require, unavailable
from tests.plates import write_tiff_folder


def assert_same_planes(original: PlateSource, converted: PlateSource) -> None:
    """Same keys, same served TIFF header (shape, dtype, pixel size) and same pixels."""
    keys = list(original.keys())
    assert list(converted.keys()) == keys
    for key in keys:
        np.testing.assert_array_equal(converted.read_plane(key), original.read_plane(key))
        shape, dtype, _ = original.plane_format(key)
        layout = converted.info(key).layout
        assert layout is not None and layout.shape == shape and layout.dtype == np.dtype(dtype)
        assert converted.info(key).pixel_size_um == original.info(key).pixel_size_um


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
@pytest.mark.parametrize("chunks", ["plane", "well"])
@pytest.mark.parametrize("compressor", ["zstd", "blosclz4", "lz4", "none"])
def test_memory_round_trip(tmp_path: Path, plate: MemoryPlate, ngff: str, chunks: str, compressor: str) -> None:
    path = tmp_path / "p.zarr"
    seen: list[tuple[int, int]] = []
    result = convert_plate(plate, path, ngff=ngff, chunks=chunks, compressor=compressor, level=1,
                           progress=lambda done, total: seen.append((done, total)))
    assert result.planes == len(plate.keys()) == seen[-1][0] == seen[-1][1]
    assert result.wells == 3 and result.fields == 6
    converted = open_plate(path)
    assert_same_planes(plate, converted)
    assert converted.describe().channel_names == {1: "DAPI", 2: "GFP"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial store left


def test_sharded_round_trip_both_impls(tmp_path: Path, plate: MemoryPlate, zarr_impl: str) -> None:
    path = tmp_path / "p.zarr"
    convert_plate(plate, path, shard="well", compressor="blosclz4")
    assert_same_planes(plate, open_plate(path, zarr_impl=zarr_impl))


def test_tiff_folder_zarr_and_instrument_sources_round_trip(
    tmp_path: Path, plate: MemoryPlate, samples: Path, unchanged: Any,
) -> None:
    folder = unchanged(write_tiff_folder(tmp_path / "tiffs", plate))
    convert_plate(folder, tmp_path / "from_tiff.zarr", ngff="0.4")
    assert_same_planes(open_plate(folder), open_plate(tmp_path / "from_tiff.zarr"))
    zarr_src = unchanged(tmp_path / "from_tiff.zarr")
    convert_plate(zarr_src, tmp_path / "from_zarr.zarr", chunks="well")
    assert_same_planes(open_plate(zarr_src), open_plate(tmp_path / "from_zarr.zarr"))
    for name in ("phenix_harmony5_a", "imagexpress_plane_guid"):
        source = open_plate(samples / name)
        out = tmp_path / f"{name}.zarr"
        convert_plate(source, out)
        converted = open_plate(out)
        assert_same_planes(source, converted)
        names = source.describe().channel_names
        if names:
            assert converted.describe().channel_names == names


def test_refuses_to_overwrite_unless_asked(tmp_path: Path, plate: MemoryPlate) -> None:
    path = tmp_path / "p.zarr"
    path.mkdir()
    (path / "keep").write_text("x")
    with pytest.raises(OutputExistsError):
        convert_plate(plate, path)
    assert (path / "keep").exists()
    convert_plate(plate, path, overwrite=True)
    assert not (path / "keep").exists()
    assert_same_planes(plate, open_plate(path))


def test_interrupted_conversion_leaves_nothing_that_looks_complete(tmp_path: Path, plate: MemoryPlate) -> None:
    path = tmp_path / "p.zarr"

    def interrupt(done: int, total: int) -> None:
        if done == total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_plate(plate, path, progress=interrupt, threads=1)
    assert list(tmp_path.iterdir()) == []


# --- NGFF JSON schemas --------------------------------------------------------------------------


def _validator(samples: Path, version: str, name: str) -> Any:
    jsonschema = require("jsonschema", "the zarr-test extra (make install)")
    require("referencing", "a jsonschema dependency")
    import referencing.jsonschema
    folder = samples / "ngff_spec_examples" / version / "schemas"
    resources = []
    for path in folder.glob("*.schema"):
        doc = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(
            doc, default_specification=referencing.jsonschema.DRAFT202012)
        resources.append((doc["$id"], resource))
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((folder / f"{name}.schema").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry)


def _attrs(node: Path, ngff: str) -> dict[str, Any]:
    if ngff == "0.5":
        doc = json.loads((node / "zarr.json").read_text())
        return doc["attributes"]  # type: ignore[no-any-return]
    return json.loads((node / ".zattrs").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_written_metadata_validates_against_ngff_schemas(
    tmp_path: Path, plate: MemoryPlate, samples: Path, ngff: str,
) -> None:
    path = tmp_path / "p.zarr"
    convert_plate(plate, path, ngff=ngff)
    for schema in ("strict_plate", "plate"):
        _validator(samples, ngff, schema).validate(_attrs(path, ngff))
    for schema in ("strict_well", "well"):
        _validator(samples, ngff, schema).validate(_attrs(path / "AF" / "48", ngff))
    for schema in ("strict_image", "image"):
        _validator(samples, ngff, schema).validate(_attrs(path / "B" / "3" / "1", ngff))
    broken = _attrs(path, ngff)
    del broken.get("ome", broken)["plate"]["wells"]
    assert list(_validator(samples, ngff, "plate").iter_errors(broken))  # the validator does bite


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_written_plate_validates_with_ome_zarr_models(tmp_path: Path, plate: MemoryPlate, ngff: str) -> None:
    """ome-zarr-models (the pydantic models ome-zarr-py 0.18 builds on) walks the whole plate: plate,
    every well, every field image and its arrays, each checked against the version's models."""
    require("ome_zarr_models", "the zarr-test extra (ome-zarr depends on it)")
    import warnings

    import zarr
    from ome_zarr_models.v04.hcs import HCS as HCSv04
    from ome_zarr_models.v04.image import Image as Imagev04
    from ome_zarr_models.v05.hcs import HCS as HCSv05
    from ome_zarr_models.v05.image import Image as Imagev05

    path = tmp_path / "p.zarr"
    convert_plate(plate, path, ngff=ngff)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any other complaint of the models fails the test
        # ome-zarr-models 1.7 warns for 0.5 plates without plate.version, which NGFF 0.5 moved to
        # ome.version (the 0.5 spec's own plate examples have none either).
        warnings.filterwarnings("ignore", message="'version' field not specified in plate metadata")
        hcs = (HCSv05 if ngff == "0.5" else HCSv04).from_zarr(zarr.open_group(path, mode="r"))
        wells = list(hcs.well_groups)
        image_model = Imagev05 if ngff == "0.5" else Imagev04
        images = []
        for entry, well in zip(_model_attrs(hcs, ngff).plate.wells, wells, strict=True):
            for field in _model_attrs(well, ngff).well.images:
                group = zarr.open_group(path / entry.path / field.path, mode="r")
                images.append(image_model.from_zarr(group))
    assert [w.path for w in _model_attrs(hcs, ngff).plate.wells] == ["A/1", "B/3", "AF/48"]
    assert len(wells) == 3 and len(images) == 3 * 2
    for image in images:
        (multiscale,) = _model_attrs(image, ngff).multiscales
        assert [a.name for a in multiscale.axes] == ["t", "c", "z", "y", "x"]
        assert multiscale.datasets[0].coordinateTransformations[0].scale[-2:] == [0.65, 0.65]


def _model_attrs(model: Any, ngff: str) -> Any:
    return model.ome_attributes if ngff == "0.5" else model.attributes


# --- other readers ------------------------------------------------------------------------------


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_ome_zarr_py_reads_it_back(tmp_path: Path, plate: MemoryPlate, ngff: str) -> None:
    require("ome_zarr", "the zarr-test extra (make install)")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = tmp_path / "p.zarr"
    convert_plate(plate, path, ngff=ngff)
    plate_node = next(iter(Reader(parse_url(str(path)))()))
    assert [type(s).__name__ for s in plate_node.specs] == ["Plate"]
    image = next(iter(Reader(parse_url(str(path / "B" / "3" / "1")))()))
    data = np.asarray(image.data[0])
    assert data.shape == (1, 2, 3, 40, 56)
    assert image.metadata["channel_names"] == ["DAPI", "GFP"]
    for key in plate.keys():
        if key.well == "B03" and key.site == 2:
            np.testing.assert_array_equal(data[0, key.channel - 1, key.z - 1], plate.read_plane(key))  # type: ignore[operator]


_IOHUB_SCRIPT = """
import hashlib, json, sys
import numpy as np
from iohub.ngff import open_ome_zarr
out = {}
with open_ome_zarr(sys.argv[1], mode="r", layout="hcs") as plate:
    for name, position in plate.positions():
        data = np.asarray(position["0"][:])
        out[name] = [list(data.shape), position.channel_names, hashlib.sha256(data.tobytes()).hexdigest()]
print(json.dumps(out))
"""


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_iohub_reads_it_back(tmp_path: Path, plate: MemoryPlate, ngff: str) -> None:
    from benchmarks.zarr_iohub import iohub_python

    python, why = iohub_python(Path(platformdirs.user_cache_dir("hcsfs")) / "test-venvs")
    if python is None:
        unavailable(why)  # .ci/run provides Python 3.12 (pyenv): in CI this fails, never skips
    path = tmp_path / "p.zarr"
    convert_plate(plate, path, ngff=ngff)
    done = subprocess.run([python, "-c", _IOHUB_SCRIPT, str(path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    positions = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(positions) == {f"{w}/{s}" for w in ("A/1", "B/3", "AF/48") for s in (0, 1)}
    for name, (shape, channels, digest) in positions.items():
        row, column, field = name.split("/")
        well = f"{row}{int(column):02d}"
        expected = np.zeros((1, 2, 3, 40, 56), dtype="u2")
        for key in plate.keys():
            if key.well == well and key.site == int(field) + 1:
                expected[0, key.channel - 1, key.z - 1] = plate.read_plane(key)  # type: ignore[operator]
        assert shape == list(expected.shape) and channels == ["DAPI", "GFP"]
        assert digest == hashlib.sha256(expected.tobytes()).hexdigest()
