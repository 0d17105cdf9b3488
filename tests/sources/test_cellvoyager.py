"""Yokogawa CellVoyager: the real CV7000 records and fractal-tasks-core's CSVs, generated plates for the rest.

Expectations come from the instrument's own records (read here with ElementTree, not with hcsfs) and
from ``corrected_site_metadata*.csv``, fractal-tasks-core's independent parse of the same files.
"""

from __future__ import annotations

import csv
import datetime
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcsfs.errors import PlaneNotFoundError, PlaneReadError, PlateCollisionError, PlateFormatError
from hcsfs.naming import PlaneKey, sort_key
from hcsfs.sources import detect_format, open_plate, plate_summary
from hcsfs.sources.cellvoyager import CellVoyagerSource
from hcsfs.tiff import encode_tiff, pixel_buffer, read_range
from tests.conformance import SourceConformance
from tests.sources.generate_cellvoyager import (
    Channel,
    Rec,
    checked_samples,
    copy_sample,
    err_record,
    write_measurement,
)
from tests.sources.generate_ixm import tree_digest

# (mlf, mrf) pairs of the real sample; the .mrf with three channels belongs to the 2x2-well records.
SAMPLE_PAIRS = [
    ("MeasurementData_2x2_well.mlf", "MeasurementDetail_2x2_well.mrf"),
    ("MeasurementData_SingleWell2Sites_MultiZ.mlf", "MeasurementDetail.mrf"),
    ("MeasurementData_SingleWell2Sites_MultiZ_another_well_name_in_plate_name.mlf", "MeasurementDetail.mrf"),
    ("MeasurementData_SingleWell2Sites_SingleZ.mlf", "MeasurementDetail.mrf"),
    ("overlapping_ROIs/MeasurementData.mlf", "MeasurementDetail.mrf"),
]
# fractal-tasks-core's CSV for each .mlf it was derived from.
FRACTAL_CSVS = [
    ("MeasurementData_SingleWell2Sites_MultiZ.mlf", "corrected_site_metadata_tiny_test.csv"),
    ("overlapping_ROIs/MeasurementData.mlf", "overlapping_ROIs/corrected_site_metadata.csv"),
]


@pytest.fixture(scope="module")
def cv_samples() -> Iterator[Path]:
    yield from checked_samples()


def _well(row: str, column: str) -> str:
    return f"{chr(64 + int(row))}{int(column):02d}"  # the samples are 96-well plates


def _expected(records: list[dict[str, str]]) -> dict[PlaneKey, str]:
    """What each IMG record says: (well, field, Ch, ZIndex, TimePoint) → its file."""
    return {
        PlaneKey(_well(r["Row"], r["Column"]), int(r["FieldIndex"]), int(r["Ch"]), int(r["ZIndex"]),
                 int(r["TimePoint"])): r["file"]
        for r in records if r["Type"] == "IMG"
    }


# -- the real CV7000 records --------------------------------------------------------------------

@pytest.mark.parametrize(("mlf", "mrf"), SAMPLE_PAIRS, ids=[p[0].removesuffix(".mlf") for p in SAMPLE_PAIRS])
def test_every_real_record_maps_to_the_flat_name_it_says(tmp_path: Path, cv_samples: Path, mlf: str,
                                                        mrf: str) -> None:
    records = copy_sample(tmp_path / "plate", mlf, mrf)
    expected = _expected(records)
    assert len(expected) == len(records)  # one plane per record: nothing collapses
    before = tree_digest(tmp_path / "plate")
    assert detect_format(tmp_path / "plate") == "cellvoyager"
    source = open_plate(tmp_path / "plate")
    assert source.keys() == sorted(expected, key=sort_key)
    for key, filename in expected.items():
        assert source.path_of(key).name == filename
        assert source.info(key).passthrough == tmp_path / "plate" / filename
    summary = plate_summary(source)
    assert summary["missing"] == [] and summary["skipped"] == [] and summary["acquisition_errors"] == []
    assert tree_digest(tmp_path / "plate") == before


