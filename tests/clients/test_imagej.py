"""ImageJ 1.53t (Debian's ``imagej``) opens mounted planes and folders, judged by what it measures.

Each test runs one JVM (about half a second under Xvfb) that prints ``key=value`` lines; the values
are compared with the source arrays: size, bit depth, mean/min/max, single pixels, and the pixel size
in microns that ImageJ reads from hcsfs's calibration tags.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from tests.clients.conftest import run_imagej
from tests.plates import memory_plate, plate_keys, write_tiff_folder

pytestmark = [pytest.mark.clients, pytest.mark.mount]
ROOT = Path(__file__).resolve().parents[2]
PIXELS = ((0, 0), (5, 3), (47, 63))  # (y, x)

OPEN_PLANES = r"""
paths = split(getArgument(), "|");
for (i = 0; i < paths.length; i++) {
    path = paths[i];
    if (!File.exists(path)) { print("ERROR missing " + path); continue; }
    IJ.redirectErrorMessages();
    open(path);
    if (nImages == 0) { print("ERROR cannot open " + path); continue; }
    getPixelSize(unit, pw, ph);
    getRawStatistics(n, mean, min, max);
    line = "RESULT name=" + File.getName(path) + " width=" + getWidth() + " height=" + getHeight()
        + " bitdepth=" + bitDepth() + " mean=" + d2s(mean, 6) + " min=" + d2s(min, 6)
        + " max=" + d2s(max, 6) + " unit=" + unit + " pw=" + d2s(pw, 9) + " ph=" + d2s(ph, 9);
    line = line + " px_0_0=" + d2s(getPixel(0, 0), 6) + " px_5_3=" + d2s(getPixel(3, 5), 6)
        + " px_47_63=" + d2s(getPixel(63, 47), 6);
    print(line);
    close();
}
"""

SEQUENCE = r"""
args = split(getArgument(), "|");
dir = args[0];
if (!File.isDirectory(dir)) { print("ERROR no folder " + dir); exit; }
IJ.redirectErrorMessages();
run("Image Sequence...", "open=[" + dir + "] sort file=[" + args[1] + "]");
if (nImages == 0) { print("ERROR sequence did not open"); exit; }
getPixelSize(unit, pw, ph);
print("SEQUENCE slices=" + nSlices + " width=" + getWidth() + " height=" + getHeight() + " unit=" + unit
      + " pw=" + d2s(pw, 9));
for (i = 1; i <= nSlices; i++) {
    setSlice(i);
    getRawStatistics(n, mean, min, max);
    print("SLICE label=" + getInfo("slice.label") + " mean=" + d2s(mean, 6) + " min=" + min + " max=" + max);
}
"""


def _write_macro(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "macro.ijm"
    path.write_text(text)
    return path


def _results(lines: list[str], tag: str) -> list[dict[str, str]]:
    errors = [line for line in lines if line.startswith("ERROR")]
    assert not errors, "\n".join(lines)
    found = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in lines if line.startswith(tag + " ")]
    assert found, "ImageJ printed no measurements:\n" + "\n".join(lines)
    return found


def _check_plane(result: dict[str, str], plane: np.ndarray) -> None:
    assert int(result["width"]) == plane.shape[1]
    assert int(result["height"]) == plane.shape[0]
    assert int(result["bitdepth"]) == {1: 8, 2: 16, 4: 32}[plane.dtype.itemsize]
    assert float(result["mean"]) == pytest.approx(plane.mean(dtype=np.float64), rel=1e-6)
    assert float(result["min"]) == pytest.approx(float(plane.min()), rel=1e-6)
    assert float(result["max"]) == pytest.approx(float(plane.max()), rel=1e-6)
    for y, x in PIXELS:
        assert float(result[f"px_{y}_{x}"]) == pytest.approx(float(plane[y, x]), rel=1e-6)


def test_imagej_opens_encoded_planes_with_pixel_size(tmp_path: Path, mountpoint: Path) -> None:
    """uint8, uint16 and float32 planes encoded by hcsfs: values, and 0.65 micron pixels."""
    plate = MemoryPlate(pixel_size_um=0.65)
    rng = np.random.default_rng(7)
    planes = {
        PlaneKey("A01", 1, 1): rng.integers(0, 65535, (48, 64), endpoint=True).astype(np.uint16),
        PlaneKey("A01", 1, 2): rng.integers(0, 255, (48, 64), endpoint=True).astype(np.uint8),
        PlaneKey("A01", 1, 3): rng.normal(100, 25, (48, 64)).astype(np.float32),
    }
    for key, plane in planes.items():
        plate.add(key, plane)
    macro = _write_macro(tmp_path, OPEN_PLANES)
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        lines = run_imagej(macro, "|".join(str(mountpoint / key.name) for key in planes))
    results = {r["name"]: r for r in _results(lines, "RESULT")}
    assert set(results) == {key.name for key in planes}
    for key, plane in planes.items():
        result = results[key.name]
        _check_plane(result, plane)
        assert result["unit"] in ("micron", "microns")  # getPixelSize() gives the plural
        assert float(result["pw"]) == pytest.approx(0.65, rel=1e-6)
        assert float(result["ph"]) == pytest.approx(0.65, rel=1e-6)


def test_imagej_opens_passthrough_planes(tmp_path: Path, mountpoint: Path, unchanged) -> None:
    """A TIFF folder's files are served byte for byte; ImageJ reads the same pixels through the mount."""
    plate = memory_plate(plate_keys(("A01", "B02"), sites=1, channels=2))
    folder = unchanged(write_tiff_folder(tmp_path / "plate", plate))
    macro = _write_macro(tmp_path, OPEN_PLANES)
    with hcsfs.mounted(folder, mountpoint, pipelines=False):
        lines = run_imagej(macro, "|".join(str(mountpoint / key.name) for key in plate.keys()))
    results = {r["name"]: r for r in _results(lines, "RESULT")}
    assert set(results) == {key.name for key in plate.keys()}
    for key in plate.keys():
        _check_plane(results[key.name], plate.read_plane(key))


