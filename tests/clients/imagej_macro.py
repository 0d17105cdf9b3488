"""Reusable ImageJ macro helpers: parse ``TAG key=value`` lines, and measure a ``.roi.zip`` in ImageJ.

ImageJ runs through :func:`tests.clients.conftest.run_imagej` (Xvfb, batch mode, killed on a hang).
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import Path

from tests.clients.conftest import run_imagej

__all__ = ["parse_results", "imagej_rois", "imagej_roi_areas", "ROI_MEASURE"]

# Argument: "ZIP|WIDTH|HEIGHT[|IMAGE]". Without IMAGE the ROIs are measured on a black 8-bit plane.
ROI_MEASURE = r"""
args = split(getArgument(), "|");
path = args[0];
if (!File.exists(path)) { print("ERROR missing " + path); exit; }
if (args.length > 3) {
    if (!File.exists(args[3])) { print("ERROR missing " + args[3]); exit; }
    IJ.redirectErrorMessages();
    open(args[3]);
    if (nImages == 0) { print("ERROR cannot open " + args[3]); exit; }
} else {
    newImage("plane", "8-bit black", parseInt(args[1]), parseInt(args[2]), 1);
}
run("Set Scale...", "distance=0 known=0 unit=pixel");
IJ.redirectErrorMessages();
roiManager("Open", path);
n = roiManager("count");
print("COUNT count=" + n);
for (i = 0; i < n; i++) {
    roiManager("select", i);
    Roi.getBounds(x, y, w, h);
    getRawStatistics(pixels, mean, min, max);
    List.setMeasurements;
    print("ROI name=" + Roi.getName + " type=" + Roi.getType + " area=" + d2s(List.getValue("Area"), 4)
        + " pixels=" + pixels + " x=" + x + " y=" + y + " w=" + w + " h=" + h
        + " min=" + d2s(min, 0) + " max=" + d2s(max, 0));
}
"""


def parse_results(lines: list[str], tag: str) -> list[dict[str, str]]:
    """The ``key=value`` fields of each printed line starting with ``tag``; fails on any ``ERROR`` line."""
    errors = [line for line in lines if line.startswith("ERROR")]
    assert not errors, "\n".join(lines)
    found = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in lines if line.startswith(tag + " ")]
    assert found, "ImageJ printed no measurements:\n" + "\n".join(lines)
    return found


def imagej_rois(zip_path: Path, width: int, height: int, image: Path | None = None) -> list[dict[str, str]]:
    """Open ``zip_path`` in ImageJ's ROI Manager over a ``width`` x ``height`` plane (or ``image``).

    One dict per ROI in manager order: ``name``, ``type``, ``area`` (uncalibrated pixels, as Analyze >
    Measure gives it), ``pixels`` (mask pixel count), bounds ``x, y, w, h``, and ``min, max`` of the image
    under the ROI. Asserts that ImageJ's ROI count equals the number of dicts. A zip without ``.roi``
    entries is refused here: ImageJ answers it with a modal error dialog, which would hang the run.
    """
    with zipfile.ZipFile(zip_path) as archive:
        if not any(name.endswith(".roi") for name in archive.namelist()):
            raise ValueError(f"{zip_path} holds no .roi entries (ImageJ would show an error dialog)")
    with tempfile.TemporaryDirectory() as folder:
        macro = Path(folder) / "roi_measure.ijm"
        macro.write_text(ROI_MEASURE)
        argument = f"{zip_path}|{width}|{height}" + (f"|{image}" if image is not None else "")
        lines = run_imagej(macro, argument)
    count = int(parse_results(lines, "COUNT")[0]["count"])
    rois = parse_results(lines, "ROI") if count else []
    assert len(rois) == count, "\n".join(lines)
    return rois


def imagej_roi_areas(zip_path: Path, width: int, height: int) -> list[tuple[str, float]]:
    """(name, Area in pixels) of each ROI of ``zip_path`` as ImageJ measures it on a blank plane."""
    return [(roi["name"], float(roi["area"])) for roi in imagej_rois(zip_path, width, height)]
