"""Opera Phenix / Operetta (Harmony): real indexes against pe2loaddata, synthetic indexes for the rest."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcsfs.errors import PlateCollisionError, PlateFormatError
from hcsfs.naming import PlaneKey, sort_key
from hcsfs.sources import detect_format, open_plate, plate_summary
from hcsfs.sources.fieldorder import cluster
from hcsfs.sources.phenix import PhenixSource, find_index
from tests.conformance import SourceConformance
from tests.conftest import require
from tests.sources.generate_ixm import tree_digest, write_files

HARMONY5 = [("phenix_harmony5_a", "load_data_version1.csv"), ("phenix_harmony5_b", "load_data_version5.csv")]


def _loaddata_planes(csv_path: Path) -> list[tuple[PlaneKey, str, str, float]]:
    """Every (key, file, channel name, pixel size) pe2loaddata wrote, one per channel column per row."""
    planes = []
    with open(csv_path, newline="") as file:
        for row in csv.DictReader(file):
            for column in row:
                if not column.startswith("FileName_"):
                    continue
                channel = column.removeprefix("FileName_")
                key = PlaneKey(row["Metadata_Well"], int(row["Metadata_Site"]),
                               int(row[f"Metadata_ChannelID_{channel}"]), int(row["Metadata_PlaneID"]))
                planes.append((key, row[column], row[f"Metadata_ChannelName_{channel}"],
                               float(row["Metadata_ImageResolutionX"]) * 1e6))
    return planes


@pytest.mark.parametrize(("folder", "loaddata"), HARMONY5)
def test_harmony5_agrees_with_pe2loaddata(samples: Path, folder: str, loaddata: str) -> None:
    plate = samples / folder
    assert detect_format(plate) == "phenix"
    source = open_plate(plate)
    expected = _loaddata_planes(plate / loaddata)
    assert len(expected) == 6
    assert sorted((key for key, *_ in expected), key=sort_key) == source.keys()
    for key, filename, channel_name, pixel_size in expected:
        info = source.info(key)
        assert info.passthrough == plate / "images" / filename
        assert info.channel_name == channel_name
        assert info.pixel_size_um == pytest.approx(pixel_size)
        assert info.size == info.passthrough.stat().st_size


@pytest.mark.parametrize(("folder", "loaddata"), HARMONY5)
def test_harmony5_plate_json(samples: Path, folder: str, loaddata: str) -> None:
    summary = plate_summary(open_plate(samples / folder / "images"))
    assert summary["format"] == "phenix"
    assert (summary["wells"], summary["sites"], summary["z"], summary["t"]) == (["A01"], [1], [1], [1])
    assert summary["pixel_size_um"] == pytest.approx(0.5979760809567617)
    assert (summary["shape"], summary["dtype"]) == ([1080, 1080], "u2")
    assert all(channel["name"] for channel in summary["channels"])
    assert summary["channel_metadata"]["1"]["image_size"] == [1080, 1080]
    assert summary["missing"] == [] and summary["skipped"] == []


def test_lzw_planes_decode(samples: Path) -> None:
    require("imagecodecs", "a dependency of hcsfs: Harmony writes LZW planes")
    source = open_plate(samples / "phenix_harmony5_a")
    plane = source.read_plane(PlaneKey("A01", 1, 5))
    assert plane.shape == (1080, 1080) and plane.dtype == "uint16" and plane.max() > 0


def test_harmony7_index_parses_and_reports_absent_tiffs(samples: Path) -> None:
    plate = samples / "phenix_harmony7_index_only"
    source = open_plate(plate)
    assert source.keys() == []
    summary = plate_summary(source)
    names = {c: m["name"] for c, m in summary["channel_metadata"].items()}
    assert names["6"] == "HOECHST 33342" and names["7"] == "Brightfield" and len(names) == 7
    assert summary["pixel_size_um"] == pytest.approx(0.296688132474701)
    assert summary["index_namespace"].endswith("/HarmonyV7")
    # Harmony 7 counts time points from 1: TimepointID 1 is t001, not t002.
    assert [m["name"] for m in summary["missing"]] == [
        f"A01_s001_w{c}_z001_t001.tif" for c in range(1, 8)]
    with pytest.raises(PlateFormatError, match="7 indexed images are missing"):
        PhenixSource(plate, strict=True)


# -- synthetic indexes --------------------------------------------------------------------------

_V6 = "http://www.perkinelmer.com/PEHH/HarmonyV6"


def _image(row: int, col: int, field: int, plane: int, channel: int, t: int,
           x: float = 0.0, y: float = 0.0, url: str | None = None) -> str:
    url = url or f"r{row:02d}c{col:02d}f{field:02d}p{plane:02d}-ch{channel}sk{t + 1}fk1fl1.tiff"
    return (f"<Image Version=\"1\"><id>x</id><URL>{url}</URL><Row>{row}</Row><Col>{col}</Col>"
            f"<FieldID>{field}</FieldID><PlaneID>{plane}</PlaneID><TimepointID>{t}</TimepointID>"
            f"<ChannelID>{channel}</ChannelID><ChannelName>ch{channel}</ChannelName>"
            f"<ImageResolutionX Unit=\"m\">6.5E-07</ImageResolutionX>"
            f"<ImageSizeX>100</ImageSizeX><ImageSizeY>100</ImageSizeY>"
            f"<PositionX Unit=\"m\">{x!r}</PositionX><PositionY Unit=\"m\">{y!r}</PositionY></Image>")


def _index(images: list[str], namespace: str = _V6) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<EvaluationInputData xmlns="{namespace}">'
            "<Plates><Plate><PlateID>synthetic</PlateID><PlateRows>16</PlateRows>"
            "<PlateColumns>24</PlateColumns></Plate></Plates>"
            f"<Images>{''.join(images)}</Images></EvaluationInputData>")


def _write(folder: Path, images: list[str], name: str = "Index.idx.xml") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(_index(images))
    urls = [part.split("</URL>")[0] for part in _index(images).split("<URL>")[1:]]
    write_files(folder, urls)
    return urls


def test_index_names_and_places(tmp_path: Path) -> None:
    for place, name in [("a", "Index.ref.xml"), ("b/Images", "Index.xml"), ("c/images", "index.idx.xml")]:
        _write(tmp_path / place, [_image(1, 1, 1, 1, 1, 1)], name)
    assert find_index(tmp_path / "a") == tmp_path / "a" / "Index.ref.xml"
    assert find_index(tmp_path / "b") == tmp_path / "b" / "Images" / "Index.xml"
    assert detect_format(tmp_path / "c") == "phenix"
    assert open_plate(tmp_path / "c" / "images" / "index.idx.xml").keys() == [PlaneKey("A01")]


def test_axes_and_one_based_timepoints(tmp_path: Path) -> None:
    images = [_image(r, c, f, p, ch, t) for r, c in ((1, 1), (3, 14)) for f in (1, 2)
              for p in (1, 2, 3) for ch in (1, 2) for t in (1, 2)]
    _write(tmp_path, images)
    before = tree_digest(tmp_path)
    source = open_plate(tmp_path)
    assert len(source.keys()) == 2 * 2 * 3 * 2 * 2
    assert source.path_of(PlaneKey("C14", 2, 1, 3, 2)).name == "r03c14f02p03-ch1sk3fk1fl1.tiff"
    assert source.info(PlaneKey("A01", 1, 2)).channel_name == "ch2"
    assert tree_digest(tmp_path) == before


def test_zero_based_timepoints_shift(tmp_path: Path) -> None:
    _write(tmp_path, [_image(1, 1, 1, 1, 1, t) for t in (0, 1)])
    assert [k.t for k in list(open_plate(tmp_path).keys())] == [1, 2]


def test_missing_file_is_listed_not_invented(tmp_path: Path) -> None:
    urls = _write(tmp_path, [_image(1, 1, f, 1, 1, 1) for f in (1, 2, 3)])
    (tmp_path / urls[1]).unlink()
    source = open_plate(tmp_path)
    assert source.keys() == [PlaneKey("A01", 1), PlaneKey("A01", 3)]
    assert source.describe().missing == [{"name": "A01_s002_w1_z001_t001.tif", "path": urls[1]}]
    with pytest.raises(PlateFormatError, match="1 indexed images are missing"):
        open_plate(tmp_path, strict=True)


def test_two_images_for_one_name_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, [_image(1, 1, 1, 1, 1, 1, url="one.tiff"), _image(1, 1, 1, 1, 1, 1, url="two.tiff")])
    with pytest.raises(PlateCollisionError, match="one.tiff.*two.tiff"):
        open_plate(tmp_path)


# A 3x3 snake acquisition (fields 1-3 left to right, 4-6 right to left, ...), stage Y up, with jitter.
_STEP = 60e-6
_SNAKE = {1: (0, 0), 2: (1, 0), 3: (2, 0), 4: (2, 1), 5: (1, 1), 6: (0, 1), 7: (0, 2), 8: (1, 2), 9: (2, 2)}


def _snake_images(jitter: float = 0.3e-6) -> list[str]:
    images = []
    for field, (column, row) in _SNAKE.items():
        x = column * _STEP + (jitter if field % 2 else -jitter)
        y = -row * _STEP + (jitter if field % 3 else -jitter)
        images.append(_image(1, 1, field, 1, 1, 1, x=x, y=y))
    return images


def test_raster_site_order(tmp_path: Path) -> None:
    _write(tmp_path, _snake_images())
    by_field = open_plate(tmp_path)
    raster = open_plate(tmp_path, site_order="raster")
    order = [raster.path_of(PlaneKey("A01", site)).name[6:9] for site in range(1, 10)]
    assert order == ["f01", "f02", "f03", "f06", "f05", "f04", "f07", "f08", "f09"]
    assert by_field.path_of(PlaneKey("A01", 4)).name.startswith("r01c01f04")
    assert plate_summary(raster)["site_order"] == "raster"


def test_raster_refuses_ambiguous_positions(tmp_path: Path) -> None:
    images = _snake_images()
    images.append(_image(1, 1, 10, 1, 1, 1, x=1e-7, y=-1e-7))  # on top of field 1
    _write(tmp_path, images)
    with pytest.raises(PlateFormatError, match="fields 1 and 10 fall in the same grid cell"):
        open_plate(tmp_path, site_order="raster")
    with pytest.raises(PlateFormatError, match="site_order"):
        open_plate(tmp_path, site_order="snake")


def test_cluster_uses_tolerance_not_equality() -> None:
    assert cluster([0.0, 1e-9, 60e-6, 60.2e-6, 120e-6], tolerance=1e-6) == {
        0.0: 0, 1e-9: 0, 60e-6: 1, 60.2e-6: 1, 120e-6: 2}


def test_source_is_never_written(tmp_path: Path, samples: Path) -> None:
    copy = tmp_path / "m1"
    shutil.copytree(samples / "phenix_harmony5_b", copy)
    copy.chmod(0o555)
    (copy / "images").chmod(0o555)
    try:
        before = tree_digest(copy)
        source = open_plate(copy)
        for key in list(source.keys()):
            source.info(key)
        plate_summary(source)
        assert tree_digest(copy) == before
        assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in (samples / "phenix_harmony5_b").iterdir())
    finally:
        (copy / "images").chmod(0o755)
        copy.chmod(0o755)


class TestPhenixConformance(SourceConformance):
    @pytest.fixture
    def source(self, tmp_path: Path) -> PhenixSource:
        _write(tmp_path, [_image(r, 2, f, 1, c, 0) for r in (1, 2) for f in (1, 2) for c in (1, 2)])
        return PhenixSource(tmp_path)

    @pytest.fixture
    def expected(self, source: PhenixSource, tmp_path: Path) -> dict[PlaneKey, np.ndarray]:
        # The files the index above names: row r, column 2, field f (= site), plane 1, channel c, t 0.
        return {PlaneKey(f"{'AB'[r - 1]}02", f, c, 1, 1):
                tifffile.imread(tmp_path / f"r{r:02d}c02f{f:02d}p01-ch{c}sk1fk1fl1.tiff")
                for r in (1, 2) for f in (1, 2) for c in (1, 2)}
