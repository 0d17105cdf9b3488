"""Cheap facts about single-plane TIFF files on disk: is it a TIFF, its shape, dtype, pixel size."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np
import tifffile

from hcsfs.errors import PlaneReadError

__all__ = [
    "TIFF_MAGICS",
    "is_tiff",
    "metadata_xml_props",
    "probe_channel_name",
    "probe_tiff",
    "read_tiff_format",
    "read_tiff_plane",
]

TIFF_MAGICS = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def is_tiff(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with a TIFF or BigTIFF signature (reads 4 bytes)."""
    with open(path, "rb") as file:
        return file.read(4) in TIFF_MAGICS


_PROP = re.compile(r"""<prop\s+id="([^"]+)"\s+type="[^"]*"\s+value="([^"]*)"\s*/>""")


def metadata_xml_props(description: str | None) -> dict[str, str]:
    """``<prop id=... value=...>`` pairs of MetaMorph/MetaSeries ``<MetaData>`` XML (first wins).

    Read directly rather than through tifffile's ``is_metaseries``, which also demands the Software
    tag be "MetaSeries"; MetaXpress planes written by MetaMorph say "MetaMorph".
    """
    if not description or not description.lstrip().startswith("<MetaData>"):
        return {}
    props: dict[str, str] = {}
    for key, value in _PROP.findall(description):
        props.setdefault(key, html.unescape(value))
    return props


def _pixel_size_um(page: tifffile.TiffPage, tif: tifffile.TiffFile) -> float | None:
    """Pixel size in microns from ImageJ calibration or MetaMorph/MetaSeries metadata, if any."""
    if tif.is_imagej and (tif.imagej_metadata or {}).get("unit") in ("micron", "um", "\\u00B5m", "µm"):
        resolution = page.tags.get("XResolution")
        if resolution is not None:
            numerator, denominator = resolution.value
            if numerator:
                return denominator / numerator
    props = metadata_xml_props(page.description)
    if props.get("spatial-calibration-x") and props.get("spatial-calibration-units", "um") in (
        "um", "µm", "micron", "microns"
    ):
        return float(props["spatial-calibration-x"])
    if tif.is_stk:
        meta = tif.stk_metadata or {}
        x_calibration = meta.get("XCalibration")
        units = str(meta.get("CalibrationUnits") or "um")
        if x_calibration and meta.get("SpatialCalibration", 1) and units in ("um", "µm", "micron"):
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


def _metamorph_channel(tif: tifffile.TiffFile) -> str | None:
    props = metadata_xml_props(tif.pages.first.description)
    for name in ("_IllumSetting_", "image-name"):
        if props.get(name):
            return props[name]
    if tif.is_stk:
        meta = tif.stk_metadata or {}
        for prop in meta.get("PlaneProperty") or ():
            if isinstance(prop, dict) and prop.get("name") == "_IllumSetting_" and prop.get("value"):
                return str(prop["value"])
        if meta.get("Name"):
            return str(meta["Name"])
    return None


def probe_channel_name(path: str | Path) -> str | None:
    """The channel (illumination setting) a MetaMorph/MetaXpress plane names in its header, if any.

    A damaged header is a :class:`PlaneReadError` naming the file (tifffile raises ``struct.error``,
    ``IndexError`` and others for short or garbled files, which callers must not have to know).
    """
    try:
        with tifffile.TiffFile(path) as tif:
            return _metamorph_channel(tif)
    except Exception as exc:  # tifffile raises many types for damaged files
        raise PlaneReadError(f"{path}: cannot read the TIFF header: {exc}") from exc


def read_tiff_plane(path: Path) -> np.ndarray:
    """The pixels of a single-plane TIFF; a damaged file is a :class:`PlaneReadError` naming it."""
    try:
        return tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for damaged files
        raise PlaneReadError(f"{path}: cannot decode: {exc}") from exc


def read_tiff_format(path: Path) -> tuple[tuple[int, int], str, float | None]:
    """:func:`probe_tiff`, with a damaged file a :class:`PlaneReadError` naming it."""
    try:
        return probe_tiff(path)
    except Exception as exc:  # tifffile raises many types for damaged files
        raise PlaneReadError(f"{path}: cannot read the TIFF header: {exc}") from exc
