"""``/.hcsfs/planes.csv`` and ``/.hcsfs/loaddata.csv``: rows, exact sizes, byte ranges, through a mount.

Expected rows are written out from the plates' definitions (names, arrays, the files written), never
from the code that produces the tables.
"""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
import tifffile

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.fs.index_files import StreamedText
from hcsfs.planeindex import loaddata_lines, planes_lines
from hcsfs.sources.tiffheader import fast_tiff_format
from hcsfs.sources.tiffprobe import probe_tiff
from tests.plates import SAMPLES, memory_plate, plate_keys, write_tiff_folder


def _table(lines) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(b"".join(lines).decode())))


# -- StreamedText ------------------------------------------------------------------------------------

def test_streamed_text_serves_every_byte_range_of_what_it_was_given() -> None:
    rng = random.Random(7)
    lines = [(f"row {i}," + "x" * rng.randrange(0, 300) + "\n").encode() for i in range(3000)]
    whole = b"".join(lines)
    text = StreamedText(lambda: iter(lines), block_bytes=4096)
    assert text.size == len(whole)
    assert text.compressed_bytes < len(whole) / 5
    handle = text.open()
    for _ in range(500):
        offset = rng.randrange(0, len(whole) + 10)
        size = rng.choice([1, 17, 4096, 4097, 131072, 10**7])
        assert handle.read(offset, size) == whole[offset : offset + size], (offset, size)
    assert text.tobytes() == whole
    sequential = text.open()
    assert b"".join(sequential.read(o, 8192) for o in range(0, len(whole), 8192)) == whole


def test_streamed_text_is_produced_once_and_empty_text_works() -> None:
    calls = []

    def produce():
        calls.append(1)
        return [b"a\n", b"b\n"]

    text = StreamedText(produce)
    assert (text.size, text.read(0, 100), text.read(1, 2)) == (4, b"a\nb\n", b"\nb")
    assert len(calls) == 1
    empty = StreamedText(lambda: [])
    assert (empty.size, empty.read(0, 10), empty.tobytes()) == (0, b"", b"")


# -- planes.csv --------------------------------------------------------------------------------------

def test_planes_csv_of_encoded_planes() -> None:
    keys = plate_keys(("A01", "AF48"), sites=1, channels=2, z=2) + [PlaneKey("B03", 1, 1, "max", 1)]
    plate = memory_plate(keys, shape=(48, 64), dtype="u2", channel_names={1: "DAPI", 2: "GFP, 488"})
    plate.add(PlaneKey("C01", 2, 3, 1, 4), np.zeros((5, 7), np.float32))
    rows = _table(planes_lines(plate))
    assert list(rows[0]) == ["name", "well", "site", "channel", "channel_name", "z", "t", "shape", "dtype",
                             "pixel_size_um", "source_path"]
    by_name = {row["name"]: row for row in rows}
    assert len(rows) == len(by_name) == len(keys) + 1
    assert [row["name"] for row in rows] == [key.name for key in plate.keys()]
    assert by_name["AF48_s001_w2_z002_t001.tif"] == {
        "name": "AF48_s001_w2_z002_t001.tif", "well": "AF48", "site": "1", "channel": "2",
        "channel_name": "GFP, 488", "z": "2", "t": "1", "shape": "48x64", "dtype": "u2",
        "pixel_size_um": "0.65", "source_path": ""}
    assert by_name["B03_s001_w1_zmax_t001.tif"]["z"] == "max"
    odd = by_name["C01_s002_w3_z001_t004.tif"]
    assert (odd["shape"], odd["dtype"], odd["channel_name"], odd["t"]) == ("5x7", "f4", "", "4")


def _write_imagej(path: Path, array: np.ndarray, pixel_size: float | None, **kwargs) -> None:
    if pixel_size is None:
        tifffile.imwrite(path, array, photometric="minisblack", **kwargs)
    else:
        tifffile.imwrite(path, array, imagej=True, resolution=(1 / pixel_size, 1 / pixel_size),
                         metadata={"unit": "micron"}, **kwargs)


