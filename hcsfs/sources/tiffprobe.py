"""Cheap facts about single-plane TIFF files on disk: is it a TIFF, its shape, dtype, pixel size."""

from __future__ import annotations

import os
from pathlib import Path

import tifffile

__all__ = ["TIFF_MAGICS", "is_tiff", "probe_tiff"]

TIFF_MAGICS = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def is_tiff(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with a TIFF or BigTIFF signature (reads 4 bytes)."""
    with open(path, "rb") as file:
        return file.read(4) in TIFF_MAGICS


def _pixel_size_um(page: tifffile.TiffPage, tif: tifffile.TiffFile) -> float | None:
    """Pixel size in microns from ImageJ calibration or MetaMorph/MetaSeries metadata, if any."""
    if tif.is_imagej and (tif.imagej_metadata or {}).get("unit") in ("micron", "um", "\\u00B5m", "µm"):
        resolution = page.tags.get("XResolution")
        if resolution is not None:
            numerator, denominator = resolution.value
            if numerator:
                return denominator / numerator
    if tif.is_metaseries:
        meta = tif.metaseries_metadata or {}
        for section in ("PlaneInfo", "SetInfo"):
            value = meta.get(section, {}).get("spatial-calibration-x")
            if value:
                return float(value)
    if tif.is_stk:
        meta = tif.stk_metadata or {}
        x_calibration = meta.get("XCalibration")
        if x_calibration:
            return float(x_calibration)
    return None


def probe_tiff(path: str | Path) -> tuple[tuple[int, int], str, float | None]:
    """``(shape, dtype, pixel_size_um)`` of the first page, reading only the header."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        shape = page.shape
        if len(shape) != 2:
            shape = (page.imagelength, page.imagewidth)
        if page.dtype is None:
            raise ValueError(f"{path}: sample format not supported (no numpy dtype)")
        return (int(shape[0]), int(shape[1])), page.dtype.str.lstrip("<>|="), _pixel_size_um(page, tif)
