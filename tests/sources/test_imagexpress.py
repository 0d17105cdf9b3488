"""ImageXpress / MetaXpress: name parsing, HTD, nested layouts, mapping, passthrough."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st

from hcsfs.errors import PlaneNotFoundError, PlateCollisionError, PlateFormatError
from hcsfs.naming import PlaneKey, format_well
from hcsfs.sources import detect_format, open_plate, plate_summary
from hcsfs.sources.htd import parse_htd, read_htd
from hcsfs.sources.imagexpress import ImageXpressSource, parse_ixm_name
from tests.conformance import SourceConformance
from tests.sources.generate_ixm import (
    htd_text,
    ixm_name,
    listing_names,
    nested_relpaths,
    tree_digest,
    write_files,
    write_htd,
)

GUID = "64FBEEF7-F77C-4892-86F5-72D0160D4FB2"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"IXMtest_A01_s1_w1{GUID}.tif", ("IXMtest", "A01", 1, 1, False)),
        (f"val screen_B02_s1_w1_thumb{GUID}.tif", ("val screen", "B02", 1, 1, True)),
        (f"plate_A01_s2_[{GUID}].tif", ("plate", "A01", 2, None, False)),
        ("exp_C2_plate_B03_s1_w2.TIF", ("exp_C2_plate", "B03", 1, 2, False)),
        ("my_C2_A01_s3.tif", ("my_C2", "A01", 3, None, False)),
        ("plate_af48_s9_w4.tif", ("plate", "AF48", 9, 4, False)),
        ("plate_p24_w3_thumb.tif", ("plate", "P24", None, 3, True)),
        ("plate_H12.tif", ("plate", "H12", None, None, False)),
        ("B7_s1_w1.tif", ("", "B07", 1, 1, False)),
    ],
)
def test_names_parse_right_to_left(name: str, expected: tuple[object, ...]) -> None:
    parsed = parse_ixm_name(name)
    assert parsed is not None
    assert (parsed.prefix, parsed.well, parsed.site, parsed.wave, parsed.thumb) == expected


@pytest.mark.parametrize("name", ["Thumbs.db", "._DS_STORE", "._plate_A01_s1_w1.tif",
                                  "plate.HTD", "notes.txt", "plate_A01_s1_w1.jpg"])
def test_junk_is_not_a_plane_name(name: str) -> None:
    assert parse_ixm_name(name) is None


def test_acquire_names_are_zero_based() -> None:
    parsed = parse_ixm_name("screen_t0_B03_s0_w2_z4.tif")
    assert parsed is not None
    assert (parsed.prefix, parsed.well, parsed.site, parsed.wave, parsed.z, parsed.t) == (
        "screen", "B03", 1, 3, 5, 1)


def _expected_from_listing() -> tuple[dict[PlaneKey, str], set[str]]:
    planes: dict[PlaneKey, str] = {}
    left_out = set()
    for name in listing_names():
        match = re.fullmatch(r"val screen_([A-P]\d\d)_s(\d)_w(\d)([0-9A-F-]{36})\.tif", name)
        if match is None:
            left_out.add(name)
            continue
        planes[PlaneKey(match[1], int(match[2]), int(match[3]))] = name
    return planes, left_out


def test_real_listing_maps_1800_planes(tmp_path: Path, samples: Path) -> None:
    names = listing_names()
    write_files(tmp_path, names)
    before = tree_digest(tmp_path)
    expected, left_out = _expected_from_listing()
    assert len(expected) == 1800 and len(left_out) == 1802

    assert detect_format(tmp_path) == "imagexpress"
    source = open_plate(tmp_path)
    assert isinstance(source, ImageXpressSource)
    assert len(source.keys()) == 1800
    assert {key: source.path_of(key).name for key in list(source.keys())} == expected
    summary = plate_summary(source)
    assert (len(summary["wells"]), summary["sites"], summary["z"], summary["t"]) == (
        60, [1, 2, 3, 4, 5, 6], [1], [1])
    assert [c["index"] for c in summary["channels"]] == [1, 2, 3, 4, 5]
    skipped = {entry["path"]: entry["reason"] for entry in summary["skipped"]}
    assert set(skipped) == left_out
    assert skipped["Thumbs.db"] == skipped["._DS_STORE"] == "junk file"
    assert sum(reason == "thumbnail" for reason in skipped.values()) == 1800
    assert summary["missing"] == []
    assert tree_digest(tmp_path) == before


def test_real_guid_plane_passes_through(samples: Path) -> None:
    folder = samples / "imagexpress_plane_guid"
    source = open_plate(folder)
    key = PlaneKey("A01", 1, 1, 1, 1)
    assert source.keys() == [key]
    info = source.info(key)
    real = folder / f"IXMtest_A01_s1_w1{GUID}.tif"
    assert info.passthrough == real and info.size == real.stat().st_size
    assert info.passthrough.read_bytes() == real.read_bytes()
    assert info.pixel_size_um == pytest.approx(0.645)
    summary = plate_summary(source)
    assert summary["pixel_size_um"] == pytest.approx(0.645)
    assert (summary["shape"], summary["dtype"]) == ([520, 696], "u2")
    assert source.read_plane(key).shape == (520, 696)
    assert info.channel_name == "DAPI"  # no HTD: the plane's MetaMorph illumination setting
    assert summary["channels"] == [{"index": 1, "name": "DAPI"}]
    with pytest.raises(PlaneNotFoundError):
        source.info(PlaneKey("A02"))


def _nested_plate(root: Path, prefix: str = "p7") -> dict[tuple[str, int, int, int, int], str]:
    paths = nested_relpaths(prefix, ["A01", "B02"], sites=2, waves=2, timepoints=2, zsteps=3)
    write_files(root, paths.values())
    # MetaXpress keeps its z projection beside the ZStep folders.
    write_files(root, [f"TimePoint_{t}/{ixm_name(prefix, 'A01', 1, 1)}" for t in (1, 2)])
    text = htd_text(8, 12, wells=["A01", "B02"], sites=(2, 1), wave_names=["DAPI", "Zellkörper"],
                    timepoints=2, zsteps=3, description="Färbung – 2×3")
    write_htd(root / "p7.HTD", text, encoding="cp1252")
    return paths


def test_nested_timepoints_and_zsteps(tmp_path: Path) -> None:
    paths = _nested_plate(tmp_path)
    assert b"\r\n" in (tmp_path / "p7.HTD").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        (tmp_path / "p7.HTD").read_bytes().decode("utf-8")
    before = tree_digest(tmp_path)
    source = open_plate(tmp_path)
    planes = {k: v for k, v in paths.items() if k[4] > 0}
    assert len(planes) == 2 * 2 * 2 * 2 * 3
    for (well, site, wave, z, t), rel in planes.items():
        assert source.path_of(PlaneKey(well, site, wave, z, t)) == tmp_path / rel
        assert f"TimePoint_{t}/ZStep_{z}/" in rel
    projections = [k for k in list(source.keys()) if k.z == "proj"]
    assert projections == [PlaneKey("A01", 1, 1, "proj", 1), PlaneKey("A01", 1, 1, "proj", 2)]
    summary = plate_summary(source)
    assert summary["z"] == [1, 2, 3, "proj"] and summary["t"] == [1, 2]
    assert summary["channels"] == [{"index": 1, "name": "DAPI"}, {"index": 2, "name": "Zellkörper"}]
    assert summary["description"] == "Färbung – 2×3"
    assert summary["missing"] == []
    assert tree_digest(tmp_path) == before


def test_folder_names_in_any_case_and_separator(tmp_path: Path) -> None:
    write_files(tmp_path, [
        "timepoint-1/zstep1/" + ixm_name("x", "A01", 1, 1),
        "TIMEPOINT_1/ZSTEP-2/" + ixm_name("x", "A01", 1, 1),
        "TimePoint2/" + ixm_name("x", "A01", 1, 1),
        "Other/" + ixm_name("x", "A01", 1, 1),
    ])
    source = ImageXpressSource(tmp_path)
    assert source.keys() == [PlaneKey("A01", 1, 1, 1, 1), PlaneKey("A01", 1, 1, 1, 2),
                             PlaneKey("A01", 1, 1, 2, 1)]
    assert {"path": "Other/", "reason": "folder outside the ImageXpress layout"} in (
        source.describe().skipped)


def test_htd_selections_are_honoured(tmp_path: Path) -> None:
    # 2x2 site grid with 3 cells selected; wave 2 not collected; wells A01 and B02 only.
    text = htd_text(8, 12, wells=["A01", "B02"], sites=(2, 2),
                    site_selection=[[True, False], [True, True]],
                    wave_names=["DAPI", "GFP", "Cy5"], wave_collect=[1, 0, 1])
    write_htd(tmp_path / "plate.htd", text)
    files = [ixm_name("plate", w, s, c) for w in ("A01", "B02") for s in (1, 2, 3) for c in (1, 3)]
    files.remove(next(f for f in files if f.startswith("plate_B02_s3_w3")))
    extra = [ixm_name("plate", "C03", 1, 1), ixm_name("plate", "A01", 4, 1),
             ixm_name("plate", "A01", 1, 2)]
    write_files(tmp_path, files + extra)

    source = ImageXpressSource(tmp_path)
    htd = source.htd
    assert htd is not None and htd.sites == 3 and sorted(htd.wells) == ["A01", "B02"]
    assert htd.waves == {1: "DAPI", 3: "Cy5"}
    assert len(source.keys()) == 11
    description = source.describe()
    assert description.missing == [
        {"name": "B02_s003_w3_z001_t001.tif", "path": "plate_B02_s3_w3*.tif"}]
    reasons = {e["path"].split("_")[1] + e["path"].split("_")[2] + e["path"].split("_")[3][:2]:
               e["reason"] for e in description.skipped}
    assert reasons["C03s1w1"].startswith("well C03 is not selected")
    assert reasons["A01s4w1"].startswith("site 4 is beyond")
    assert reasons["A01s1w2"].startswith("wavelength 2 is not collected")
    assert description.channel_names == {1: "DAPI", 3: "Cy5"}

    with pytest.raises(PlateFormatError, match="1 planes the HTD promises are missing"):
        ImageXpressSource(tmp_path, strict=True)


def test_htd_decoding_and_sites_false() -> None:
    htd = parse_htd('"HTSInfoFile", Version 1.0\r\n"XWells", 48\r\n"YWells", 32\r\n'
                    '"Sites", FALSE\r\n"Waves", FALSE\r\n"EndFile"\r\n')
    assert len(htd.wells) == 1536 and "AF48" in htd.wells
    assert (htd.sites, htd.has_sites, htd.waves, htd.has_waves) == (1, False, {1: ""}, False)
    with pytest.raises(PlateFormatError):
        parse_htd("not an htd")


def test_htd_latin1_fallback(tmp_path: Path) -> None:
    # 0x81 is undefined in cp1252: the reader falls back to latin-1 rather than failing.
    path = tmp_path / "x.HTD"
    path.write_bytes(b'"HTSInfoFile", Version 1.0\r\n"Description", "a\x81b"\r\n'
                     b'"XWells", 2\r\n"YWells", 1\r\n')
    assert read_htd(path).values["Description"] == ["a\x81b"]


def test_1536_well_lower_case_names(tmp_path: Path) -> None:
    names = [f"screen_{w}_s1_w1.tif" for w in ("a01", "af48", "p24", "ab13")]
    write_files(tmp_path, names)
    source = open_plate(tmp_path)
    assert [k.well for k in list(source.keys())] == ["A01", "P24", "AB13", "AF48"]


def test_prefix_with_well_like_token(tmp_path: Path) -> None:
    write_files(tmp_path, [ixm_name("run_C2_plate", "D05", 1, 1), ixm_name("run_C2_plate", "D05", 1, 2)])
    source = open_plate(tmp_path)
    assert source.keys() == [PlaneKey("D05", 1, 1), PlaneKey("D05", 1, 2)]


def test_two_files_for_one_name_is_an_error_naming_both(tmp_path: Path) -> None:
    write_files(tmp_path, ["plate1_A01_s1_w1.tif", "plate2_A01_s1_w1.tif"])
    with pytest.raises(PlateCollisionError) as caught:
        open_plate(tmp_path)
    assert "plate1_A01_s1_w1.tif" in str(caught.value) and "plate2_A01_s1_w1.tif" in str(caught.value)


def test_acquire_layout(tmp_path: Path) -> None:
    write_files(tmp_path, [f"timepoint{t}/screen_t{t}_A01_s0_w{w}_z{z}.tif"
                           for t in (0, 1) for w in (0, 1) for z in (0, 1, 2)])
    source = open_plate(tmp_path)
    assert len(source.keys()) == 12
    assert source.path_of(PlaneKey("A01", 1, 2, 3, 2)) == tmp_path / "timepoint1/screen_t1_A01_s0_w1_z2.tif"


def test_detection(tmp_path: Path) -> None:
    htd_only = tmp_path / "htd"
    htd_only.mkdir()
    write_htd(htd_only / "p.HTD", htd_text(8, 12))
    assert detect_format(htd_only) == "imagexpress"
    flat = tmp_path / "flat"
    write_files(flat, ["A01_s001_w1_z001_t001.tif"])
    assert detect_format(flat) == "tiff-folder"
    junk = tmp_path / "junk"
    write_files(junk, ["Thumbs.db", "notes.txt"])
    with pytest.raises(PlateFormatError, match="looked for .*HTD"):
        open_plate(junk)
    empty = open_plate(htd_only, format="imagexpress")
    assert empty.keys() == [] and len(empty.describe().missing) == 96


def test_info_touches_only_the_plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_files(tmp_path, [ixm_name("p", "A01", s, 1) for s in (1, 2, 3)])
    source = open_plate(tmp_path)

    def no_listing(*args: object, **kwargs: object) -> None:
        raise AssertionError("info must not list folders")

    monkeypatch.setattr(os, "scandir", no_listing)
    monkeypatch.setattr(os, "listdir", no_listing)
    for key in list(source.keys()):
        assert source.info(key).size == source.path_of(key).stat().st_size


class TestImageXpressConformance(SourceConformance):
    @pytest.fixture
    def written(self, tmp_path: Path) -> dict[PlaneKey, Path]:
        """The file written for each plane (every file's pixels differ), as the writer put them."""
        paths = _nested_plate(tmp_path)
        planes = {PlaneKey(w, s, c, z, t): tmp_path / rel for (w, s, c, z, t), rel in paths.items() if t > 0}
        for t in (1, 2):  # the z projections _nested_plate writes beside the ZStep folders
            (projection,) = [p for p in (tmp_path / f"TimePoint_{t}").glob("p7_A01_s1_w1*.tif")
                             if "_thumb" not in p.name]
            planes[PlaneKey("A01", 1, 1, "proj", t)] = projection
        return planes

    @pytest.fixture
    def source(self, tmp_path: Path, written: dict[PlaneKey, Path]) -> ImageXpressSource:
        return ImageXpressSource(tmp_path)

    @pytest.fixture
    def expected(self, written: dict[PlaneKey, Path]) -> dict[PlaneKey, np.ndarray]:
        return {key: tifffile.imread(path) for key, path in written.items()}


_PREFIX_TOKENS = st.sampled_from(["plate", "C2", "s1", "w2", "B03", "val screen", "2024-03-01", "x", ""])


@given(
    prefix=st.lists(_PREFIX_TOKENS, max_size=4).map("_".join),
    row=st.integers(1, 32).filter(lambda r: r not in (19, 23)),  # rows S, W: "_S01" reads as a site
    column=st.integers(1, 48),
    site=st.none() | st.integers(1, 99),
    wave=st.none() | st.integers(1, 12),
    thumb=st.booleans(),
    guid=st.sampled_from(["", GUID, f"_[{GUID}]"]),
    ext=st.sampled_from([".tif", ".TIF"]),
    lower=st.booleans(),
)
def test_generated_names_parse_back(prefix: str, row: int, column: int, site: int | None,
                                    wave: int | None, thumb: bool, guid: str, ext: str,
                                    lower: bool) -> None:
    well = format_well(row, column)
    name = ixm_name(prefix, well, site, wave, thumb=thumb, with_guid=False, ext="") + guid + ext
    parsed = parse_ixm_name(name.lower() if lower else name)
    assert parsed is not None
    expected_prefix = prefix.lower() if lower else prefix
    assert (parsed.prefix, parsed.well, parsed.site, parsed.wave, parsed.thumb, parsed.guid) == (
        expected_prefix, well, site, wave, thumb, bool(guid))


def test_workspace_order_is_naming_order() -> None:
    from hcsfs.naming import sort_key
    from hcsfs.sources.workspace import _fast_sort_key

    keys = [PlaneKey(w, s, c, z, t) for w in ("B01", "AA01", "A10", "A02") for s in (2, 10)
            for c in (1, 12, "max") for z in (1, "proj") for t in (3, 1)]
    assert sorted(keys, key=_fast_sort_key(keys)) == sorted(keys, key=sort_key)


_METASERIES = (
    '<MetaData>\n<prop id="ApplicationName" type="string" value="MetaMorph"/>\n<PlaneInfo>\n'
    '<prop id="spatial-calibration-x" type="float" value="0.3375"/>\n'
    '<prop id="spatial-calibration-units" type="string" value="um"/>\n'
    '<prop id="_IllumSetting_" type="string" value="{name}"/>\n</PlaneInfo>\n</MetaData>'
)


def test_metaseries_xml_pixel_size_and_channel_names(tmp_path: Path) -> None:
    for wave, name in ((1, "DAPI &amp; more"), (2, "FITC")):
        tifffile.imwrite(tmp_path / ixm_name("ms", "A01", 1, wave), np.zeros((4, 4), "u2"),
                         description=_METASERIES.format(name=name), software="MetaMorph",
                         metadata=None)
    source = ImageXpressSource(tmp_path)
    summary = plate_summary(source)
    assert summary["pixel_size_um"] == pytest.approx(0.3375)
    assert summary["channels"] == [{"index": 1, "name": "DAPI & more"}, {"index": 2, "name": "FITC"}]
    write_htd(tmp_path / "ms.HTD", htd_text(8, 12, wells=["A01"], wave_names=["Hoechst", "GFP"]))
    assert ImageXpressSource(tmp_path).describe().channel_names == {1: "Hoechst", 2: "GFP"}