def test_planes_csv_of_passthrough_planes_reads_each_header(tmp_path: Path) -> None:
    folder = tmp_path / "plate"
    folder.mkdir()
    written = {
        "A01_s001_w1_z001_t001.tif": (np.zeros((30, 40), np.uint16), 0.325),
        "A01_s001_w2_z001_t001.tif": (np.zeros((30, 40), np.uint8), None),
        "A02_s001_w1_z001_t001.tif": (np.zeros((12, 9), np.float32), 1.5),
        "A02_s002_w1_z001_t001.tif": (np.zeros((8, 8), np.int16), None),
    }
    for name, (array, pixel_size) in written.items():
        _write_imagej(folder / name, array, pixel_size)
    (folder / "A03_s001_w1_z001_t001.tif").write_bytes(b"II*\0" + b"\xff" * 20)  # a damaged header
    rows = {row["name"]: row for row in _table(planes_lines(hcsfs.open_plate(folder)))}
    for name, (array, pixel_size) in written.items():
        row = rows[name]
        assert row["shape"] == f"{array.shape[0]}x{array.shape[1]}", name
        assert row["dtype"] == array.dtype.str[1:], name
        assert row["pixel_size_um"] == ("" if pixel_size is None else repr(pixel_size)), name
        assert row["source_path"] == str(folder / name)
    damaged = rows["A03_s001_w1_z001_t001.tif"]
    assert (damaged["shape"], damaged["dtype"], damaged["source_path"]) == (
        "", "", str(folder / "A03_s001_w1_z001_t001.tif"))
    assert len(rows) == 5


@pytest.mark.parametrize("variant", ["imagej", "plain", "bigtiff", "big-endian", "compressed", "f8",
                                     "rgb", "u4"])
def test_fast_header_agrees_with_tifffile(tmp_path: Path, variant: str) -> None:
    path = tmp_path / "plane.tif"
    array = np.arange(37 * 23, dtype=np.uint16).reshape(37, 23)
    if variant == "imagej":
        _write_imagej(path, array, 0.65)
    elif variant == "plain":
        tifffile.imwrite(path, array, resolution=(2.0, 2.0), description="hello")
    elif variant == "bigtiff":
        tifffile.imwrite(path, array, bigtiff=True)
    elif variant == "big-endian":
        tifffile.imwrite(path, array.astype(">u2"), byteorder=">")
    elif variant == "compressed":
        _write_imagej(path, array, 0.5, compression="zlib")
    elif variant == "f8":
        tifffile.imwrite(path, array.astype(np.float64))
    elif variant == "rgb":
        tifffile.imwrite(path, np.zeros((5, 6, 3), np.uint8), photometric="rgb")
    elif variant == "u4":
        tifffile.imwrite(path, array.astype(np.uint32))
    fast = fast_tiff_format(path)
    if variant == "rgb":
        assert fast is None  # several samples per pixel: left to tifffile
        return
    assert fast == probe_tiff(path)
    assert fast is not None and fast[0] == (37, 23)


def test_fast_header_agrees_with_tifffile_on_instrument_samples() -> None:
    paths = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
    if not paths:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"no instrument samples under {SAMPLES} (CI has ../shared beside the clone)")
        pytest.skip(f"no instrument samples under {SAMPLES} (../shared/samples beside the clone)")
    answered = 0
    for path in paths:
        reference = probe_tiff(path)
        fast = fast_tiff_format(path)
        if fast is not None:
            answered += 1
            assert fast == reference, path
        shape_only = fast_tiff_format(path, want_pixel_size=False)  # what a plate's metadata completes
        assert shape_only is not None and shape_only[:2] == reference[:2], path
    assert answered >= 1


# -- loaddata.csv ------------------------------------------------------------------------------------

