"""The TIFF contract of DESIGN.md, with tifffile and libtiff as the oracles (not the encoder)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hcsfs.tiff import encode_tiff, pixel_buffer, plan_tiff, read_range

DTYPES = ["u1", "u2", "u4", "i1", "i2", "i4", "f4", "f8", "u8", "i8"]


def _plane(shape: tuple[int, int], dtype: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.normal(0, 1000, shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, shape, endpoint=True, dtype=dt)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tifffile_reads_back_every_dtype(dtype: str) -> None:
    plane = _plane((37, 53), dtype)
    data = encode_tiff(plane, 0.65)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        assert not tif.is_bigtiff and len(tif.pages) == 1
        np.testing.assert_array_equal(page.asarray(), plane)
        assert page.compression == 1 and page.photometric == 1
        assert page.dataoffsets[0] + page.databytecounts[0] == len(data)
        assert page.databytecounts[0] == plane.nbytes
    assert plan_tiff(plane.shape, dtype, 0.65).size == len(data)


@pytest.mark.parametrize("dtype", ["u1", "u2", "f4", "i2", "u4"])
def test_libtiff_reads_without_warnings(tmp_path: Path, dtype: str) -> None:
    tiffinfo = shutil.which("tiffinfo")
    assert tiffinfo, "libtiff-tools must be installed (.ci/run installs it)"
    path = tmp_path / "p.tif"
    path.write_bytes(encode_tiff(_plane((20, 30), dtype), 0.5))
    done = subprocess.run([tiffinfo, "-D", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert "Image Width: 30 Image Length: 20" in done.stdout


def test_pillow_opens_it() -> None:
    plane = _plane((16, 24), "u2")
    with Image.open(io.BytesIO(encode_tiff(plane))) as image:
        assert image.size == (24, 16)
        np.testing.assert_array_equal(np.asarray(image), plane)


def test_imagej_calibration_in_microns() -> None:
    data = encode_tiff(np.zeros((8, 8), "u2"), 0.645)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "micron"
        page = tif.pages.first
        numerator, denominator = page.tags["XResolution"].value
        assert denominator / numerator == pytest.approx(0.645, rel=1e-12)
        assert page.tags["ResolutionUnit"].value == 1  # NONE: Bio-Formats would read INCH as 16,510 um


def test_no_pixel_size_means_no_unit() -> None:
    data = encode_tiff(np.zeros((8, 8), "u1"))
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        assert "unit" not in tif.imagej_metadata
        assert tif.pages.first.tags["XResolution"].value == (1, 1)


def test_header_depends_on_metadata_only() -> None:
    a = plan_tiff((100, 200), "u2", 0.3)
    # The same metadata gives the same header in another process (no time, address or counter in it);
    # other metadata gives another header.
    code = ("import sys; from hcsfs.tiff import plan_tiff; "
            "sys.stdout.write(plan_tiff((100, 200), 'u2', 0.3).header.hex())")
    other_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert bytes.fromhex(other_process.stdout) == a.header and a.size == 100 * 200 * 2 + a.pixel_offset
    for shape, dtype, pixel_size in (((100, 201), "u2", 0.3), ((100, 200), "u1", 0.3),
                                     ((100, 200), "u2", 0.4), ((100, 200), "u2", None)):
        assert plan_tiff(shape, dtype, pixel_size).header != a.header, (shape, dtype, pixel_size)
    assert a.pixel_offset % 16 == 0
    one, other = encode_tiff(_plane((100, 200), "u2", 1), 0.3), encode_tiff(_plane((100, 200), "u2", 2), 0.3)
    assert one[: a.pixel_offset] == other[: a.pixel_offset]
    assert encode_tiff(_plane((100, 200), "u2", 1), 0.3) == one  # same plane, same bytes


def test_big_endian_and_bool_inputs_are_normalised() -> None:
    plane = _plane((10, 12), "u2").astype(">u2")
    with tifffile.TiffFile(io.BytesIO(encode_tiff(plane))) as tif:
        np.testing.assert_array_equal(tif.asarray(), plane)
    mask = _plane((10, 12), "u1") > 128
    with tifffile.TiffFile(io.BytesIO(encode_tiff(mask))) as tif:
        np.testing.assert_array_equal(tif.asarray(), mask.astype("u1"))


@pytest.mark.parametrize("shape", [(70_000, 35_000), (46_341, 46_341)])
def test_bigtiff_at_4_gib_planned_without_pixels(tmp_path: Path, shape: tuple[int, int]) -> None:
    layout = plan_tiff(shape, "u2", 0.3)
    assert layout.bigtiff and layout.size >= 2**32
    path = tmp_path / "big.tif"
    with open(path, "wb") as file:  # a sparse file: header plus a hole for the pixels
        file.write(layout.header)
        file.truncate(layout.size)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert tif.is_bigtiff and page.shape == shape
        assert page.dataoffsets[0] + page.databytecounts[0] == layout.size


def test_just_below_4_gib_stays_classic() -> None:
    layout = plan_tiff((32_768, 65_535), "u2")
    assert not layout.bigtiff and layout.size < 2**32


def test_rejects_what_it_cannot_serve() -> None:
    with pytest.raises(ValueError):
        plan_tiff((10, 10, 3), "u1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan_tiff((0, 10), "u1")
    with pytest.raises(ValueError):
        plan_tiff((10, 10), "c8")
    with pytest.raises(ValueError):
        plan_tiff((10, 10), "u2", -1.0)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    dtype=st.sampled_from(DTYPES),
    ranges=st.lists(st.tuples(st.integers(0, 8000), st.integers(0, 8000)), min_size=1, max_size=20),
)
def test_any_byte_range_is_the_slice_of_the_whole(shape, dtype, ranges) -> None:  # type: ignore[no-untyped-def]
    plane = _plane(shape, dtype)
    layout = plan_tiff(shape, dtype, 1.5)
    whole = encode_tiff(plane, 1.5)
    pixels = pixel_buffer(layout, plane)
    for offset, size in ranges:
        assert read_range(layout, offset, size, pixels) == whole[offset : offset + size]
    with tifffile.TiffFile(io.BytesIO(whole)) as tif:
        np.testing.assert_array_equal(tif.asarray(), plane)


def test_header_only_ranges_need_no_pixels() -> None:
    layout = plan_tiff((10, 10), "u2")
    assert not layout.needs_pixels(0, layout.pixel_offset)
    assert layout.needs_pixels(layout.pixel_offset - 1, 2)
    assert read_range(layout, 0, 8, None)[:4] == b"II*\0"
    with pytest.raises(ValueError):
        read_range(layout, 0, layout.size, None)
