"""Plate sources, one module per storage format, and :func:`open_plate`, which picks one.

Detection is an ordered table of cheap sniffers (they look at a few names on disk and import nothing
heavy); the first that answers yes wins, and ``format=`` skips detection.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hcsfs.errors import PlateFormatError
from hcsfs.sources.base import PlaneInfo, PlateDescription, PlateSource, plate_summary
from hcsfs.sources.memory import MemoryPlate

REMOTE_SCHEMES = ("s3://",)

__all__ = [
    "FORMATS",
    "MemoryPlate",
    "PlaneInfo",
    "PlateDescription",
    "PlateSource",
    "detect_format",
    "open_plate",
    "plate_summary",
]


@dataclass(frozen=True, slots=True)
class SourceFormat:
    """One row of the detection table: a name, a cheap sniffer and where the source class lives."""

    name: str
    sniffer: str  # "module:function", called with the Path
    opener: str  # "module:Class", called with the Path and options
    looks_for: str  # said in the error when nothing matches

    def _load(self, target: str) -> Callable[..., Any]:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]

    def can_open(self, path: Path) -> bool:
        return bool(self._load(self.sniffer)(path))

    def accepts(self, option: str) -> bool:
        parameters = inspect.signature(self._load(self.opener)).parameters
        return option in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())

    def open(self, path: Path, **options: Any) -> PlateSource:
        opener = self._load(self.opener)
        accepted = inspect.signature(opener).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        for option in options:
            if not takes_any and option not in accepted:
                raise PlateFormatError(f"option {option!r} does not apply to format {self.name}")
        return opener(path, **options)  # type: ignore[no-any-return]


FORMATS: tuple[SourceFormat, ...] = (
    SourceFormat(
        "phenix", "hcsfs.sources.phenix:can_open", "hcsfs.sources.phenix:PhenixSource",
        "a Harmony Index.idx.xml, Index.ref.xml or Index.xml here or in Images/",
    ),
    SourceFormat(
        "cellvoyager", "hcsfs.sources.cellvoyager.meta:can_open",
        "hcsfs.sources.cellvoyager.source:CellVoyagerSource",
        "a Yokogawa MeasurementData.mlf with MeasurementDetail.mrf here or one folder down",
    ),
    SourceFormat(
        "imagexpress", "hcsfs.sources.imagexpress:can_open",
        "hcsfs.sources.imagexpress:ImageXpressSource",
        "a MetaXpress .HTD, TimePoint_<n> folders or <plate>_<well>_s<n>_w<n>.tif names",
    ),
    SourceFormat(
        "ome-zarr", "hcsfs.sources.omezarr.meta:can_open",
        "hcsfs.sources.omezarr.source:OmeZarrPlateSource",
        "an OME-Zarr HCS plate (zarr.json or .zattrs with plate metadata)",
    ),
    SourceFormat(
        "tiff-folder", "hcsfs.sources.tiffdir:can_open", "hcsfs.sources.tiffdir:TiffFolderSource",
        "files named like A01_s001_w1_z001_t001.tif",
    ),
)


def _format_by_name(name: str) -> SourceFormat:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    known = ", ".join(f.name for f in FORMATS)
    raise PlateFormatError(f"unknown format {name!r} (known: {known})")


def detect_format(path: str | os.PathLike[str]) -> str:
    """The name of the first format whose sniffer accepts ``path``."""
    path = Path(path)
    if not path.exists():
        raise PlateFormatError(f"{path}: no such file or folder")
    for fmt in FORMATS:
        if fmt.can_open(path):
            return fmt.name
    looked_for = "; ".join(f"{f.name}: {f.looks_for}" for f in FORMATS)
    raise PlateFormatError(f"{path}: not a plate hcsfs can open (looked for {looked_for})")


def open_plate(
    source: str | os.PathLike[str] | PlateSource,
    *,
    format: str | None = None,
    cache_bytes: int | None = None,
    **options: Any,
) -> PlateSource:
    """Open a plate lazily; ``format`` overrides detection. A PlateSource is returned as is.

    ``cache_bytes`` is the decoded-data budget, handed to sources that keep their own cache.
    """
    if isinstance(source, PlateSource):
        return source
    if isinstance(source, str) and source.startswith(REMOTE_SCHEMES):
        # Object storage: no local checks; only OME-Zarr plates live there (docs/s3.md).
        fmt = _format_by_name(format or "ome-zarr")
        if fmt.name != "ome-zarr":
            raise PlateFormatError(f"{source}: only OME-Zarr plates can be read from object storage")
        if cache_bytes is not None:
            options["cache_bytes"] = cache_bytes
        return fmt.open(source, **options)  # type: ignore[arg-type]
    path = Path(source)
    if not path.exists():
        raise PlateFormatError(f"{path}: no such file or folder")
    if not os.access(path, os.R_OK):
        raise PlateFormatError(f"{path}: not readable")
    fmt = _format_by_name(format) if format else _format_by_name(detect_format(path))
    if cache_bytes is not None and fmt.accepts("cache_bytes"):
        options["cache_bytes"] = cache_bytes
    return fmt.open(path, **options)