def test_loaddata_rows_are_image_sets_with_every_channel(tmp_path: Path) -> None:
    keys = plate_keys(("A01", "B12", "AA01"), sites=2, channels=3, z=2, t=2)
    keys.remove(PlaneKey("B12", 2, 3, 1, 2))  # one image set lacks channel 3
    plate = MemoryPlate({key: np.zeros((4, 4), np.uint8) for key in keys}, name="plate7")
    rows = _table(loaddata_lines(plate, "/mnt/my plate"))
    channels_columns = [f"{kind}_w{c}" for c in (1, 2, 3) for kind in ("FileName", "PathName")]
    assert list(rows[0]) == ["Metadata_Plate", "Metadata_Well", "Metadata_Row", "Metadata_Column",
                             "Metadata_Site", "Metadata_ZSlice", "Metadata_TimePoint", *channels_columns]
    assert len(rows) == 3 * 2 * 2 * 2
    expected_order = [(w, s, z, t) for w in ("A01", "B12", "AA01") for s in (1, 2) for z in (1, 2)
                      for t in (1, 2)]
    got = [(r["Metadata_Well"], int(r["Metadata_Site"]), int(r["Metadata_ZSlice"]),
            int(r["Metadata_TimePoint"])) for r in rows]
    assert got == expected_order
    for row, (well, site, z, t) in zip(rows, expected_order, strict=True):
        assert row["Metadata_Plate"] == "plate7"
        assert (row["Metadata_Row"], row["Metadata_Column"]) == {
            "A01": ("A", "1"), "B12": ("B", "12"), "AA01": ("AA", "1")}[well]
        for channel in (1, 2, 3):
            name = f"{well}_s{site:03d}_w{channel}_z{z:03d}_t{t:03d}.tif"
            if (well, site, channel, z, t) == ("B12", 2, 3, 1, 2):
                assert (row["FileName_w3"], row["PathName_w3"]) == ("", "")
            else:
                assert (row[f"FileName_w{channel}"], row[f"PathName_w{channel}"]) == (name, "/mnt/my plate")


# -- through a mount ---------------------------------------------------------------------------------

@pytest.mark.mount
def test_mount_serves_both_tables_with_exact_sizes(tmp_path: Path, mountpoint: Path) -> None:
    plate = memory_plate(plate_keys(("A01", "A02"), sites=2, channels=2, z=1, t=3), shape=(20, 30))
    folder = write_tiff_folder(tmp_path / "plate", plate)
    with hcsfs.mounted(folder, mountpoint, pipelines=False) as mnt:
        meta = mnt.path / ".hcsfs"
        assert {"plate.json", "planes.csv", "loaddata.csv"} <= set(os.listdir(meta))
        for name in ("planes.csv", "loaddata.csv"):
            stated = os.stat(meta / name).st_size
            data = (meta / name).read_bytes()
            assert stated == len(data) > 100, name
            fd = os.open(meta / name, os.O_RDONLY)
            try:
                for offset in (0, 1, 77, len(data) - 5, len(data)):
                    assert os.pread(fd, 33, offset) == data[offset : offset + 33]
            finally:
                os.close(fd)
        planes = _table([(meta / "planes.csv").read_bytes()])
        loaddata = _table([(meta / "loaddata.csv").read_bytes()])
    assert [row["name"] for row in planes] == sorted(p.name for p in folder.iterdir())
    assert {row["source_path"] for row in planes} == {str(p) for p in folder.iterdir()}
    assert {(row["shape"], row["dtype"]) for row in planes} == {("20x30", "u2")}
    assert len(loaddata) == 2 * 2 * 3
    for row in loaddata:
        for channel in (1, 2):
            path = Path(row[f"PathName_w{channel}"]) / row[f"FileName_w{channel}"]
            assert path.parent == mountpoint
            assert row[f"FileName_w{channel}"] == (
                f"{row['Metadata_Well']}_s{int(row['Metadata_Site']):03d}_w{channel}_z001_"
                f"t{int(row['Metadata_TimePoint']):03d}.tif")