def test_plate_name_with_well_tokens_is_not_read_as_a_well(tmp_path: Path, cv_samples: Path) -> None:
    """``myplate_B03_C03_D04_T0002F001...`` is Row 4, Column 4: D04, whatever the name says."""
    copy_sample(tmp_path, SAMPLE_PAIRS[2][0], SAMPLE_PAIRS[2][1])
    source = open_plate(tmp_path)
    assert plate_summary(source)["wells"] == ["B03", "C03", "D04"]
    assert source.path_of(PlaneKey("D04", 3, 1, 2, 2)).name == "myplate_B03_C03_D04_T0002F003L01A01Z02C01.tif"
    assert source.path_of(PlaneKey("C03", 1, 1, 1, 2)).name == "myplate_B03_C03_T0002F001L01A01Z01C01.tif"


def test_field_index_not_file_name_is_the_site(tmp_path: Path, cv_samples: Path) -> None:
    """The 2x2 sample's fields 3 and 4 are stored as F009 and F010: the record wins."""
    copy_sample(tmp_path, *SAMPLE_PAIRS[0])
    source = open_plate(tmp_path)
    assert source.path_of(PlaneKey("B03", 3, 1, 1, 2)).name.endswith("_T0002F009L01A01Z01C01.tif")
    assert sorted({k.site for k in source.keys()}) == [1, 2, 3, 4]


def test_real_plate_json(tmp_path: Path, cv_samples: Path) -> None:
    records = copy_sample(tmp_path, *SAMPLE_PAIRS[0])
    summary = plate_summary(open_plate(tmp_path))
    zs = sorted({int(r["ZIndex"]) for r in records})
    assert summary["format"] == "cellvoyager"
    assert (summary["wells"], summary["sites"], summary["t"]) == (["B03"], [1, 2, 3, 4], [2])
    assert summary["z"] == zs and [c["index"] for c in summary["channels"]] == [1, 2, 3]
    assert summary["pixel_size_um"] == pytest.approx(0.1625)
    assert summary["instrument"] == "Yokogawa CellVoyager (CV7000 FD, R1.17.05)"
    assert (summary["plate_rows"], summary["plate_columns"]) == (8, 12)
    # Action A01 acquired Ch 1 and 2, A02 Ch 3 (the records say so); Ch alone names the channel.
    actions = {(int(r["ActionIndex"]), int(r["Ch"])) for r in records}
    assert summary["channel_numbering"] == "Ch"
    assert {(c["action"], c["ch"]) for c in summary["channel_map"]} == actions
    assert all(c["image_size"] == [2160, 2560] and c["bit_depth"] == 16 for c in summary["channel_map"])
    assert summary["records"] == {"images": len(records), "errors": 0, "other": {}}


def _fractal_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize(("mlf", "table"), FRACTAL_CSVS, ids=["tiny_test", "overlapping_ROIs"])
def test_fractal_tasks_core_agrees(tmp_path: Path, cv_samples: Path, mlf: str, table: str) -> None:
    """Wells, fields, pixel size, image size, z and stage positions (y flipped) as fractal-tasks-core."""
    copy_sample(tmp_path, mlf, "MeasurementDetail.mrf")
    summary = plate_summary(open_plate(tmp_path))
    rows = _fractal_rows(cv_samples / table)
    fields = {(f["well"], f["site"]): f for f in summary["fields"]}
    assert set(fields) == {(r["well_id"], int(r["FieldIndex"])) for r in rows}
    assert summary["wells"] == sorted({r["well_id"] for r in rows})
    (channel,) = summary["channel_map"]
    for row in rows:
        mine = fields[(row["well_id"], int(row["FieldIndex"]))]
        # The stage positions themselves (fractal-tasks-core's "corrected" columns also remove overlaps).
        assert mine["x_um"] == pytest.approx(float(row["x_micrometer_original"]), abs=1e-9)
        assert mine["y_um"] == pytest.approx(float(row["y_micrometer_original"]), abs=1e-9)
        assert summary["pixel_size_um"] == pytest.approx(float(row["pixel_size_x"]))
        assert channel["pixel_size_y_um"] == pytest.approx(float(row["pixel_size_y"]))
        assert channel["image_size"] == [int(row["y_pixel"]), int(row["x_pixel"])]
        assert channel["bit_depth"] == int(row["bit_depth"])
        assert summary["z_step_um"] == pytest.approx(float(row["pixel_size_z"]))
        assert len(summary["z"]) == int(row["z_pixel"])
        assert datetime.datetime.fromisoformat(mine["time"]) == datetime.datetime.fromisoformat(row["Time"])