def test_imagej_imports_a_filtered_image_sequence(tmp_path: Path, mountpoint: Path) -> None:
    """File > Import > Image Sequence over the mount, filtered to one channel, in name order."""
    plate = memory_plate(plate_keys(("A01", "A02", "B01"), sites=2, channels=2, z=2), shape=(48, 64))
    macro = _write_macro(tmp_path, SEQUENCE)
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        lines = run_imagej(macro, f"{mountpoint}|_w2_")
    head = _results(lines, "SEQUENCE")[0]
    expected = [key for key in plate.keys() if key.channel == 2]
    assert int(head["slices"]) == len(expected) == 12
    assert (int(head["width"]), int(head["height"])) == (64, 48)
    assert head["unit"] in ("micron", "microns") and float(head["pw"]) == pytest.approx(0.65)
    slices = _results(lines, "SLICE")
    assert [s["label"] for s in slices] == [key.name.removesuffix(".tif") for key in expected]
    for result, key in zip(slices, expected, strict=True):
        plane = plate.read_plane(key)
        assert float(result["mean"]) == pytest.approx(plane.mean(dtype=np.float64), rel=1e-6)
        assert (float(result["min"]), float(result["max"])) == (plane.min(), plane.max())


def test_contrib_macro_opens_a_site_as_hyperstack(mountpoint: Path) -> None:
    """contrib/hcsfs_hyperstack.ijm: one well/site as channels x z, each plane where it belongs."""
    plate = memory_plate(plate_keys(("A01", "B03"), sites=2, channels=2, z=3), shape=(64, 80))
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        lines = run_imagej(ROOT / "contrib" / "hcsfs_hyperstack.ijm", f"{mountpoint}|B03|2|stats")
    head = next((line for line in lines if line.startswith("hcsfs-hyperstack:")), None)
    assert head is not None, "\n".join(lines)
    assert "B03_s002 80x64 bitdepth=16 channels=2 slices=3 frames=1 pixel=0.65 micron" in head, head
    planes = [line.split()[1:] for line in lines if line.startswith("hcsfs-plane:")]
    assert len(planes) == 6
    for channel, z, t, mean in planes:
        source = plate.read_plane(PlaneKey("B03", 2, int(channel), int(z), int(t)))
        assert float(mean) == pytest.approx(source.mean(dtype=np.float64), rel=1e-6)


def test_imagej_opens_the_plate_overview(tmp_path: Path, mountpoint: Path) -> None:
    """Fiji shows the whole plate at a glance: /.hcsfs/overview/w1.tif equals render_overview()."""
    from hcsfs.overview import overview_geometry, render_overview

    plate = memory_plate(plate_keys(("A01", "A02", "C07", "H12"), sites=4, channels=2), shape=(48, 64))
    macro = _write_macro(tmp_path, OPEN_PLANES)
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        overview = mountpoint / ".hcsfs" / "overview" / "w1.tif"
        assert overview.exists()
        lines = run_imagej(macro, str(overview))
    expected = render_overview(plate, 1, overview_geometry(plate))
    _check_plane(_results(lines, "RESULT")[0], expected)
