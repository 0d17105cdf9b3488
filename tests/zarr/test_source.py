"""OmeZarrPlateSource: conformance, real sample metadata, laziness, bad input, OpenHCS layout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from hcsfs import MemoryPlate, PlaneKey, open_plate
from hcsfs.convert import convert_plate
from hcsfs.errors import PlaneNotFoundError, PlaneReadError, PlateFormatError
from hcsfs.sources import detect_format
from hcsfs.sources.omezarr import OmeZarrPlateSource
from hcsfs.sources.omezarr.meta import read_image_meta
from tests.conformance import SourceConformance
from tests.fsevents import opened_files
from tests.zarr.stores import chunk_files, write_plate

LAYOUTS = [  # (ngff, chunks, shard)
    ("0.5", "plane", None),
    ("0.5", "well", None),
    ("0.5", "plane", "well"),
    ("0.4", "plane", None),
    ("0.4", "well", None),
]


@pytest.fixture(scope="module", params=LAYOUTS, ids=lambda p: "-".join(str(x) for x in p))
def store(request: pytest.FixtureRequest, plate: MemoryPlate, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ngff, chunks, shard = request.param
    path = tmp_path_factory.mktemp("conv") / "plate.ome.zarr"
    convert_plate(plate, path, ngff=ngff, chunks=chunks, shard=shard)
    return path


class TestConformance(SourceConformance):
    @pytest.fixture
    def source(self, store: Path, zarr_impl: str) -> OmeZarrPlateSource:
        return OmeZarrPlateSource(store, zarr_impl=zarr_impl)

    @pytest.fixture
    def expected(self, plate: MemoryPlate) -> dict[PlaneKey, np.ndarray]:
        return {k: plate.read_plane(k) for k in plate.keys()}


def test_detected_and_described(store: Path, plate: MemoryPlate) -> None:
    assert detect_format(store) == "ome-zarr"
    source = open_plate(store)
    description = source.describe()
    assert description.channel_names == {1: "DAPI", 2: "GFP"}
    assert description.pixel_size_um == plate.pixel_size_um
    key = plate.keys()[0]
    assert source.info(key).layout.header == plate.info(key).layout.header  # type: ignore[union-attr]


# --- the real sample metadata -------------------------------------------------------------------


def test_v04_sample_reads_fill_value(samples: Path, zarr_impl: str) -> None:
    source = open_plate(samples / "omezarr_v04_plate_meta" / "hcs_example.ome.zarr", zarr_impl=zarr_impl)
    keys = source.keys()
    assert [k.name for k in keys] == ["B03_s001_w1_z001_t001.tif", "B03_s001_w1_z002_t001.tif"]
    info = source.info(keys[0])
    assert info.pixel_size_um == 0.1625 and info.channel_name == "DAPI"
    assert source.plane_format(keys[1]) == ((2160, 5120), "u2", 0.1625)
    plane = source.read_plane(keys[1])  # chunks absent: the fill value
    assert plane.shape == (2160, 5120) and not plane.any()


def test_v05_sample_sparse_plate(samples: Path) -> None:
    root = samples / "omezarr_v05_plate_meta" / "76-45.ome.zarr"
    source = OmeZarrPlateSource(root)
    assert source.plate.version == "0.5" and len(source.plate.wells) == 384
    assert source.plate.wells["B02"] == "B/2"
    assert source.keys() == []  # the sample has no array metadata
    description = source.describe()
    assert len(description.missing) == 380  # listed wells whose group is absent
    reasons = {s["path"]: s["reason"] for s in description.skipped}
    assert set(reasons) == {"A/1", "A/2", "B/1", "B/2"} and "zarr.json" in reasons["A/1"]
    image = read_image_meta(root / "A" / "1" / "0", 3)
    assert image.axes == ("t", "c", "z", "y", "x") and image.level0 == "0"
    assert image.channel_names == ("Dapi", "Channel 1") and image.pixel_size_um == 1.0
    with pytest.raises(PlaneNotFoundError, match="unreadable"):
        source.info(PlaneKey("A01"))


def test_v04_multi_acquisition_sample(samples: Path) -> None:
    root = samples / "omezarr_v04_multiacq_meta" / "2551.zarr"
    source = OmeZarrPlateSource(root)
    assert [a["id"] for a in source.plate.acquisitions][:2] == [2651, 2652]
    assert source.describe().extra["acquisition"] == "all"
    for chosen in (2661, "2661"):  # an id the plate lists, as a number or as the CLI passes it
        assert OmeZarrPlateSource(root, acquisition=chosen).describe().extra["acquisition"] == chosen
    with pytest.raises(PlateFormatError, match="no acquisition"):
        OmeZarrPlateSource(root, acquisition=99)
    image = read_image_meta(root / "A" / "2" / "2", 2)
    assert image.pixel_size_um == 0.1077 and image.axes == ("c", "z", "y", "x")


def test_broken_sample_is_per_well_errors(samples: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = samples / "omezarr_v05_broken" / "broken_v05.ome.zarr"
    with caplog.at_level(logging.WARNING):
        source = open_plate(root)
        keys = source.keys()
    assert {k.well for k in keys} == {"A03"}
    assert all(not source.read_plane(k).any() for k in keys)
    skipped = {s["path"]: s["reason"] for s in source.describe().skipped}
    assert "node_type is 'group', expected array" in skipped["B/2"]
    assert "no multiscales" in skipped["C/2"]
    assert "left out" in caplog.text


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"zarr_format": 3, "node_type": "group"}'])
def test_broken_plate_document_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "zarr.json").write_bytes(content)
    with pytest.raises(PlateFormatError):
        OmeZarrPlateSource(tmp_path)


# --- laziness -----------------------------------------------------------------------------------


@pytest.mark.parametrize("zarr_impl", ["zarr-python", "tensorstore"])
def test_one_plane_touches_only_its_well(store: Path, plate: MemoryPlate, zarr_impl: str) -> None:
    """The kernel's record (inotify) of every file opened or read, whichever library reads the chunks:
    one plane's info and pixels touch its own well's metadata and chunks, nothing of other wells, and no
    folder is listed."""
    source = OmeZarrPlateSource(store, zarr_impl=zarr_impl)
    key = PlaneKey("B03", 2, 2, 3)
    with opened_files(store) as touched:
        source.info(key)
        np.testing.assert_array_equal(source.read_plane(key), plate.read_plane(key))
    relative = {p.relative_to(store).as_posix() for p in touched}
    assert all(p.startswith("B/3/") for p in relative), relative
    assert not any(p.is_dir() for p in touched), "a zarr group was listed"
    well_chunks = {c for c in chunk_files(store / "B" / "3") if c.parent.name != "labels"}
    assert touched & well_chunks, f"no chunk read seen (the oracle sees nothing?): {relative}"


def test_chunk_holding_a_well_is_decoded_once(tmp_path: Path, plate: MemoryPlate, zarr_impl: str) -> None:
    path = tmp_path / "well.zarr"
    convert_plate(plate, path, chunks="well")
    source = OmeZarrPlateSource(path, zarr_impl=zarr_impl)
    for key in source.keys():
        source.read_plane(key)
    stats = source.cache_statistics()
    assert stats.misses == 6  # 3 wells x 2 sites, one chunk each
    assert stats.hits == len(source.keys()) - 6


def test_planes_across_several_chunks(tmp_path: Path, zarr_impl: str) -> None:
    data = np.arange(2 * 50 * 70, dtype="u2").reshape(2, 50, 70)
    write_plate(tmp_path, {"A/1": [{"data": data, "axes": "cyx", "chunks": (2, 16, 32)}]})
    source = OmeZarrPlateSource(tmp_path, zarr_impl=zarr_impl)
    assert [k.name for k in source.keys()] == ["A01_s001_w1_z001_t001.tif", "A01_s001_w2_z001_t001.tif"]
    np.testing.assert_array_equal(source.read_plane(PlaneKey("A01", channel=2)), data[1])
    assert source.cache_statistics().misses == 4 * 3  # ceil(50/16) x ceil(70/32)


# --- layouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_axes_subsets_shapes_and_acquisitions(tmp_path: Path, zarr_format: int, zarr_impl: str) -> None:
    rng = np.random.default_rng(1)
    yx = rng.integers(0, 255, (30, 20), dtype="u1")
    tczyx = rng.integers(0, 4000, (2, 1, 3, 16, 24), dtype="u2")
    write_plate(tmp_path, {
        "A/1": [{"data": yx, "axes": "yx", "acquisition": 1, "scale": 0.5},
                {"data": yx[::-1], "axes": "yx", "acquisition": 2}],
        "C/12": [{"data": tczyx, "axes": "tczyx", "acquisition": 2, "channels": ["Hoechst"]}],
    }, zarr_format=zarr_format, version_in_plate=zarr_format == 3,
        acquisitions=[{"id": 1}, {"id": 2}])
    source = OmeZarrPlateSource(tmp_path, zarr_impl=zarr_impl)
    names = [k.name for k in source.keys()]
    assert names[:2] == ["A01_s001_w1_z001_t001.tif", "A01_s002_w1_z001_t001.tif"]
    assert len(names) == 2 + 6 and "C12_s001_w1_z003_t002.tif" in names
    np.testing.assert_array_equal(source.read_plane(PlaneKey("A01", 2)), yx[::-1])
    np.testing.assert_array_equal(source.read_plane(PlaneKey("C12", 1, 1, 3, 2)), tczyx[1, 0, 2])
    assert source.info(PlaneKey("A01")).pixel_size_um == 0.5
    assert source.info(PlaneKey("A01", 2)).pixel_size_um is None
    assert source.info(PlaneKey("C12")).channel_name == "Hoechst"
    only2 = OmeZarrPlateSource(tmp_path, acquisition=2, zarr_impl=zarr_impl)
    assert [k.name for k in only2.keys()][0] == "A01_s001_w1_z001_t001.tif"
    np.testing.assert_array_equal(only2.read_plane(PlaneKey("A01", 1)), yx[::-1])
    with pytest.raises(PlaneNotFoundError):
        only2.info(PlaneKey("A01", 2))


def test_openhcs_layout(tmp_path: Path, zarr_impl: str) -> None:
    data = np.arange(3 * 2 * 2 * 8 * 9, dtype="u2").reshape(3, 2, 2, 8, 9)
    mapping = {f"A01_s{f + 1}_w{c + 1}_z{z + 1}.tif": [f, c, z]
               for f in range(3) for c in range(2) for z in range(2) if not (f == 2 and c == 1)}
    write_plate(tmp_path, {"A/01": [{"data": data, "axes": ["field", "c", "z", "y", "x"],
                                     "attrs": {"openhcs_filename_map": mapping}}]}, zarr_format=2)
    source = open_plate(tmp_path, zarr_impl=zarr_impl)
    keys = source.keys()
    assert len(keys) == len(mapping) == 10
    assert PlaneKey("A01", 3, 2, 1) not in keys
    np.testing.assert_array_equal(source.read_plane(PlaneKey("A01", 3, 1, 2)), data[2, 0, 1])
    np.testing.assert_array_equal(source.read_plane(PlaneKey("A01", 1, 2, 2)), data[0, 1, 1])


# --- bad chunks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shard", [None, "well"])
def test_corrupt_chunk_is_a_read_error_for_its_planes_only(
    tmp_path: Path, plate: MemoryPlate, zarr_impl: str, shard: str | None, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "p.zarr"
    convert_plate(plate, path, shard=shard)
    array_dir = path / "B" / "3" / "0" / "0"
    victim = chunk_files(array_dir)[0]
    victim.write_bytes(b"\x00garbage" * 40)
    source = OmeZarrPlateSource(path, zarr_impl=zarr_impl)
    bad = PlaneKey("B03", 1, 1, 1)
    with caplog.at_level(logging.ERROR), pytest.raises(PlaneReadError) as raised:
        source.read_plane(bad)
    assert str(victim) in str(raised.value) and str(victim) in caplog.text
    assert isinstance(raised.value, OSError)
    info = source.info(bad)  # metadata stays fine: the plane is listed with its exact size
    assert info.layout is not None and info.layout.shape == plate.read_plane(bad).shape
    assert info.size == source.info(PlaneKey("B03", 2, 1, 1)).size
    good = PlaneKey("B03", 2, 1, 1)
    np.testing.assert_array_equal(source.read_plane(good), plate.read_plane(good))
    np.testing.assert_array_equal(source.read_plane(PlaneKey("A01")), plate.read_plane(PlaneKey("A01")))


def test_missing_chunk_reads_as_fill_value(tmp_path: Path, plate: MemoryPlate, zarr_impl: str) -> None:
    path = tmp_path / "p.zarr"
    convert_plate(plate, path, ngff="0.4")
    array_dir = path / "A" / "1" / "0" / "0"
    (array_dir / "0" / "1" / "2" / "0" / "0").unlink()  # t=0, c=1, z=2
    source = OmeZarrPlateSource(path, zarr_impl=zarr_impl)
    assert not source.read_plane(PlaneKey("A01", 1, 2, 3)).any()
    key = PlaneKey("A01", 1, 2, 2)
    np.testing.assert_array_equal(source.read_plane(key), plate.read_plane(key))


def test_unknown_zarr_impl(store: Path) -> None:
    source = OmeZarrPlateSource(store, zarr_impl="nope")
    from hcsfs.errors import HcsfsError

    with pytest.raises(HcsfsError, match="unknown zarr implementation"):
        source.read_plane(source.keys()[0])