# -- generated plates ---------------------------------------------------------------------------

def _grid(wells: list[tuple[int, int]], fields: int = 2, chs: tuple[int, ...] = (1, 2),
          **kw: object) -> list[Rec]:
    return [Rec(r, c, f, ch, x=100.0 * f, y=-50.0 * f, **kw)  # type: ignore[arg-type]
            for r, c in wells for f in range(1, fields + 1) for ch in chs]


def test_multi_action_multi_z_multi_timepoint_plate(tmp_path: Path) -> None:
    """Timeline 1: A01 images Ch 1+2 in 3 z, A02 images Ch 1 again in 2-D; timeline 2: A01 images Ch 3.

    Ch 1 is acquired by two actions, so Ch alone no longer names a channel: every (timeline, action,
    Ch) is one flat channel, numbered in that order, and plate.json says which is which.
    """
    records = [Rec(2, 3, f, ch, z=z, t=t, z_um=0.5 * z, x=10.0 * f)
               for f in (1, 2) for t in (1, 2, 3) for ch in (1, 2) for z in (1, 2, 3)]
    records += [Rec(2, 3, f, 1, t=t, action=2, kind="2D") for f in (1, 2) for t in (1, 2, 3)]
    records += [Rec(2, 3, f, 3, t=t, timeline=2) for f in (1, 2) for t in (1, 2)]
    write_measurement(tmp_path, records, targets={1: "DAPI", 2: "GFP", 3: "Brightfield"})
    flat = {(1, 1, 1): 1, (1, 1, 2): 2, (1, 2, 1): 3, (2, 1, 3): 4}  # sorted (timeline, action, Ch)
    source = open_plate(tmp_path)
    expected = {PlaneKey("B03", r.field, flat[(r.timeline, r.action, r.ch)], r.z, r.t): r.file
                for r in records}
    assert source.keys() == sorted(expected, key=sort_key)
    for key, name in expected.items():
        assert source.path_of(key).name == name
    summary = plate_summary(source)
    assert summary["channel_numbering"] == "timeline, action, Ch"
    mapped = [(c["channel"], c["timeline"], c["action"], c["ch"], c["action_kind"])
              for c in summary["channel_map"]]
    assert mapped == [(1, 1, 1, 1, "3D"), (2, 1, 1, 2, "3D"), (3, 1, 2, 1, "2D"), (4, 2, 1, 3, "3D")]
    assert summary["channels"] == [{"index": 1, "name": "DAPI L01A01"}, {"index": 2, "name": "GFP"},
                                   {"index": 3, "name": "DAPI L01A02"}, {"index": 4, "name": "Brightfield"}]
    assert (summary["z"], summary["t"]) == ([1, 2, 3], [1, 2, 3])
    assert summary["channel_map"][0]["z_step_um"] == pytest.approx(0.5)
    assert summary["mes"] == "hcsfs-test.mes"


def test_channel_names_from_the_setting_file(tmp_path: Path) -> None:
    write_measurement(tmp_path, _grid([(1, 1)], chs=(1, 2, 4)), targets={1: "DAPI", 2: "", 4: "Cy5"})
    summary = plate_summary(open_plate(tmp_path))
    # Ch 2's Target is empty: its emission filter names it. w is Ch (w4, not w3).
    assert summary["channels"] == [{"index": 1, "name": "DAPI"}, {"index": 2, "name": "BP445/45"},
                                   {"index": 4, "name": "Cy5"}]
    assert open_plate(tmp_path).info(PlaneKey("A01", 1, 4)).channel_name == "Cy5"


@pytest.mark.parametrize(("rows", "columns", "cells", "wells"), [
    (8, 12, [(1, 1), (8, 12)], ["A01", "H12"]),
    (16, 24, [(1, 24), (16, 1), (16, 24)], ["A24", "P01", "P24"]),
    (32, 48, [(1, 1), (16, 24), (26, 48), (27, 1), (32, 48)], ["A01", "P24", "Z48", "AA01", "AF48"]),
], ids=["96", "384", "1536"])
def test_wells_of_96_384_and_1536_well_plates(tmp_path: Path, rows: int, columns: int,
                                              cells: list[tuple[int, int]], wells: list[str]) -> None:
    records = _grid(cells, fields=1, chs=(1,))
    write_measurement(tmp_path, records, rows=rows, columns=columns)
    source = open_plate(tmp_path)
    assert [k.well for k in source.keys()] == wells  # natural order: Z48 before AA01
    for rec, well in zip(records, wells, strict=True):
        assert source.path_of(PlaneKey(well)).name == rec.file
    assert plate_summary(source)["plate_rows"] == rows


def test_a_record_outside_the_plate_is_an_error(tmp_path: Path) -> None:
    write_measurement(tmp_path, [Rec(1, 1, 1, 1), Rec(9, 1, 1, 1)], rows=8, columns=12)
    with pytest.raises(PlateFormatError, match=r"line 4: Row 9, Column 1 is outside the plate's 8 x 12"):
        open_plate(tmp_path)


def test_err_records_are_reported_and_strict_refuses_them(tmp_path: Path) -> None:
    records = _grid([(3, 14)], fields=2)
    message = "AF Error at C14 No. 0 (SAMPLE_PLATE_000000_000000)"
    write_measurement(tmp_path, records, rows=16, columns=24, errors=[err_record(3, 14, message)])
    source = open_plate(tmp_path)
    assert len(source.keys()) == len(records)  # the images the measurement did get are all there
    summary = plate_summary(source)
    (error,) = summary["acquisition_errors"]
    assert (error["well"], error["message"], error["timepoint"]) == ("C14", message, 1)
    assert (error["stage_x_um"], error["stage_y_um"]) == (-20.0, 25.0)
    assert "field" not in error and "ch" not in error  # an autofocus failure names neither
    assert summary["records"]["errors"] == 1
    with pytest.raises(PlateFormatError, match="1 records are acquisition errors"):
        CellVoyagerSource(tmp_path, strict=True)
    with pytest.raises(PlateFormatError, match="acquisition errors"):
        open_plate(tmp_path, strict=True)


def test_missing_file_is_reported_and_left_out(tmp_path: Path) -> None:
    written = write_measurement(tmp_path, _grid([(1, 1)], fields=3, chs=(1,)))
    gone = list(written.files.values())[1]
    gone.unlink()
    source = open_plate(tmp_path)
    assert source.keys() == [PlaneKey("A01", 1), PlaneKey("A01", 3)]
    assert source.describe().missing == [{"name": "A01_s002_w1_z001_t001.tif", "path": gone.name}]
    with pytest.raises(PlaneNotFoundError):
        source.info(PlaneKey("A01", 2))
    assert source.read_plane(PlaneKey("A01", 3)).shape == (8, 8)  # the others serve
    with pytest.raises(PlateFormatError, match="1 recorded images are missing"):
        open_plate(tmp_path, strict=True)


def test_files_in_no_record_are_ignored_with_a_log_line(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    records = _grid([(1, 1)], fields=1)
    shading = "SC_BP445-45_40x_M10_CH01.tif"
    write_measurement(tmp_path, records, channels=[Channel(1, shading=shading), Channel(2)])
    stray = Rec(1, 1, 9, 1).file  # named like a plane, but no record names it
    for name in (stray, "SC_BP445-45_40x_M10_CH01.tif", "hcsfs-test.wpi", "Thumbs.db"):
        (tmp_path / name).write_bytes(b"II*\0")
    (tmp_path / "Projection").mkdir()
    with caplog.at_level(logging.INFO, logger="hcsfs"):
        source = open_plate(tmp_path)
    assert len(source.keys()) == 2
    skipped = {s["path"]: s["reason"] for s in plate_summary(source)["skipped"]}
    assert skipped == {
        stray: "not named in any record of MeasurementData.mlf",
        "Thumbs.db": "not named in any record of MeasurementData.mlf",
        "SC_BP445-45_40x_M10_CH01.tif": "shading-correction image named by the .mrf, not a plane",
        "hcsfs-test.wpi": "CellVoyager metadata, not a plane",
        "Projection/": "folder not named in any record of MeasurementData.mlf",
    }
    assert f"left out {stray}" in caplog.text and "left out 2 entries: not named in any record" in caplog.text


def test_two_records_for_one_plane_are_an_error(tmp_path: Path) -> None:
    one, two = Rec(1, 1, 1, 1), Rec(1, 1, 1, 1, plate="other")
    write_measurement(tmp_path, [one, two])
    with pytest.raises(PlateCollisionError, match=f"{one.file}.*{two.file}"):
        open_plate(tmp_path)


def test_records_naming_files_in_a_subfolder(tmp_path: Path) -> None:
    """A record may name ``Images\\<file>`` (Windows separators): found there; paths that leave the
    measurement keep their file name only."""
    records = [Rec(1, 1, f, 1) for f in (1, 2)]
    written = write_measurement(tmp_path, records)
    (tmp_path / "Images").mkdir()
    for path in written.files.values():
        path.rename(tmp_path / "Images" / path.name)
    mlf = tmp_path / "MeasurementData.mlf"
    text = mlf.read_text()
    text = text.replace(f">{records[0].file}<", f">Images\\{records[0].file}<")
    text = text.replace(f">{records[1].file}<", f">..\\..\\{records[1].file}<")
    mlf.write_text(text)
    source = open_plate(tmp_path)
    assert source.path_of(PlaneKey("A01", 1)) == tmp_path / "Images" / records[0].file
    assert source.keys() == [PlaneKey("A01", 1)]
    assert source.describe().missing == [{"name": "A01_s002_w1_z001_t001.tif", "path": records[1].file}]


def test_projection_records_are_z_reductions(tmp_path: Path) -> None:
    records = [Rec(1, 1, 1, 1, z=z) for z in (1, 2)]
    records += [Rec(1, 1, 1, 2, plate="mip", extra=' bts:ZImageProcessing="Maximum"'),
                Rec(1, 1, 1, 3, plate="sip", extra=' bts:ZImageProcessing="Sum"')]
    write_measurement(tmp_path, records)
    keys = open_plate(tmp_path).keys()
    assert [k.name for k in keys] == ["A01_s001_w1_z001_t001.tif", "A01_s001_w1_z002_t001.tif",
                                      "A01_s001_w2_zmax_t001.tif", "A01_s001_w3_zsum_t001.tif"]


def test_positions_and_pixel_size_per_channel(tmp_path: Path) -> None:
    records = [Rec(1, 2, f, ch, x=-1448.3 + 416.0 * (f - 1), y=1517.7) for f in (1, 2) for ch in (1, 2)]
    write_measurement(tmp_path, records, channels=[Channel(1, 0.65), Channel(2, 1.3)])
    source = open_plate(tmp_path)
    summary = plate_summary(source)
    assert source.describe().pixel_size_um is None  # channels differ: the pixel size is per plane
    assert [c["pixel_size_um"] for c in summary["channel_map"]] == [0.65, 1.3]
    assert source.info(PlaneKey("A02", 1, 2)).pixel_size_um == pytest.approx(1.3)
    assert source.info(PlaneKey("A02", 1, 1)).pixel_size_um == pytest.approx(0.65)
    assert [(f["site"], f["x_um"], f["y_um"], f["stage_y_um"]) for f in summary["fields"]] == [
        (1, -1448.3, -1517.7, 1517.7), (2, pytest.approx(-1032.3), -1517.7, 1517.7)]


def test_detection(tmp_path: Path) -> None:
    write_measurement(tmp_path / "screen" / "Cycle1", [Rec(1, 1, 1, 1)])
    assert detect_format(tmp_path / "screen" / "Cycle1") == "cellvoyager"
    assert detect_format(tmp_path / "screen") == "cellvoyager"  # one level down
    mlf = tmp_path / "screen" / "Cycle1" / "MeasurementData.mlf"
    assert open_plate(mlf).keys() == [PlaneKey("A01")]
    write_measurement(tmp_path / "screen" / "Cycle2", [Rec(1, 1, 1, 1)])
    with pytest.raises(PlateFormatError, match="2 CellVoyager measurements.*Cycle1, Cycle2"):
        open_plate(tmp_path / "screen")
    (tmp_path / "screen" / "Cycle2" / "MeasurementDetail.mrf").unlink()
    assert detect_format(tmp_path / "screen" / "Cycle1") == "cellvoyager"
    with pytest.raises(PlateFormatError, match="looked for"):
        detect_format(tmp_path / "screen" / "Cycle2")  # an .mlf alone is not a measurement
    with pytest.raises(PlateFormatError, match="no CellVoyager measurement"):
        open_plate(tmp_path / "screen" / "Cycle2", format="cellvoyager")


def test_broken_metadata_is_a_clear_error(tmp_path: Path) -> None:
    write_measurement(tmp_path, [Rec(1, 1, 1, 1)])
    mlf = tmp_path / "MeasurementData.mlf"
    text = mlf.read_text()
    mlf.write_text(text.replace('bts:FieldIndex="1" ', ""))
    with pytest.raises(PlateFormatError, match="line 3: an IMG record has no FieldIndex"):
        open_plate(tmp_path)
    mlf.write_text(text[:-30])
    with pytest.raises(PlateFormatError, match="not a readable MeasurementData.mlf"):
        open_plate(tmp_path)
    mlf.write_text(text)
    (tmp_path / "MeasurementDetail.mrf").write_text("<nope/>")
    with pytest.raises(PlateFormatError, match="not <MeasurementDetail>"):
        open_plate(tmp_path)


def test_open_is_one_pass_and_a_plane_costs_one_lookup(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from hcsfs.sources.cellvoyager import source as module

    write_measurement(tmp_path, _grid([(1, 1), (2, 5)], fields=3))
    calls = {"scandir": 0, "read_mlf": 0}
    real_scandir, real_read = os.scandir, module.read_mlf

    def counting_scandir(path):  # type: ignore[no-untyped-def]
        calls["scandir"] += 1
        return real_scandir(path)

    def counting_read(path):  # type: ignore[no-untyped-def]
        calls["read_mlf"] += 1
        return real_read(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    monkeypatch.setattr(module, "read_mlf", counting_read)
    source = CellVoyagerSource(tmp_path)
    # The .mlf read once; the folder listed to find the measurement and once to check the files.
    assert calls == {"scandir": 2, "read_mlf": 1}

    def no_listing(*args: object, **kwargs: object) -> None:
        raise AssertionError("info must not list folders")

    monkeypatch.setattr(os, "scandir", no_listing)
    for key in source.keys():
        assert source.info(key).size == source.path_of(key).stat().st_size


# -- PNG planes ---------------------------------------------------------------------------------

def _png_plate(folder: Path, bit_depth: int = 16) -> tuple[list[Rec], dict[Rec, np.ndarray]]:
    records = [Rec(r, c, f, ch, z=z, ext=".png") for r, c in ((1, 1), (2, 3)) for f in (1, 2)
               for ch in (1, 2) for z in (1, 2)]
    written = write_measurement(folder, records, channels=[Channel(1, 0.65, bit_depth=bit_depth),
                                                           Channel(2, 0.65, bit_depth=bit_depth)])
    return records, written.pixels


def _key(rec: Rec) -> PlaneKey:
    return PlaneKey(f"{chr(64 + rec.row)}{rec.column:02d}", rec.field, rec.ch, rec.z, rec.t)


@pytest.mark.parametrize("bit_depth", [16, 12, 8])
def test_png_planes_are_served_as_encoded_tiff(tmp_path: Path, bit_depth: int) -> None:
    records, pixels = _png_plate(tmp_path, bit_depth)
    source = open_plate(tmp_path)
    for rec in records:
        key, want = _key(rec), pixels[rec]
        info = source.info(key)
        assert info.passthrough is None and info.layout is not None
        served = encode_tiff(want, 0.65)
        assert info.size == len(served)
        got = read_range(info.layout, 0, info.size, pixel_buffer(info.layout, source.read_plane(key)))
        assert got == served
        with tifffile.TiffFile(io.BytesIO(got)) as tif:
            np.testing.assert_array_equal(tif.asarray(), want)
            assert tif.imagej_metadata["unit"] == "micron"
            numerator, denominator = tif.pages.first.tags["XResolution"].value
            assert denominator / numerator == pytest.approx(0.65)


def test_png_size_needs_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The served size comes from the .mrf alone: stat and open of a PNG plane read nothing."""
    import builtins

    records, pixels = _png_plate(tmp_path)
    source = open_plate(tmp_path)

    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError("a PNG plane's info must not touch the disk")

    monkeypatch.setattr(os, "stat", no_io)
    monkeypatch.setattr(builtins, "open", no_io)
    for rec in records:
        info = source.info_ready(_key(rec))
        assert info is not None and info.size == len(encode_tiff(pixels[rec], 0.65))
        assert source.plane_format(_key(rec)) == ((48, 64), "u2", 0.65)


def test_damaged_png_is_an_error_for_that_plane_only(tmp_path: Path) -> None:
    records, pixels = _png_plate(tmp_path)
    source = open_plate(tmp_path)
    (tmp_path / records[0].file).write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (tmp_path / records[1].file).unlink()
    with pytest.raises(PlaneReadError, match="cannot decode the PNG"):
        source.read_plane(_key(records[0]))
    with pytest.raises(PlaneReadError, match="cannot read"):
        source.read_plane(_key(records[1]))
    np.testing.assert_array_equal(source.read_plane(_key(records[2])), pixels[records[2]])


def test_png_of_another_size_than_the_mrf_says(tmp_path: Path) -> None:
    import imagecodecs

    records, _ = _png_plate(tmp_path)
    (tmp_path / records[0].file).write_bytes(imagecodecs.png_encode(np.zeros((10, 10), np.uint16)))
    with pytest.raises(PlaneReadError, match=r"PNG is \(10, 10\), MeasurementDetail.mrf says \(48, 64\)"):
        open_plate(tmp_path).read_plane(_key(records[0]))


# -- the source conformance suite ---------------------------------------------------------------

class TestCellVoyagerConformance(SourceConformance):
    @pytest.fixture
    def source(self, tmp_path: Path) -> CellVoyagerSource:
        write_measurement(tmp_path, _grid([(1, 2), (2, 2)], fields=2, z=1) + _grid([(1, 2)], fields=1, z=2))
        return CellVoyagerSource(tmp_path)

    @pytest.fixture
    def expected(self, source: CellVoyagerSource) -> dict[PlaneKey, np.ndarray]:
        return {key: tifffile.imread(source.path_of(key)) for key in list(source.keys())}


class TestCellVoyagerPngConformance(SourceConformance):
    @pytest.fixture
    def source(self, tmp_path: Path) -> CellVoyagerSource:
        self.records, self.pixels = _png_plate(tmp_path)
        return CellVoyagerSource(tmp_path)

    @pytest.fixture
    def expected(self, source: CellVoyagerSource) -> dict[PlaneKey, np.ndarray]:
        return {_key(rec): self.pixels[rec] for rec in self.records}
